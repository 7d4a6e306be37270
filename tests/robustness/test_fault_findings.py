"""Findings of the safety-invariant machine (tests/robustness/test_invariants.py)
under plant faults (strict-xfail reproductions until they were fixed).

- A fault that made every stroke short logged STROKE_MISMATCH at every stroke,
  and the log keeps only the newest 256-512 entries (docs/pump.md 15): within hours
  the program, the refill and the very alarm that reports the fault aged out
  of the log. Now the first mismatched stroke is logged at once and the
  following ones are tallied into at most one entry an hour
  (firmware/pump/app.py MISMATCH_LOG_S).
- An encoder failure together with anything that hides the stroke from the
  pressure sensor (a stuck sensor, a leak) looked like a stall: the stroke
  was retried three times, the head really turned four times, and none of it
  was counted, neither in ``delivered_nl`` nor in the dose governor's windows
  nor in the reservoir account. Now a stroke the encoder missed while the
  pressure cannot witness it is ENCODER_FAILURE: counted as a nominal stroke,
  delivery stopped, never retried.
"""

from __future__ import annotations

import itertools

import pytest

from bench.link.errors import PumpRefused
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from bench.robustness.common import ALARM, HOUR_MS
from tests.system import kit


def test_three_hours_of_short_strokes_keep_the_program_and_the_alarm_in_the_log(
    pump: PumpClient, rig: RigClient
) -> None:
    kit.start_therapy(pump, rig, kit.program())
    rig.inject_fault("LOST_STEPS", 20)
    rig.advance(3 * HOUR_MS)
    log = pump.log()
    names = {entry["name"] for entry in log}
    assert {"PROGRAM_ACTIVE", "REFILL", "ALARM_RAISED"} <= names, sorted(names)
    mismatches = [e for e in log if e["name"] == "STROKE_MISMATCH"]
    # the first at once, then at most one an hour, each a tally of strokes
    assert 2 <= len(mismatches) <= 4, mismatches
    assert mismatches[0]["b"] == 8 and mismatches[0]["a"] < 8, mismatches[0]
    assert all(e["b"] % 8 == 0 and e["a"] < e["b"] for e in mismatches), mismatches
    times = [e["time_s"] for e in mismatches]
    assert all(b - a >= 3600 for a, b in itertools.pairwise(times)), times
    strokes = sum(e["b"] for e in mismatches) // 8
    assert strokes >= 100, f"{strokes} short strokes tallied in 3 h at 20 % lost"


@pytest.mark.parametrize("blind", ["SENSOR_STUCK", "LEAK"])
def test_strokes_the_encoder_missed_are_never_under_counted(
    pump: PumpClient, rig: RigClient, blind: str
) -> None:
    kit.start_therapy(pump, rig, kit.program())
    rig.advance(10 * 60_000)
    rig.inject_fault(blind, 80 if blind == "LEAK" else 0)
    rig.advance(30 * 60_000)  # a stuck sensor is found (SENSOR_FAULT)
    rig.inject_fault("ENCODER_FAILURE")
    for _ in range(3):  # the alarms, cleared by a clinician, again (the faults stay)
        rig.advance(30 * 60_000)
        for alarm in ("MOTOR_STALL", "ENCODER_FAILURE", "LEAK"):
            try:
                pump.clear_alarm(alarm)
            except PumpRefused:
                pass
    rig.advance(30 * 60_000)  # what the last clear restarted ends
    delivered = pump.status()["delivered_nl"]
    pumped = rig.truth()["pumped_nl"]
    assert delivered >= pumped, f"the pump counts {delivered} nL, the head pumped {pumped} nL"
    log = pump.log()
    names = [e["name"] for e in log]
    # a stroke the pressure cannot witness is never retried: it may have moved
    assert "STALL_RETRY" not in names, names
    raised = [e["a"] for e in log if e["name"] == "ALARM_RAISED"]
    assert ALARM["ENCODER_FAILURE"] in raised, names
