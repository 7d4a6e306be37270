"""The standard dose scenarios (docs/pump.md 22) pass end to end against
the rig's truth of the dose at the tip: concentration up and down, a bridge
bolus, a refill with a new drug, priming a new catheter, a bolus then a day
of basal, patient boluses up to the daily maximum."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli.main import main

SUITE = Path(__file__).resolve().parents[2] / "bench" / "scenarios"
DOSE = sorted(path.stem for path in SUITE.glob("dose-*.yaml"))


@pytest.mark.timeout(300)
def test_every_dose_scenario_passes(tmp_path: Path) -> None:
    assert len(DOSE) == 7, DOSE
    paths = [str(SUITE / f"{name}.yaml") for name in DOSE]
    assert main(["run", *paths, "--jobs", "2", "--no-plots", "--report", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert {s["id"]: s["outcome"] for s in data["scenarios"]} == dict.fromkeys(DOSE, "PASS")
    measured = {
        (s["id"], m["name"]): m["value"] for s in data["scenarios"] for m in s["measurements"]
    }
    # the dose rate at the tip holds across a concentration change, both ways
    for change in ("dose-concentration-up", "dose-concentration-down"):
        assert 590 <= measured[(change, "max_24h")] <= 610
        assert measured[(change, "longest_gap")] <= 5
