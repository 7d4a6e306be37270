"""The pumpbench CLI, called in-process through ``bench.cli.main.main``.

Every run here uses virtual boards; device time moves only by rig ADVANCE,
so nothing waits in real time for the pump.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.cli.main import main
from bench.link.pump import PumpClient
from protocol import schema
from tests.system.kit import reap

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "bench" / "scenarios"
SHIPPED = {"handshake", "status", "lockstep-advance", "reset"}
# The link scenarios of the standard suite: quick, and valid on any board by URL.
BASIC = [str(SUITE / f"{name}.yaml") for name in sorted(SHIPPED)]
FINGERPRINT = f"0x{schema.FINGERPRINT:08x}"


def scenario(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"id: {name}\ntitle: {name}\n{body}")
    return path


def results(report: Path) -> dict:
    return json.loads((report / "results.json").read_text())


def by_id(report: Path) -> dict[str, dict]:
    return {s["id"]: s for s in results(report)["scenarios"]}


# --- run: the shipped suite ----------------------------------------------------------


def test_link_scenarios_pass_and_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    report = tmp_path / "report"
    args = ["run", *BASIC, "--target", "sim", "--report", str(report), "--no-plots"]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"report: {report / 'report.html'}"  # where the report is, last
    assert (report / "report.html").exists()
    assert {line.split()[1] for line in out if line.startswith("PASS  ")} >= SHIPPED

    data = results(report)
    assert data["outcome"] == "PASS"
    assert data["target"] == "sim"
    assert data["device"]["board"] == "sim"
    assert data["device"]["schema_fingerprint"] == FINGERPRINT
    assert data["bench_version"]
    assert data["started_at"].endswith("Z")
    records = by_id(report)
    for record in records.values():
        assert record["outcome"] == "PASS", record
        assert record["error"] is None
        assert record["seed"] == 1  # what the rig reports, as the scenario asked
        assert record["device"]["firmware_version"]
        assert record["wall_s"] > 0
        for m in record["measurements"]:
            assert m["outcome"] == "PASS" and m["value"] is not None and m["unit"]

    lockstep = records["lockstep-advance"]
    assert lockstep["device_time_end_ms"] == 30 * 86_400_000
    assert lockstep["device_time_ms"] == 30 * 86_400_000
    advanced = next(m for m in lockstep["measurements"] if m["name"] == "advanced")
    assert advanced == {
        "name": "advanced",
        "source": "advance.advanced_ms",
        "unit": "ms",
        "min": 2_592_000_000,
        "max": 2_592_000_000,
        "line": 14,
        "value": 2_592_000_000,
        "outcome": "PASS",
        "wire_value": 2_592_000_000,
        "wire_unit": "ms",
        "since": None,
    }
    reset = {m["name"]: m["value"] for m in records["reset"]["measurements"]}
    assert reset == {"boot_count_increase": 1, "clock_jump": 0, "uptime_after_reset": 600_000}

    suite = ET.parse(report / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert {c.get("name") for c in cases} == set(records)
    assert all(c.find("failure") is None and c.find("error") is None for c in cases)
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["schema_fingerprint"] == FINGERPRINT
    assert props["firmware_version"] == data["device"]["firmware_version"]
    assert "PASS" in (report / "summary.txt").read_text()


def test_seed_option_reaches_the_board(tmp_path: Path) -> None:
    report = tmp_path / "report"
    code = main(
        ["run", str(SUITE / "handshake.yaml"), "--seed", "7", "--report", str(report), "--no-plots"]
    )
    assert code == 0
    data = results(report)
    assert data["seed_override"] == 7
    assert data["scenarios"][0]["seed"] == 7


# --- run: FAIL, ERROR ---------------------------------------------------------------


def test_measurement_out_of_limits_fails_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = scenario(
        tmp_path,
        "too-long",
        "steps:\n"
        "  - advance: {duration: 1h}\n"
        "  - measure: {name: advanced, from: advance.advanced_ms, unit: ms, max: 59min}\n"
        "  - status: {}\n"
        "  - measure: {name: uptime, from: status.uptime_ms, unit: ms, max: 2h}\n",
    )
    report = tmp_path / "report"
    assert main(["run", str(path), "--report", str(report), "--no-plots"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  too-long" in out
    record = by_id(report)["too-long"]
    assert record["outcome"] == "FAIL"
    assert "line 5: measure: advanced = 3600000 ms" in record["error"]
    # a failed measurement does not stop the scenario: the next one is taken
    outcomes = {m["name"]: (m["value"], m["outcome"]) for m in record["measurements"]}
    assert outcomes == {"advanced": (3_600_000, "FAIL"), "uptime": (3_600_000, "PASS")}
    case = ET.parse(report / "junit.xml").getroot().find("testsuite/testcase")
    assert case is not None and case.find("failure") is not None and case.find("error") is None


def test_failed_expectation_stops_steps_but_teardown_runs(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        "not-running",
        "steps:\n"
        "  - status: {expect: {state: RUNNING}}\n"
        "  - advance: {duration: 1d}\n"
        "  - status: {}\n"
        "  - measure: {name: uptime, from: status.uptime_ms, unit: ms, min: 1d}\n"
        "teardown:\n"
        "  - ping: {}\n",
    )
    report = tmp_path / "report"
    assert main(["run", str(path), "--report", str(report), "--no-plots"]) == 1
    record = by_id(report)["not-running"]
    assert record["error"] == "line 4: status: state is IDLE, expected RUNNING"
    assert record["measurements"][0]["outcome"] == "NOT_RUN"
    assert record["device_time_end_ms"] == 0  # the advance never ran
    assert any(line.startswith("teardown: 9: ping pump") for line in record["log"])


def test_nonexistent_target_is_a_bench_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["run", *BASIC, "--target", "/dev/nonexistent"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("pumpbench: error: /dev/nonexistent: cannot open port")
    assert "Traceback" not in captured.err + captured.out


def test_scenario_syntax_error_is_a_bench_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = scenario(tmp_path, "broken", "steps:\n  - status: {expect: {state: IDLE}\n")
    report = tmp_path / "report"
    assert main(["run", str(path), "--report", str(report), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pumpbench: error: {path}:5: (yaml): ")
    assert "(while parsing a flow mapping on line 4)" in err
    assert not report.exists()  # nothing ran


def test_dead_board_is_an_error_not_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # A heap too small to boot in: the firmware dies with MemoryError.
    report = tmp_path / "report"
    args = [
        "run",
        str(SUITE / "status.yaml"),
        "--heap",
        "2k",
        "--report",
        str(report),
        "--no-plots",
    ]
    assert main(args) == 2
    assert "ERROR status" in capsys.readouterr().out
    record = by_id(report)["status"]
    assert record["outcome"] == "ERROR"
    assert record["error"].startswith("virtual board died (exit code 1): MemoryError")
    assert "MemoryError" in record["firmware_stderr"]
    case = ET.parse(report / "junit.xml").getroot().find("testsuite/testcase")
    assert case is not None and case.find("error") is not None and case.find("failure") is None


def test_rig_with_sim_target_is_refused(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["run", str(SUITE), "--rig", "/dev/pts/99"])
    assert caught.value.code == 2
    assert "--rig goes with a hardware --target" in capsys.readouterr().err


def test_jobs_with_a_url_target_is_refused(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["run", str(SUITE), "--target", "/dev/pts/99", "--jobs", "2"])
    assert caught.value.code == 2
    assert "a board at a URL runs one at a time" in capsys.readouterr().err


# --- one-shot commands --------------------------------------------------------------


def test_status_on_a_private_virtual_board(capsys: pytest.CaptureFixture) -> None:
    assert main(["status", "--target", "sim"]) == 0
    out = capsys.readouterr().out
    assert "device time: 0 ms (0d 00h 00m 00.000s)" in out
    assert "uptime:      0 ms (0d 00h 00m 00.000s)" in out
    assert "state:       IDLE" in out
    assert "boot count:  1" in out


def test_hello_and_ping_on_a_private_virtual_board(capsys: pytest.CaptureFixture) -> None:
    assert main(["hello", "--target", "sim"]) == 0
    out = capsys.readouterr().out
    assert "board:       sim" in out
    assert f"schema:      {FINGERPRINT}" in out
    assert main(["ping", "--target", "sim", "--count", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("echoed in") == 2
    assert "2 pings: min" in out


def test_one_shot_commands_need_an_explicit_board(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["status"])
    assert caught.value.code == 2
    assert "one of the arguments --port --target is required" in capsys.readouterr().err


def test_status_on_a_missing_port(capsys: pytest.CaptureFixture) -> None:
    assert main(["status", "--port", "/dev/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pumpbench: error: /dev/nonexistent: cannot open port")
    assert err.count("\n") == 1


# --- pumpbench sim, and running scenarios on it by URL ------------------------------


SIM_KEY_FILE: list[str] = []  # the key file the running `pumpbench sim` printed


@pytest.fixture
def sim_process() -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.cli.main", "sim", "--seed", "5"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert process.stdout is not None
        pump_line = process.stdout.readline()
        rig_line = process.stdout.readline()
        key_line = process.stdout.readline()
        assert pump_line.startswith("pump port: /dev/"), pump_line
        assert rig_line.startswith("rig port: /dev/"), rig_line
        assert key_line.startswith("key file: /"), key_line
        SIM_KEY_FILE[:] = [key_line.split(": ", 1)[1].strip()]
        yield process, pump_line.split(": ", 1)[1].strip(), rig_line.split(": ", 1)[1].strip()
    finally:
        reap(process)


def test_sim_serves_urls_until_interrupted(
    sim_process: tuple[subprocess.Popen[str], str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("PUMPBENCH_KEY_FILE", "PUMPBENCH_CLINICIAN_KEY", "PUMPBENCH_PATIENT_KEY"):
        monkeypatch.delenv(name, raising=False)
    process, pump_port, rig_port = sim_process
    with PumpClient(pump_port) as pump:
        assert pump.hello()["board"] == "sim"
    # Another process's board: this one knows its keys only from the key file.
    assert main(["stop", "--port", pump_port]) == 1
    assert "AUTH_REQUIRED" in capsys.readouterr().err
    assert main(["stop", "--port", pump_port, "--key-file", SIM_KEY_FILE[0]]) == 0

    # The same suite through URLs: a shared board that keeps its time.
    report = tmp_path / "report"
    args = [
        "run",
        *BASIC,
        "--target",
        pump_port,
        "--rig",
        rig_port,
        "--report",
        str(report),
        "--no-plots",
    ]
    assert main(args) == 0
    assert main(args) == 0  # again, on a board that is now 30 days older
    records = by_id(report)
    assert records["lockstep-advance"]["device_time_end_ms"] > 60 * 86_400_000
    assert all(r["seed"] == 5 for r in records.values())  # the rig's own seed

    # Without a rig, scenarios that need one are not applicable, not failed.
    assert main(["run", *BASIC, "--target", pump_port, "--report", str(report), "--no-plots"]) == 0
    outcomes = {i: r["outcome"] for i, r in by_id(report).items()}
    assert outcomes == {
        "handshake": "SKIP",
        "lockstep-advance": "SKIP",
        "reset": "SKIP",
        "status": "PASS",
    }
    capsys.readouterr()

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 0


def test_sim_stops_on_sigterm(sim_process: tuple[subprocess.Popen[str], str, str]) -> None:
    process, _pump, _rig = sim_process
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


def test_sim_reports_a_dead_firmware() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.cli.main", "sim", "--heap", "2k"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2
    assert "pumpbench: error: virtual board died (exit code 1): MemoryError" in done.stderr
    # then the firmware's own stderr, as it wrote it
    assert done.stderr.splitlines()[1].startswith("MemoryError")
