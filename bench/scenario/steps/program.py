"""Step kinds of the therapy program: program, confirm, cancel_program, start, stop.

Each kind: its parser (YAML to bench/scenario/model.py), its runner (on the board,
through the Executor) and its row of bench/README.md, in ``KINDS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.link.client import program_crc
from bench.scenario.context import StepFailed
from bench.scenario.steps.kind import StepKind
from protocol import schema

if TYPE_CHECKING:
    from bench.scenario.executor import Executor

from bench.program import file as pf
from bench.scenario.model import (
    CancelProgramStep,
    ConfirmStep,
    ProgramStep,
    StartStep,
    Step,
    StopStep,
)
from bench.scenario.parse import _COMMAND_OWN, _command, _Context
from bench.scenario.yamlnode import Invalid, Node


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


def run_program(ex: Executor, step: ProgramStep) -> str:
    pump = ex.need_pump()
    reply = ex.command(step, lambda: pump.program(step.fields))
    if reply is None:
        return f"refused as expected: {ex.replies['program']['refused']}"
    expected = program_crc(step.fields)
    if reply["crc"] != expected:
        raise StepFailed(f"PROGRAM answered CRC 0x{reply['crc']:08x}, sent 0x{expected:08x}")
    readback = pump.get_program(pending=True)
    differ = [name for name in step.fields if readback[name] != step.fields[name]]
    if differ:
        raise StepFailed(f"the pending program reads back differently: {', '.join(differ)}")
    ex.pending = (dict(step.fields), expected)
    ex.replies["program"] = reply
    text = f"pending, CRC 0x{expected:08x}, worst day {reply['max_daily_nl']} nL"
    if step.confirm:
        text += "; " + _confirm_pending(ex)
    return text


def _confirm_pending(ex: Executor) -> str:
    if ex.pending is None:
        raise StepFailed("no program is pending (the last program step was refused)")
    fields, crc = ex.pending
    got = ex.pump.confirm(crc)
    if got != crc:
        raise StepFailed(f"CONFIRM made CRC 0x{got:08x} active, expected 0x{crc:08x}")
    ex.pending = None
    ex.refresh_now()
    ex.line.confirm(ex.now_ms, fields)
    return f"confirmed 0x{crc:08x}"


def run_confirm(ex: Executor, step: ConfirmStep) -> str:
    ex.need_pump()
    if step.refused is not None:
        crc = ex.pending[1] if ex.pending else 0
        ex.command(step, lambda: ex.pump.confirm(crc))
        return "refused as expected"
    return _confirm_pending(ex)


def run_cancel_program(ex: Executor, _step: CancelProgramStep) -> str:
    ex.need_pump().cancel_program()
    ex.pending = None
    return "cancelled"


def run_start(ex: Executor, step: StartStep) -> str:
    pump = ex.need_pump()
    state = ex.command(step, pump.start)
    if state is None:
        return f"refused as expected: {ex.replies['start']['refused']}"
    ex.line.start(ex.refresh_now())
    return f"state {schema.state_name(state)}"


def run_stop(ex: Executor, _step: StopStep) -> str:
    state = ex.need_pump().stop()
    ex.line.stop(ex.refresh_now())
    return f"state {schema.state_name(state)}"


KINDS = (
    StepKind(
        "program",
        ProgramStep,
        _parse_program,
        run_program,
        fields=(
            "`file: PATH` (relative to the scenario), or the program-file keys inline "
            "(`drug`, `concentration`, `mode`, `rate`, `flex`, `patient_bolus`, "
            "`low_reservoir`, `override_soft`); `confirm` (default false); refusable"
        ),
        does=(
            "PROGRAM, then checks the CRC and reads the pending program back (GET_PROGRAM); "
            "with `confirm: true` also CONFIRM"
        ),
    ),
    StepKind(
        "confirm",
        ConfirmStep,
        _parse_confirm,
        run_confirm,
        fields="refusable",
        does="CONFIRM the program the last `program` step left pending",
    ),
    StepKind(
        "cancel_program",
        CancelProgramStep,
        _parse_cancel_program,
        run_cancel_program,
        fields="",
        does="CANCEL_PROGRAM",
    ),
    StepKind(
        "start",
        StartStep,
        _parse_start,
        run_start,
        fields="refusable",
        does="START",
    ),
    StepKind(
        "stop",
        StopStep,
        _parse_stop,
        run_stop,
        fields="",
        does="STOP",
    ),
)
