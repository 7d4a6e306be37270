"""Step kinds that check the pump: expect_alarm, expect_no_alarm, expect_state, expect_log, mark.

Each kind: its parser (YAML to bench/scenario/model.py), its runner (on the board,
through the Executor) and its row of bench/README.md, in ``KINDS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bench import vocab
from bench.scenario.context import ACTION_RAISED, StepFailed, alarm_action, alarm_bits, fmt_ms
from bench.scenario.steps.kind import StepKind
from protocol import codec, schema

if TYPE_CHECKING:
    from bench.scenario.executor import Executor

from bench.scenario.model import (
    ExpectAlarmStep,
    ExpectLogStep,
    ExpectNoAlarmStep,
    ExpectStateStep,
    MarkStep,
    Step,
)
from bench.scenario.parse import (
    _NAME,
    BOLUS_CODES,
    MODE_CODES,
    STATE_CODES,
    _code_of,
    _Context,
    _duration,
    _name_from,
    _names,
    _since,
    _slice,
)
from bench.scenario.yamlnode import Node


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


def _raised(ex: Executor, after: int, wanted: Callable[[int], bool]) -> list[codec.Frame]:
    return [
        f
        for f in ex.events[after:]
        if f.name == "ALARM"
        and alarm_action(f.fields) == ACTION_RAISED
        and wanted(f.fields["alarm"])
    ]


def run_expect_alarm(ex: Executor, step: ExpectAlarmStep) -> str:
    assert step.alarm is not None
    alarm = step.alarm
    start = ex.refresh_now()
    origin = ex.marks[step.since].t_ms if step.since else start
    after = len(ex.events)
    found_at: int | None = None
    if ex.powered and alarm in alarm_bits(ex.pump.status()["alarms"]):
        earlier = _raised(ex, 0, lambda a: a == alarm)
        found_at = earlier[-1].fields["device_time_ms"] if earlier else start
    elapsed = 0
    while found_at is None and elapsed < step.within_ms:
        chunk = min(step.slice_ms, step.within_ms - elapsed)
        ex.advance_by(chunk)
        elapsed += chunk
        raised = _raised(ex, after, lambda a: a == alarm)
        if raised:
            found_at = raised[0].fields["device_time_ms"]
        elif ex.powered and alarm in alarm_bits(ex.pump.status()["alarms"]):
            found_at = ex.now_ms  # raised, its event not (yet) seen: an upper bound
    if found_at is None:
        raise StepFailed(f"{step.alarm_name} not raised within {fmt_ms(step.within_ms)}")
    reply: dict[str, Any] = {
        "time_to_alarm_ms": found_at - origin,
        "device_time_ms": found_at,
    }
    if ex.powered:
        reply["pressure_at_alarm"] = ex.pump.status()["pressure_x10"]
    ex.replies["expect_alarm"] = reply
    since = f" after {step.since}" if step.since else ""
    return f"{step.alarm_name} raised at {found_at} ms, {fmt_ms(found_at - origin)}{since}"


def run_expect_no_alarm(ex: Executor, step: ExpectNoAlarmStep) -> str:
    def wanted(alarm: int) -> bool:
        if step.alarms:
            return alarm in step.alarms
        return alarm not in step.ignore

    after = len(ex.events)
    if step.for_ms:
        ex.advance_by(step.for_ms, step.slice_ms)
    raised = _raised(ex, after, wanted)
    active = {a for a in alarm_bits(ex.need_pump().status()["alarms"]) if wanted(a)}
    problems = [
        f"{vocab.alarm_name(f.fields['alarm'])} raised at {f.fields['device_time_ms']} ms"
        for f in raised
    ]
    problems += [f"{vocab.alarm_name(a)} active" for a in sorted(active)]
    if problems:
        raise StepFailed("; ".join(dict.fromkeys(problems)))
    return f"no alarm over {fmt_ms(step.for_ms)}" if step.for_ms else "no alarm active"


def run_expect_state(ex: Executor, step: ExpectStateStep) -> str:
    start = ex.refresh_now() if step.within_ms else ex.now_ms
    origin = ex.marks[step.since].t_ms if step.since else start
    status = ex.need_pump().status()
    elapsed = 0
    while _state_wrong(step, status) and elapsed < step.within_ms:
        chunk = min(step.slice_ms, step.within_ms - elapsed)
        ex.advance_by(chunk)
        elapsed += chunk
        status = ex.need_pump().status()
    ex.replies["status"] = status
    ex.replies["expect_state"] = {
        "time_to_state_ms": status["device_time_ms"] - origin,
        "device_time_ms": status["device_time_ms"],
    }
    wrong = _state_wrong(step, status)
    if wrong:
        within = f" within {fmt_ms(step.within_ms)}" if step.within_ms else ""
        raise StepFailed("; ".join(wrong) + within)
    alarms = ", ".join(status["alarm_names"]) or "no alarm"
    if step.within_ms:
        return f"{status['state_name']}, {alarms} at {status['device_time_ms']} ms"
    return f"{status['state_name']}, {alarms}"


def _state_wrong(step: ExpectStateStep, status: dict[str, Any]) -> list[str]:
    """What differs from the expectation (empty: it holds)."""
    wrong = []
    if step.state is not None and status["state"] != step.state:
        wrong.append(f"state is {status['state_name']}, expected {schema.state_name(step.state)}")
    if step.alarms is not None:
        active = alarm_bits(status["alarms"])
        if active != set(step.alarms):
            want = ", ".join(vocab.alarm_name(a) for a in sorted(step.alarms)) or "none"
            wrong.append(
                f"alarms are {', '.join(status['alarm_names']) or 'none'}, expected {want}"
            )
    if step.mode is not None and status["mode"] != step.mode:
        wrong.append(f"mode is {status['mode_name']}")
    if step.bolus is not None and status["bolus_kind"] != step.bolus:
        wrong.append(f"bolus is {status['bolus_kind_name']}")
    return wrong


def run_expect_log(ex: Executor, step: ExpectLogStep) -> str:
    pump = ex.need_pump()
    mark = ex.marks[step.since] if step.since else None
    # sessions and refusals are in the access log (docs/pump.md 15)
    access = schema.log_name(step.event) in schema.ACCESS_LOG_CODES
    total = None if mark is None else mark.access_total if access else mark.log_total
    entries = pump.log(total or 0, access=access)
    if mark is not None and total is None:  # marked while off: go by time
        entries = [e for e in entries if e["time_s"] * 1000 >= mark.t_ms - 999]
    # (a PB_REFUSED or AUTH_REFUSED with a = 0 carries a tally, not a refusal)
    found = [e for e in entries if e["code"] == step.event and (e["a"] or not access)]
    ex.replies["expect_log"] = {"count": len(found)}
    where = f" since {step.since}" if step.since else ""
    if step.count is not None and len(found) != step.count:
        raise StepFailed(
            f"{step.event_name} logged {len(found)} times{where}, expected {step.count}"
        )
    if step.count is None and len(found) < step.min_count:
        raise StepFailed(
            f"{step.event_name} logged {len(found)} times{where}, "
            f"expected at least {step.min_count}"
        )
    details = "; ".join(f"a={e['a']} b={e['b']}" for e in found[-3:])
    return f"{step.event_name} x{len(found)}{where}" + (f" (last: {details})" if found else "")


def run_mark(ex: Executor, step: MarkStep) -> str:
    ex.marks[step.name] = ex.snapshot()
    ex.annotate(ex.now_ms, "mark", step.name)
    return f"at {ex.now_ms} ms"


KINDS = (
    StepKind(
        "expect_alarm",
        ExpectAlarmStep,
        _parse_expect_alarm,
        run_expect_alarm,
        fields=(
            "`alarm`; `within` (device time, default 0: now); `slice` (default within/100); "
            "`since` (a mark)"
        ),
        does=(
            "advances in slices until the alarm is raised (ALARM event, or STATUS), at most "
            "`within`; records the time to alarm from `since` (or from the step's start) and "
            "the device time of the alarm"
        ),
    ),
    StepKind(
        "expect_no_alarm",
        ExpectNoAlarmStep,
        _parse_expect_no_alarm,
        run_expect_no_alarm,
        fields="`for` (default 0: now); `alarms` (only these) or `ignore` (all but these); `slice`",
        does=(
            "advances `for` in slices (sampling); FAIL if a matching alarm was raised "
            "meanwhile or is active at the end"
        ),
    ),
    StepKind(
        "expect_state",
        ExpectStateStep,
        _parse_expect_state,
        run_expect_state,
        fields=(
            "any of `state`, `alarms` (exactly these active; `[]` none), `mode`, `bolus` "
            "(`NONE`, `CLINICIAN`, ... `PATIENT`); `within`, `slice`, `since`"
        ),
        does=(
            'checks STATUS; with `within` advances in slices until it holds ("delivery '
            'stopped within 1 h, whatever alarm stopped it")'
        ),
    ),
    StepKind(
        "expect_log",
        ExpectLogStep,
        _parse_expect_log,
        run_expect_log,
        fields=(
            "`event` (LOG_CODES name); `since` (a mark); `count` (exactly) or `min_count` "
            "(default 1)"
        ),
        does=(
            "reads the pump's event log (GET_LOG) from the mark on; sessions and refusals "
            "from the access log (GET_ACCESS_LOG; tally-carrying entries with a = 0 are not "
            "counted)"
        ),
    ),
    StepKind(
        "mark",
        MarkStep,
        _parse_mark,
        run_mark,
        fields="`name`",
        does="names this instant (device time, TRUTH, STATUS, log position) for `since`",
    ),
)
