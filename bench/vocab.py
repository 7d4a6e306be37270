"""Names a scenario may use for alarms, faults, states and log events.

Scenarios name things ("OCCLUSION", "runaway", "BOLUS_INTERRUPTED"); the wire
carries numbers. The one source of truth for the mapping is
``protocol/schema.py``, read here at import time, so that a new alarm or
fault id added to the schema is usable in a scenario with no change to the
bench.

A scenario can also be written *before* a capability lands, marked as
expected to fail with the reason (``xfail``). Such a scenario names an
alarm or fault the schema does not have yet; the lookups below return None
for it and the scenario parser accepts that only in an ``xfail`` scenario.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from protocol import schema


def _table(entries: Iterable[tuple[Any, ...]]) -> dict[str, int]:
    """NAME -> id from a schema table whose entries start with (id, name, ...)."""
    return {str(entry[1]).upper(): int(entry[0]) for entry in entries}


ALARMS: dict[str, int] = _table(schema.ALARMS)
FAULTS: dict[str, int] = _table(schema.FAULTS)
STATES: dict[str, int] = _table(schema.STATES)
LOG_EVENTS: dict[str, int] = _table(schema.LOG_CODES)
ERRORS: dict[str, int] = _table(schema.ERRORS)
LIMITS: dict[str, int] = {str(name): int(code) for code, name in schema.LIMITS}
MESSAGES: frozenset[str] = frozenset(str(entry[1]) for entry in schema.MESSAGES)
REFUSAL_LIMIT = schema.LINK_ERROR_LIMIT  # NACK codes from here up refuse a request


def alarm_name(alarm_id: int) -> str:
    return str(schema.alarm_name(alarm_id))


def has_message(name: str) -> bool:
    """Whether this bench's schema has a message (e.g. TRACE, added by the safety issue)."""
    return name in MESSAGES


def fields_of(message: str, reply: bool = True) -> dict[str, str]:
    """field -> unit of a message's reply (or request, or event payload)."""
    entry = schema.message_by_name(message)
    if len(entry) == 5:  # (id, name, port, request, reply)
        fields = entry[4] if reply and entry[4] is not None else entry[3]
    else:  # an event: (id, name, port, payload)
        fields = entry[3]
    return {name: unit for name, _fmt, unit in fields}


def request_fields(message: str, **values: int) -> dict[str, Any]:
    """A request with the given values and every other field of the schema's at zero.

    The safety issue grows some rig requests (INJECT_FAULT gains an onset);
    building from the schema keeps the bench speaking whichever one it has.
    Raises KeyError naming a value the schema has no field for.
    """
    entry = schema.message_by_name(message)
    request: dict[str, Any] = {}
    for name, fmt, _unit in entry[3]:
        count = fmt[:-1]
        if fmt.endswith("s"):  # fixed-size text
            request[name] = ""
        else:
            request[name] = [0] * int(count) if count.isdigit() else 0
    for name, value in values.items():
        if name not in request:
            raise KeyError(f"{message} has no field {name!r} in this schema")
        request[name] = value
    return request
