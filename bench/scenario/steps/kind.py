"""One step kind: its name in a scenario file, its model, its parser, its runner and its docs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.scenario.model import Step

if TYPE_CHECKING:
    from bench.scenario.executor import Executor
    from bench.scenario.parse import _Context
    from bench.scenario.yamlnode import Node


@dataclass(frozen=True)
class StepKind:
    """A row of the step table (bench/scenario/steps/__init__.py).

    ``parse`` turns the step's YAML into ``model`` (values in wire units,
    every problem as ``file:line: field``); ``run`` carries it out on the
    board through the Executor and returns the line for the step log, or
    raises (bench/scenario/context.py says what each exception means).
    ``fields`` and ``does`` are the step's row in bench/README.md's step
    tables (tests/bench/test_scenario_steps.py checks they agree).
    """

    name: str
    model: type[Step]
    parse: Callable[[Node, int, _Context], Step]
    run: Callable[[Executor, Any], str]
    fields: str
    does: str
