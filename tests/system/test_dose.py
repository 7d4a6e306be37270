"""Dose, not volume (docs/pump.md 22): concentration changes, the drug in the
catheter, refills with a drug, priming, and bolus headroom, each measured
against the rig's truth of the dose that left the catheter tip (TRUTH tip_ng,
the plant's own model of the drug path) over every 1 h and 24 h window."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from bench.link.errors import PumpRefused
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from protocol import schema
from tests.system.kit import (
    BACLOFEN,
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    PRIMING,
    log_entries,
    plant,
    program,
    refill,
    start_therapy,
    truth,
)

LOG = {name: code for code, name in schema.LOG_CODES}
HYDROMORPHONE = 2
# baclofen hard limits (firmware/pump/limits.py): 1,200 ug/day, 210 ug in any
# hour, 150 ug a bolus
BACLOFEN_DAY_NG = 1_200_000
BACLOFEN_HOUR_NG = 210_000
UG = 1_000  # ng


def baclofen(dose_ug_day: int, conc: int, **fields: Any) -> dict[str, Any]:
    """A continuous baclofen program of dose_ug_day at conc ug/mL."""
    return program(
        drug_id=BACLOFEN,
        conc_ug_ml=conc,
        basal_nl_day=dose_ug_day * 1_000_000 // conc,
        override_soft=1,
        **fields,
    )


def tip_series(rig: RigClient, duration_ms: int, step_ms: int) -> list[tuple[int, int]]:
    """(device ms, tip dose ng so far) every step_ms for duration_ms, from now."""
    series = []
    t = 0
    while True:
        series.append((t, truth(rig)["tip_ng"]))
        if t >= duration_ms:
            return series
        rig.advance(step_ms)
        t += step_ms


def max_window(series: list[tuple[int, int]], window_ms: int) -> int:
    """The most dose in any window of window_ms between samples."""
    step = series[1][0] - series[0][0]
    n = window_ms // step
    return max(series[j][1] - series[j - n][1] for j in range(n, len(series)))


def longest_gap_ms(series: list[tuple[int, int]]) -> int:
    """The longest time the tip dose did not grow (sample resolution)."""
    longest = run = 0
    for (t0, d0), (t1, d1) in itertools.pairwise(series):
        run = run + (t1 - t0) if d1 == d0 else 0
        longest = max(longest, run)
    return longest


def change_concentration(
    pump: PumpClient, rig: RigClient, old: int, new: int, dose_ug_day: int
) -> None:
    """Steady state at `old`, then a refill with `new` committed with its
    program for the same dose (docs/pump.md 22.2)."""
    start_therapy(pump, rig, baclofen(dose_ug_day, old), reservoir_nl=10_000_000)
    rig.advance(2 * DAY_MS)
    fields = baclofen(dose_ug_day, new)
    crc = pump.request("PROGRAM", fields)["crc"]
    refill(pump, rig, 10_000_000, BACLOFEN, new, crc)
    assert pump.get_program()["crc"] == crc


@pytest.mark.parametrize(("old", "new"), [(500, 2_000), (2_000, 500)])
def test_a_concentration_change_keeps_the_dose_rate_at_the_tip(
    pump: PumpClient, rig: RigClient, old: int, new: int
) -> None:
    # 600 ug/day either way. The old drug still in the path (20 uL pump +
    # 156 uL catheter) leaves the tip at a volume rate that keeps the dose
    # rate (the bridge, docs/pump.md 22.3): no stop, no gap, no overdose.
    change_concentration(pump, rig, old, new, 600)
    status = pump.status()
    assert status["tip_conc_ug_ml"] == old and 0 < status["new_drug_at_tip_s"] < 2 * 86_400
    series = tip_series(rig, 2 * DAY_MS, 5 * MINUTE_MS)
    status = pump.status()
    assert status["alarm_names"] == [] and status["state_name"] == "RUNNING"
    assert status["tip_conc_ug_ml"] == new and status["new_drug_at_tip_s"] == 0
    hour, day = max_window(series, HOUR_MS), max_window(series, DAY_MS)
    # 25 ug/h and 600 ug/day prescribed; one 5-minute sample step of slack
    assert 25 * UG * 9 // 10 <= hour <= 25 * UG * 11 // 10 + 3 * UG, hour
    assert 590 * UG <= day <= 610 * UG, day
    assert longest_gap_ms(series) <= 5 * MINUTE_MS
    codes = [(code, a, b) for _t, code, a, b in log_entries(pump)]
    assert (LOG["REFILL_DRUG"], BACLOFEN, new) in codes
    assert (LOG["TIP_DRUG"], BACLOFEN, new) in codes  # when the new drug reached the tip


def test_the_governor_counts_dose_across_a_concentration_change(
    pump: PumpClient, rig: RigClient
) -> None:
    # The governor's windows hold dose (ng): a 4x stronger drug at the same
    # dose neither resets them nor trips them.
    change_concentration(pump, rig, 500, 2_000, 1_100)
    before = pump.status()["window_24h_ng"]
    assert 1_050 * UG <= before <= 1_150 * UG
    rig.advance(DAY_MS)
    status = pump.status()
    assert status["alarm_names"] == []
    assert abs(status["window_24h_ng"] - before) <= 20 * UG


def test_a_refill_with_a_new_concentration_needs_its_program(
    pump: PumpClient, rig: RigClient
) -> None:
    start_therapy(pump, rig, baclofen(600, 500), reservoir_nl=10_000_000)
    rig.advance(HOUR_MS)
    with pytest.raises(PumpRefused) as refused:
        pump.refill(0, 10_000_000, BACLOFEN, 2_000)
    assert (refused.value.code, refused.value.detail) == (schema.DRUG_MISMATCH, 1)
    # nor can a program for another concentration than the reservoir's run
    crc = pump.request("PROGRAM", baclofen(600, 2_000))["crc"]
    with pytest.raises(PumpRefused) as refused:
        pump.confirm(crc)
    assert refused.value.code == schema.DRUG_MISMATCH
    # a pending program for another concentration than the refill's
    with pytest.raises(PumpRefused) as refused:
        pump.refill(0, 10_000_000, BACLOFEN, 1_000, crc)
    assert (refused.value.code, refused.value.detail) == (schema.DRUG_MISMATCH, 3)
    assert pump.status()["reservoir_nl"] < 10_000_000  # nothing changed
    # refill and program together
    pump.refill(0, 10_000_000, BACLOFEN, 2_000, crc)
    assert pump.get_program()["crc"] == crc and pump.status()["reservoir_nl"] == 10_000_000


def test_priming_a_new_catheter_counts_only_what_passes_the_tip(
    pump: PumpClient, rig: RigClient
) -> None:
    # Baclofen 2000 ug/mL: 156 uL would be 312 ug, over the 150 ug bolus hard
    # limit, but a new catheter is empty: priming pushes air/CSF out of the
    # tip and only brings the drug to it.
    start_therapy(pump, rig, baclofen(600, 2_000), reservoir_nl=10_000_000)
    rig.advance(HOUR_MS)
    plant(rig, catheter_empty_nl=156_000)  # the rig: a new, empty catheter
    rig.fill(10_000_000, 2_000)  # keep the real reservoir as the pump believes
    before = truth(rig)["tip_ng"]
    reply = pump.bolus(PRIMING, catheter_mm=600, nl_per_cm=2_600)
    assert reply["volume_nl"] == 156_000
    assert pump.status()["tip_conc_ug_ml"] == 0  # air or CSF at the tip
    rig.advance(HOUR_MS)
    status = pump.status()
    assert status["alarm_names"] == [] and status["tip_conc_ug_ml"] == 2_000
    # what reached the patient: basal-sized, not the 312 ug the volume holds
    assert truth(rig)["tip_ng"] - before <= 30 * UG
    codes = [(code, a, b) for _t, code, a, b in log_entries(pump)]
    assert (LOG["CATHETER"], 176_000, 1) in codes


def test_a_bridge_bolus_is_checked_on_the_old_drug_it_pushes_out(
    pump: PumpClient, rig: RigClient
) -> None:
    # 2000 -> 500 ug/mL: the 176 uL the bridge would push hold 352 ug of the
    # old drug, over the 150 ug bolus hard limit: refused.
    change_concentration(pump, rig, 2_000, 500, 600)
    with pytest.raises(PumpRefused) as refused:
        pump.bolus("bridge")
    assert refused.value.code == schema.HARD_LIMIT
    assert refused.value.detail == 5  # bolus_hard


def test_a_bolus_the_pump_grants_never_trips_the_governor(pump: PumpClient, rig: RigClient) -> None:
    # Baclofen 1100 ug/day. The governor's day spans up to 24 h 15 min (1,111
    # ug of basal): 100 ug more does not fit it and is refused; the largest
    # bolus it grants then runs 25 h without a stop.
    start_therapy(pump, rig, baclofen(1_100, 2_000), reservoir_nl=10_000_000)
    rig.advance(DAY_MS + HOUR_MS)
    with pytest.raises(PumpRefused) as refused:
        pump.bolus("clinician", dose_ng=100 * UG)
    assert refused.value.code == schema.HARD_LIMIT
    granted = pump.bolus("clinician", dose_ng=80 * UG)
    assert granted["volume_nl"] == 40_000
    series = tip_series(rig, 25 * HOUR_MS, 15 * MINUTE_MS)
    status = pump.status()
    assert status["alarm_names"] == [] and status["state_name"] == "RUNNING"
    assert max_window(series, DAY_MS) <= BACLOFEN_DAY_NG
    assert max_window(series, HOUR_MS) <= BACLOFEN_HOUR_NG


def test_every_patient_bolus_the_program_allows_is_granted(
    pump: PumpClient, rig: RigClient
) -> None:
    # Hydromorphone 8 mg/day at 10 mg/mL, 4 boluses of 0.2 mg a day 6 h
    # apart: the program's worst case fits the 15 mg hard limit, so in
    # steady state every press the lockout and daily maximum allow is granted.
    fields = program(
        drug_id=HYDROMORPHONE,
        conc_ug_ml=10_000,
        basal_nl_day=800_000,
        pb_dose_nl=20_000,
        pb_lockout_s=6 * 3600,
        pb_max_per_day=4,
    )
    start_therapy(pump, rig, fields)
    rig.advance(DAY_MS)
    for _press in range(8):
        pump.patient_bolus()
        rig.advance(6 * HOUR_MS)
    assert pump.status()["alarm_names"] == []


def test_program_active_is_logged_after_a_refill_with_its_program(
    pump: PumpClient, rig: RigClient
) -> None:
    change_concentration(pump, rig, 500, 2_000, 600)
    crc = pump.get_program()["crc"]
    entries = log_entries(pump)
    assert any(code == LOG["PROGRAM_ACTIVE"] and a == crc for _t, code, a, _b in entries)
