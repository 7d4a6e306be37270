"""Step kinds of the rig's faults: inject_fault, clear_fault.

Each kind: its parser (YAML to bench/scenario/model.py), its runner (on the board,
through the Executor) and its row of bench/README.md, in ``KINDS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench import vocab
from bench.link.errors import PumpRefused
from bench.scenario.context import CapabilityMissing, Snapshot
from bench.scenario.steps.kind import StepKind

if TYPE_CHECKING:
    from bench.scenario.executor import Executor

from bench.scenario.model import (
    ClearFaultStep,
    InjectFaultStep,
    Step,
)
from bench.scenario.parse import _Context, _duration, _name_from
from bench.scenario.yamlnode import Node


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


def run_inject_fault(ex: Executor, step: InjectFaultStep) -> str:
    rig = ex.need_rig()
    assert step.fault is not None  # unavailable steps never get here
    values = {"fault": step.fault, "param": step.param}
    if step.onset_ms:
        values["onset_ms"] = step.onset_ms
    try:
        rig.request("INJECT_FAULT", vocab.request_fields("INJECT_FAULT", **values))
    except PumpRefused as exc:
        raise CapabilityMissing(f"the rig refuses fault {step.fault_name}: {exc}") from None
    ex.refresh_now()
    onset = ex.now_ms + step.onset_ms
    ex.marks["fault"] = Snapshot(onset, None, None, None)
    if not step.onset_ms:
        ex.marks["fault"] = ex.snapshot()
    ex.annotate(onset, "fault", f"fault {step.fault_name}")
    return f"{step.fault_name} (param {step.param}) from {onset} ms"


def run_clear_fault(ex: Executor, step: ClearFaultStep) -> str:
    ex.need_rig().clear_fault(step.fault)
    ex.marks["fault_cleared"] = ex.snapshot()
    ex.annotate(ex.now_ms, "fault_cleared", "fault cleared")
    return f"cleared at {ex.now_ms} ms"


KINDS = (
    StepKind(
        "inject_fault",
        InjectFaultStep,
        _parse_inject_fault,
        run_inject_fault,
        fields=(
            "`fault` (schema FAULTS name, e.g. `runaway`, or an id); `param` (default 0); "
            "`onset` (schema permitting)"
        ),
        does=(
            "INJECT_FAULT; marks `fault` at its onset (with an `onset`, the mark holds only "
            "the time). A rig that refuses the fault is a FAIL naming it"
        ),
    ),
    StepKind(
        "clear_fault",
        ClearFaultStep,
        _parse_clear_fault,
        run_clear_fault,
        fields="`fault` (default: every fault)",
        does="CLEAR_FAULT; marks `fault_cleared`",
    ),
)
