"""Report helpers: time formatting, outcome ranking, exit codes, plots and the HTML page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.report.files import write_reports
from bench.report.html import requirement_status, traceability
from bench.report.records import (
    Annotation,
    Outcome,
    RunRecord,
    Sample,
    ScenarioRecord,
    TraceRecord,
    format_ms,
    worst,
)


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (None, "-"),
        (0, "0d 00h 00m 00.000s"),
        (1, "0d 00h 00m 00.001s"),
        (90_061_001, "1d 01h 01m 01.001s"),
        (30 * 86_400_000, "30d 00h 00m 00.000s"),
        (-1_500, "-0d 00h 00m 01.500s"),
    ],
)
def test_format_ms(ms: int | None, text: str) -> None:
    assert format_ms(ms) == text


def _run(*outcomes: Outcome) -> RunRecord:
    run = RunRecord(target="sim", rig=None, started_at="2025-01-01T00:00:00Z")
    for i, outcome in enumerate(outcomes):
        record = ScenarioRecord(id=f"s{i}", title="", file="", requirements=[], seed=0)
        if outcome is not Outcome.PASS:
            record.settle(outcome, f"{outcome} on purpose")
        run.scenarios.append(record)
    return run


@pytest.mark.parametrize(
    ("outcomes", "code"),
    [
        ((), 0),
        ((Outcome.PASS, Outcome.PASS), 0),
        ((Outcome.PASS, Outcome.SKIP), 0),
        ((Outcome.PASS, Outcome.FAIL), 1),
        ((Outcome.FAIL, Outcome.ERROR, Outcome.PASS), 2),  # a bench error outranks a failure
        ((Outcome.ERROR,), 2),
    ],
)
def test_exit_code(outcomes: tuple[Outcome, ...], code: int) -> None:
    assert _run(*outcomes).exit_code() == code


def test_an_outcome_only_gets_worse() -> None:
    record = ScenarioRecord(id="s", title="", file="", requirements=[], seed=0)
    record.settle(Outcome.ERROR, "link lost")
    record.settle(Outcome.FAIL, "then a limit")
    assert record.outcome is Outcome.ERROR
    assert record.error == "link lost; then a limit"
    assert worst(Outcome.PASS, Outcome.SKIP) is Outcome.SKIP


@pytest.mark.parametrize(
    ("outcomes", "strict", "code"),
    [
        ((Outcome.PASS, Outcome.XFAIL), False, 0),  # failed as expected
        ((Outcome.PASS, Outcome.XPASS), False, 0),  # reported, not failed ...
        ((Outcome.PASS, Outcome.XPASS), True, 1),  # ... unless strict
        ((Outcome.XPASS, Outcome.ERROR), True, 2),
    ],
)
def test_exit_code_with_xfail(outcomes: tuple[Outcome, ...], strict: bool, code: int) -> None:
    run = _run()
    for i, outcome in enumerate(outcomes):
        record = ScenarioRecord(id=f"s{i}", title="", file="", requirements=[], seed=0)
        record.outcome = outcome
        run.scenarios.append(record)
    run.strict_xfail = strict
    assert run.exit_code() == code


def _synthetic_run() -> RunRecord:
    """A run as the executor would leave it, without a board: samples, marks, a trace."""
    run = _run()
    record = ScenarioRecord(
        id="occlusion",
        title="Occlusion <b>",
        file="x.yaml",
        requirements=["REQ-A", "REQ-B"],
        seed=1,
    )
    record.device_time_start_ms, record.device_time_end_ms = 0, 4 * 3_600_000
    for minute in range(0, 241, 5):
        t = minute * 60_000
        delivered = min(minute, 120) * 700  # flat after the occlusion at 2 h
        record.samples.append(
            Sample(t_ms=t, tip_nl=delivered, pump_nl=minute * 700, programmed_nl=minute * 694.4)
        )
    record.annotations += [
        Annotation(7_200_000, "fault", "fault OCCLUSION"),
        Annotation(7_500_000, "alarm", "OCCLUSION"),
        Annotation(9_000_000, "fault_cleared", "fault cleared"),
    ]
    times = list(range(0, 4 * 3_600_000, 10_000))
    record.trace = TraceRecord(
        times_ms=times,
        pressure_x10=[
            80 if t < 7_200_000 else min(2000, 80 + (t - 7_200_000) // 1000) for t in times
        ],
        sensor_x10=[
            82 if t < 7_200_000 else min(2000, 82 + (t - 7_200_000) // 1000) for t in times
        ],
    )
    other = ScenarioRecord(id="plain", title="", file="", requirements=["REQ-B"], seed=0)
    other.outcome = Outcome.XFAIL
    run.scenarios += [record, other]
    return run


def test_plots_and_page_from_a_synthetic_run(tmp_path: Path) -> None:
    run = _synthetic_run()
    page = write_reports(run, tmp_path)
    plots = run.scenarios[0].plots
    assert set(plots) == {"volume", "pressure"}
    for relative in plots.values():
        data = (tmp_path / relative).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 20_000
    html = page.read_text()
    assert "Occlusion &lt;b&gt;" in html  # text is escaped
    assert 'src="plots/occlusion-pressure.png"' in html
    # REQ-B is traced by a passing and an xfailed scenario: not verified yet
    assert requirement_status(run.scenarios) is Outcome.XFAIL
    assert [r for r, _records in traceability(run)] == ["REQ-A", "REQ-B"]
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["scenarios"][0]["trace"]["pressure_x10"][0] == 80
