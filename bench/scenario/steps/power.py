"""Step kinds of device time and power: advance, reset, power_off, power_on, power_cut, power_cycle.

Each kind: its parser (YAML to bench/scenario/model.py), its runner (on the board,
through the Executor) and its row of bench/README.md, in ``KINDS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bench.scenario.context import BOOT_TIMEOUT_S, RESET_CAUSE_NAMES, StepFailed, fmt_ms
from bench.scenario.steps.kind import StepKind
from protocol.table import RESET_CAUSE_POWER_ON, RESET_CAUSE_RIG_RESET

if TYPE_CHECKING:
    from bench.scenario.executor import Executor

from bench.scenario.model import (
    AdvanceStep,
    PowerCutStep,
    PowerCycleStep,
    PowerOffStep,
    PowerOnStep,
    ResetStep,
    Step,
)
from bench.scenario.parse import _Context, _duration
from bench.scenario.yamlnode import Node


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


def run_advance(ex: Executor, step: AdvanceStep) -> str:
    before = ex.refresh_now()
    end = ex.advance_by(step.duration_ms, step.sample_ms)
    ex.replies["advance"] = {"device_time_ms": end, "advanced_ms": end - before}
    return f"device time {before} -> {end} ms"


def _boot(
    ex: Executor, kind: str, cause: int, trigger: Callable[[], object], before: dict[str, Any]
) -> str:
    """Triggers a restart, waits for BOOT with ``cause``, says HELLO again (SPEC 8)."""
    ex.drain()
    mark = len(ex.events)
    trigger()
    boot_frame = ex.wait_event("BOOT", mark, BOOT_TIMEOUT_S)
    ex.expected_boots.add(id(boot_frame))
    boot = boot_frame.fields
    ex.powered = True
    ex.now_ms = boot["device_time_ms"]
    got = RESET_CAUSE_NAMES.get(boot["reset_cause"], f"code {boot['reset_cause']}")
    ex.replies[kind] = {
        **boot,
        "boot_count_before": before["boot_count"],
        "boot_count_increase": boot["boot_count"] - before["boot_count"],
        "clock_jump_ms": boot["device_time_ms"] - before["device_time_ms"],
    }
    if boot["reset_cause"] != cause:
        raise StepFailed(
            f"the pump booted with reset cause {got}, expected {RESET_CAUSE_NAMES[cause]}"
        )
    ex.pump.hello()
    ex.sample()
    return f"BOOT {got}, boot count {before['boot_count']} -> {boot['boot_count']}"


def run_reset(ex: Executor, _step: ResetStep) -> str:
    rig = ex.need_rig()
    before = ex.need_pump().status()
    return _boot(ex, "reset", RESET_CAUSE_RIG_RESET, rig.reset, before)


def run_power_off(ex: Executor, _step: PowerOffStep) -> str:
    rig = ex.need_rig()
    if ex.powered:
        ex.last_status = ex.pump.status()
    rig.power_off()
    ex.powered = False
    ex.refresh_now()
    ex.annotate(ex.now_ms, "power_off", "power off")
    ex.sample()
    return f"powered off at {ex.now_ms} ms"


def run_power_on(ex: Executor, _step: PowerOnStep) -> str:
    rig = ex.need_rig()
    before = dict(ex.last_status or {"boot_count": 0})
    before["device_time_ms"] = ex.refresh_now()
    return _boot(ex, "power_on", RESET_CAUSE_POWER_ON, rig.power_on, before)


def run_power_cut(ex: Executor, step: PowerCutStep) -> str:
    rig = ex.need_rig()
    ex.last_status = ex.need_pump().status()
    if step.after_bytes is not None:
        rig.cut_after_bytes(step.after_bytes)
        return f"cut armed: after {step.after_bytes} journal bytes"
    rig.cut_in_ms(step.after_ms or 0)
    ex.annotate(ex.now_ms + (step.after_ms or 0), "power_off", "power cut")
    return f"cut armed: in {fmt_ms(step.after_ms or 0)} of device time"


def run_power_cycle(ex: Executor, step: PowerCycleStep) -> str:
    rig = ex.need_rig()
    before = ex.need_pump().status()
    ex.last_status = before
    rig.power_off()
    ex.powered = False
    ex.refresh_now()
    ex.annotate(ex.now_ms, "power_off", "power off")
    ex.sample()
    if step.off_ms:
        ex.advance_by(step.off_ms)
    ex.replies["power_cycle"] = {}
    summary = _boot(ex, "power_cycle", RESET_CAUSE_POWER_ON, rig.power_on, before)
    return f"off for {fmt_ms(step.off_ms)}; {summary}"


KINDS = (
    StepKind(
        "advance",
        AdvanceStep,
        _parse_advance,
        run_advance,
        fields="`duration`; `sample` (optional)",
        does=(
            "runs device time forward with rig ADVANCE (lockstep on a virtual board, a real "
            "wait on a rig); `sample: 1h` slices it and samples the rig's truth after each "
            "slice (plots). Over a year goes in one-year slices"
        ),
    ),
    StepKind(
        "reset",
        ResetStep,
        _parse_reset,
        run_reset,
        fields="",
        does="rig RESET; FAIL unless BOOT comes with cause `RIG_RESET`",
    ),
    StepKind(
        "power_off",
        PowerOffStep,
        _parse_power_off,
        run_power_off,
        fields="",
        does="rig POWER off; device time and the plant go on, the pump port goes silent",
    ),
    StepKind(
        "power_on",
        PowerOnStep,
        _parse_power_on,
        run_power_on,
        fields="",
        does="rig POWER on; FAIL unless BOOT comes with cause `POWER_ON`",
    ),
    StepKind(
        "power_cut",
        PowerCutStep,
        _parse_power_cut,
        run_power_cut,
        fields="`after` (device time) or `after_bytes` (journal bytes)",
        does="arms a cut; a later `advance` (or the journal write) triggers it, then `power_on`",
    ),
    StepKind(
        "power_cycle",
        PowerCycleStep,
        _parse_power_cycle,
        run_power_cycle,
        fields="`off_for` (default 0)",
        does="off, that much device time unpowered, on, BOOT",
    ),
)
