"""The volume a scenario's program prescribes, as a line against device time.

The delivered-volume plot shows what really left the catheter (the rig's
truth) against what the program asked for; the gap between them is what a
person looks for (an occlusion flattens the real line, a runaway steepens
it). This module integrates the prescription exactly as docs/pump.md
section 11 states it: continuous basal, the flex rule (latest step started
today that applies to today; before the first, yesterday's last step if
it runs overnight, else the background rate), the minimum rate, plus every bolus the pump
granted, counted at the moment it was granted.

It follows the commands (confirm, start, stop, boluses, clock), not the
pump's state: an alarm that stops delivery does not bend this line, so the
plot shows the shortfall.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protocol import schema

DAY_MS = 86_400_000
MINUTE_MS = 60_000
WEEK_DAYS = 7
MINIMUM_RATE_NL_DAY = 48_000  # mode MINIMUM_RATE (docs/pump.md 11.1)
STOPPED, CONTINUOUS, FLEX, MINIMUM_RATE = 0, 1, 2, 3
EVERY_DAY = 0x7F  # flex_days bits 0-6; bit 7 is schema.FLEX_OVERNIGHT


def rate_at(fields: Mapping[str, Any], local_ms: int) -> int:
    """The basal rate (nL/day) the program prescribes at a local instant."""
    mode = fields["mode"]
    if mode == CONTINUOUS:
        return int(fields["basal_nl_day"])
    if mode == MINIMUM_RATE:
        return MINIMUM_RATE_NL_DAY
    if mode != FLEX:
        return 0
    minute = (local_ms // MINUTE_MS) % 1440
    weekday = (local_ms // DAY_MS) % WEEK_DAYS
    step = _step_in_force(fields, minute, weekday)
    if step < 0:  # before today's first step: yesterday's may run overnight
        step = _step_in_force(fields, 1440, (weekday - 1) % WEEK_DAYS)
        if step < 0 or not fields["flex_days"][step] & schema.FLEX_OVERNIGHT:
            return int(fields["basal_nl_day"])
    return int(fields["flex_rate_nl_day"][step])


def _step_in_force(fields: Mapping[str, Any], minute: int, weekday: int) -> int:
    """The latest flex step of that weekday started by that minute, or -1."""
    found = -1
    for i in range(fields["flex_count"]):
        days = fields["flex_days"][i] & EVERY_DAY
        if fields["flex_start_min"][i] <= minute and (days == 0 or days >> weekday & 1):
            found = i
    return found


def _next_boundary(fields: Mapping[str, Any], local_ms: int) -> int:
    """The next local instant at which the flex rate may change (a step start or midnight)."""
    day_start = local_ms - local_ms % DAY_MS
    minute = (local_ms - day_start) // MINUTE_MS
    starts = sorted(fields["flex_start_min"][i] for i in range(fields["flex_count"]))
    later = [s for s in starts if s > minute]
    return day_start + (later[0] * MINUTE_MS if later else DAY_MS)


def integrate(fields: Mapping[str, Any], local_from_ms: int, local_to_ms: int) -> float:
    """nL the program prescribes between two local instants (basal only)."""
    if local_to_ms <= local_from_ms:
        return 0.0
    if fields["mode"] != FLEX:
        return rate_at(fields, local_from_ms) * (local_to_ms - local_from_ms) / DAY_MS
    total = 0.0
    t = local_from_ms
    while t < local_to_ms:
        end = min(local_to_ms, _next_boundary(fields, t))
        total += rate_at(fields, t) * (end - t) / DAY_MS
        t = end
    return total


class ProgrammedLine:
    """Cumulative prescribed volume (nL) from the first instant it was told of."""

    def __init__(self) -> None:
        self.fields: Mapping[str, Any] | None = None
        self.running = False
        self.offset_ms = 0
        self.t_ms: int | None = None
        self.volume_nl = 0.0  # basal and instant boluses so far
        self.spread: list[tuple[int, int, int]] = []  # boluses with a duration: start, end, nL

    def volume_at(self, t_ms: int) -> float:
        """The prescription up to ``t_ms``; time only moves forward."""
        if self.t_ms is None:
            self.t_ms = t_ms
        if t_ms > self.t_ms and self.running and self.fields is not None:
            self.volume_nl += integrate(
                self.fields, self.t_ms + self.offset_ms, t_ms + self.offset_ms
            )
        self.t_ms = max(self.t_ms, t_ms)
        spread = sum(
            volume * min(1.0, max(0.0, (t_ms - start) / (end - start)))
            for start, end, volume in self.spread
        )
        return self.volume_nl + spread

    def confirm(self, t_ms: int, fields: Mapping[str, Any]) -> None:
        """A program became active: it runs unless it is STOPPED (docs/pump.md 11.4)."""
        self.volume_at(t_ms)
        self.fields = dict(fields)
        self.running = fields["mode"] != STOPPED

    def start(self, t_ms: int) -> None:
        self.volume_at(t_ms)
        self.running = self.fields is not None and self.fields["mode"] != STOPPED

    def stop(self, t_ms: int) -> None:
        self.volume_at(t_ms)
        self.running = False

    def bolus(self, t_ms: int, volume_nl: int, duration_ms: int = 0) -> None:
        """A granted bolus: at once, or evenly over ``duration_ms`` as the pump spreads it."""
        self.volume_at(t_ms)
        if duration_ms > 0:
            self.spread.append((t_ms, t_ms + duration_ms, volume_nl))
        else:
            self.volume_nl += volume_nl

    def set_clock(self, t_ms: int, offset_s: int) -> None:
        self.volume_at(t_ms)
        self.offset_ms = offset_s * 1000
