"""What the step parsers share: the parse context, names, durations, refusals and roles."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import units, vocab
from bench.link.client import BOLUS_KIND_NAMES, MODE_NAMES
from bench.scenario.model import (
    Refusal,
)
from bench.scenario.yamlnode import Node, did_you_mean, listing
from protocol import schema


def _units(message: str, reply: bool = True) -> dict[str, str]:
    return {name: unit for name, unit in vocab.fields_of(message, reply).items() if unit}


_BOOT = {
    **_units("BOOT"),
    "boot_count_before": "count",
    "boot_count_increase": "count",
    "clock_jump_ms": "ms",
}


_STATUS_UNITS = vocab.fields_of("STATUS")


# step kind -> field -> wire unit. flow_accuracy adds its windows per step.
MEASURABLE: dict[str, dict[str, str]] = {
    "status": _units("STATUS"),
    "advance": {"device_time_ms": "ms", "advanced_ms": "ms"},
    "ping": {"round_trip_ms": "ms"},
    "reset": dict(_BOOT),
    "power_on": dict(_BOOT),
    "power_cycle": dict(_BOOT),
    "program": {"max_daily_nl": "nL", "max_hourly_nl": "nL"},
    "bolus": {"volume_nl": "nL"},
    "patient_bolus": {"volume_nl": "nL", "lockout_left_s": "s"},
    "cancel_bolus": {"delivered_nl": "nL"},
    "refill": {
        "withdrawn_nl": "nL",
        "added_nl": "nL",
        "expected_nl": "nL",
        "discrepancy_nl": "nL",
        "flagged": "count",
        "refill_date_s": "s",
    },
    "expect_alarm": {
        "time_to_alarm_ms": "ms",
        "device_time_ms": "ms",
        "pressure_at_alarm": "0.1 mmHg",
    },
    "expect_state": {"time_to_state_ms": "ms", "device_time_ms": "ms"},
    "expect_log": {"count": "count"},
    "flow_accuracy": {
        "mean_error_pct": "%",
        "startup_error_pct": "%",
        "rate_nl_day": "nL/day",
        "volume_nl": "nL",
        "scale": "count",
    },
}


STATE_CODES = vocab.STATES


MODE_CODES = {name: code for code, name in enumerate(MODE_NAMES)}


BOLUS_CODES = {name: code for code, name in enumerate(BOLUS_KIND_NAMES)}


REFUSAL_CODES = {name: code for name, code in vocab.ERRORS.items() if code >= vocab.REFUSAL_LIMIT}


IMPLICIT_MARKS = ("start",)  # the scenario's first instant, after the preamble


@dataclass
class _Context:
    """What the steps parsed so far make available, and what the file allows."""

    base_dir: Path
    xfail: bool = False
    kinds_seen: set[str] = field(default_factory=set)
    measure_names: dict[str, int] = field(default_factory=dict)
    marks: set[str] = field(default_factory=lambda: set(IMPLICIT_MARKS))
    measurable: dict[str, dict[str, str]] = field(
        default_factory=lambda: {kind: dict(fields) for kind, fields in MEASURABLE.items()}
    )
    in_repeat: bool = False

    def branch(self) -> _Context:
        """A context for the teardown: it may run after any step, so it knows only the setup."""
        return _Context(
            base_dir=self.base_dir,
            xfail=self.xfail,
            measure_names=self.measure_names,
            measurable=self.measurable,
        )


_ID = re.compile(r"[a-z0-9][a-z0-9._-]*")


_REQUIREMENT = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")


_NAME = re.compile(r"[a-z][a-z0-9_]*")


_SOURCE = re.compile(r"([a-z_]+)\.([a-z0-9_]+)")


def _duration(node: Node) -> int:
    value = node.scalar()
    if isinstance(value, int) and not isinstance(value, bool):
        raise node.fail(f"{value} has no unit: write e.g. {value}ms or {value}s")
    try:
        return units.duration_ms(value)
    except ValueError as exc:
        raise node.fail(str(exc)) from None


def _name_from(
    node: Node, table: dict[str, int], what: str, ctx: _Context, plural: str = ""
) -> tuple[int | None, str, str | None]:
    """(id, NAME, missing) for a name in a schema table; unknown names only under xfail."""
    value = node.scalar()
    if isinstance(value, int) and not isinstance(value, bool):
        names = {code: name for name, code in table.items()}
        if value in names:
            return value, names[value], None
        raise node.fail(f"{value} is no {what} id; {plural or what + 's'}: {listing(table)}")
    text = node.string().upper()
    if text in table:
        return table[text], text, None
    hint = did_you_mean(text, table)
    if ctx.xfail:
        missing = f"the schema has no {what} {text!r} yet{hint}"
        return None, text, missing
    raise node.fail(
        f"unknown {what} {text!r}{hint}; {plural or what + 's'}: {listing(table)} "
        f"(a scenario waiting for a new {what} is marked xfail)"
    )


def _names(node: Node, table: dict[str, int], what: str, ctx: _Context) -> tuple[int, ...]:
    ids: list[int] = []
    for item in node.sequence():
        code, _name, missing = _name_from(item, table, what, ctx)
        if code is None:
            raise item.fail(f"{missing}; a list cannot wait for it")
        ids.append(code)
    return tuple(ids)


def _refusal(node: Node) -> Refusal:
    """``refused: LOCKOUT`` or ``refused: {code: HARD_LIMIT, limit: daily_hard}``."""
    if node.is_mapping():
        values = node.mapping(required=("code",), optional=("limit",))
        code_node = values["code"]
    else:
        values = {}
        code_node = node
    name = code_node.string().upper()
    if name not in REFUSAL_CODES:
        raise code_node.fail(
            f"{name!r} is not a refusal{did_you_mean(name, REFUSAL_CODES)}; "
            f"refusals: {listing(REFUSAL_CODES)}"
        )
    code = REFUSAL_CODES[name]
    if "limit" not in values:
        return Refusal(code)
    if code not in (schema.HARD_LIMIT, schema.SOFT_LIMIT):
        raise values["limit"].fail("a limit goes with HARD_LIMIT or SOFT_LIMIT")
    limit = values["limit"].string()
    if limit not in vocab.LIMITS:
        raise values["limit"].fail(
            f"unknown limit {limit!r}{did_you_mean(limit, vocab.LIMITS)}; "
            f"limits: {listing(vocab.LIMITS)}"
        )
    return Refusal(code, vocab.LIMITS[limit])


def _refused(values: dict[str, Node]) -> Refusal | None:
    return _refusal(values["refused"]) if "refused" in values else None


# What every pump command takes besides its own fields: the refusal it
# expects, and the session role it is sent in (protocol/SPEC.md section 21).
_COMMAND_OWN = ("refused", "role")


ROLES = {
    "clinician": schema.ROLE_CLINICIAN,
    "patient": schema.ROLE_PATIENT,
    "none": schema.ROLE_READ_ONLY,
}


def _command(values: dict[str, Node]) -> dict[str, Any]:
    """``refused`` and ``role`` of a command step."""
    role = None
    if "role" in values:
        word = values["role"].string()
        if word not in ROLES:
            raise values["role"].fail(f"{word!r} is not a role: {listing(ROLES)}")
        role = ROLES[word]
    return {"refused": _refused(values), "role": role}


def _slice(values: dict[str, Node], total_ms: int) -> int:
    """The slice of an advance that polls for an alarm: given, or 1/100 of the span."""
    if "slice" in values:
        value = _duration(values["slice"])
        if value <= 0:
            raise values["slice"].fail("a slice must be above 0")
        return value
    return max(100, total_ms // 100)


def _since(values: dict[str, Node], ctx: _Context) -> str | None:
    if "since" not in values:
        return None
    mark = values["since"].string(_NAME, "a mark name (lower case, digits, _)")
    if mark not in ctx.marks:
        raise values["since"].fail(
            f"no mark {mark!r} before this step{did_you_mean(mark, ctx.marks)}; "
            f"marks so far: {listing(sorted(ctx.marks))}"
        )
    return mark


def _code_of(node: Node, table: dict[str, int], what: str) -> int:
    name = node.string().upper()
    if name not in table:
        raise node.fail(
            f"unknown {what} {name!r}{did_you_mean(name, table)}; {what}s: {listing(table)}"
        )
    return table[name]
