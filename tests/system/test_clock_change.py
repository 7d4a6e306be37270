"""Clock changes cannot overdose (docs/pump.md 11.3).

The flex schedule follows local time (device time + the SET_CLOCK offset);
the governor, lockouts and windows run on monotonic device time. After a
clock change the previous offset stays binding for 24 h 15 min: the basal
rate is the lower of the two schedules, so no 1 h or 24 h window holds more
than the worst case checked when the program was accepted. Before, setting
the clock back 12 h at 19:59 replayed the high-rate half day and tripped the
governor (DOSE_LIMIT).

The sweep: a clock change forward and back by up to 24 h, one minute before
every flex boundary (and midnight). The holds are journalled with the
snapshot SET_CLOCK takes: a second sweep resets the pump (a firmware reset
or a power cut, alternately) at a random moment of the day after the change,
and the windows still never exceed the checked worst case. Before the holds
were journalled, a reset forgot them and the new clock alone replayed the
high-rate half day (DOSE_LIMIT).
"""

from __future__ import annotations

import random

import pytest

from bench.link.errors import PumpRefused
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from tests.system.kit import ALARM_BITS, HOUR_MS, STROKE_NL, flex, start_therapy

DAY_S = 86_400
WEEK_S = 7 * DAY_S
# Baclofen-like flex: 0.4 mL/day from 08:00, 0.1 mL/day from 20:00 (and
# before 08:00): the day's two halves differ fourfold. Morphine 1 mg/mL (4
# mg/day at most, far below its limits): the governor's windows (STATUS)
# count dose at the tip, 1 ng per nL here (docs/pump.md 22).
HIGH, LOW = 400_000, 100_000
STEPS = [(8 * 60, HIGH, 0), (20 * 60, LOW, 0)]
BOUNDARIES_MIN = [0, 8 * 60, 20 * 60]
SHIFTS_H = [-24, -12, -1, 1, 12, 24]
WINDOW_SLACK_NL = 2 * STROKE_NL  # whole strokes against a nL worst case
CONC = 1_000  # ug/mL: 1 nL holds 1 ng


def therapy() -> dict:
    return flex(STEPS, LOW, drug_id=1, conc_ug_ml=CONC)


def worst_windows(pump: PumpClient, fields: dict) -> tuple[int, int]:
    # the pending program's checked worst case (PROGRAM reply), then confirm
    reply = pump.request("PROGRAM", fields)
    pump.request("CONFIRM", {"crc": reply["crc"]})
    return reply["max_hourly_nl"], reply["max_daily_nl"]


POWER_OFF, POWER_ON = 0, 1
# the one alarm a reset raises (every boot that finds state, docs/pump.md 10.3)
UNEXPECTED_RESET = 1 << (ALARM_BITS["UNEXPECTED_RESET"] - 1)


@pytest.mark.parametrize("shift_h", SHIFTS_H)
@pytest.mark.parametrize("boundary", BOUNDARIES_MIN, ids=lambda m: f"{m // 60:02d}h")
def test_a_clock_change_never_exceeds_the_checked_worst_case(
    pump: PumpClient, rig: RigClient, boundary: int, shift_h: int
) -> None:
    check_the_windows_after_a_change(pump, rig, boundary, shift_h, reset_after_ms=-1)


@pytest.mark.parametrize("half", [0, 1], ids=["reset-first-12h", "reset-last-12h"])
@pytest.mark.parametrize("shift_h", SHIFTS_H)
@pytest.mark.parametrize("boundary", BOUNDARIES_MIN, ids=lambda m: f"{m // 60:02d}h")
def test_a_reset_after_a_clock_change_keeps_the_holds(
    pump: PumpClient, rig: RigClient, boundary: int, shift_h: int, half: int
) -> None:
    # a random moment (ms) in either half of the day's hold, reproducible
    # per case (the seed is in the test id)
    rng = random.Random(f"{boundary}/{shift_h}/{half}")
    moment = half * 12 * HOUR_MS + rng.randrange(1, 12 * HOUR_MS)
    check_the_windows_after_a_change(pump, rig, boundary, shift_h, reset_after_ms=moment)


def check_the_windows_after_a_change(
    pump: PumpClient, rig: RigClient, boundary: int, shift_h: int, reset_after_ms: int
) -> None:
    start_therapy(pump, rig, {**therapy(), "mode": 0})  # reservoir; stopped
    worst_1h, worst_24h = worst_windows(pump, therapy())
    # local time = device time (offset 0, Monday 00:00 at power-on); run a
    # day, then move to a minute before the boundary
    rig.advance(DAY_S * 1000)
    now_s = rig.advance(0) // 1000
    target_s = DAY_S + boundary * 60 - 60
    if target_s <= now_s:
        target_s += DAY_S
    rig.advance((target_s - now_s) * 1000)
    pump.request("SET_CLOCK", {"local_offset_s": (shift_h * 3600) % WEEK_S})
    peak_1h = peak_24h = 0
    allowed = 0
    for hour in range(50):  # the hold (24 h 15 min) and a day after it, hourly
        if hour == reset_after_ms // HOUR_MS:
            rig.advance(reset_after_ms % HOUR_MS)
            if shift_h % 2:  # a firmware reset (as by the watchdog)
                rig.reset()
            else:  # a power cut
                rig.power(POWER_OFF)
                rig.power(POWER_ON)
            pump.wait_event("BOOT", timeout_s=5)
            allowed = UNEXPECTED_RESET
            rig.advance(HOUR_MS - reset_after_ms % HOUR_MS)
        else:
            rig.advance(HOUR_MS)
        status = pump.status()
        assert status["alarms"] & ~allowed == 0, status["alarm_names"]
        assert status["state_name"] == "RUNNING", status["alarm_names"]
        peak_1h = max(peak_1h, status["window_1h_ng"] * 1_000 // CONC)
        peak_24h = max(peak_24h, status["window_24h_ng"] * 1_000 // CONC)
    assert peak_24h <= worst_24h + WINDOW_SLACK_NL, (peak_24h, worst_24h)
    assert peak_1h <= worst_1h + WINDOW_SLACK_NL, (peak_1h, worst_1h)
    # and the schedule did not starve either: the day after the hold ends
    # follows the new clock
    rig.advance(HOUR_MS)
    assert pump.status()["state_name"] == "RUNNING"


def test_a_fourth_change_within_a_day_is_refused(pump: PumpClient, rig: RigClient) -> None:
    start_therapy(pump, rig, therapy())
    for hours in (1, 2, 3):
        pump.request("SET_CLOCK", {"local_offset_s": hours * 3600})
    with pytest.raises(PumpRefused):
        pump.request("SET_CLOCK", {"local_offset_s": 4 * 3600})
    rig.advance(25 * HOUR_MS)  # the holds run out
    pump.request("SET_CLOCK", {"local_offset_s": 4 * 3600})
