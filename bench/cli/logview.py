"""Event-log entries for a person: each entry's ``a`` and ``b`` said by its code.

The schema's LOG_CODES comments say what ``a`` and ``b`` hold for each code
(an alarm id, a CRC, nL, 0.1 mmHg, a NACK code with its detail); this module
turns them into words, the way ``pumpbench alarms`` shows alarm names. A code
this table does not know shows its raw numbers, never nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.link.client import BOLUS_KIND_NAMES, soft_limit_names
from bench.program import file as pf
from protocol import schema

_SESSION_END = {0: "closed", 1: "idle", 2: "too old", 3: "replaced"}
_ABANDONED = {0: "timed out", 1: "cancelled", 2: "replaced"}
_SELF_TEST = {1: "program", 2: "journal", 3: "key store"}
_WINDOW = {1: "hourly", 2: "daily"}


def _u32(value: int) -> int:
    return value & 0xFFFF_FFFF


def _crc(a: int, _b: int) -> str:
    return f"CRC 0x{_u32(a):08x}"


def _name(table: tuple[tuple[int, str], ...], code: int, what: str) -> str:
    for number, name in table:
        if number == code:
            return name
    return f"{what} {code}"


def _drug(drug_id: int) -> str:
    return pf.DRUG_NAMES.get(drug_id, f"drug {drug_id}")


def _vol(nl: int) -> str:
    return pf.format_volume(nl)


def _role(code: int) -> str:
    return _name(schema.ROLES, code, "role").lower()


def _alarm(a: int, _b: int) -> str:
    return schema.alarm_name(a) if 0 < a < 33 else f"alarm {a}"


def _boot(a: int, b: int) -> str:
    cause = _name(schema.RESET_CAUSES, a, "cause")
    return f"{cause}" + (", unexpected" if b else "")


def _program(a: int, b: int) -> str:
    overridden = soft_limit_names(_u32(b))
    return _crc(a, b) + (f", soft limits overridden: {', '.join(overridden)}" if b else "")


def _bolus_start(a: int, b: int) -> str:
    kind = a >> 16
    kind_name = BOLUS_KIND_NAMES[kind] if kind < len(BOLUS_KIND_NAMES) else f"kind {kind}"
    return f"bolus {a & 0xFFFF} ({kind_name.lower()}), {_vol(b)}"


def _nack(a: int, b: int, second: str) -> str:
    code, rest = a & 0xFF, a >> 8
    if not a:
        return f"{b} ever (tally carried into a new file)"
    other = f"detail {rest}" if second == "detail" else _msg_name(rest)
    return f"{schema.error_name(code)} ({other}), {b} ever"


def _msg_name(msg_id: int) -> str:
    for number, name, *_rest in schema.MESSAGES:
        if number == msg_id:
            return name
    return f"message 0x{msg_id:02x}"


def _roles_mask(mask: int) -> str:
    roles = [name for bit, name in ((1, "patient"), (2, "clinician")) if mask >> bit & 1]
    return " and ".join(roles) or "none"


def _x10(value: int) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}{abs(value) // 10}.{abs(value) % 10} mmHg"


# LINE_LIMITS a: what SENSING_LIMITED is about (docs/pump.md 15, log code 29)
_LIMITS = (
    (1, "held strokes (occlusion by the residuals' sum)"),
    (2, "weak strokes (per-stroke leak)"),
    (4, "30 % leaks (learned rise under 12 mmHg)"),
    (8, "CSF pulsation (tip migration)"),
)


def _limits(mask: int) -> list[str]:
    return [name for bit, name in _LIMITS if mask & bit]


_DECODERS: dict[str, Callable[[int, int], str]] = {
    "BOOT": _boot,
    "PROGRAM_PENDING": _program,
    "PROGRAM_ACTIVE": _program,
    "PROGRAM_ABANDONED": lambda a, b: f"{_crc(a, b)}, {_ABANDONED.get(b, f'reason {b}')}",
    "START": lambda _a, _b: "",
    "STOP": lambda _a, _b: "",
    "BOLUS_START": _bolus_start,
    "BOLUS_DONE": lambda a, b: f"bolus {a}, {_vol(b)} delivered",
    "BOLUS_CANCELLED": lambda a, b: f"bolus {a}, {_vol(b)} delivered",
    "BOLUS_INTERRUPTED": lambda a, b: f"bolus {a}, {_vol(b)} delivered before the reset",
    "PB_REFUSED": lambda a, b: _nack(a, b, "detail"),
    "AUTH_REFUSED": lambda a, b: _nack(a, b, "message"),
    "REFILL": lambda a, b: f"{_vol(a)} added, discrepancy {_vol(b)}",
    "ALARM_RAISED": lambda a, b: f"{_alarm(a, b)}, {schema.priority_name(b).lower()} priority",
    "ALARM_CLEARED": _alarm,
    "ALARM_ACKNOWLEDGED": _alarm,
    "GOVERNOR_STOP": lambda a, b: (
        f"{_WINDOW.get(a, f'window {a}')} window, {pf.format_dose(b)} in it"
    ),
    "STROKE_MISMATCH": lambda a, b: f"{a} steps moved of {b} commanded",
    "SOFT_OVERRIDE": lambda a, _b: ", ".join(soft_limit_names(_u32(a))) or "none",
    "CLOCK_SET": lambda a, _b: f"local time = device time + {pf.format_duration(_u32(a))}",
    "STALL_RETRY": lambda a, b: f"attempt {a}, {b} steps moved",
    "SELF_TEST_FAILED": lambda a, b: f"{_SELF_TEST.get(a, f'check {a}')}, detail {b}",
    "OCCLUSION_STROKE": lambda a, b: f"residual {_x10(a)}, stroke response {_x10(b)}",
    "SESSION_OPENED": lambda a, _b: _role(a),
    "SESSION_CLOSED": lambda a, b: f"{_role(a)}, {_SESSION_END.get(b, f'reason {b}')}",
    "REFILL_DRUG": lambda a, b: f"{_drug(a)} {pf.format_concentration(b)}",
    "TIP_DRUG": lambda a, b: f"{_drug(a)} {pf.format_concentration(b)} at the tip",
    "CATHETER": lambda a, b: f"drug path {_vol(a)}" + (", a new empty catheter" if b else ""),
    "LINE_LEARNED": lambda a, b: f"stroke rise {_x10(a)}, sd {_x10(b)}",
    "LINE_LIMITS": lambda a, b: (
        f"limited: {', '.join(_limits(a)) or 'nothing any more'}; noise {_x10(b)}"
    ),
    "KEYS_PROVISIONED": lambda a, _b: f"keys for {_roles_mask(a)}",
}


def describe(entry: dict[str, Any]) -> str:
    """What ``a`` and ``b`` of a log entry mean, in words (raw numbers for an unknown code)."""
    decode = _DECODERS.get(entry["name"])
    if decode is None:
        return f"a={entry['a']} b={entry['b']}"
    try:
        return decode(entry["a"], entry["b"])
    except (KeyError, ValueError, IndexError):  # a value outside its table
        return f"a={entry['a']} b={entry['b']}"
