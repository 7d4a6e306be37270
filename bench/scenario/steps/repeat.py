"""The repeat step kind: nested steps, run a number of times.

Each kind: its parser (YAML to bench/scenario/model.py), its runner (on the board,
through the Executor) and its row of bench/README.md, in ``KINDS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.link.errors import BenchError, PumpRefused
from bench.scenario.context import StepFailed
from bench.scenario.steps.kind import StepKind

if TYPE_CHECKING:
    from bench.scenario.executor import Executor

from bench.scenario.model import (
    RepeatStep,
    Step,
)
from bench.scenario.parse import _Context
from bench.scenario.yamlnode import Node


def _parse_repeat(node: Node, line: int, ctx: _Context) -> Step:
    values = node.mapping(required=("times", "steps"))
    times = values["times"].integer(1, 100_000)
    was = ctx.in_repeat
    ctx.in_repeat = True
    try:
        from bench.scenario.steps import parse_steps  # the table holds this family

        steps = parse_steps(values["steps"], ctx)
    finally:
        ctx.in_repeat = was
    if not steps:
        raise values["steps"].fail("repeat needs at least one step")
    return RepeatStep(line, node.path, times=times, steps=tuple(steps))


def run_repeat(ex: Executor, step: RepeatStep) -> str:
    for i in range(step.times):
        for inner in step.steps:
            where = f"pass {i + 1}, line {inner.line}: {inner.KIND}"
            try:
                summary = ex.run_step(inner)
            except PumpRefused as exc:
                if ex.from_rig(exc):
                    raise BenchError(f"{where}: {exc}") from None
                raise StepFailed(f"{where}: {exc}") from None
            except StepFailed as exc:
                raise StepFailed(f"{where}: {exc}") from None
            except BenchError as exc:
                raise BenchError(f"{where}: {exc}") from None
            ex.log(f"  [{i + 1}/{step.times}] {inner.line}: {inner.describe()}: {summary}")
    return f"{step.times} passes"


KINDS = (
    StepKind(
        "repeat",
        RepeatStep,
        _parse_repeat,
        run_repeat,
        fields="`times`, `steps`",
        does=(
            "runs the nested steps `times` times (a daily routine over a soak); no `measure` inside"
        ),
    ),
)
