"""Step kinds of a clinician's care: refill, clear_alarm, set_clock, new_catheter.

Each kind: its parser (YAML to bench/scenario/model.py), its runner (on the board,
through the Executor) and its row of bench/README.md, in ``KINDS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench import units, vocab
from bench.scenario.context import StepFailed, alarm_bits
from bench.scenario.steps.kind import StepKind

if TYPE_CHECKING:
    from bench.scenario.executor import Executor

from bench.program import file as pf
from bench.scenario.model import (
    ClearAlarmStep,
    NewCatheterStep,
    RefillStep,
    SetClockStep,
    Step,
)
from bench.scenario.parse import _COMMAND_OWN, _command, _Context, _duration, _name_from
from bench.scenario.yamlnode import Node, listing


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


def run_refill(ex: Executor, step: RefillStep) -> str:
    pump = ex.need_pump()
    fields = pump.refill_fields(0, step.volume_nl, step.drug_id, step.conc_ug_ml)
    if step.with_program:
        fields["program_crc"] = pump.get_program(pending=True)["crc"]
    left = ex.need_rig().fill(step.volume_nl, fields["conc_ug_ml"])
    withdrawn = left if step.withdrawn_nl is None else step.withdrawn_nl
    fields["withdrawn_nl"] = withdrawn
    reply = ex.command(step, lambda: pump.request("REFILL", fields))
    if reply is None:
        return f"refused as expected: {ex.replies['refill']['refused']}"
    ex.replies["refill"] = {**reply, "withdrawn_nl": withdrawn, "added_nl": step.volume_nl}
    text = (
        f"withdrew {withdrawn} nL (expected {reply['expected_nl']}), "
        f"discrepancy {reply['discrepancy_nl']} nL, added {step.volume_nl} nL"
    )
    if step.flagged is not None and bool(reply["flagged"]) != step.flagged:
        want = "flagged" if step.flagged else "not flagged"
        raise StepFailed(f"{text}: expected the discrepancy {want}")
    return text + (", flagged" if reply["flagged"] else "")


def run_clear_alarm(ex: Executor, step: ClearAlarmStep) -> str:
    pump = ex.need_pump()
    mask = ex.command(step, lambda: pump.clear_alarm(step.alarm))
    if mask is None:
        return f"refused as expected: {ex.replies['clear_alarm']['refused']}"
    names = [vocab.alarm_name(a) for a in sorted(alarm_bits(mask))]
    return f"active now: {', '.join(names) or 'none'}"


def run_set_clock(ex: Executor, step: SetClockStep) -> str:
    ex.need_pump().set_clock(step.offset_s)
    ex.line.set_clock(ex.refresh_now(), step.offset_s)
    return f"local time = device time + {step.offset_s} s"


def run_new_catheter(ex: Executor, step: NewCatheterStep) -> str:
    rig = ex.need_rig()
    left = rig.truth()["reservoir_nl"]
    rig.plant(catheter_nl=step.volume_nl, catheter_empty_nl=step.volume_nl, reservoir_nl=left)
    ex.annotate(ex.refresh_now(), "mark", "new catheter")
    return f"the rig fitted an empty catheter of {step.volume_nl} nL"


KINDS = (
    StepKind(
        "refill",
        RefillStep,
        _parse_refill,
        run_refill,
        fields=(
            "`volume`; `withdrawn` (default: what the rig's FILL says was left); `flagged` "
            "(expect the discrepancy flag true/false); `drug` with `concentration` (default: "
            "the active program's); `with_program` (commit the pending program with it); "
            "refusable"
        ),
        does="rig FILL to `volume` at that concentration, then pump REFILL (needs rig)",
    ),
    StepKind(
        "clear_alarm",
        ClearAlarmStep,
        _parse_clear_alarm,
        run_clear_alarm,
        fields="`alarm`; refusable",
        does="CLEAR_ALARM",
    ),
    StepKind(
        "set_clock",
        SetClockStep,
        _parse_set_clock,
        run_set_clock,
        fields="`offset` (a duration)",
        does="SET_CLOCK: local time = device time + offset",
    ),
    StepKind(
        "new_catheter",
        NewCatheterStep,
        _parse_new_catheter,
        run_new_catheter,
        fields="`volume` (`156 uL`)",
        does=(
            "the rig's plant gets a new, empty catheter of that volume (PLANT, the real "
            "reservoir kept): what a priming bolus fills"
        ),
    ),
)
