"""Scenario files: YAML data, validated in full before anything runs.

A scenario is data, not code, so that a verification engineer can read it
next to the requirement it covers, and so that a mistake in it is caught
before a board is touched. Every problem is reported as
``file:line: field: problem`` (bench/scenario/yamlnode.py keeps the marks).

The step model is bench/scenario/model.py; this module turns YAML into it. A new step
kind is one dataclass there, one parser in ``_PARSERS`` here and one handler
in bench/scenario/executor.py. bench/README.md is the reference for the format.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from bench import units, vocab
from bench.link.client import BOLUS_KIND_NAMES, BOLUS_KINDS, MODE_NAMES
from bench.link.errors import BenchError
from bench.program import file as pf
from bench.scenario.model import (
    KNOWN_NEEDS,
    NEED_HARDWARE,
    NEED_RIG,
    QUANTITIES,
    WINDOW_QUANTITIES,
    AdvanceStep,
    BolusStep,
    CancelBolusStep,
    CancelProgramStep,
    ClearAlarmStep,
    ClearFaultStep,
    ConfirmStep,
    ExpectAlarmStep,
    ExpectLogStep,
    ExpectNoAlarmStep,
    ExpectStateStep,
    FlowAccuracyStep,
    HelloStep,
    InjectFaultStep,
    MarkStep,
    MeasureStep,
    NewCatheterStep,
    PatientBolusStep,
    PingStep,
    PowerCutStep,
    PowerCycleStep,
    PowerOffStep,
    PowerOnStep,
    ProgramStep,
    RefillStep,
    Refusal,
    RepeatStep,
    ResetStep,
    RigHelloStep,
    SetClockStep,
    StartStep,
    StatusStep,
    Step,
    StopStep,
    walk,
    window_label,
)
from bench.scenario.yamlnode import Invalid, Node, compose, did_you_mean, listing
from protocol import schema

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


# --- errors ------------------------------------------------------------------


class ScenarioError(BenchError):
    """One or more scenario files are invalid; nothing has been run.

    Each problem is one line, ``file:line: field: problem``. It is a
    :class:`BenchError`: a bad scenario is the bench's fault, not the pump's.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# --- the scenario ---------------------------------------------------------------


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


# --- what a measure step can read ---------------------------------------------------


def _units(message: str, reply: bool = True) -> dict[str, str]:
    return {name: unit for name, unit in vocab.fields_of(message, reply).items() if unit}


_BOOT = {
    **_units("BOOT"),
    "boot_count_before": "count",
    "boot_count_increase": "count",
    "clock_jump_ms": "ms",
}
_STATUS_UNITS = vocab.fields_of("STATUS")

# step kind -> field -> wire unit. flow_accuracy adds its windows per step.
MEASURABLE: dict[str, dict[str, str]] = {
    "status": _units("STATUS"),
    "advance": {"device_time_ms": "ms", "advanced_ms": "ms"},
    "ping": {"round_trip_ms": "ms"},
    "reset": dict(_BOOT),
    "power_on": dict(_BOOT),
    "power_cycle": dict(_BOOT),
    "program": {"max_daily_nl": "nL", "max_hourly_nl": "nL"},
    "bolus": {"volume_nl": "nL"},
    "patient_bolus": {"volume_nl": "nL", "lockout_left_s": "s"},
    "cancel_bolus": {"delivered_nl": "nL"},
    "refill": {
        "withdrawn_nl": "nL",
        "added_nl": "nL",
        "expected_nl": "nL",
        "discrepancy_nl": "nL",
        "flagged": "count",
        "refill_date_s": "s",
    },
    "expect_alarm": {
        "time_to_alarm_ms": "ms",
        "device_time_ms": "ms",
        "pressure_at_alarm": "0.1 mmHg",
    },
    "expect_state": {"time_to_state_ms": "ms", "device_time_ms": "ms"},
    "expect_log": {"count": "count"},
    "flow_accuracy": {
        "mean_error_pct": "%",
        "startup_error_pct": "%",
        "rate_nl_day": "nL/day",
        "volume_nl": "nL",
        "scale": "count",
    },
}
# Fields that only exist once the safety issue's schema has them.
_PRESSURE_IN_STATUS = "pressure_x10" in _STATUS_UNITS
_FUTURE_FIELDS = {("expect_alarm", "pressure_at_alarm")} if not _PRESSURE_IN_STATUS else set()

STATE_CODES = vocab.STATES
MODE_CODES = {name: code for code, name in enumerate(MODE_NAMES)}
BOLUS_CODES = {name: code for code, name in enumerate(BOLUS_KIND_NAMES)}
REFUSAL_CODES = {name: code for name, code in vocab.ERRORS.items() if code >= vocab.REFUSAL_LIMIT}
IMPLICIT_MARKS = ("start",)  # the scenario's first instant, after the preamble


# --- parsing context ------------------------------------------------------------------


@dataclass
class _Context:
    """What the steps parsed so far make available, and what the file allows."""

    base_dir: Path
    xfail: bool = False
    kinds_seen: set[str] = field(default_factory=set)
    measure_names: dict[str, int] = field(default_factory=dict)
    marks: set[str] = field(default_factory=lambda: set(IMPLICIT_MARKS))
    measurable: dict[str, dict[str, str]] = field(
        default_factory=lambda: {kind: dict(fields) for kind, fields in MEASURABLE.items()}
    )
    in_repeat: bool = False

    def branch(self) -> _Context:
        """A context for the teardown: it may run after any step, so it knows only the setup."""
        return _Context(
            base_dir=self.base_dir,
            xfail=self.xfail,
            measure_names=self.measure_names,
            measurable=self.measurable,
        )


_ID = re.compile(r"[a-z0-9][a-z0-9._-]*")
_REQUIREMENT = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_SOURCE = re.compile(r"([a-z_]+)\.([a-z0-9_]+)")


def _duration(node: Node) -> int:
    value = node.scalar()
    if isinstance(value, int) and not isinstance(value, bool):
        raise node.fail(f"{value} has no unit: write e.g. {value}ms or {value}s")
    try:
        return units.duration_ms(value)
    except ValueError as exc:
        raise node.fail(str(exc)) from None


def _name_from(
    node: Node, table: dict[str, int], what: str, ctx: _Context, plural: str = ""
) -> tuple[int | None, str, str | None]:
    """(id, NAME, missing) for a name in a schema table; unknown names only under xfail."""
    value = node.scalar()
    if isinstance(value, int) and not isinstance(value, bool):
        names = {code: name for name, code in table.items()}
        if value in names:
            return value, names[value], None
        raise node.fail(f"{value} is no {what} id; {plural or what + 's'}: {listing(table)}")
    text = node.string().upper()
    if text in table:
        return table[text], text, None
    hint = did_you_mean(text, table)
    if ctx.xfail:
        missing = f"the schema has no {what} {text!r} yet{hint}"
        return None, text, missing
    raise node.fail(
        f"unknown {what} {text!r}{hint}; {plural or what + 's'}: {listing(table)} "
        f"(a scenario waiting for a new {what} is marked xfail)"
    )


def _names(node: Node, table: dict[str, int], what: str, ctx: _Context) -> tuple[int, ...]:
    ids: list[int] = []
    for item in node.sequence():
        code, _name, missing = _name_from(item, table, what, ctx)
        if code is None:
            raise item.fail(f"{missing}; a list cannot wait for it")
        ids.append(code)
    return tuple(ids)


def _refusal(node: Node) -> Refusal:
    """``refused: LOCKOUT`` or ``refused: {code: HARD_LIMIT, limit: daily_hard}``."""
    if node.is_mapping():
        values = node.mapping(required=("code",), optional=("limit",))
        code_node = values["code"]
    else:
        values = {}
        code_node = node
    name = code_node.string().upper()
    if name not in REFUSAL_CODES:
        raise code_node.fail(
            f"{name!r} is not a refusal{did_you_mean(name, REFUSAL_CODES)}; "
            f"refusals: {listing(REFUSAL_CODES)}"
        )
    code = REFUSAL_CODES[name]
    if "limit" not in values:
        return Refusal(code)
    if code not in (schema.HARD_LIMIT, schema.SOFT_LIMIT):
        raise values["limit"].fail("a limit goes with HARD_LIMIT or SOFT_LIMIT")
    limit = values["limit"].string()
    if limit not in vocab.LIMITS:
        raise values["limit"].fail(
            f"unknown limit {limit!r}{did_you_mean(limit, vocab.LIMITS)}; "
            f"limits: {listing(vocab.LIMITS)}"
        )
    return Refusal(code, vocab.LIMITS[limit])


def _refused(values: dict[str, Node]) -> Refusal | None:
    return _refusal(values["refused"]) if "refused" in values else None


# What every pump command takes besides its own fields: the refusal it
# expects, and the session role it is sent in (protocol/SPEC.md section 21).
_COMMAND_OWN = ("refused", "role")
ROLES = {
    "clinician": schema.ROLE_CLINICIAN,
    "patient": schema.ROLE_PATIENT,
    "none": schema.ROLE_READ_ONLY,
}


def _command(values: dict[str, Node]) -> dict[str, Any]:
    """``refused`` and ``role`` of a command step."""
    role = None
    if "role" in values:
        word = values["role"].string()
        if word not in ROLES:
            raise values["role"].fail(f"{word!r} is not a role: {listing(ROLES)}")
        role = ROLES[word]
    return {"refused": _refused(values), "role": role}


# --- step parsers -----------------------------------------------------------------------


def _parse_hello(node: Node, line: int, _ctx: _Context) -> Step:
    node.mapping()
    return HelloStep(line, node.path)


def _parse_rig_hello(node: Node, line: int, _ctx: _Context) -> Step:
    node.mapping()
    return RigHelloStep(line, node.path)


def _parse_ping(node: Node, line: int, _ctx: _Context) -> Step:
    values = node.mapping(optional=("port",))
    port = schema.PORT_PUMP
    if "port" in values:
        port = values["port"].string()
        if port not in (schema.PORT_PUMP, schema.PORT_RIG):
            raise values["port"].fail(f"{port!r} is not a port: pump or rig")
    return PingStep(line, node.path, port=port)


def _parse_status(node: Node, line: int, _ctx: _Context) -> Step:
    values = node.mapping(optional=("expect",))
    expect: dict[str, int] = {}
    if "expect" in values:
        for name, value in values["expect"].mapping(optional=tuple(_STATUS_UNITS)).items():
            if name == "state":
                state = value.string()
                if state not in STATE_CODES:
                    raise value.fail(f"unknown state {state!r}; states: {listing(STATE_CODES)}")
                expect[name] = STATE_CODES[state]
            elif _STATUS_UNITS[name] == "ms" and not isinstance(value.scalar(), int):
                expect[name] = _duration(value)
            else:
                expect[name] = value.integer(0, 2**64 - 1)
    return StatusStep(line, node.path, expect=expect)


def _parse_advance(node: Node, line: int, _ctx: _Context) -> Step:
    values = node.mapping(required=("duration",), optional=("sample",))
    duration = values["duration"]
    sample = _duration(values["sample"]) if "sample" in values else 0
    if "sample" in values and sample <= 0:
        raise values["sample"].fail("a sample interval must be above 0")
    return AdvanceStep(
        line,
        node.path,
        duration_ms=_duration(duration),
        text=str(duration.scalar()),
        sample_ms=sample,
    )


def _parse_reset(node: Node, line: int, _ctx: _Context) -> Step:
    node.mapping()
    return ResetStep(line, node.path)


def _parse_power_off(node: Node, line: int, _ctx: _Context) -> Step:
    node.mapping()
    return PowerOffStep(line, node.path)


def _parse_power_on(node: Node, line: int, _ctx: _Context) -> Step:
    node.mapping()
    return PowerOnStep(line, node.path)


def _parse_power_cut(node: Node, line: int, _ctx: _Context) -> Step:
    values = node.mapping(optional=("after", "after_bytes"))
    if ("after" in values) == ("after_bytes" in values):
        raise node.fail("give one of after (device time) or after_bytes (journal bytes)")
    if "after" in values:
        return PowerCutStep(line, node.path, after_ms=_duration(values["after"]))
    return PowerCutStep(line, node.path, after_bytes=values["after_bytes"].integer(0, 2**32 - 1))


def _parse_power_cycle(node: Node, line: int, _ctx: _Context) -> Step:
    values = node.mapping(optional=("off_for",))  # not `off`: YAML reads that as false
    off = _duration(values["off_for"]) if "off_for" in values else 0
    return PowerCycleStep(line, node.path, off_ms=off)


def _program_problem(node: Node, problem: str) -> Invalid:
    """A programfile problem (``inline: key: text``) pointed at that key's line."""
    _file, _sep, rest = problem.partition(": ")
    key, sep, text = rest.partition(": ")
    if not sep:
        return node.fail(rest)
    target = node.find(key)
    if target is node:  # the key is absent (e.g. missing): point at the program
        return node.child(node.node, key).fail(text)
    raw = target.node.value if isinstance(target.node.value, str) else ""
    if ":" in raw and isinstance(target.value(), int):
        text += f' (write "{raw}" in quotes: YAML reads {raw} as a number)'
    return target.fail(text, target.key_line or target.line)


_PROGRAM_OWN = ("file", "confirm", *_COMMAND_OWN)


def _parse_program(node: Node, line: int, ctx: _Context) -> Step:
    values = node.mapping(optional=(*_PROGRAM_OWN, *pf.TOP_KEYS))
    inline = {key: value for key, value in values.items() if key not in _PROGRAM_OWN}
    confirm = values["confirm"].boolean() if "confirm" in values else False
    command = _command(values)
    refused = command["refused"]
    if "file" in values:
        if inline:
            key = next(iter(inline))
            raise inline[key].fail(
                "give a program file or inline fields, not both", inline[key].key_line
            )
        file_node = values["file"]
        path = ctx.base_dir / file_node.string()
        try:
            fields = pf.load_program(path)
        except pf.ProgramFileError as exc:
            raise file_node.fail("; ".join(exc.problems)) from None
        origin = file_node.string()
    else:
        if not inline:
            raise node.fail(
                "needs a program: file: PATH, or the program's fields inline (drug, ...)"
            )
        data = {key: value.value() for key, value in inline.items()}
        try:
            fields = pf.parse_program(data, "inline")
        except pf.ProgramFileError as exc:
            raise _program_problem(node, exc.problems[0]) from None
        origin = "inline"
    if confirm and refused is not None:
        raise values["confirm"].fail("a program expected to be refused cannot be confirmed")
    return ProgramStep(line, node.path, **command, fields=fields, origin=origin, confirm=confirm)


def _parse_confirm(node: Node, line: int, ctx: _Context) -> Step:
    values = node.mapping(optional=_COMMAND_OWN)
    if "program" not in ctx.kinds_seen:
        raise node.fail("no program step before this confirm: nothing is pending")
    return ConfirmStep(line, node.path, **_command(values))


def _parse_cancel_program(node: Node, line: int, _ctx: _Context) -> Step:
    node.mapping()
    return CancelProgramStep(line, node.path)


def _parse_start(node: Node, line: int, _ctx: _Context) -> Step:
    return StartStep(line, node.path, **_command(node.mapping(optional=_COMMAND_OWN)))


def _parse_stop(node: Node, line: int, _ctx: _Context) -> Step:
    node.mapping()
    return StopStep(line, node.path)


def _parse_bolus(node: Node, line: int, _ctx: _Context) -> Step:
    values = node.mapping(
        optional=(
            "volume",
            "dose",
            "duration",
            "kind",
            "catheter",
            "nl_per_cm",
            "override_soft",
            *_COMMAND_OWN,
        )
    )
    kind = values["kind"].string() if "kind" in values else "clinician"
    if kind not in BOLUS_KINDS:
        raise values["kind"].fail(f"{kind!r} is not a bolus kind: {listing(BOLUS_KINDS)}")
    volume = values["volume"].parsed(units.volume_nl) if "volume" in values else 0
    dose = values["dose"].parsed(units.dose_ng) if "dose" in values else 0
    catheter = values["catheter"].parsed(units.length_mm) if "catheter" in values else 0
    nl_per_cm = values["nl_per_cm"].integer(1, 0xFFFF) if "nl_per_cm" in values else 2_600
    if kind == "clinician":
        if ("volume" in values) == ("dose" in values):
            raise node.fail("a clinician bolus needs volume or dose (one of them)")
        if "catheter" in values:
            raise values["catheter"].fail("catheter goes with kind priming or bridge")
    elif "volume" in values or "dose" in values:
        raise node.fail(
            f"the pump works out a {kind} bolus from its drug path (SPEC 22.3): "
            "give no volume or dose (catheter: the one just fitted, optional)"
        )
    return BolusStep(
        line,
        node.path,
        **_command(values),
        kind=kind,
        volume_nl=volume,
        dose_ng=dose,
        duration_s=values["duration"].parsed(units.duration_s) if "duration" in values else 0,
        catheter_mm=catheter,
        nl_per_cm=nl_per_cm if catheter else 0,
        override_soft=values["override_soft"].boolean() if "override_soft" in values else False,
    )


def _parse_patient_bolus(node: Node, line: int, _ctx: _Context) -> Step:
    values = node.mapping(optional=_COMMAND_OWN)
    return PatientBolusStep(line, node.path, **_command(values))


def _parse_cancel_bolus(node: Node, line: int, _ctx: _Context) -> Step:
    node.mapping()
    return CancelBolusStep(line, node.path)


def _parse_refill(node: Node, line: int, _ctx: _Context) -> Step:
    values = node.mapping(
        required=("volume",),
        optional=("withdrawn", "flagged", "drug", "concentration", "with_program", *_COMMAND_OWN),
    )
    drug_id = None
    conc = None
    if "drug" in values:
        name = values["drug"].string().lower()
        if name not in pf.DRUGS:
            raise values["drug"].fail(f"unknown drug {name!r}; the library has {listing(pf.DRUGS)}")
        drug_id = pf.DRUGS[name]
        if "concentration" not in values:
            raise values["drug"].fail("drug goes with its concentration")
        conc = values["concentration"].parsed(pf.parse_concentration_ug_ml)
    elif "concentration" in values:
        raise values["concentration"].fail("concentration goes with drug")
    return RefillStep(
        line,
        node.path,
        **_command(values),
        drug_id=drug_id,
        conc_ug_ml=conc,
        with_program=values["with_program"].boolean() if "with_program" in values else False,
        volume_nl=values["volume"].parsed(units.volume_nl),
        withdrawn_nl=values["withdrawn"].parsed(units.volume_nl) if "withdrawn" in values else None,
        flagged=values["flagged"].boolean() if "flagged" in values else None,
    )


def _parse_clear_alarm(node: Node, line: int, ctx: _Context) -> Step:
    values = node.mapping(required=("alarm",), optional=_COMMAND_OWN)
    code, name, missing = _name_from(values["alarm"], vocab.ALARMS, "alarm", ctx)
    if code is None:
        raise values["alarm"].fail(f"{missing}; clear_alarm needs one the pump has")
    return ClearAlarmStep(line, node.path, **_command(values), alarm=code, alarm_name=name)


def _parse_set_clock(node: Node, line: int, _ctx: _Context) -> Step:
    values = node.mapping(required=("offset",))
    offset_ms = _duration(values["offset"])
    if offset_ms % 1000:
        raise values["offset"].fail("the pump's clock offset is whole seconds")
    return SetClockStep(line, node.path, offset_s=offset_ms // 1000)


def _parse_new_catheter(node: Node, line: int, _ctx: _Context) -> Step:
    values = node.mapping(required=("volume",))
    volume = values["volume"].parsed(units.volume_nl)
    if not 2_600 <= volume <= 520_000:
        raise values["volume"].fail("a catheter holds 2.6 uL (1 cm) to 520 uL (200 cm)")
    return NewCatheterStep(line, node.path, volume_nl=volume)


def _parse_inject_fault(node: Node, line: int, ctx: _Context) -> Step:
    values = node.mapping(required=("fault",), optional=("param", "onset"))
    code, name, missing = _name_from(values["fault"], vocab.FAULTS, "fault", ctx)
    param = values["param"].integer(-(2**31), 2**31 - 1) if "param" in values else 0
    onset = _duration(values["onset"]) if "onset" in values else 0
    if onset and "onset_ms" not in vocab.fields_of("INJECT_FAULT", reply=False):
        if not ctx.xfail:
            raise values["onset"].fail(
                "this schema's INJECT_FAULT has no onset "
                "(a scenario waiting for it is marked xfail)"
            )
        missing = missing or "the schema's INJECT_FAULT has no onset yet"
    ctx.marks.add("fault")
    return InjectFaultStep(
        line, node.path, fault=code, fault_name=name, param=param, onset_ms=onset, missing=missing
    )


def _parse_clear_fault(node: Node, line: int, ctx: _Context) -> Step:
    values = node.mapping(optional=("fault",))
    ctx.marks.add("fault_cleared")
    if "fault" not in values:
        return ClearFaultStep(line, node.path)
    code, name, missing = _name_from(values["fault"], vocab.FAULTS, "fault", ctx)
    if code is None:
        raise values["fault"].fail(f"{missing}; clear every fault with clear_fault: {{}}")
    return ClearFaultStep(line, node.path, fault=code, fault_name=name)


def _slice(values: dict[str, Node], total_ms: int) -> int:
    """The slice of an advance that polls for an alarm: given, or 1/100 of the span."""
    if "slice" in values:
        value = _duration(values["slice"])
        if value <= 0:
            raise values["slice"].fail("a slice must be above 0")
        return value
    return max(100, total_ms // 100)


def _since(values: dict[str, Node], ctx: _Context) -> str | None:
    if "since" not in values:
        return None
    mark = values["since"].string(_NAME, "a mark name (lower case, digits, _)")
    if mark not in ctx.marks:
        raise values["since"].fail(
            f"no mark {mark!r} before this step{did_you_mean(mark, ctx.marks)}; "
            f"marks so far: {listing(sorted(ctx.marks))}"
        )
    return mark


def _parse_expect_alarm(node: Node, line: int, ctx: _Context) -> Step:
    values = node.mapping(required=("alarm",), optional=("within", "slice", "since"))
    code, name, missing = _name_from(values["alarm"], vocab.ALARMS, "alarm", ctx)
    within = _duration(values["within"]) if "within" in values else 0
    return ExpectAlarmStep(
        line,
        node.path,
        alarm=code,
        alarm_name=name,
        within_ms=within,
        slice_ms=_slice(values, within),
        since=_since(values, ctx),
        missing=missing,
    )


def _parse_expect_no_alarm(node: Node, line: int, ctx: _Context) -> Step:
    values = node.mapping(optional=("for", "alarms", "ignore", "slice"))
    span = _duration(values["for"]) if "for" in values else 0
    alarms = _names(values["alarms"], vocab.ALARMS, "alarm", ctx) if "alarms" in values else ()
    ignore = _names(values["ignore"], vocab.ALARMS, "alarm", ctx) if "ignore" in values else ()
    if alarms and ignore:
        raise values["ignore"].fail("give alarms (these only) or ignore (all but these), not both")
    return ExpectNoAlarmStep(
        line,
        node.path,
        alarms=alarms,
        ignore=ignore,
        for_ms=span,
        slice_ms=_slice(values, span) if span else 0,
    )


def _code_of(node: Node, table: dict[str, int], what: str) -> int:
    name = node.string().upper()
    if name not in table:
        raise node.fail(
            f"unknown {what} {name!r}{did_you_mean(name, table)}; {what}s: {listing(table)}"
        )
    return table[name]


def _parse_expect_state(node: Node, line: int, ctx: _Context) -> Step:
    values = node.mapping(optional=("state", "alarms", "mode", "bolus", "within", "slice", "since"))
    if not {"state", "alarms", "mode", "bolus"} & set(values):
        raise node.fail("expects something: state, alarms, mode or bolus")
    within = _duration(values["within"]) if "within" in values else 0
    return ExpectStateStep(
        line,
        node.path,
        state=_code_of(values["state"], STATE_CODES, "state") if "state" in values else None,
        alarms=_names(values["alarms"], vocab.ALARMS, "alarm", ctx) if "alarms" in values else None,
        mode=_code_of(values["mode"], MODE_CODES, "mode") if "mode" in values else None,
        bolus=_code_of(values["bolus"], BOLUS_CODES, "bolus kind") if "bolus" in values else None,
        within_ms=within,
        slice_ms=_slice(values, within) if within else 0,
        since=_since(values, ctx),
    )


def _parse_expect_log(node: Node, line: int, ctx: _Context) -> Step:
    values = node.mapping(required=("event",), optional=("since", "count", "min_count"))
    code = _code_of(values["event"], vocab.LOG_EVENTS, "log event")
    count = values["count"].integer(0, 100_000) if "count" in values else None
    min_count = values["min_count"].integer(0, 100_000) if "min_count" in values else 1
    if count is not None and "min_count" in values:
        raise values["min_count"].fail("give count (exactly) or min_count (at least), not both")
    return ExpectLogStep(
        line,
        node.path,
        event=code,
        event_name=values["event"].string().upper(),
        since=_since(values, ctx),
        count=count,
        min_count=min_count,
    )


def _parse_mark(node: Node, line: int, ctx: _Context) -> Step:
    values = node.mapping(required=("name",))
    name = values["name"].string(_NAME, "a mark name (lower case, digits, _)")
    ctx.marks.add(name)
    return MarkStep(line, node.path, name=name)


def _parse_flow_accuracy(node: Node, line: int, ctx: _Context) -> Step:
    values = node.mapping(
        optional=("sample", "period", "analysis_from", "windows", "scale", "strokes_per_window")
    )
    defaults = FlowAccuracyStep(line, node.path)
    sample = _duration(values["sample"]) if "sample" in values else defaults.sample_ms
    period = _duration(values["period"]) if "period" in values else defaults.period_ms
    start = (
        _duration(values["analysis_from"])
        if "analysis_from" in values
        else defaults.analysis_from_ms
    )
    windows = (
        tuple(_duration(item) for item in values["windows"].sequence())
        if "windows" in values
        else defaults.windows_ms
    )
    scale: int | None = None
    if "scale" in values and values["scale"].scalar() != "auto":
        scale = values["scale"].integer(1, 10_000)
    strokes = (
        values["strokes_per_window"].integer(1, 10_000)
        if "strokes_per_window" in values
        else defaults.strokes_per_window
    )
    if sample <= 0 or period % sample:
        raise node.fail(f"the period ({period} ms) must be a whole number of samples ({sample} ms)")
    if not 0 <= start < period or start % sample:
        raise node.fail("analysis_from must be a whole number of samples inside the period")
    for window in windows:
        if window <= 0 or window % sample or window > period - start:
            raise node.fail(
                f"window {window} ms must be a whole number of samples within the analysis period"
            )
    fields = ctx.measurable["flow_accuracy"]
    for window in windows:
        label = window_label(window)
        fields[f"ep_max_{label}"] = "%"
        fields[f"ep_min_{label}"] = "%"
    return FlowAccuracyStep(
        line,
        node.path,
        sample_ms=sample,
        period_ms=period,
        analysis_from_ms=start,
        windows_ms=windows,
        scale=scale,
        strokes_per_window=strokes,
    )


def _tidy(value: int | float) -> int | float:
    return round(value, 9) if isinstance(value, float) else value


def _number(value: Fraction) -> int | float:
    """An exact value as the step holds it: an int, or a float when it has a fraction."""
    return value.numerator if value.denominator == 1 else float(value)


def _limit(node: Node, unit: str) -> int | float:
    value = node.scalar()
    if isinstance(value, bool):
        raise node.fail(f"expected a number or a quantity in {unit}, got {node.kind_name()}")
    if isinstance(value, int | float):
        return value
    try:
        return _number(units.parse(str(value), unit, bare=True, signed=True))
    except ValueError as exc:
        raise node.fail(str(exc)) from None


def _measure_source(values: dict[str, Node], ctx: _Context) -> tuple[str, str, str, str | None]:
    """(step kind or "", field or quantity, wire unit, missing) of ``from``."""
    source_node = values["from"]
    text = source_node.string()
    match = _SOURCE.fullmatch(text)
    if match is None:
        if text not in QUANTITIES:
            raise source_node.fail(
                f"{text!r} is neither step.field nor a quantity{did_you_mean(text, QUANTITIES)}; "
                f"quantities: {listing(QUANTITIES)}; steps with fields: {listing(ctx.measurable)}"
            )
        missing = None
        if text == "pressure" and not _PRESSURE_IN_STATUS:
            if not ctx.xfail:
                raise source_node.fail(
                    "this schema reports no pressure (a scenario waiting for it is marked xfail)"
                )
            missing = "this schema reports no pressure yet"
        return "", text, QUANTITIES[text], missing
    source, source_field = match.groups()
    if "since" in values:
        raise values["since"].fail("since goes with a quantity (tip_volume, ...), not step.field")
    if source not in ctx.measurable:
        raise source_node.fail(
            f"{text!r}: {source!r} is no step with measurable fields; "
            f"steps: {listing(ctx.measurable)}"
        )
    fields = ctx.measurable[source]
    if source_field not in fields:
        raise source_node.fail(
            f"{source} has no measurable field {source_field!r}"
            f"{did_you_mean(source_field, fields)}; fields: {listing(fields)}"
        )
    if source not in ctx.kinds_seen:
        raise source_node.fail(f"no {source} step before this measurement to take the value from")
    missing = None
    if (source, source_field) in _FUTURE_FIELDS:
        if not ctx.xfail:
            raise source_node.fail(
                f"{text} needs a pressure reading this schema lacks "
                "(a scenario waiting for it is marked xfail)"
            )
        missing = f"{text}: this schema reports no pressure yet"
    return source, source_field, fields[source_field], missing


def _parse_measure(node: Node, line: int, ctx: _Context) -> Step:
    values = node.mapping(
        required=("name", "from", "unit"), optional=("min", "max", "nominal", "tolerance", "since")
    )
    if ctx.in_repeat:
        raise node.fail("a measure inside repeat would be taken many times; measure after it")
    name = values["name"].string(_NAME, "a name (lower case, digits, _)")
    if name in ctx.measure_names:
        raise values["name"].fail(
            f"measurement {name!r} already defined on line {ctx.measure_names[name]}"
        )
    source, source_field, source_unit, missing = _measure_source(values, ctx)
    since = _since(values, ctx)
    if source_field in WINDOW_QUANTITIES and not source and since is None:
        raise values["from"].fail(f"{source_field} is taken over the samples since a mark: since:")
    unit = values["unit"].string()
    if not units.convertible(source_unit, unit):
        known = units.unit(source_unit)
        choices = units.known_units(known.dimension) if known else [source_unit]
        raise values["unit"].fail(
            f"{source_field} is in {source_unit}, not convertible to {unit!r}; "
            f"use {listing(choices)}"
        )
    limits: dict[str, int | float] = {}
    for key in ("min", "max"):
        if key in values:
            limits[key] = _limit(values[key], unit)
    if "nominal" in values or "tolerance" in values:
        if limits:
            raise node.fail("give min/max or nominal with tolerance, not both")
        if "nominal" not in values or "tolerance" not in values:
            raise node.fail("nominal and tolerance go together")
        nominal = _limit(values["nominal"], unit)
        tol_node = values["tolerance"]
        tol_text = str(tol_node.scalar()).strip()
        if tol_text.endswith("%"):
            try:
                share = units.parse(tol_text, "%")
            except ValueError as exc:
                raise tol_node.fail(str(exc)) from None
            tolerance = _number(share * abs(Fraction(nominal)) / 100)
        else:
            tolerance = _limit(tol_node, unit)
        if tolerance < 0:
            raise tol_node.fail("a tolerance is not negative")
        # rounded: 49.083 - 0.02 should read 49.063, not 49.062999999999995
        limits = {"min": _tidy(nominal - tolerance), "max": _tidy(nominal + tolerance)}
    if not limits:
        raise node.fail(
            "needs min or max (or nominal and tolerance): "
            "a measurement without limits checks nothing"
        )
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
        source_unit=source_unit,
        min=limits.get("min"),
        max=limits.get("max"),
        since=since,
        missing=missing,
    )


def _parse_repeat(node: Node, line: int, ctx: _Context) -> Step:
    values = node.mapping(required=("times", "steps"))
    times = values["times"].integer(1, 100_000)
    was = ctx.in_repeat
    ctx.in_repeat = True
    try:
        steps = _parse_steps(values["steps"], ctx)
    finally:
        ctx.in_repeat = was
    if not steps:
        raise values["steps"].fail("repeat needs at least one step")
    return RepeatStep(line, node.path, times=times, steps=tuple(steps))


_PARSERS: dict[str, Callable[[Node, int, _Context], Step]] = {
    "hello": _parse_hello,
    "rig_hello": _parse_rig_hello,
    "ping": _parse_ping,
    "status": _parse_status,
    "advance": _parse_advance,
    "reset": _parse_reset,
    "power_off": _parse_power_off,
    "power_on": _parse_power_on,
    "power_cut": _parse_power_cut,
    "power_cycle": _parse_power_cycle,
    "program": _parse_program,
    "confirm": _parse_confirm,
    "cancel_program": _parse_cancel_program,
    "start": _parse_start,
    "stop": _parse_stop,
    "bolus": _parse_bolus,
    "patient_bolus": _parse_patient_bolus,
    "cancel_bolus": _parse_cancel_bolus,
    "refill": _parse_refill,
    "clear_alarm": _parse_clear_alarm,
    "set_clock": _parse_set_clock,
    "inject_fault": _parse_inject_fault,
    "new_catheter": _parse_new_catheter,
    "clear_fault": _parse_clear_fault,
    "expect_alarm": _parse_expect_alarm,
    "expect_no_alarm": _parse_expect_no_alarm,
    "expect_state": _parse_expect_state,
    "expect_log": _parse_expect_log,
    "mark": _parse_mark,
    "flow_accuracy": _parse_flow_accuracy,
    "measure": _parse_measure,
    "repeat": _parse_repeat,
}
STEP_KINDS = tuple(_PARSERS)


def _parse_steps(node: Node, ctx: _Context) -> list[Step]:
    steps: list[Step] = []
    for item in node.sequence():
        entries = item.node.value if item.is_mapping() else ()
        if len(entries) != 1:
            raise item.fail(f"a step is one `kind: {{fields}}` entry; kinds: {listing(STEP_KINDS)}")
        ((kind, body),) = item.entries().items()
        if kind not in _PARSERS:
            raise body.fail(
                f"unknown step kind {kind!r}{did_you_mean(kind, STEP_KINDS)}; "
                f"kinds: {listing(STEP_KINDS)}",
                body.key_line,
            )
        step = _PARSERS[kind](body, item.line, ctx)
        ctx.kinds_seen.add(kind)
        steps.append(step)
    return steps


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
    setup = _parse_steps(values["setup"], ctx) if "setup" in values else []
    after_setup = ctx.branch()
    steps = _parse_steps(values["steps"], ctx)
    if not steps:
        raise values["steps"].fail("a scenario needs at least one step")
    # Teardown runs even when the steps stopped early, so its measurements
    # may only read steps of the setup or the teardown itself.
    teardown = _parse_steps(values["teardown"], after_setup) if "teardown" in values else []
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
