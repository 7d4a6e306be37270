"""An independent clock check (docs/pump.md 14.8).

The millisecond timer that times every stroke is compared with the RTC
(device seconds) over 5-minute windows of the timer; more than 5 % + 1 s
apart raises CLOCK_FAULT (high priority, stops delivery). The rig's
TIMER_FAST fault makes the timer fast while the RTC keeps true time: at
x3, unchecked, the pump would deliver three times the dose unseen.
"""

from __future__ import annotations

import pytest

from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from tests.system.kit import (
    MINIMUM_RATE,
    MINUTE_MS,
    alarm_active,
    program,
    start_therapy,
    truth,
)

RATES = {"0.048": 0, "0.5": 500_000, "4": 4_000_000, "24": 24_000_000}  # mL/day
FACTORS = {"x1.1": 1_100, "x3": 3_000, "x10": 10_000}
SLICE_MS = 10_000
DETECTION_MS = 10 * MINUTE_MS  # two 5-minute windows of a true timer


def therapy(rate: int) -> dict:
    if rate == 0:
        return program(drug_id=0, conc_ug_ml=0, mode=MINIMUM_RATE, basal_nl_day=0)
    return program(drug_id=0, conc_ug_ml=0, basal_nl_day=rate)


@pytest.mark.parametrize("factor", list(FACTORS), ids=list(FACTORS))
@pytest.mark.parametrize("rate", list(RATES), ids=[f"{r}ml-day" for r in RATES])
def test_a_fast_timer_is_found_within_two_windows_at_every_rate(
    pump: PumpClient, rig: RigClient, rate: str, factor: str
) -> None:
    start_therapy(pump, rig, therapy(RATES[rate]))
    rig.advance(7 * MINUTE_MS)  # somewhere inside a window
    rig.inject_fault("TIMER_FAST", FACTORS[factor])
    waited = 0
    while not alarm_active(pump.status(), "CLOCK_FAULT"):
        assert waited < DETECTION_MS, pump.status()["alarm_names"]
        rig.advance(SLICE_MS)
        waited += SLICE_MS
    status = pump.status()
    assert status["state_name"] == "ALARM"
    pumped = truth(rig)["pumped_nl"]
    rig.advance(10 * MINUTE_MS)
    assert truth(rig)["pumped_nl"] == pumped, "delivery did not stop"


def test_a_timer_within_tolerance_raises_nothing(pump: PumpClient, rig: RigClient) -> None:
    start_therapy(pump, rig, therapy(RATES["0.5"]))
    rig.inject_fault("TIMER_FAST", 1_030)  # 3 % fast: inside the 5 % tolerance
    rig.advance(6 * 60 * MINUTE_MS)
    assert not alarm_active(pump.status(), "CLOCK_FAULT")
