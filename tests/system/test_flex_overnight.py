"""Flex steps across midnight as one step (docs/pump.md 11.3).

A flex step marked FLEX_OVERNIGHT (bit 7 of its flex_days) runs on past
midnight until the next day's first step: 22:00-02:00 is the 22:00 step and
the 02:00 step that ends it, where before midnight returned to the
background rate and a third step at 00:00 was needed. The pump's schedule,
its checked worst-case windows and the bench's model of the prescription
(bench/program/programmed.py, written separately) must agree on it.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.board.sim import BoardOptions, VirtualBoard
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from bench.program import programmed
from protocol import schema
from tests.system.kit import HOUR_MS, MINUTE_MS, STROKE_NL, flex, start_therapy, truth

NIGHT = 2_000_000  # nL/day from 22:00 to 02:00
DAYTIME = 500_000  # the background and the 02:00 step
WEEK_MIN = 7 * 1440
WINDOW_24H_MIN = 97 * 15  # the governor's windows the worst case is checked over
WINDOW_1H_MIN = 61


def _night_program(overnight: bool) -> dict[str, Any]:
    mask = schema.FLEX_OVERNIGHT if overnight else 0
    return flex([(2 * 60, DAYTIME, 0), (22 * 60, NIGHT, mask)], basal_nl_day=DAYTIME)


def test_an_overnight_step_runs_past_midnight_until_the_next_step(
    pump: PumpClient, rig: RigClient
) -> None:
    # Device second 0 is Monday 00:00 local; Sunday's 22:00 step is still on.
    start_therapy(pump, rig, _night_program(overnight=True))
    before = truth(rig)["tip_nl"]
    assert pump.status()["device_time_ms"] == 0  # Monday 00:00 local
    rates = {}
    for label, minute in (("Mon 00:30", 30), ("Mon 02:30", 150), ("Mon 22:30", 1350)):
        rig.advance(minute * MINUTE_MS - int(pump.status()["device_time_ms"]))
        rates[label] = pump.status()["rate_nl_day"]
    rig.advance((1440 + 60) * MINUTE_MS - int(pump.status()["device_time_ms"]))
    rates["Tue 01:00"] = pump.status()["rate_nl_day"]
    assert rates == {
        "Mon 00:30": NIGHT,  # Sunday's 22:00 step, still on
        "Mon 02:30": DAYTIME,
        "Mon 22:30": NIGHT,
        "Tue 01:00": NIGHT,  # one step across midnight
    }
    rig.advance((1440 + 180) * MINUTE_MS - int(pump.status()["device_time_ms"]))
    assert pump.status()["rate_nl_day"] == DAYTIME  # Tue 03:00
    # Mon 00:00-02:00 night, 02:00-22:00 day, 22:00-Tue 02:00 night, 02:00-03:00 day
    minutes = {NIGHT: 120 + 240, DAYTIME: 1200 + 60}
    expected = sum(rate * m for rate, m in minutes.items()) // 1440
    assert abs(truth(rig)["tip_nl"] - before - expected) <= 2 * STROKE_NL


def test_without_the_mark_midnight_still_returns_to_the_background(
    pump: PumpClient, rig: RigClient
) -> None:
    start_therapy(pump, rig, _night_program(overnight=False))
    rig.advance(30 * MINUTE_MS)
    assert pump.status()["rate_nl_day"] == DAYTIME
    rig.advance(22 * HOUR_MS)
    assert pump.status()["rate_nl_day"] == NIGHT
    rig.advance(2 * HOUR_MS)  # Tuesday 00:30
    assert pump.status()["rate_nl_day"] == DAYTIME


def _worst(fields: dict[str, Any], minutes: int) -> int:
    """The most basal nL any window of ``minutes`` holds, by brute force per minute."""
    per_minute = [
        programmed.rate_at(fields, m * MINUTE_MS) for m in range(2 * WEEK_MIN)
    ]  # nL/day for each minute of two weeks
    prefix = [0]
    for rate in per_minute:
        prefix.append(prefix[-1] + rate)
    most = max(prefix[s + minutes] - prefix[s] for s in range(WEEK_MIN))
    return (most + 1439) // 1440


@st.composite
def flex_programs(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 5))
    starts = sorted(draw(st.sets(st.integers(0, 1439), min_size=count, max_size=count)))
    steps = []
    for start in starts:
        rate = draw(st.sampled_from([48_000, 250_000, 500_000, 1_000_000, 2_000_000]))
        days = draw(st.sampled_from([0, 0, 0x01, 0x1F, 0x60, 0x15]))
        if draw(st.booleans()):
            days |= schema.FLEX_OVERNIGHT
        steps.append((start, rate, days))
    background = draw(st.sampled_from([48_000, 500_000, 1_000_000]))
    return flex(steps, basal_nl_day=background, drug_id=0, conc_ug_ml=0)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(fields=flex_programs())
def test_the_checked_worst_windows_agree_with_the_schedule(fields: dict[str, Any]) -> None:
    # The pump's worst 24 h and 1 h (PROGRAM's reply) against a brute-force
    # integration of bench/program/programmed.py's model of the same program.
    with VirtualBoard(BoardOptions()) as board, PumpClient(board.pump_port) as pump:
        reply = pump.request("PROGRAM", fields)
        pump.request("CANCEL_PROGRAM")
    assert reply["max_daily_nl"] == _worst(fields, WINDOW_24H_MIN)
    assert reply["max_hourly_nl"] == _worst(fields, WINDOW_1H_MIN)
