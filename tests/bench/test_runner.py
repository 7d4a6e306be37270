"""The runner's verdicts and exit codes: PASS, FAIL, ERROR, XFAIL, XPASS, SKIP; --jobs.

Each scenario runs on its own virtual board; device time moves only through
the rig, so nothing here waits in real time for the pump.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from bench import vocab
from bench.board.targets import SimTarget
from bench.cli.main import main
from bench.report.records import Outcome
from bench.scenario import runner
from bench.scenario.load import Scenario, load_scenario, load_scenarios
from bench.scenario.runner import run_all, run_scenario, schedule


def scenario(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"id: {name}\ntitle: {name}\n{body}")
    return path


PASSES = "steps:\n  - advance: {duration: 1h}\n  - expect_state: {state: IDLE}\n"
FAILS = "steps:\n  - expect_state: {state: RUNNING}\n"
XFAILS = "xfail: waits for delivery\n" + FAILS
XPASSES = "xfail: marked before it landed\n" + PASSES


def results(report: Path) -> dict:
    return json.loads((report / "results.json").read_text())


def outcomes(report: Path) -> dict[str, str]:
    return {s["id"]: s["outcome"] for s in results(report)["scenarios"]}


def test_expected_failures_and_unexpected_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    paths = [
        scenario(tmp_path, "passes", PASSES),
        scenario(tmp_path, "waits", XFAILS),
        scenario(tmp_path, "landed", XPASSES),
    ]
    report = tmp_path / "report"
    args = ["run", *map(str, paths), "--report", str(report), "--no-plots"]
    assert main(args) == 0  # an XPASS is reported, not a failure ...
    out = capsys.readouterr().out
    assert "XFAIL waits" in out and "XPASS landed" in out
    assert "XPASS: landed passed although marked xfail" in out
    assert outcomes(report) == {"passes": "PASS", "waits": "XFAIL", "landed": "XPASS"}
    waits = next(s for s in results(report)["scenarios"] if s["id"] == "waits")
    assert waits["xfail"] == "waits for delivery"
    assert waits["error"] == "line 5: expect_state: state is IDLE, expected RUNNING"

    assert main([*args, "--strict-xfail"]) == 1  # ... unless CI wants it enabled
    assert results(report)["outcome"] == "FAIL"
    capsys.readouterr()


def test_a_bench_error_in_an_xfail_scenario_stays_an_error(tmp_path: Path) -> None:
    path = scenario(tmp_path, "broken", "xfail: whatever\n" + PASSES)
    record = run_scenario(load_scenario(path), SimTarget(heap="2k"))  # dies at boot
    assert record.outcome is Outcome.ERROR
    assert record.problems[0].startswith("virtual board died")


def test_error_outranks_failure_in_the_exit_code(tmp_path: Path) -> None:
    fails = scenario(tmp_path, "fails", FAILS)
    report = tmp_path / "report"
    assert main(["run", str(fails), "--report", str(report), "--no-plots"]) == 1
    # the same failing scenario with a board that cannot boot: ERROR, exit 2
    args = ["run", str(fails), "--heap", "2k", "--report", str(report), "--no-plots"]
    assert main(args) == 2
    assert outcomes(report) == {"fails": "ERROR"}


def test_a_bench_error_is_never_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = runner.run_scenario

    def counting(s: Scenario, *args: object, **kwargs: object) -> object:
        calls.append(s.id)
        return real(s, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "run_scenario", counting)
    scenarios = load_scenarios([scenario(tmp_path, "dies", PASSES)])
    run = run_all(scenarios, SimTarget(heap="2k"))
    assert run.scenarios[0].outcome is Outcome.ERROR
    assert calls == ["dies"]  # once: an ERROR is reported, not retried into a pass


def test_jobs_run_boards_side_by_side_and_report_in_file_order(tmp_path: Path) -> None:
    paths = [scenario(tmp_path, f"s{i}", PASSES) for i in range(4)]
    scenarios = load_scenarios(paths)
    workers: set[str] = set()

    def on_start(_scenario: Scenario) -> None:
        workers.add(threading.current_thread().name)

    run = run_all(scenarios, SimTarget(), jobs=2, on_start=on_start)
    assert [s.id for s in run.scenarios] == ["s0", "s1", "s2", "s3"]
    assert all(s.outcome is Outcome.PASS for s in run.scenarios)
    assert len(workers) == 2  # two boards side by side
    assert run.jobs == 2
    assert len({s.device.device_id if s.device else "" for s in run.scenarios}) == 1  # all SIM


def test_longest_scenarios_start_first(tmp_path: Path) -> None:
    short = scenario(tmp_path, "short", "steps:\n  - advance: {duration: 1h}\n")
    long = scenario(tmp_path, "long", "steps:\n  - advance: {duration: 90d}\n")
    none = scenario(tmp_path, "none", "steps:\n  - status: {}\n")
    scenarios = load_scenarios([short, long, none])
    assert [scenarios[i].id for i in schedule(scenarios)] == ["long", "short", "none"]


def test_a_cancelled_run_ends_scenarios_as_errors(tmp_path: Path) -> None:
    scenarios = load_scenarios([scenario(tmp_path, "cut", PASSES)])
    cancel = threading.Event()
    cancel.set()  # Ctrl-C before it started
    run = run_all(scenarios, SimTarget(), cancel=cancel)
    (record,) = run.scenarios
    assert record.outcome is Outcome.ERROR
    assert "interrupted" in record.problems[0]
    assert run.exit_code() == 2


def test_a_hardware_scenario_is_not_applicable_on_virtual_boards(tmp_path: Path) -> None:
    path = scenario(tmp_path, "pico", "needs: [hardware]\nsteps:\n  - status: {}\n")
    record = run_scenario(load_scenario(path), SimTarget())
    assert record.outcome is Outcome.SKIP
    assert record.problems == [
        "not applicable: needs a physical board (give --target with its port, e.g. /dev/ttyACM0)"
    ]


def test_scenarios_planning_too_much_device_time_are_not_applicable(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    long = scenario(tmp_path, "long", "steps:\n  - advance: {duration: 2d}\n")
    short = scenario(tmp_path, "short", PASSES)
    report = tmp_path / "report"
    args = ["run", str(long), str(short), "--max-device-time", "1d", "--report", str(report)]
    assert main([*args, "--no-plots"]) == 0
    capsys.readouterr()
    assert outcomes(report) == {"long": "SKIP", "short": "PASS"}
    (skipped,) = [s for s in results(report)["scenarios"] if s["id"] == "long"]
    assert skipped["error"] == (
        "not applicable: plans 2d 00h of device time, more than the 1d 00h allowed "
        "(--max-device-time)"
    )


EVERY_STEP = """\
id: every-step
title: Every step kind once, on one virtual board
requirements: [REQ-T-1]
setup:
  - hello: {}
  - rig_hello: {}
  - ping: {port: rig}
  - refill: {volume: 10 mL}
steps:
  - program: {file: PROGRAM, confirm: false}
  - cancel_program: {}
  - program: {file: PROGRAM}
  - confirm: {}
  - set_clock: {offset: 7h}
  - stop: {}
  - start: {}
  - mark: {name: begin}
  - bolus: {volume: 20 uL, duration: 10min}
  - advance: {duration: 2min, sample: 30s}
  - cancel_bolus: {}
  - measure: {name: bolus_part, from: cancel_bolus.delivered_nl, unit: uL, min: 3.6, max: 4.4}
  - patient_bolus: {}
  - repeat: {times: 2, steps: [{advance: {duration: 30min}}, {patient_bolus: {refused: LOCKOUT}}]}
  - power_cut: {after: 10min}
  - advance: {duration: 1h}
  - power_on: {}
  - expect_state: {state: RUNNING, alarms: [UNEXPECTED_RESET]}
  - clear_alarm: {alarm: UNEXPECTED_RESET}
  - reset: {}
  - clear_alarm: {alarm: UNEXPECTED_RESET}
  - inject_fault: {fault: runaway, param: 1}
  - advance: {duration: 10min}
  - clear_fault: {}
  - expect_no_alarm: {for: 1h, ignore: [DOSE_LIMIT, STROKE_MISMATCH, LOST_STEPS, RUNAWAY]}
  - expect_log: {event: PB_REFUSED, since: begin, count: 2}
  - status: {}
  - measure: {name: delivered, from: tip_volume, since: begin, unit: uL, min: 50}
  - measure: {name: counted, from: pump_volume, since: begin, unit: uL, min: 50}
  - measure: {name: left, from: pump_reservoir, unit: mL, max: 10}
  - measure: {name: elapsed, from: device_time, since: begin, unit: h, min: 3}
teardown:
  - ping: {}
"""


def test_every_step_kind_runs_on_a_virtual_board(tmp_path: Path) -> None:
    program = (
        Path(__file__).resolve().parents[2] / "bench" / "programs" / "morphine-continuous.toml"
    )
    text = EVERY_STEP.replace("PROGRAM", str(program))
    # alarms the safety issue adds are named only if this schema has them
    for name in ("LOST_STEPS", "RUNAWAY", "STROKE_MISMATCH"):
        if name not in vocab.ALARMS:
            text = text.replace(f", {name}", "")
    path = tmp_path / "every.yaml"
    path.write_text(text)
    record = run_scenario(load_scenario(path), SimTarget())
    assert record.outcome is Outcome.PASS, "\n".join(record.problems + record.log)
    assert all(m.outcome.value == "PASS" for m in record.measurements)
    kinds = {a.kind for a in record.annotations}
    assert {"bolus", "power_off", "boot", "fault", "fault_cleared", "mark", "alarm"} <= kinds
    assert len(record.samples) > 5


# --- the bench-wide check: unexpected resets and alarms ------------------------------------

ERI_UNNAMED = """seed: 3
setup:
  - refill: {volume: 20 mL}
  - program: {drug: none, concentration: 0 ug/mL, mode: continuous, rate: 1 mL/day, confirm: true}
steps:
  - inject_fault: {fault: BATTERY, param: 2550}
  - advance: {duration: 30min}
  - expect_state: {state: RUNNING}
"""


def test_an_alarm_the_scenario_does_not_name_fails_it(tmp_path: Path) -> None:
    # every step passes; the pump raised an alarm nobody expected
    record = run_scenario(load_scenario(scenario(tmp_path, "eri", ERI_UNNAMED)), SimTarget())
    assert record.outcome is Outcome.FAIL, record.problems
    assert any("unexpected: alarm BATTERY_ERI raised at" in p for p in record.problems)


def test_an_alarm_named_or_allowed_passes(tmp_path: Path) -> None:
    named = ERI_UNNAMED + "  - expect_alarm: {alarm: BATTERY_ERI}\n"
    allowed = "allow_alarms: [BATTERY_ERI]\n" + ERI_UNNAMED
    for name, body in (("named", named), ("allowed", allowed)):
        record = run_scenario(load_scenario(scenario(tmp_path, name, body)), SimTarget())
        assert record.outcome is Outcome.PASS, record.problems


def test_a_reset_no_step_asked_for_fails_the_scenario(tmp_path: Path) -> None:
    from bench.report.records import ScenarioRecord
    from bench.scenario.executor import Executor
    from protocol import codec

    loaded = load_scenario(scenario(tmp_path, "quiet", PASSES))
    record = ScenarioRecord(
        id="quiet", title="quiet", file="quiet.yaml", requirements=[], seed=None
    )
    executor = Executor(loaded, record, pump=None, rig=None)  # type: ignore[arg-type]
    asked = codec.Frame(0x80, "BOOT", 2, 4, {"device_time_ms": 5, "reset_cause": 3})
    watchdog = codec.Frame(0x80, "BOOT", 3, 4, {"device_time_ms": 9, "reset_cause": 2})
    alarm = {"device_time_ms": 9, "alarm": vocab.ALARMS["WATCHDOG_RESET"], "action": 1}
    executor.events = [asked, watchdog, codec.Frame(0x81, "ALARM", 4, 4, alarm)]
    executor.expected_boots.add(id(asked))
    assert executor.unexpected() == [
        "reset (BOOT WATCHDOG) at 9 ms",
        "alarm WATCHDOG_RESET raised at 9 ms",
    ]
