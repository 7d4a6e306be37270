"""The step kinds of a scenario file: one table.

Each family module owns its kinds: the parser (YAML to the step model,
bench/scenario/model.py), the runner (the step on a board, through the
Executor) and the row of bench/README.md's step tables, together in one
:class:`~bench.scenario.steps.kind.StepKind` each. A new step kind is a
dataclass in model.py and a ``StepKind`` in its family's ``KINDS``; the
family is listed here once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.scenario.model import Step
from bench.scenario.parse import _Context
from bench.scenario.steps import (
    bolus,
    care,
    device,
    expect,
    faults,
    measure,
    power,
    program,
    repeat,
)
from bench.scenario.steps.kind import StepKind
from bench.scenario.yamlnode import Node, did_you_mean, listing

FAMILIES = (device, power, program, bolus, care, faults, expect, measure, repeat)

# name in a scenario file -> the kind, in the order the README lists them
KINDS: dict[str, StepKind] = {kind.name: kind for family in FAMILIES for kind in family.KINDS}
STEP_KINDS = tuple(KINDS)
# the model's class -> its runner (the Executor dispatches on it)
RUNNERS: dict[type[Step], Callable[[Any, Any], str]] = {
    kind.model: kind.run for kind in KINDS.values()
}


def parse_steps(node: Node, ctx: _Context) -> list[Step]:
    steps: list[Step] = []
    for item in node.sequence():
        entries = item.node.value if item.is_mapping() else ()
        if len(entries) != 1:
            raise item.fail(f"a step is one `kind: {{fields}}` entry; kinds: {listing(STEP_KINDS)}")
        ((kind, body),) = item.entries().items()
        if kind not in KINDS:
            raise body.fail(
                f"unknown step kind {kind!r}{did_you_mean(kind, STEP_KINDS)}; "
                f"kinds: {listing(STEP_KINDS)}",
                body.key_line,
            )
        step = KINDS[kind].parse(body, item.line, ctx)
        ctx.kinds_seen.add(kind)
        steps.append(step)
    return steps
