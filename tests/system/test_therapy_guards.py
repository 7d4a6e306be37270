"""The guards around therapy on the virtual board: the dose governor, the
patient-bolus lockout and daily maximum, and power cuts and resets."""

from __future__ import annotations

import random

import pytest

from bench.link.errors import PumpRefused
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from protocol import schema
from protocol.table import POWER_CUT_AFTER_BYTES, POWER_CUT_IN_MS, POWER_OFF, POWER_ON
from tests.system.kit import (
    ALARM_BITS,
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    STROKE_NL,
    alarm_active,
    log_entries,
    program,
    start_therapy,
    truth,
)

LOG = {name: code for code, name in schema.LOG_CODES}

# morphine 25 mg/mL; hard limits: 25 mg/day, 3.6 mg in any hour (144 uL)
MORPHINE_25 = {"conc_ug_ml": 25_000}
PB = {"pb_dose_nl": 40_000, "pb_lockout_s": 3_600, "pb_max_per_day": 3}


def blind_the_line_monitors(pump: PumpClient, rig: RigClient) -> None:
    start_therapy(pump, rig, program(basal_nl_day=500_000, **MORPHINE_25))
    rig.inject_fault("SENSOR_STUCK")
    rig.advance(30 * MINUTE_MS)
    status = pump.status()
    assert status["alarm_names"] == ["SENSOR_FAULT"] and status["state_name"] == "RUNNING"


def test_a_pump_whose_scheduler_runs_wild_is_stopped_within_the_hourly_dose(
    pump: PumpClient, rig: RigClient
) -> None:
    # 0.5 mL/day is 12.5 mg/day. The firmware's timer running 10x fast makes
    # the scheduler ask for 10 strokes where 1 is due. With the pressure
    # sensor stuck, the line monitors are blind to the short strokes this
    # gives; every stroke moves its 8 steps. The clock check (timer against
    # RTC, docs/pump.md 14.8) stops it within two 5-minute windows of the timer;
    # behind it the governor, counting what the encoder moved against the
    # RTC, would stop it at the hourly hard dose.
    blind_the_line_monitors(pump, rig)
    before = truth(rig)["pumped_nl"]
    rig.inject_fault("TIMER_FAST", 10_000)  # x10
    rig.advance(2 * HOUR_MS)
    status = pump.status()
    assert status["state_name"] == "ALARM" and alarm_active(status, "CLOCK_FAULT")
    delivered = truth(rig)["pumped_nl"]
    hourly_limit_nl = 3_600_000 * 1_000 // 25_000  # 3.6 mg at 25 mg/mL
    assert delivered - before <= hourly_limit_nl + 2 * STROKE_NL
    rig.advance(DAY_MS)
    assert truth(rig)["pumped_nl"] == delivered  # stopped stays stopped


def test_the_clock_alarm_can_be_cleared_once_the_timer_is_true_again(
    pump: PumpClient, rig: RigClient
) -> None:
    blind_the_line_monitors(pump, rig)
    rig.inject_fault("TIMER_FAST", 10_000)
    rig.advance(2 * HOUR_MS)
    rig.clear_fault("TIMER_FAST")
    rig.advance(2 * HOUR_MS)  # a true window ends the condition
    for name in ("CLOCK_FAULT", "DOSE_LIMIT"):
        if alarm_active(pump.status(), name):
            pump.request("CLEAR_ALARM", {"alarm": ALARM_BITS[name]})
    before = truth(rig)["pumped_nl"]
    rig.advance(HOUR_MS)
    assert pump.status()["state_name"] == "RUNNING"
    assert truth(rig)["pumped_nl"] > before


def test_patient_bolus_lockout_and_daily_maximum(pump: PumpClient, rig: RigClient) -> None:
    start_therapy(pump, rig, program(basal_nl_day=200_000, **PB))
    first = pump.request("PATIENT_BOLUS")
    assert first["volume_nl"] == 40_000
    elapsed = rig.advance(10 * MINUTE_MS)
    with pytest.raises(PumpRefused) as refused:
        pump.request("PATIENT_BOLUS")
    assert refused.value.code == schema.LOCKOUT
    assert refused.value.detail == 3_600 - 600  # seconds of lockout left
    for _ in range(2):
        elapsed = rig.advance(HOUR_MS)
        pump.request("PATIENT_BOLUS")
    elapsed = rig.advance(HOUR_MS)
    with pytest.raises(PumpRefused) as refused:
        pump.request("PATIENT_BOLUS")
    assert refused.value.code == schema.DAILY_MAX and refused.value.detail == 3
    assert pump.status()["pb_last_day"] == 3
    # 24 h after the first one, one more is allowed
    rig.advance(DAY_MS - elapsed + MINUTE_MS)
    pump.request("PATIENT_BOLUS")
    elapsed = rig.advance(HOUR_MS)  # device time since the therapy started
    basal = 200_000 * elapsed // DAY_MS
    assert abs(truth(rig)["pumped_nl"] - (4 * 40_000 + basal)) <= 2 * STROKE_NL
    # the refusals are in the access log (docs/pump.md 15), a = code | detail << 8,
    # b = patient-bolus refusals ever
    refusals = [
        (e["a"] & 0xFF, e["b"])
        for e in pump.log(access=True)
        if e["name"] == "PB_REFUSED" and e["a"]
    ]
    assert refusals == [(schema.LOCKOUT, 1), (schema.DAILY_MAX, 2)]
    assert LOG["PB_REFUSED"] not in [code for _t, code, _a, _b in log_entries(pump)]


def test_patient_bolus_refused_while_stopped(pump: PumpClient, rig: RigClient) -> None:
    start_therapy(pump, rig, program(basal_nl_day=200_000, **PB))
    pump.request("STOP")
    with pytest.raises(PumpRefused) as refused:
        pump.request("PATIENT_BOLUS")
    assert refused.value.code == schema.NOT_DELIVERING


def test_therapy_survives_a_rig_reset(pump: PumpClient, rig: RigClient) -> None:
    crc = start_therapy(pump, rig, program(basal_nl_day=1_000_000))
    rig.advance(HOUR_MS)
    rig.reset()
    rig.advance(DAY_MS - HOUR_MS)
    status = pump.status()
    assert status["program_crc"] == crc and status["state_name"] == "RUNNING"
    assert alarm_active(status, "UNEXPECTED_RESET")
    assert abs(status["delivered_nl"] - truth(rig)["pumped_nl"]) <= STROKE_NL
    boots = [(a, b) for _t, code, a, b in log_entries(pump) if code == LOG["BOOT"]]
    assert boots[-1] == (1, 1)  # cause RIG_RESET, unexpected


def power_cycle(pump: PumpClient, rig: RigClient, action: int, arg: int) -> None:
    """Arms a cut, runs device time into it, restores power, waits for BOOT."""
    rig.request("POWER", {"action": action, "arg": arg})
    rig.advance(HOUR_MS)
    assert rig.request("TRUTH")["powered"] == 0, "the armed cut never happened"
    rig.advance(MINUTE_MS)  # off for a while
    pump.clear_events()
    rig.request("POWER", {"action": POWER_ON, "arg": 0})
    pump.wait_event("BOOT", 5.0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_power_cuts_during_strokes_and_journal_writes(
    pump: PumpClient, rig: RigClient, seed: int
) -> None:
    # At random instants (strokes every 0.7 s at 24 mL/day; journal writes
    # before and after each), and after random numbers of journal bytes.
    chance = random.Random(seed)
    start_therapy(pump, rig, program(drug_id=0, conc_ug_ml=0, basal_nl_day=24_000_000))
    for _ in range(4):
        if chance.random() < 0.5:
            power_cycle(pump, rig, POWER_CUT_IN_MS, chance.randrange(1, 5_000))
        else:
            power_cycle(pump, rig, POWER_CUT_AFTER_BYTES, chance.randrange(1, 3_000))
        rig.advance(chance.randrange(1, 60_000))
        status = pump.status()
        real = truth(rig)
        assert status["state_name"] == "RUNNING"
        # accounting loses at most one stroke, and never under-counts
        assert 0 <= status["delivered_nl"] - real["pumped_nl"] <= STROKE_NL
    boots = [b for _t, code, _a, b in log_entries(pump) if code == LOG["BOOT"]]
    assert boots.count(1) == 4  # every cut is logged as an unexpected reset


@pytest.mark.parametrize("seed", [4, 5, 6, 7])
def test_power_cut_during_a_bolus_never_delivers_it_twice(
    pump: PumpClient, rig: RigClient, seed: int
) -> None:
    chance = random.Random(seed)
    start_therapy(pump, rig, program(basal_nl_day=200_000, **PB))
    rig.advance(MINUTE_MS)
    before = truth(rig)["pumped_nl"]
    pump.request("PATIENT_BOLUS")  # 40 uL = 200 strokes, one every 250 ms
    power_cycle(pump, rig, POWER_CUT_IN_MS, chance.randrange(1, 50_000))
    rig.advance(HOUR_MS)
    real = truth(rig)["pumped_nl"] - before
    basal_bound = 200_000 * 3 * HOUR_MS // DAY_MS + STROKE_NL
    assert real <= 40_000 + basal_bound  # the bolus was not resumed or repeated
    entries = log_entries(pump)
    interrupted = [(a, b) for _t, code, a, b in entries if code == LOG["BOLUS_INTERRUPTED"]]
    assert len(interrupted) == 1
    status = pump.status()
    assert status["bolus_kind"] == 0
    assert 0 <= status["delivered_nl"] - truth(rig)["pumped_nl"] <= STROKE_NL
    # the daily maximum still counts the interrupted bolus
    assert status["pb_last_day"] == 1


def test_power_off_stops_everything_until_power_returns(pump: PumpClient, rig: RigClient) -> None:
    crc = start_therapy(pump, rig, program(basal_nl_day=1_000_000))
    rig.request("POWER", {"action": POWER_OFF, "arg": 0})
    before = truth(rig)["pumped_nl"]
    rig.advance(DAY_MS)
    assert truth(rig)["pumped_nl"] == before
    rig.request("POWER", {"action": POWER_ON, "arg": 0})
    pump.wait_event("BOOT", 5.0)
    assert pump.status()["program_crc"] == crc


def test_boot_is_announced_before_the_alarms_it_raises(pump: PumpClient, rig: RigClient) -> None:
    start_therapy(pump, rig, program())
    pump.clear_events()
    rig.reset()
    boot = pump.wait_event("BOOT", 5.0)
    alarm = pump.wait_event("ALARM", 2.0)
    assert boot.seq < alarm.seq
    assert alarm.fields["alarm"] == 7 and alarm.fields["action"] == 1  # UNEXPECTED_RESET raised


def test_reset_while_powered_off_is_refused(rig: RigClient) -> None:
    rig.request("POWER", {"action": POWER_OFF, "arg": 0})
    with pytest.raises(PumpRefused) as refused:
        rig.request("RESET")
    assert refused.value.code == schema.POWERED_OFF
