"""Report helpers: time formatting, outcome ranking and exit codes."""

from __future__ import annotations

import pytest

from bench.report import Outcome, RunRecord, ScenarioRecord, format_ms, worst


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
