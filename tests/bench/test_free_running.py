"""Part of the standard suite on free-running virtual boards (issue 13, item 2).

Lockstep device time is a test convenience; a board on a bench runs in real
time. These scenarios of `make run` run here on boards whose clock follows
the host's at 600 x wall time (two hours of therapy in about 15 s), and must
give the same outcomes as in lockstep: flow accuracy, occlusion, a leak, a
motor stall, the patient bolus's lockout and daily maximum, power loss
during a bolus. leak.yaml and patient-bolus-lockout-daily-max.yaml need a
day of device time or more (minutes at any speed that stays real); their
short forms (leak-first-hour: a large leak an hour into therapy;
patient-bolus-short-lockout: a 10-minute lockout, 3 a day) check the same
rules in under two hours and run in lockstep in `make run` too.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.cli import main

SUITE = Path(__file__).resolve().parents[2] / "bench" / "scenarios"
FREE_RUNNING = [
    "flow-accuracy-4ml-day",
    "leak-first-hour",
    "motor-stall",
    "occlusion-intermediate-rate",
    "patient-bolus-short-lockout",
    "power-loss-during-bolus",
]
SPEED = 600


def test_the_subset_passes_on_free_running_boards(tmp_path: Path) -> None:
    report = tmp_path / "report"
    paths = [str(SUITE / f"{name}.yaml") for name in FREE_RUNNING]
    args = ["run", *paths, "--speed", str(SPEED), "--jobs", "2", "--no-plots"]
    code = main([*args, "--report", str(report)])
    data = json.loads((report / "results.json").read_text())
    outcomes = {s["id"]: (s["outcome"], s["problems"] or s["error"]) for s in data["scenarios"]}
    failed = {name: result for name, result in outcomes.items() if result[0] != "PASS"}
    assert code == 0 and not failed, failed
    assert sorted(outcomes) == sorted(FREE_RUNNING)
    assert data["target"] == f"sim x{SPEED}"
