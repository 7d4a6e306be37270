"""Durations on the wire have a maximum; intervals survive the tick wrap.

A bolus duration is refused above BOLUS_MAX_DURATION_S (a day) with NACK
DURATION: its strokes are timed on the firmware's millisecond ticks, which
wrap at 2**30 ms (12.4 days) and measure intervals up to 2**29 ms. Before,
400 nL over 14 days finished in a second, and a bolus refused for the hourly
limit went through with a 32-year duration.
"""

from __future__ import annotations

import pytest

from bench.link.client import Refusal
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from protocol import schema
from tests.system.kit import (
    CLINICIAN,
    HOUR_MS,
    MINIMUM_RATE,
    STROKE_NL,
    program,
    start_therapy,
    truth,
)

DAY_S = 86_400
TICKS_PERIOD_MS = 1 << 30


def bolus(volume_nl: int, duration_s: int) -> dict:
    return {
        "kind": CLINICIAN,
        "volume_nl": volume_nl,
        "dose_ng": 0,
        "duration_s": duration_s,
        "catheter_mm": 0,
        "nl_per_cm": 0,
        "override_soft": 0,
    }


@pytest.mark.parametrize(
    "duration_s",
    [DAY_S + 1, 14 * DAY_S, 1_000_000_000, 0xFFFF_FFFF],  # 32 years: 1e9 s
)
def test_a_bolus_longer_than_a_day_is_refused(
    pump: PumpClient, rig: RigClient, duration_s: int
) -> None:
    start_therapy(pump, rig, program(drug_id=0, conc_ug_ml=0, mode=MINIMUM_RATE, basal_nl_day=0))
    with pytest.raises(Refusal) as refused:
        pump.request("BOLUS", bolus(400, duration_s))
    assert refused.value.code == schema.DURATION
    assert refused.value.detail == schema.BOLUS_MAX_DURATION_S // 60
    assert "1440 min at most" in str(refused.value)
    assert pump.status()["bolus_kind"] == 0


def test_a_morphine_bolus_is_not_spread_over_32_years(pump: PumpClient, rig: RigClient) -> None:
    # a duration long enough made any volume's hourly share look small
    start_therapy(pump, rig, program())
    request = {**bolus(250_000, 32 * 365 * DAY_S), "override_soft": 1}
    with pytest.raises(Refusal) as refused:
        pump.request("BOLUS", request)
    assert refused.value.code == schema.DURATION, refused.value
    assert pump.status()["bolus_kind"] == 0


@pytest.mark.parametrize("lockout_s", [DAY_S + 1, 14 * DAY_S, 0xFFFF_FFFF])
def test_a_patient_bolus_lockout_longer_than_a_day_is_refused(
    pump: PumpClient, rig: RigClient, lockout_s: int
) -> None:
    # docs/pump.md 12.4: PROGRAM pb_lockout_s at most PB_LOCKOUT_MAX_S (a day),
    # refused HARD_LIMIT (limit patient_bolus); a day itself is accepted
    start_therapy(pump, rig, program())
    pb = {"pb_dose_nl": 50_000, "pb_max_per_day": 1}
    with pytest.raises(Refusal) as refused:
        pump.request("PROGRAM", program(**pb, pb_lockout_s=lockout_s))
    assert refused.value.code == schema.HARD_LIMIT
    assert refused.value.limit == "patient_bolus"
    pump.request("PROGRAM", program(**pb, pb_lockout_s=DAY_S))


@pytest.mark.parametrize("offset_ms", [-6 * HOUR_MS, -HOUR_MS, -1_000, 0])
def test_a_day_long_bolus_across_the_tick_wrap_is_spread_over_its_day(
    pump: PumpClient, rig: RigClient, offset_ms: int
) -> None:
    # Device time moves to just before the ticks wrap (2**30 ms, 12.4 days
    # after power-on: lockstep idle days cost little), then a 24 h bolus of
    # 20 strokes runs across the wrap: one stroke every 72 min, none early.
    rig.advance(TICKS_PERIOD_MS + offset_ms)
    start_therapy(pump, rig, program(drug_id=0, conc_ug_ml=0, mode=MINIMUM_RATE, basal_nl_day=0))
    volume = 20 * STROKE_NL
    before = truth(rig)["pumped_nl"]
    basal_per_hour = 48_000 // 24  # the minimum rate goes on beside it
    pump.request("BOLUS", bolus(volume, DAY_S))
    for hours in (6, 12, 18):
        rig.advance(6 * HOUR_MS)
        pumped = truth(rig)["pumped_nl"] - before
        expected = volume * hours // 24 + basal_per_hour * hours
        assert abs(pumped - expected) <= 2 * STROKE_NL, (hours, pumped, expected)
        assert pump.status()["bolus_kind"] == CLINICIAN
    rig.advance(6 * HOUR_MS + 10 * 60_000)
    assert pump.status()["bolus_kind"] == 0
    pumped = truth(rig)["pumped_nl"] - before
    assert abs(pumped - (volume + basal_per_hour * 24)) <= 2 * STROKE_NL
