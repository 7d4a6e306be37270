"""Scenario files: YAML data, validated in full before anything runs.

A scenario is data, not code, so that a verification engineer can read it
next to the requirement it covers, and so that a mistake in it is caught
before a board is touched. Every problem is reported as
``file:line: field: problem`` (bench/scenario/yamlnode.py keeps the marks).

The step model is bench/scenario/model.py; this module reads a file's top
level, and the step kinds (bench/scenario/steps/, one table) parse the steps.
bench/README.md is the reference for the format.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import vocab
from bench.link.errors import BenchError
from bench.scenario.model import (
    KNOWN_NEEDS,
    NEED_HARDWARE,
    NEED_RIG,
    AdvanceStep,
    ClearAlarmStep,
    ExpectAlarmStep,
    ExpectNoAlarmStep,
    ExpectStateStep,
    MeasureStep,
    PowerCutStep,
    PowerCycleStep,
    PowerOffStep,
    ResetStep,
    StatusStep,
    Step,
    walk,
)
from bench.scenario.parse import _ID, _REQUIREMENT, _Context, _duration, _names
from bench.scenario.steps import parse_steps
from bench.scenario.yamlnode import Invalid, Node, compose, listing

__all__ = [
    "KNOWN_NEEDS",
    "MAX_SEED",
    "NEED_HARDWARE",
    "NEED_RIG",
    "AdvanceStep",
    "MeasureStep",
    "Scenario",
    "ScenarioError",
    "StatusStep",
    "Step",
    "load_scenario",
    "load_scenarios",
    "parse_scenario",
]


MAX_SEED = 0xFFFF_FFFF  # the rig reports its seed as a 32-bit field


class ScenarioError(BenchError):
    """One or more scenario files are invalid; nothing has been run.

    Each problem is one line, ``file:line: field: problem``. It is a
    :class:`BenchError`: a bad scenario is the bench's fault, not the pump's.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Scenario:
    """A validated scenario file. ``needs`` includes what its steps need.

    ``xfail`` is the reason the scenario is expected to fail (a capability
    that has not landed); None for an ordinary scenario.
    """

    id: str
    title: str
    file: Path
    line: int
    requirements: tuple[str, ...]
    seed: int
    needs: frozenset[str]
    steps: tuple[Step, ...]
    teardown: tuple[Step, ...] = ()
    description: str = ""
    setup: tuple[Step, ...] = ()
    xfail: str | None = None
    trace_ms: int | None = None
    allow_alarms: tuple[int, ...] = ()

    @property
    def expected_alarms(self) -> frozenset[int]:
        """Alarms the scenario may see raised without failing (the bench-wide check).

        Those it names in any step (expected, waited for, ignored, cleared),
        those in ``allow_alarms``, and UNEXPECTED_RESET when it cuts the power or
        resets the board (the firmware had no clean shutdown).
        """
        allowed = set(self.allow_alarms)
        for step in walk((*self.setup, *self.steps, *self.teardown)):
            if isinstance(step, ExpectAlarmStep) and step.alarm is not None:
                allowed.add(step.alarm)
            elif isinstance(step, ExpectStateStep) and step.alarms:
                allowed.update(step.alarms)
            elif isinstance(step, ExpectNoAlarmStep):
                allowed.update(step.ignore)
            elif isinstance(step, ClearAlarmStep):
                allowed.add(step.alarm)
            elif isinstance(step, PowerOffStep | PowerCutStep | PowerCycleStep | ResetStep):
                allowed.add(vocab.ALARMS["UNEXPECTED_RESET"])
        return frozenset(allowed)

    @property
    def measurements(self) -> list[MeasureStep]:
        every = walk((*self.setup, *self.steps, *self.teardown))
        return [s for s in every if isinstance(s, MeasureStep)]

    @property
    def planned_ms(self) -> int:
        """The device time the scenario means to run; alarms may end it sooner."""
        return sum(s.planned_ms for s in (*self.setup, *self.steps, *self.teardown))


_TOP_REQUIRED = ("id", "title", "steps")


_TOP_OPTIONAL = (
    "description",
    "requirements",
    "seed",
    "needs",
    "xfail",
    "trace",
    "setup",
    "teardown",
    "allow_alarms",
)


def parse_scenario(text: str, file: str | Path) -> Scenario:
    """Parses and validates one scenario; raises ScenarioError with one problem."""
    try:
        top = compose(text, str(file))
        return _parse_top(top, Path(file))
    except Invalid as exc:
        raise ScenarioError([str(exc)]) from None


def _parse_top(top: Node, file: Path) -> Scenario:
    values = top.mapping(required=_TOP_REQUIRED, optional=_TOP_OPTIONAL)
    id_line = values["id"].line
    scenario_id = values["id"].string(_ID, "an id (lower case letters, digits, . _ -)")
    title = values["title"].string()
    description = values["description"].string() if "description" in values else ""
    requirements = (
        values["requirements"].string_list(_REQUIREMENT, "a requirement id (e.g. REQ-BENCH-003)")
        if "requirements" in values
        else []
    )
    seed = values["seed"].integer(0, MAX_SEED) if "seed" in values else 0
    xfail = values["xfail"].string() if "xfail" in values else None
    trace_ms = _duration(values["trace"]) if "trace" in values else None
    if trace_ms is not None and trace_ms <= 0:
        raise values["trace"].fail("a trace period must be above 0")
    needs: set[str] = set()
    if "needs" in values:
        for item in values["needs"].sequence():
            need = item.string()
            if need not in KNOWN_NEEDS:
                raise item.fail(f"unknown need {need!r}; known: {listing(KNOWN_NEEDS)}")
            needs.add(need)
    ctx = _Context(base_dir=file.parent, xfail=xfail is not None)
    allow_alarms = (
        _names(values["allow_alarms"], vocab.ALARMS, "alarm", ctx)
        if "allow_alarms" in values
        else ()
    )
    setup = parse_steps(values["setup"], ctx) if "setup" in values else []
    after_setup = ctx.branch()
    steps = parse_steps(values["steps"], ctx)
    if not steps:
        raise values["steps"].fail("a scenario needs at least one step")
    # Teardown runs even when the steps stopped early, so its measurements
    # may only read steps of the setup or the teardown itself.
    teardown = parse_steps(values["teardown"], after_setup) if "teardown" in values else []
    for step in walk((*setup, *steps, *teardown)):
        needs |= step.needs
    return Scenario(
        id=scenario_id,
        title=title,
        file=file,
        line=id_line,
        requirements=tuple(requirements),
        seed=seed,
        needs=frozenset(needs),
        steps=tuple(steps),
        teardown=tuple(teardown),
        description=description,
        setup=tuple(setup),
        xfail=xfail,
        trace_ms=trace_ms,
        allow_alarms=tuple(allow_alarms),
    )


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([f"{path}: cannot read ({exc.__class__.__name__}: {exc})"]) from None
    return parse_scenario(text, path)


def scenario_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files named on the command line; a directory stands for its *.yaml files."""
    files: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(path.glob("*.yaml"))
            if not found:
                problems.append(f"{path}: no *.yaml scenario files in this directory")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{path}: no such scenario file or directory")
    if problems:
        raise ScenarioError(problems)
    return files


def load_scenarios(paths: Iterable[str | Path]) -> list[Scenario]:
    """Loads and validates every scenario; reports every bad file at once."""
    problems: list[str] = []
    scenarios: list[Scenario] = []
    seen: dict[str, Path] = {}
    for path in scenario_files(paths):
        try:
            scenario = load_scenario(path)
        except ScenarioError as exc:
            problems.extend(exc.problems)
            continue
        if scenario.id in seen:
            if seen[scenario.id] == path:
                continue  # the same file named twice runs once
            problems.append(
                f"{path}:{scenario.line}: id: {scenario.id!r} is also the id of {seen[scenario.id]}"
            )
            continue
        seen[scenario.id] = path
        scenarios.append(scenario)
    if problems:
        raise ScenarioError(problems)
    return scenarios
