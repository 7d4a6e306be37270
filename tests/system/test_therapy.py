"""Therapy on the virtual board: each mode delivers what it should, measured
against the rig's ground truth, with device time advanced through the rig."""

from __future__ import annotations

import pytest

from bench.link.errors import PumpRefused
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from protocol import schema
from tests.system.kit import (
    BACLOFEN,
    BRIDGE,
    CLINICIAN,
    DAY_MS,
    HOUR_MS,
    MINIMUM_RATE,
    MINUTE_MS,
    PRIMING,
    STOPPED,
    STROKE_NL,
    ZICONOTIDE,
    activate,
    alarm_active,
    flex,
    log_entries,
    plant,
    program,
    refill,
    start_therapy,
    truth,
)

LOG = {name: code for code, name in schema.LOG_CODES}
MONDAY_ONLY = 0x01


def assert_within_one_stroke(reported: int, expected: int) -> None:
    assert abs(reported - expected) <= STROKE_NL, f"{reported} nL vs {expected} nL"


def test_continuous_delivers_its_rate_over_days(pump: PumpClient, rig: RigClient) -> None:
    start_therapy(pump, rig, program(basal_nl_day=1_000_000))
    rig.advance(3 * DAY_MS)
    status = pump.status()
    real = truth(rig)
    assert status["state_name"] == "RUNNING" and status["rate_nl_day"] == 1_000_000
    assert_within_one_stroke(real["tip_nl"], 3_000_000)
    assert_within_one_stroke(status["delivered_nl"], real["pumped_nl"])
    assert_within_one_stroke(status["reservoir_nl"], 20_000_000 - real["pumped_nl"])


@pytest.mark.parametrize("lost_pct", [15, 50])
def test_lost_steps_are_made_up_by_earlier_basal_strokes(
    pump: PumpClient, rig: RigClient, lost_pct: int
) -> None:
    # the head loses 15-50 % of its steps; the encoder sees it and
    # the next strokes come sooner, so the patient still gets the rate
    start_therapy(pump, rig, program(basal_nl_day=1_000_000))
    rig.advance(HOUR_MS)
    before = truth(rig)["tip_nl"]
    rig.request("INJECT_FAULT", {"fault": 5, "param": lost_pct, "onset_ms": 0})
    rig.advance(DAY_MS)
    real = truth(rig)
    assert abs(real["tip_nl"] - before - 1_000_000) <= 2 * STROKE_NL, real["tip_nl"] - before
    status = pump.status()
    assert alarm_active(status, "LOST_STEPS")  # the head is wearing: said, not stopped
    assert status["state_name"] == "RUNNING"


def test_minimum_rate_mode_keeps_the_catheter_open(pump: PumpClient, rig: RigClient) -> None:
    start_therapy(pump, rig, program(mode=MINIMUM_RATE, basal_nl_day=0))
    rig.advance(2 * DAY_MS)
    # 0.048 mL/day: one 200 nL stroke every 6 minutes
    assert_within_one_stroke(truth(rig)["tip_nl"], 96_000)
    assert pump.status()["rate_nl_day"] == 48_000


def test_flex_steps_switch_at_their_times(pump: PumpClient, rig: RigClient) -> None:
    # 0.5 mL/day background, 2 mL/day from 08:00, back to 0.5 from 20:00
    fields = flex([(8 * 60, 2_000_000, 0), (20 * 60, 500_000, 0)], basal_nl_day=500_000)
    start_therapy(pump, rig, fields)
    rig.advance(8 * HOUR_MS - MINUTE_MS)
    assert pump.status()["rate_nl_day"] == 500_000
    rig.advance(2 * MINUTE_MS)
    assert pump.status()["rate_nl_day"] == 2_000_000
    rig.advance(12 * HOUR_MS)
    assert pump.status()["rate_nl_day"] == 500_000
    rig.advance(4 * HOUR_MS - MINUTE_MS)  # a whole day since the start
    expected = 500_000 * 8 // 24 + 2_000_000 * 12 // 24 + 500_000 * 4 // 24
    assert_within_one_stroke(truth(rig)["tip_nl"], expected)


def test_flex_step_applies_only_on_its_days(pump: PumpClient, rig: RigClient) -> None:
    # device second 0 is Monday 00:00 local: a Monday-only step at 06:00
    fields = flex([(6 * 60, 2_000_000, MONDAY_ONLY)], basal_nl_day=500_000, conc_ug_ml=5_000)
    start_therapy(pump, rig, fields)
    rig.advance(7 * HOUR_MS)
    assert pump.status()["rate_nl_day"] == 2_000_000  # Monday
    rig.advance(DAY_MS)
    assert pump.status()["rate_nl_day"] == 500_000  # Tuesday


def test_clinician_bolus_delivers_its_volume_on_top_of_basal(
    pump: PumpClient, rig: RigClient
) -> None:
    start_therapy(pump, rig, program(basal_nl_day=500_000))
    reply = pump.request(
        "BOLUS",
        {
            "kind": CLINICIAN,
            "volume_nl": 0,
            "dose_ng": 500_000,  # 0.5 mg at 10 mg/mL = 50 uL
            "duration_s": 600,
            "catheter_mm": 0,
            "nl_per_cm": 0,
            "override_soft": 0,
        },
    )
    assert reply["volume_nl"] == 50_000
    rig.advance(5 * MINUTE_MS)
    assert 0 < pump.status()["bolus_remaining_nl"] < 50_000
    rig.advance(HOUR_MS - 5 * MINUTE_MS)
    status = pump.status()
    assert status["bolus_kind"] == 0
    basal = 500_000 // 24
    assert_within_one_stroke(truth(rig)["tip_nl"], 50_000 + basal)
    codes = [code for _t, code, _a, _b in log_entries(pump)]
    assert LOG["BOLUS_START"] in codes and LOG["BOLUS_DONE"] in codes


def test_priming_bolus_fills_an_empty_catheter(pump: PumpClient, rig: RigClient) -> None:
    catheter_nl = 600 * 2_600 // 10  # 60 cm at 2.6 uL/cm
    plant(rig, catheter_nl=catheter_nl, catheter_empty_nl=catheter_nl)
    start_therapy(pump, rig, program(mode=MINIMUM_RATE, basal_nl_day=0))
    reply = pump.request(
        "BOLUS",
        {
            "kind": PRIMING,
            "volume_nl": 0,
            "dose_ng": 0,
            "duration_s": 0,
            "catheter_mm": 600,
            "nl_per_cm": 2_600,
            # 156 uL of 10 mg/mL is 1.56 mg, over the 1.5 mg bolus soft
            # limit: priming is dose-checked like any bolus (a priming bolus
            # into a full catheter is an overdose), so the clinician confirms.
            "override_soft": 1,
        },
    )
    assert reply["volume_nl"] == catheter_nl
    rig.advance(10 * MINUTE_MS)
    real = truth(rig)
    # the catheter is full: what the head pumped beyond it reached the tip
    assert_within_one_stroke(real["pumped_nl"] - real["tip_nl"], catheter_nl)
    assert real["tip_nl"] <= 2 * STROKE_NL + STROKE_NL


def test_stopped_mode_and_stop_deliver_nothing(pump: PumpClient, rig: RigClient) -> None:
    start_therapy(pump, rig, program())
    assert pump.request("STOP")["state"] == 1
    before = truth(rig)["pumped_nl"]
    rig.advance(DAY_MS)
    assert truth(rig)["pumped_nl"] == before
    assert pump.request("START")["state"] == 2
    activate(pump, program(mode=STOPPED, basal_nl_day=0))
    assert pump.status()["state_name"] == "IDLE"
    with pytest.raises(PumpRefused) as refused:
        pump.request("START")
    assert refused.value.code == schema.NOT_DELIVERING


def test_hard_limit_is_refused_with_the_limit_named(pump: PumpClient) -> None:
    # ziconotide 25 ug/mL at 1 mL/day = 25 ug/day, over the 19.2 ug/day maximum
    with pytest.raises(PumpRefused) as refused:
        pump.request("PROGRAM", program(drug_id=ZICONOTIDE, conc_ug_ml=25, override_soft=1))
    assert refused.value.code == schema.HARD_LIMIT
    assert refused.value.detail == 4  # LIMIT_DAILY_HARD
    assert pump.status()["pending"] == 0


def test_soft_limit_needs_the_override_and_it_is_logged(pump: PumpClient, rig: RigClient) -> None:
    # baclofen 2000 ug/mL at 0.5 mL/day = 1000 ug/day: above the 800 soft limit
    fields = program(drug_id=BACLOFEN, conc_ug_ml=2_000, basal_nl_day=500_000)
    with pytest.raises(PumpRefused) as refused:
        pump.request("PROGRAM", fields)
    assert refused.value.code == schema.SOFT_LIMIT and refused.value.detail == 7
    fields["override_soft"] = 1
    reply = pump.request("PROGRAM", fields)
    assert reply["soft_override_mask"] == 1 << 7
    start_therapy(pump, rig, fields)
    overrides = [a for _t, code, a, _b in log_entries(pump) if code == LOG["SOFT_OVERRIDE"]]
    assert overrides == [1 << 7]


def test_rates_outside_the_mechanism_are_refused(pump: PumpClient) -> None:
    for rate in (47_999, 24_000_001):
        with pytest.raises(PumpRefused) as refused:
            pump.request("PROGRAM", program(basal_nl_day=rate))
        assert refused.value.code == schema.BAD_PROGRAM


def test_abandoned_programming_leaves_the_old_therapy_running(
    pump: PumpClient, rig: RigClient
) -> None:
    old_crc = start_therapy(pump, rig, program(basal_nl_day=1_000_000, conc_ug_ml=5_000))
    new = pump.request("PROGRAM", program(basal_nl_day=2_000_000, conc_ug_ml=5_000))
    with pytest.raises(PumpRefused) as refused:
        pump.request("CONFIRM", {"crc": new["crc"] ^ 1})
    assert refused.value.code == schema.CRC_MISMATCH
    readback = pump.request("GET_PROGRAM", {"which": 1})
    assert readback["crc"] == new["crc"] and readback["basal_nl_day"] == 2_000_000
    rig.advance(11 * MINUTE_MS)  # the pending program times out after 10 min
    status = pump.status()
    assert status["pending"] == 0 and status["program_crc"] == old_crc
    assert status["state_name"] == "RUNNING" and status["rate_nl_day"] == 1_000_000
    with pytest.raises(PumpRefused) as refused:
        pump.request("CONFIRM", {"crc": new["crc"]})
    assert refused.value.code == schema.NO_PENDING
    codes = [code for _t, code, _a, _b in log_entries(pump)]
    assert LOG["PROGRAM_ABANDONED"] in codes


def test_get_program_reads_back_the_active_program(pump: PumpClient, rig: RigClient) -> None:
    fields = flex([(7 * 60, 800_000, 0x1F)], basal_nl_day=400_000)
    crc = start_therapy(pump, rig, fields)
    readback = pump.request("GET_PROGRAM", {"which": 0})
    assert readback.pop("crc") == crc
    assert readback == fields


def test_empty_reservoir_stops_delivery_with_an_alarm(pump: PumpClient, rig: RigClient) -> None:
    start_therapy(pump, rig, program(basal_nl_day=1_000_000), reservoir_nl=300_000)
    status = pump.status()
    assert alarm_active(status, "LOW_RESERVOIR")  # 0.3 mL is under the 2 mL threshold
    rig.advance(8 * HOUR_MS)  # 300 uL at 1 mL/day lasts 7.2 h
    status = pump.status()
    assert status["state_name"] == "ALARM" and alarm_active(status, "EMPTY_RESERVOIR")
    pumped = truth(rig)["pumped_nl"]
    assert pumped <= 300_000
    rig.advance(HOUR_MS)
    assert truth(rig)["pumped_nl"] == pumped
    # a refill clears the empty alarm and delivery resumes
    start_therapy(pump, rig, program(basal_nl_day=1_000_000))
    status = pump.status()
    assert status["state_name"] == "RUNNING" and status["alarms"] & 0b11 == 0


def test_refill_reconciliation_flags_a_discrepancy(pump: PumpClient, rig: RigClient) -> None:
    start_therapy(pump, rig, program(basal_nl_day=1_000_000))
    rig.advance(DAY_MS)
    expected = pump.status()["reservoir_nl"]
    close = pump.refill(expected - 100_000, 20_000_000)
    assert close["expected_nl"] == expected and not close["flagged"]
    assert close["discrepancy_nl"] == -100_000
    rig.advance(DAY_MS)
    expected = pump.status()["reservoir_nl"]
    far = pump.refill(expected - 3_000_000, 20_000_000)
    assert far["flagged"] and far["discrepancy_nl"] == -3_000_000
    assert alarm_active(pump.status(), "REFILL_DISCREPANCY")
    refills = [(a, b) for _t, code, a, b in log_entries(pump) if code == LOG["REFILL"]]
    assert refills[-2:] == [(20_000_000, -100_000), (20_000_000, -3_000_000)]


@pytest.mark.parametrize(
    ("request_name", "fields", "code"),
    [
        ("CLEAR_ALARM", {"alarm": 0}, schema.BAD_VALUE),
        ("CLEAR_ALARM", {"alarm": 200}, schema.BAD_VALUE),
        ("SET_CLOCK", {"local_offset_s": 7 * 86_400}, schema.BAD_VALUE),
        ("PROGRAM", program(low_reservoir_nl=40_000_000), schema.BAD_PROGRAM),
        ("CONFIRM", {"crc": 1}, schema.NO_PENDING),
        ("PATIENT_BOLUS", {}, schema.NOT_DELIVERING),
        ("GET_PROGRAM", {"which": 1}, schema.NO_PENDING),
    ],
    ids=[
        "clear alarm 0",
        "clear unknown alarm",
        "clock offset past a week",
        "low-reservoir threshold over capacity",
        "confirm with nothing pending",
        "patient bolus without a program",
        "read back a pending program that is not there",
    ],
)
def test_bad_commands_are_refused_and_change_nothing(
    pump: PumpClient, request_name: str, fields: dict, code: int
) -> None:
    before = pump.status()
    with pytest.raises(PumpRefused) as refused:
        pump.request(request_name, fields)
    assert refused.value.code == code
    after = pump.status()
    for key in ("state", "mode", "program_crc", "pending", "alarms", "reservoir_nl"):
        assert after[key] == before[key], key
    assert pump.ping(7) == 7  # and the pump is still serving


def test_a_stopped_program_cancels_a_running_bolus(pump: PumpClient, rig: RigClient) -> None:
    start_therapy(pump, rig, program(basal_nl_day=500_000))
    pump.request(
        "BOLUS",
        {
            "kind": CLINICIAN,
            "volume_nl": 40_000,
            "dose_ng": 0,
            "duration_s": 3_600,
            "catheter_mm": 0,
            "nl_per_cm": 0,
            "override_soft": 0,
        },
    )
    rig.advance(10 * MINUTE_MS)
    activate(pump, program(mode=STOPPED, basal_nl_day=0))
    status = pump.status()
    assert status["bolus_kind"] == 0 and status["state_name"] == "IDLE"
    pumped = truth(rig)["pumped_nl"]
    rig.advance(HOUR_MS)
    assert truth(rig)["pumped_nl"] == pumped
    codes = [code for _t, code, _a, _b in log_entries(pump)]
    assert LOG["BOLUS_CANCELLED"] in codes and LOG["PROGRAM_ACTIVE"] in codes
    assert LOG["STOP"] not in codes, "a CONFIRM logs PROGRAM_ACTIVE, not STOP (docs/pump.md 15)"


def test_bolus_events_report_start_and_finish(pump: PumpClient, rig: RigClient) -> None:
    start_therapy(pump, rig, program(basal_nl_day=500_000))
    pump.clear_events()
    bolus_id = pump.request(
        "BOLUS",
        {
            "kind": CLINICIAN,
            "volume_nl": 2_000,
            "dose_ng": 0,
            "duration_s": 0,
            "catheter_mm": 0,
            "nl_per_cm": 0,
            "override_soft": 0,
        },
    )["bolus_id"]
    started = pump.wait_event("BOLUS_EVENT", 2.0)
    rig.advance(MINUTE_MS)
    finished = pump.wait_event("BOLUS_EVENT", 2.0)
    assert (started.fields["bolus_id"], started.fields["action"]) == (bolus_id, 1)
    assert started.fields["kind"] == finished.fields["kind"] == CLINICIAN
    assert finished.fields["action"] == 2 and finished.fields["volume_nl"] == 2_000


def test_bridge_bolus_pushes_the_old_drug_out_of_the_path(pump: PumpClient, rig: RigClient) -> None:
    # After a refill with a new concentration the catheter (here 40 cm) and
    # the pump's internal volume still hold the old drug: the bridge bolus
    # pushes exactly that volume, worked out by the pump (docs/pump.md 22.3).
    start_therapy(pump, rig, program(basal_nl_day=500_000, conc_ug_ml=1_000))
    new = program(basal_nl_day=250_000, conc_ug_ml=2_000)
    crc = pump.request("PROGRAM", new)["crc"]
    refill(pump, rig, 20_000_000, new["drug_id"], 2_000, crc)
    reply = pump.request(
        "BOLUS",
        {
            "kind": BRIDGE,
            "volume_nl": 0,
            "dose_ng": 0,
            "duration_s": 3_600,
            "catheter_mm": 400,
            "nl_per_cm": 2_600,
            "override_soft": 0,
        },
    )
    assert reply["volume_nl"] == 400 * 2_600 // 10 + 20_000
    assert pump.status()["new_drug_at_tip_s"] > 0
    rig.advance(2 * HOUR_MS)
    status = pump.status()
    assert (status["tip_conc_ug_ml"], status["new_drug_at_tip_s"]) == (2_000, 0)
    with pytest.raises(PumpRefused) as refused:  # nothing old is left to bridge
        pump.bolus(BRIDGE)
    assert refused.value.code == schema.BAD_VALUE


def test_a_miscalibrated_head_shows_at_refill(pump: PumpClient, rig: RigClient) -> None:
    # The real head moves 20 % more per step than the firmware's calibration:
    # the pump's account drifts from the truth, and the refill finds it
    # (beyond SynchroMed's 14.5 % labelled tolerance).
    plant(rig, calibration_ppm=200_000)
    start_therapy(pump, rig, program(basal_nl_day=1_000_000))
    rig.advance(10 * DAY_MS)
    status = pump.status()
    real = truth(rig)
    assert abs(real["pumped_nl"] - status["delivered_nl"] * 12 // 10) <= 2 * STROKE_NL
    withdrawn = rig.fill(20_000_000)
    reconciled = pump.refill(withdrawn, 20_000_000)
    assert reconciled["flagged"] == 1  # 2 mL over-infused in 10 days
    assert abs(reconciled["discrepancy_nl"] + 2_000_000) <= 2 * STROKE_NL
