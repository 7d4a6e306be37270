"""What a step's runner works with besides the Executor: how it says it failed, snapshots,
the names of reset causes and alarm actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from bench.link.errors import BenchError
from bench.scenario.model import (
    Step,
)
from protocol import schema

# How long a rebooting pump may take to announce itself (wall time). A
# virtual board boots in milliseconds; a Pico in well under a second.
BOOT_TIMEOUT_S = 10.0


RESET_CAUSE_NAMES: dict[int, str] = dict(schema.RESET_CAUSES)


_ALARM_ACTIONS = {name: code for code, name in schema.ALARM_ACTIONS}


ACTION_RAISED = _ALARM_ACTIONS["RAISED"]  # ALARM event actions


ACTION_CLEARED = _ALARM_ACTIONS["CLEARED"]


TRACE_PAGE = 12


T = TypeVar("T")


class StepFailed(Exception):
    """The pump answered, but not as the scenario expects: a FAIL."""


class CapabilityMissing(StepFailed):
    """The firmware, rig or schema lacks what the step needs: FAIL (XFAIL if marked)."""


class Interrupted(BenchError):
    """The run was stopped (Ctrl-C): the scenario ends as an ERROR, never as a verdict."""


@dataclass
class Snapshot:
    """A mark: the instant, and what the rig and the pump said then."""

    t_ms: int
    truth: dict[str, Any] | None
    status: dict[str, Any] | None
    log_total: int | None
    access_total: int | None = None  # the access log's (docs/pump.md 15)


def step_where(step: Step) -> str:
    return f"line {step.line}: {step.KIND}"


def show_value(name: str, value: Any) -> str:
    return schema.state_name(value) if name == "state" else str(value)


def alarm_action(fields: dict[str, Any]) -> int:
    """The ALARM event's action (ALARM_ACTIONS: 1 raised, 0 cleared, ...)."""
    return int(fields["action"])


def alarm_bits(mask: int) -> set[int]:
    return {bit + 1 for bit in range(32) if mask >> bit & 1}


def fmt_ms(ms: int) -> str:
    """Device time for a log line: whole units when exact (30d, 90min, 250ms)."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
