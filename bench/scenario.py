"""Scenario files: YAML data, validated in full before anything runs.

A scenario is data, not code, so that a verification engineer can read it
next to the requirement it covers, and so that a mistake in it is caught
before a board is touched. Every problem is reported as
``file:line: field: problem``: the file is parsed with ``yaml.compose`` and
the node marks give the line of every key and value.

The format is deliberately small; new step kinds are one dataclass, one
parser in ``_PARSERS`` and one executor in ``bench.runner``. bench/README.md
is the reference for the format.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from bench.errors import BenchError
from protocol import schema

# --- durations ---------------------------------------------------------------

DURATION_UNITS_MS = {"ms": 1, "s": 1_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_TERM = re.compile(r"\s*(\d+)\s*([a-z]+)\s*")

MAX_SEED = 0xFFFF_FFFF  # the rig reports its seed as a 32-bit field


def parse_duration(text: str) -> int:
    """``"30d"``, ``"1h 30min"``, ``"250ms"`` in milliseconds.

    Integers only, and a unit is always required: ``30`` could be seconds or
    milliseconds, and a dose scenario must not leave that to a guess. ``m`` is
    refused on purpose (minutes? months?); minutes are ``min``.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a duration is an integer with a unit: ms, s, min, h or d (e.g. 30d)")
    total = 0
    pos = 0
    while pos < len(text):
        match = _TERM.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError(
                f"{text!r} is not a duration: integers with ms, s, min, h or d (e.g. 30d, 1h 30min)"
            )
        number, unit = match.groups()
        if unit not in DURATION_UNITS_MS:
            hint = " (minutes are min)" if unit == "m" else ""
            raise ValueError(f"{text!r}: unknown unit {unit!r}{hint}; use ms, s, min, h or d")
        total += int(number) * DURATION_UNITS_MS[unit]
        pos = match.end()
    return total


# --- errors ------------------------------------------------------------------


class ScenarioError(BenchError):
    """One or more scenario files are invalid; nothing has been run.

    Each problem is one line, ``file:line: field: problem``. It is a
    :class:`BenchError`: a bad scenario is the bench's fault, not the pump's.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# --- the scenario model ------------------------------------------------------

NEED_RIG = "rig"
KNOWN_NEEDS = (NEED_RIG,)

# What a measure step may read: step kind -> field -> unit. Fields come from
# the schema (replies and the BOOT event) where the schema gives them a unit;
# the rest are computed by the runner (bench/README.md lists them).
_STATUS_FIELDS = schema.message_by_name("STATUS")[4]
_ADVANCE_FIELDS = schema.message_by_name("ADVANCE")[4]
_BOOT_FIELDS = schema.message_by_name("BOOT")[3]


def _units(fields: Iterable[tuple[str, str, str]]) -> dict[str, str]:
    return {name: unit for name, _fmt, unit in fields if unit}


MEASURABLE: dict[str, dict[str, str]] = {
    "status": _units(_STATUS_FIELDS),
    "advance": {**_units(_ADVANCE_FIELDS), "advanced_ms": "ms"},
    "ping": {"round_trip_ms": "ms"},
    "reset": {
        **_units(_BOOT_FIELDS),
        "boot_count_before": "count",
        "boot_count_increase": "count",
        "clock_jump_ms": "ms",
    },
}

STATE_CODES = {name: code for code, name in schema.STATES}
_STATUS_UNITS = {name: unit for name, _fmt, unit in _STATUS_FIELDS}


@dataclass(frozen=True)
class Step:
    """One step of a scenario; ``line`` and ``field`` place it in its file for messages."""

    KIND: ClassVar[str] = ""
    NEEDS: ClassVar[frozenset[str]] = frozenset()

    line: int
    field: str

    @property
    def needs(self) -> frozenset[str]:
        return self.NEEDS

    def describe(self) -> str:
        return self.KIND


@dataclass(frozen=True)
class HelloStep(Step):
    """Pump HELLO; the client refuses a protocol version or schema mismatch."""

    KIND: ClassVar[str] = "hello"


@dataclass(frozen=True)
class RigHelloStep(Step):
    """Rig RIG_HELLO; same version and schema check as the pump's."""

    KIND: ClassVar[str] = "rig_hello"
    NEEDS: ClassVar[frozenset[str]] = frozenset({NEED_RIG})


@dataclass(frozen=True)
class PingStep(Step):
    """PING on one port: proves the link answers, measures the round trip."""

    KIND: ClassVar[str] = "ping"
    port: str = schema.PORT_PUMP

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({NEED_RIG}) if self.port == schema.PORT_RIG else frozenset()

    def describe(self) -> str:
        return f"ping {self.port}"


@dataclass(frozen=True)
class StatusStep(Step):
    """STATUS, optionally checking field values (state by name)."""

    KIND: ClassVar[str] = "status"
    expect: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class AdvanceStep(Step):
    """Rig ADVANCE: runs device time forward (lockstep on a virtual board)."""

    KIND: ClassVar[str] = "advance"
    NEEDS: ClassVar[frozenset[str]] = frozenset({NEED_RIG})
    duration_ms: int = 0
    text: str = ""

    def describe(self) -> str:
        return f"advance {self.text}"


@dataclass(frozen=True)
class ResetStep(Step):
    """Rig RESET, then the pump's BOOT event with cause RIG_RESET."""

    KIND: ClassVar[str] = "reset"
    NEEDS: ClassVar[frozenset[str]] = frozenset({NEED_RIG})


@dataclass(frozen=True)
class MeasureStep(Step):
    """A named value from the last reply of an earlier step, judged against limits."""

    KIND: ClassVar[str] = "measure"
    name: str = ""
    source: str = ""  # a step kind, e.g. "status"
    source_field: str = ""  # a field of its reply, e.g. "device_time_ms"
    unit: str = ""
    min: int | float | None = None
    max: int | float | None = None

    @property
    def source_path(self) -> str:
        return f"{self.source}.{self.source_field}"

    def describe(self) -> str:
        return f"measure {self.name}"


@dataclass(frozen=True)
class Scenario:
    """A validated scenario file. ``needs`` includes what its steps need."""

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

    @property
    def measurements(self) -> list[MeasureStep]:
        return [s for s in (*self.steps, *self.teardown) if isinstance(s, MeasureStep)]


# --- reading YAML with line numbers -------------------------------------------


class _Invalid(Exception):
    """Internal: the first problem found in one file."""


class _Node:
    """A YAML node with its file and dotted field path, for precise errors."""

    def __init__(
        self, node: yaml.Node, file: str, path: str, constructor: Any, key_line: int = 0
    ) -> None:
        self.node = node
        self.file = file
        self.path = path
        self.key_line = key_line  # the line of the key naming this value, if any
        self._constructor = constructor

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1

    def fail(self, problem: str, line: int = 0) -> _Invalid:
        where = self.path or "(top level)"
        return _Invalid(f"{self.file}:{line or self.line}: {where}: {problem}")

    def child(self, node: yaml.Node, key: str, key_line: int = 0) -> _Node:
        path = f"{self.path}.{key}" if self.path else key
        return _Node(node, self.file, path, self._constructor, key_line)

    def item(self, node: yaml.Node, index: int) -> _Node:
        return _Node(node, self.file, f"{self.path}[{index}]", self._constructor)

    # --- shapes ---
    def mapping(
        self, required: Sequence[str] = (), optional: Sequence[str] = ()
    ) -> dict[str, _Node]:
        if self.is_null():
            values: dict[str, _Node] = {}
        elif not isinstance(self.node, yaml.MappingNode):
            raise self.fail(f"expected a mapping, got {self.kind_name()}")
        else:
            values = self.entries()
        allowed = (*required, *optional)
        for key, value in values.items():
            if key not in allowed:
                hint = _did_you_mean(key, allowed)
                raise value.fail(
                    f"unknown field {key!r}{hint}; allowed: {_list(allowed)}", value.key_line
                )
        for key in required:
            if key not in values:
                raise self.child(self.node, key).fail("missing (required)")
        return values

    def entries(self) -> dict[str, _Node]:
        values: dict[str, _Node] = {}
        for key_node, value_node in self.node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                raise self.fail("keys must be plain names", key_node.start_mark.line + 1)
            key = key_node.value
            if key in values:
                raise self.child(value_node, key).fail(
                    f"duplicate field (first on line {values[key].line})",
                    key_node.start_mark.line + 1,
                )
            values[key] = self.child(value_node, key, key_node.start_mark.line + 1)
        return values

    def sequence(self) -> list[_Node]:
        if self.is_null():
            return []
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.fail(f"expected a list, got {self.kind_name()}")
        return [self.item(node, i) for i, node in enumerate(self.node.value)]

    def is_null(self) -> bool:
        return isinstance(self.node, yaml.ScalarNode) and self.node.tag == "tag:yaml.org,2002:null"

    def kind_name(self) -> str:
        if isinstance(self.node, yaml.MappingNode):
            return "a mapping"
        if isinstance(self.node, yaml.SequenceNode):
            return "a list"
        return repr(self.node.value) if self.node.value != "" else "nothing"

    # --- scalars ---
    def scalar(self) -> Any:
        if not isinstance(self.node, yaml.ScalarNode):
            raise self.fail(f"expected a single value, got {self.kind_name()}")
        try:
            return self._constructor.construct_object(self.node, deep=True)
        except yaml.YAMLError as exc:
            raise self.fail(f"cannot read value ({_first_line(exc)})") from None

    def string(self, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        value = self.scalar()
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"expected text, got {self.kind_name()}")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(f"{value!r} is not {what}")
        return value

    def integer(self, low: int, high: int) -> int:
        value = self.scalar()
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"expected an integer, got {self.kind_name()}")
        if not low <= value <= high:
            raise self.fail(f"{value} is out of range {low}..{high}")
        return value

    def number(self) -> int | float:
        value = self.scalar()
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"expected a number, got {self.kind_name()}")
        return value

    def duration_ms(self) -> int:
        value = self.scalar()
        if isinstance(value, int) and not isinstance(value, bool):
            raise self.fail(f"{value} has no unit: write e.g. {value}ms or {value}s")
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.fail(str(exc)) from None

    def string_list(self, pattern: re.Pattern[str] | None = None, what: str = "") -> list[str]:
        return [item.string(pattern, what) for item in self.sequence()]


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _list(choices: Iterable[str]) -> str:
    return ", ".join(choices) or "none"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# --- parsing --------------------------------------------------------------------

_ID = re.compile(r"[a-z0-9][a-z0-9._-]*")
_REQUIREMENT = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")
_MEASURE_NAME = re.compile(r"[a-z][a-z0-9_]*")
_SOURCE = re.compile(r"([a-z_]+)\.([a-z_]+)")


@dataclass
class _Context:
    """What the steps parsed so far make available (for ``measure``)."""

    kinds_seen: set[str] = field(default_factory=set)
    measure_names: dict[str, int] = field(default_factory=dict)


def _parse_hello(node: _Node, line: int, _ctx: _Context) -> Step:
    node.mapping()
    return HelloStep(line, node.path)


def _parse_rig_hello(node: _Node, line: int, _ctx: _Context) -> Step:
    node.mapping()
    return RigHelloStep(line, node.path)


def _parse_ping(node: _Node, line: int, _ctx: _Context) -> Step:
    values = node.mapping(optional=("port",))
    port = schema.PORT_PUMP
    if "port" in values:
        port = values["port"].string()
        if port not in (schema.PORT_PUMP, schema.PORT_RIG):
            raise values["port"].fail(f"{port!r} is not a port: pump or rig")
    return PingStep(line, node.path, port=port)


def _parse_status(node: _Node, line: int, _ctx: _Context) -> Step:
    values = node.mapping(optional=("expect",))
    expect: dict[str, int] = {}
    if "expect" in values:
        for name, value in values["expect"].mapping(optional=tuple(_STATUS_UNITS)).items():
            if name == "state":
                state = value.string()
                if state not in STATE_CODES:
                    raise value.fail(f"unknown state {state!r}; states: {_list(STATE_CODES)}")
                expect[name] = STATE_CODES[state]
            elif _STATUS_UNITS[name] == "ms" and not isinstance(value.scalar(), int):
                expect[name] = value.duration_ms()
            else:
                expect[name] = value.integer(0, 2**64 - 1)
    return StatusStep(line, node.path, expect=expect)


def _parse_advance(node: _Node, line: int, _ctx: _Context) -> Step:
    values = node.mapping(required=("duration",))
    duration = values["duration"]
    return AdvanceStep(line, node.path, duration_ms=duration.duration_ms(), text=duration.scalar())


def _parse_reset(node: _Node, line: int, _ctx: _Context) -> Step:
    node.mapping()
    return ResetStep(line, node.path)


def _parse_measure(node: _Node, line: int, ctx: _Context) -> Step:
    values = node.mapping(required=("name", "from", "unit"), optional=("min", "max"))
    name = values["name"].string(_MEASURE_NAME, "a name (lower case, digits, _)")
    if name in ctx.measure_names:
        raise values["name"].fail(
            f"measurement {name!r} already defined on line {ctx.measure_names[name]}"
        )
    source_node = values["from"]
    source_text = source_node.string()
    match = _SOURCE.fullmatch(source_text)
    if match is None or match.group(1) not in MEASURABLE:
        raise source_node.fail(
            f"{source_text!r} is not step.field; measurable steps: {_list(MEASURABLE)}"
        )
    source, source_field = match.groups()
    fields = MEASURABLE[source]
    if source_field not in fields:
        raise source_node.fail(
            f"{source} has no measurable field {source_field!r}"
            f"{_did_you_mean(source_field, fields)}; fields: {_list(fields)}"
        )
    if source not in ctx.kinds_seen:
        raise source_node.fail(f"no {source} step before this measurement to take the value from")
    unit = values["unit"].string()
    if unit != fields[source_field]:
        raise values["unit"].fail(
            f"{source_text} is in {fields[source_field]}, not {unit!r} (no conversions yet)"
        )
    limits: dict[str, int | float] = {}
    for key in ("min", "max"):
        if key in values:
            is_text = isinstance(values[key].scalar(), str)
            limits[key] = (
                values[key].duration_ms() if unit == "ms" and is_text else values[key].number()
            )
    if not limits:
        raise node.fail("needs min or max: a measurement without limits checks nothing")
    if "min" in limits and "max" in limits and limits["min"] > limits["max"]:
        raise values["max"].fail(f"max {limits['max']} is below min {limits['min']}")
    ctx.measure_names[name] = line
    return MeasureStep(
        line,
        node.path,
        name=name,
        source=source,
        source_field=source_field,
        unit=unit,
        min=limits.get("min"),
        max=limits.get("max"),
    )


_PARSERS: dict[str, Callable[[_Node, int, _Context], Step]] = {
    "hello": _parse_hello,
    "rig_hello": _parse_rig_hello,
    "ping": _parse_ping,
    "status": _parse_status,
    "advance": _parse_advance,
    "reset": _parse_reset,
    "measure": _parse_measure,
}
STEP_KINDS = tuple(_PARSERS)


def _parse_steps(node: _Node, ctx: _Context) -> list[Step]:
    steps: list[Step] = []
    for item in node.sequence():
        entries = item.node.value if isinstance(item.node, yaml.MappingNode) else ()
        if len(entries) != 1:
            raise item.fail(f"a step is one `kind: {{fields}}` entry; kinds: {_list(STEP_KINDS)}")
        ((kind, body),) = item.entries().items()
        if kind not in _PARSERS:
            raise body.fail(
                f"unknown step kind {kind!r}{_did_you_mean(kind, STEP_KINDS)}; "
                f"kinds: {_list(STEP_KINDS)}",
                body.key_line,
            )
        step = _PARSERS[kind](body, item.line, ctx)
        ctx.kinds_seen.add(kind)
        steps.append(step)
    return steps


_TOP_REQUIRED = ("id", "title", "steps")
_TOP_OPTIONAL = ("description", "requirements", "seed", "needs", "teardown")


def parse_scenario(text: str, file: str | Path) -> Scenario:
    """Parses and validates one scenario; raises ScenarioError with one problem."""
    name = str(file)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "unreadable"
        context = exc.context_mark
        if exc.problem and exc.context and context is not None and context is not mark:
            # PyYAML often notices a missing bracket only at the end of the
            # file; the line where the unclosed construct started helps more.
            problem += f" ({exc.context} on line {context.line + 1})"
        raise ScenarioError([f"{name}:{line}: (yaml): {problem}"]) from None
    except yaml.YAMLError as exc:
        raise ScenarioError([f"{name}:1: (yaml): {_first_line(exc)}"]) from None
    if root is None:
        raise ScenarioError([f"{name}:1: (top level): the file is empty"])
    top = _Node(root, name, "", yaml.constructor.SafeConstructor())
    try:
        return _parse_top(top, Path(file))
    except _Invalid as exc:
        raise ScenarioError([str(exc)]) from None


def _parse_top(top: _Node, file: Path) -> Scenario:
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
    needs: set[str] = set()
    if "needs" in values:
        for item in values["needs"].sequence():
            need = item.string()
            if need not in KNOWN_NEEDS:
                raise item.fail(f"unknown need {need!r}; known: {_list(KNOWN_NEEDS)}")
            needs.add(need)
    ctx = _Context()
    steps = _parse_steps(values["steps"], ctx)
    if not steps:
        raise values["steps"].fail("a scenario needs at least one step")
    # Teardown runs even when the steps stopped early, so its measurements
    # may only read steps of the teardown itself.
    teardown = (
        _parse_steps(values["teardown"], _Context(measure_names=ctx.measure_names))
        if ("teardown" in values)
        else []
    )
    for step in (*steps, *teardown):
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
