"""One rule for windows and headroom (docs/pump.md 22.4), as a
property over random programs, patient-bolus settings, press times and a
clinician bolus, each on a fresh virtual board:

- every patient bolus the lockout and daily maximum allow is granted, once
  the drug library has accepted the program;
- no bolus the pump grants ever trips the governor later (no DOSE_LIMIT, no
  GOVERNOR_STOP in the log, over the 26 h after the last one);
- the rig's truth of the dose at the tip stays within the drug's hard hourly
  and daily doses over every 1 h and 24 h window (15-minute samples).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bench.board.sim import BoardOptions, VirtualBoard
from bench.link.errors import PumpRefused
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from protocol import schema
from tests.robustness.limits_table import read_drugs
from tests.system.kit import HOUR_MS, MINUTE_MS, activate, program, refill, truth

DRUGS = read_drugs()
LOG = {name: code for code, name in schema.LOG_CODES}
# drug id -> concentrations tried (ug/mL): morphine, hydromorphone, baclofen
# (strong enough that a day is at most a few thousand strokes: the run stays short)
CONCS = {1: (10_000, 25_000), 2: (5_000, 10_000), 4: (500, 2_000)}
DAY_S = 86_400


@st.composite
def therapies(draw: st.DrawFn) -> dict[str, Any]:
    drug_id = draw(st.sampled_from(sorted(CONCS)))
    drug = DRUGS[drug_id]
    conc = draw(st.sampled_from(CONCS[drug_id]))
    # the basal as a share of the hard daily dose, the patient bolus as a
    # share of the soft bolus dose: mostly programs the library accepts
    basal_share = draw(st.integers(5, 80))
    rate = max(48_000, drug.daily_hard_ng * basal_share // 100 * 1000 // conc)
    pb_share = draw(st.integers(2, 100))
    pb_dose = max(200, drug.bolus_soft_ng * pb_share // 100 * 1000 // conc)
    lockout = draw(st.integers(10, 360)) * 60
    max_per_day = draw(st.integers(1, min(24, DAY_S // lockout)))
    gaps = draw(st.lists(st.integers(5, 8 * 60), min_size=3, max_size=10))  # minutes
    bolus_share = draw(st.integers(5, 100))
    duration_s = draw(st.sampled_from((0, 600, 3_600)))
    return {
        "fields": program(
            drug_id=drug_id,
            conc_ug_ml=conc,
            basal_nl_day=min(rate, 24_000_000),
            pb_dose_nl=min(pb_dose, 100_000),
            pb_lockout_s=lockout,
            pb_max_per_day=max_per_day,
            override_soft=1,
        ),
        "gaps_min": gaps,
        "clinician_ng": drug.bolus_soft_ng * bolus_share // 100,
        "duration_s": duration_s,
    }


def now_s(pump: PumpClient) -> int:
    return int(pump.status()["device_time_ms"]) // 1000


def tip_ng(rig: RigClient) -> int:
    return int(truth(rig)["tip_ng"])


def advance_sampling(rig: RigClient, ms: int, samples: list[tuple[int, int]]) -> None:
    """Advances in 15-minute steps, sampling the tip dose."""
    while ms > 0:
        step = min(ms, 15 * MINUTE_MS)
        rig.advance(step)
        ms -= step
        samples.append((samples[-1][0] + step, tip_ng(rig)))


def max_window(samples: list[tuple[int, int]], window_ms: int) -> int:
    worst = 0
    i = 0
    for j in range(len(samples)):
        while samples[j][0] - samples[i][0] > window_ms:
            i += 1
        worst = max(worst, samples[j][1] - samples[i][1])
    return worst


@pytest.mark.timeout(300)
@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(therapies())
def test_granted_boluses_never_trip_and_allowed_presses_are_granted(
    therapy: dict[str, Any],
) -> None:
    fields = therapy["fields"]
    drug = DRUGS[fields["drug_id"]]
    with (
        VirtualBoard(BoardOptions()) as board,
        PumpClient(board.pump_port) as pump,
        RigClient(board.rig_port) as rig,
    ):
        refill(pump, rig, 30_000_000, fields["drug_id"], fields["conc_ug_ml"])
        try:
            activate(pump, fields)
        except PumpRefused as refused:
            assert refused.code == schema.HARD_LIMIT
            assume(False)  # the library refused the program: nothing to hold it to
        samples = [(0, tip_ng(rig))]
        advance_sampling(rig, 25 * HOUR_MS, samples)  # the basal's steady state
        grants: list[int] = []
        for gap in therapy["gaps_min"]:
            advance_sampling(rig, gap * MINUTE_MS, samples)
            t = now_s(pump)
            allowed = (not grants or t - grants[-1] >= fields["pb_lockout_s"]) and sum(
                1 for g in grants if t - g < DAY_S
            ) < fields["pb_max_per_day"]
            try:
                pump.patient_bolus()
                granted = True
            except PumpRefused as refused:
                granted = False
                assert not allowed, f"press at {t} s refused: {refused}"
                assert refused.code in (schema.LOCKOUT, schema.DAILY_MAX), refused
            assert granted == allowed, (t, grants)
            if granted:
                grants.append(t)
        # a clinician bolus: refused, or granted and never tripping later
        advance_sampling(rig, 10 * MINUTE_MS, samples)
        try:
            pump.bolus(
                "clinician",
                dose_ng=max(1, therapy["clinician_ng"]),
                duration_s=therapy["duration_s"],
                override_soft=True,
            )
        except PumpRefused as refused:
            assert refused.code in (schema.HARD_LIMIT, schema.BAD_VALUE), refused
        advance_sampling(rig, 26 * HOUR_MS, samples)
        status = pump.status()
        assert "DOSE_LIMIT" not in status["alarm_names"], status["alarm_names"]
        assert not [e for e in pump.log() if e["code"] == LOG["GOVERNOR_STOP"]]
        # the truth at the tip, over every 1 h and 24 h between samples
        assert max_window(samples, HOUR_MS) <= drug.hourly_hard_ng
        assert max_window(samples, 24 * HOUR_MS) <= drug.daily_hard_ng
