"""Step kinds of boluses: bolus, patient_bolus, cancel_bolus.

Each kind: its parser (YAML to bench/scenario/model.py), its runner (on the board,
through the Executor) and its row of bench/README.md, in ``KINDS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench import units
from bench.scenario.steps.kind import StepKind

if TYPE_CHECKING:
    from bench.scenario.executor import Executor

from bench.link.client import BOLUS_KINDS
from bench.scenario.model import (
    BolusStep,
    CancelBolusStep,
    PatientBolusStep,
    Step,
)
from bench.scenario.parse import _COMMAND_OWN, _command, _Context
from bench.scenario.yamlnode import Node, listing


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
            f"the pump works out a {kind} bolus from its drug path (docs/pump.md 22.3): "
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


def run_bolus(ex: Executor, step: BolusStep) -> str:
    pump = ex.need_pump()
    reply = ex.command(
        step,
        lambda: pump.bolus(
            step.kind,
            volume_nl=step.volume_nl,
            dose_ng=step.dose_ng,
            duration_s=step.duration_s,
            catheter_mm=step.catheter_mm,
            nl_per_cm=step.nl_per_cm,
            override_soft=step.override_soft,
        ),
    )
    if reply is None:
        return f"refused as expected: {ex.replies['bolus']['refused']}"
    ex.replies["bolus"] = reply
    ex.line.bolus(ex.refresh_now(), reply["volume_nl"], step.duration_s * 1000)
    ex.annotate(ex.now_ms, "bolus", f"{step.kind} bolus {reply['volume_nl']} nL")
    return f"bolus {reply['bolus_id']}: {reply['volume_nl']} nL"


def run_patient_bolus(ex: Executor, step: PatientBolusStep) -> str:
    pump = ex.need_pump()
    reply = ex.command(step, pump.patient_bolus)
    if reply is None:
        refused = ex.replies["patient_bolus"]
        return f"refused as expected: {refused['refused']} (detail {refused['detail']})"
    ex.replies["patient_bolus"] = reply
    ex.line.bolus(ex.refresh_now(), reply["volume_nl"])
    ex.annotate(ex.now_ms, "bolus", f"patient bolus {reply['volume_nl']} nL")
    return f"bolus {reply['bolus_id']}: {reply['volume_nl']} nL"


def run_cancel_bolus(ex: Executor, _step: CancelBolusStep) -> str:
    delivered = ex.need_pump().cancel_bolus()
    ex.replies["cancel_bolus"] = {"delivered_nl": delivered}
    return f"delivered {delivered} nL before the cancel"


KINDS = (
    StepKind(
        "bolus",
        BolusStep,
        _parse_bolus,
        run_bolus,
        fields=(
            "`volume` or `dose`; `duration`; `kind` (`clinician`, `priming`, `bridge`); "
            "`catheter` (`60cm`, priming/bridge), `nl_per_cm` (default 2600); "
            "`override_soft`; refusable"
        ),
        does="BOLUS",
    ),
    StepKind(
        "patient_bolus",
        PatientBolusStep,
        _parse_patient_bolus,
        run_patient_bolus,
        fields="refusable",
        does="PATIENT_BOLUS (a LOCKOUT refusal records the seconds left)",
    ),
    StepKind(
        "cancel_bolus",
        CancelBolusStep,
        _parse_cancel_bolus,
        run_cancel_bolus,
        fields="",
        does="CANCEL_BOLUS",
    ),
)
