"""Scenario files: durations, and validation errors that name file, line and field.

Everything here runs without a board: a bad scenario must be caught before
one is touched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.scenario.load import (
    AdvanceStep,
    MeasureStep,
    ScenarioError,
    StatusStep,
    load_scenario,
    load_scenarios,
)
from bench.units import duration_ms as parse_duration
from protocol import schema

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "bench" / "scenarios"

GOOD = """\
id: example
title: An example
requirements: [REQ-X-1]
seed: 3
steps:
  - hello: {}
  - status: {expect: {state: IDLE}}
  - advance: {duration: 30d}
  - measure: {name: t, from: advance.device_time_ms, unit: ms, min: 0, max: 30d}
teardown:
  - ping:
"""


def write(tmp_path: Path, text: str, name: str = "scenario.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- durations ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("0ms", 0),
        ("250ms", 250),
        ("1s", 1_000),
        ("10min", 600_000),
        ("1h", 3_600_000),
        ("30d", 2_592_000_000),
        ("1h 30min", 5_400_000),
        ("1d12h", 129_600_000),
        ("1.5h", 5_400_000),
        ("1.5 H", 5_400_000),
        (" 2 s ", 2_000),
    ],
)
def test_duration_parses(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("30", "not a duration"),
        ("", "a number with a unit"),
        ("0.5ms", "not a whole number of ms"),
        ("-1s", "no sign"),
        ("5 uL", "is a volume, not a duration"),
        ("30 days", "unknown unit 'days'"),
        ("10m", "minutes are min"),
        ("h", "not a duration"),
    ],
)
def test_duration_refuses(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_duration(text)


# --- a valid file ------------------------------------------------------------


def test_valid_scenario_parses(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, GOOD))
    assert scenario.id == "example"
    assert scenario.requirements == ("REQ-X-1",)
    assert scenario.seed == 3
    assert scenario.needs == frozenset({"rig"})  # inferred from advance
    kinds = [step.KIND for step in scenario.steps]
    assert kinds == ["hello", "status", "advance", "measure"]
    status = scenario.steps[1]
    assert isinstance(status, StatusStep)
    assert status.expect == {"state": dict((n, c) for c, n in schema.STATES)["IDLE"]}
    advance = scenario.steps[2]
    assert isinstance(advance, AdvanceStep) and advance.duration_ms == 2_592_000_000
    measure = scenario.steps[3]
    assert isinstance(measure, MeasureStep)
    assert (measure.source_path, measure.min, measure.max, measure.line) == (
        "advance.device_time_ms",
        0,
        2_592_000_000,
        9,
    )
    assert [step.KIND for step in scenario.teardown] == ["ping"]


def test_shipped_suite_is_valid() -> None:
    scenarios = load_scenarios([SCENARIO_DIR])
    assert {s.id for s in scenarios} >= {"handshake", "status", "lockstep-advance", "reset"}
    for scenario in scenarios:
        assert scenario.requirements, f"{scenario.id} traces no requirement"


# --- invalid files: file:line: field: problem ----------------------------------


def _replace(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


@pytest.mark.parametrize(
    ("text", "line", "field", "problem"),
    [
        (_replace("title:", "titel:"), 2, "titel", "unknown field 'titel' (did you mean 'title'?)"),
        (_replace("title: An example\n", ""), 1, "title", "missing (required)"),
        (_replace("  - hello: {}", "  - helo: {}"), 6, "steps[0].helo", "unknown step kind 'helo'"),
        (_replace("  - hello: {}", "  - hello"), 6, "steps[0]", "a step is one `kind: {fields}`"),
        (
            _replace("{duration: 30d}", "{duration: 30 days}"),
            8,
            "steps[2].advance.duration",
            "'days'",
        ),
        (_replace("{duration: 30d}", "{duration: 30}"), 8, "steps[2].advance.duration", "no unit"),
        (_replace("{duration: 30d}", "{}"), 8, "steps[2].advance.duration", "missing (required)"),
        (
            _replace("{duration: 30d}", "{duration: 1d, speed: 2}"),
            8,
            "steps[2].advance.speed",
            "unknown field 'speed'",
        ),
        (
            _replace("state: IDLE", "state: SLEEPING"),
            7,
            "steps[1].status.expect.state",
            "unknown state 'SLEEPING'",
        ),
        (_replace("{expect:", "{expekt:"), 7, "steps[1].status.expekt", "did you mean 'expect'?"),
        (
            _replace("unit: ms", "unit: nL"),
            9,
            "steps[3].measure.unit",
            "device_time_ms is in ms, not convertible to 'nL'; use ms, s, min, h, d",
        ),
        (
            _replace("advance.device_time_ms", "status.volume_nl"),
            9,
            "steps[3].measure.from",
            "status has no measurable field 'volume_nl'",
        ),
        (
            _replace("advance.device_time_ms", "reset.boot_count"),
            9,
            "steps[3].measure.from",
            "no reset step before this measurement",
        ),
        (_replace("min: 0, max: 30d", "min: 2, max: 1"), 9, "steps[3].measure.max", "below min"),
        (_replace(", min: 0, max: 30d", ""), 9, "steps[3].measure", "needs min or max"),
        (_replace("seed: 3", "seed: -1"), 4, "seed", "out of range"),
        (_replace("seed: 3", "seed: 3\nseed: 4"), 5, "seed", "duplicate field (first on line 4)"),
        (_replace("seed: 3", "needs: [plant]"), 4, "needs[0]", "unknown need 'plant'"),
        (_replace("id: example", "id: Has Spaces"), 1, "id", "is not an id"),
        (
            _replace("requirements: [REQ-X-1]", "requirements: REQ-X-1"),
            3,
            "requirements",
            "expected a list",
        ),
        (
            _replace(
                "  - ping:\n", "  - measure: {name: t, from: status.uptime_ms, unit: ms, max: 0}\n"
            ),
            11,
            "teardown[0].measure.name",
            "already defined on line 9",
        ),
    ],
)
def test_validation_names_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    (message,) = caught.value.problems
    assert message.startswith(f"{path}:{line}: {field}: "), message
    assert problem in message


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, _replace("{expect: {state: IDLE}}", "{expect: {state: IDLE}"))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(caught.value).startswith(f"{path}:8: (yaml): ")


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing here\n")
    with pytest.raises(ScenarioError, match="the file is empty"):
        load_scenario(path)


def test_unsafe_yaml_tag_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, _replace("title: An example", "title: !!python/name:os.system ''"))
    with pytest.raises(ScenarioError, match=rf"{path}:2: title: cannot read value"):
        load_scenario(path)


def test_every_bad_file_is_reported_before_anything_runs(tmp_path: Path) -> None:
    write(tmp_path, _replace("title:", "titel:"), "a.yaml")
    write(tmp_path, _replace("30d}", "30 days}"), "b.yaml")
    write(tmp_path, GOOD, "c.yaml")
    with pytest.raises(ScenarioError) as caught:
        load_scenarios([tmp_path])
    problems = caught.value.problems
    assert len(problems) == 2
    assert problems[0].startswith(f"{tmp_path / 'a.yaml'}:2: titel:")
    assert problems[1].startswith(f"{tmp_path / 'b.yaml'}:8: steps[2].advance.duration:")


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, GOOD, "b.yaml")
    with pytest.raises(ScenarioError, match=r"b\.yaml:1: id: 'example' is also the id of"):
        load_scenarios([tmp_path])


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScenarioError) as caught:
        load_scenarios([tmp_path / "nope.yaml", tmp_path / "empty"])
    assert [p.split(": ", 1)[1] for p in caught.value.problems] == [
        "no such scenario file or directory",
        "no *.yaml scenario files in this directory",
    ]


def test_a_command_names_the_role_it_is_sent_in(tmp_path: Path) -> None:
    text = _replace("  - hello: {}", "  - patient_bolus: {role: patient, refused: LOCKOUT}")
    (step, *_rest) = load_scenario(write(tmp_path, text)).steps
    assert step.role == schema.ROLE_PATIENT
    assert step.describe() == "patient_bolus as patient (expect refusal LOCKOUT)"
    bad = _replace("  - hello: {}", "  - patient_bolus: {role: admin}")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(write(tmp_path, bad, "bad.yaml"))
    (message,) = caught.value.problems
    assert "steps[0].patient_bolus.role: 'admin' is not a role: clinician, patient, none" in message
