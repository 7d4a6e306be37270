"""IEC 60601-2-24 flow accuracy: start-up and trumpet curves from volume samples.

The standard weighs the delivered fluid every 30 s (Δt = 0.5 min) for
T = 120 min; the start-up curve is the flow in each interval, and the
trumpet curve gives, for observation windows of 2, 5, 11, 19 and 31 min
taken from the second hour, the largest and smallest mean error of any
window (Ep(max), Ep(min)).
The bench samples the rig's ground truth (TRUTH ``tip_nl``: what left the
catheter) instead of a balance; the arithmetic is the standard's:

    Qi    = (W(i) - W(i-1)) / Δt                      flow in interval i
    e(i)  = 100 (Qi - r) / r                          its error, % of the rate r
    Ep(j) = (1/m) Σ e(i) over the m intervals of window j
    A     = 100 (Q̄ - r) / r                           mean error over the analysis period

**Time scaling.** The pump delivers in strokes of 200 nL. At intrathecal
rates (0.048 to 24 mL/day) a stroke comes every 0.7 s to 6 min, so at the
standard's time base a 2-minute window holds less than one stroke at the
lowest rates and its error says only where the strokes fell. The bench
therefore stretches every time of the method by one integer factor *k*:
Δt, T, the analysis start and every window are multiplied by *k*, so the
analysis keeps the standard's shape (240 samples, trumpets from the second
half, windows in the ratio 2:5:11:19:31). *k* is the smallest integer that
puts at least ``strokes_per_window`` (default 20) nominal strokes in the
shortest window, i.e. one stroke is at most 5 % of it:

    k = max(1, ceil(strokes_per_window x stroke interval / shortest window))

with stroke interval = 200 nL x 1 day / rate. bench/README.md tabulates k
for the suite's rates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bench.scenario.model import window_label

DAY_MS = 86_400_000
# The nominal stroke: 8 steps of 25 nL (docs/pump.md section 11.1).
STROKE_NL = 200


def stroke_interval_ms(rate_nl_day: int) -> float:
    """Average device time between basal strokes at this rate."""
    return STROKE_NL * DAY_MS / rate_nl_day


def auto_scale(rate_nl_day: int, shortest_window_ms: int, strokes_per_window: int) -> int:
    """The time-scale factor k of the module docstring."""
    if rate_nl_day <= 0:
        raise ValueError("the pump is not delivering: no rate to scale the method to")
    needed = strokes_per_window * stroke_interval_ms(rate_nl_day) / shortest_window_ms
    return max(1, math.ceil(needed - 1e-9))


@dataclass
class Trumpet:
    """One observation window: its length and the extremes of its mean error."""

    window_ms: int
    ep_max_pct: float
    ep_min_pct: float


@dataclass
class FlowAnalysis:
    """The start-up curve (every interval) and the trumpet curve (windows)."""

    rate_nl_day: int
    scale: int
    sample_ms: int  # scaled Δt
    analysis_from_ms: int  # scaled
    times_ms: list[int]  # end of each interval, from the start of the test
    flows_nl_day: list[float]  # Qi
    errors_pct: list[float]  # e(i)
    trumpets: list[Trumpet]
    mean_error_pct: float  # A over the analysis period
    startup_error_pct: float  # the same over the start-up period
    volume_nl: int  # delivered over the analysis period

    def fields(self) -> dict[str, float | int]:
        """Measurable values, as a measure step reads them (bench/scenario/model.py)."""
        values: dict[str, float | int] = {
            "mean_error_pct": self.mean_error_pct,
            "startup_error_pct": self.startup_error_pct,
            "rate_nl_day": self.rate_nl_day,
            "volume_nl": self.volume_nl,
            "scale": self.scale,
        }
        for trumpet in self.trumpets:
            label = window_label(trumpet.window_ms // self.scale)
            values[f"ep_max_{label}"] = trumpet.ep_max_pct
            values[f"ep_min_{label}"] = trumpet.ep_min_pct
        return values


def _error(volume_nl: float, span_ms: int, rate_nl_day: int) -> float:
    expected = rate_nl_day * span_ms / DAY_MS
    return 100.0 * (volume_nl - expected) / expected


def analyse(
    volumes_nl: Sequence[int],
    *,
    sample_ms: int,
    rate_nl_day: int,
    analysis_from_ms: int,
    windows_ms: Sequence[int],
    scale: int = 1,
) -> FlowAnalysis:
    """Start-up and trumpet curves from cumulative volumes W(0..n), one per sample.

    ``sample_ms``, ``analysis_from_ms`` and ``windows_ms`` are already scaled.
    """
    if len(volumes_nl) < 2:
        raise ValueError("need at least two volume samples")
    if rate_nl_day <= 0:
        raise ValueError("the rate must be above 0")
    n = len(volumes_nl) - 1
    start = analysis_from_ms // sample_ms
    if not 0 <= start < n:
        raise ValueError("the analysis period must lie inside the samples")
    deltas = [volumes_nl[i] - volumes_nl[i - 1] for i in range(1, n + 1)]
    flows = [d * DAY_MS / sample_ms for d in deltas]
    errors = [100.0 * (q - rate_nl_day) / rate_nl_day for q in flows]
    analysis = errors[start:]
    trumpets = []
    for window_ms in windows_ms:
        m = window_ms // sample_ms
        if m < 1 or m > len(analysis):
            raise ValueError(f"window {window_ms} ms does not fit the analysis period")
        means = [sum(analysis[j : j + m]) / m for j in range(len(analysis) - m + 1)]
        trumpets.append(Trumpet(window_ms, max(means), min(means)))
    volume = volumes_nl[n] - volumes_nl[start]
    startup_error = (
        _error(volumes_nl[start] - volumes_nl[0], start * sample_ms, rate_nl_day) if start else 0.0
    )
    return FlowAnalysis(
        rate_nl_day=rate_nl_day,
        scale=scale,
        sample_ms=sample_ms,
        analysis_from_ms=analysis_from_ms,
        times_ms=[i * sample_ms for i in range(1, n + 1)],
        flows_nl_day=flows,
        errors_pct=errors,
        trumpets=trumpets,
        mean_error_pct=_error(volume, (n - start) * sample_ms, rate_nl_day),
        startup_error_pct=startup_error,
        volume_nl=volume,
    )


def on_grid(times_ms: list[int], volumes: list[int], sample_ms: int) -> list[int]:
    """Volumes read at ``times_ms`` -> volumes every ``sample_ms`` from the first time.

    In lockstep the samples already sit on the grid and come back unchanged;
    in real time each sample lands a little late (the bench reads after the
    ADVANCE returns), and the volume at each grid instant is interpolated
    between the two readings around it (at most one stroke off).
    """
    start = times_ms[0]
    if all(t == start + i * sample_ms for i, t in enumerate(times_ms)):
        return list(volumes)
    grid: list[int] = []
    j = 0
    for i in range(len(volumes)):
        at = start + i * sample_ms
        while j + 1 < len(times_ms) - 1 and times_ms[j + 1] < at:
            j += 1
        t0, t1 = times_ms[j], times_ms[j + 1]
        v0, v1 = volumes[j], volumes[j + 1]
        if at >= t1:
            grid.append(v1)
        elif t1 == t0:
            grid.append(v0)
        else:
            grid.append(round(v0 + (v1 - v0) * (at - t0) / (t1 - t0)))
    return grid
