"""What the robustness campaigns share: names from the schema, request fields, alarm masks."""

from __future__ import annotations

import time
import zlib
from typing import Any

from protocol import codec, schema
from protocol.table import BOLUS_PATIENT

STROKE_NL = 200  # the firmware's nominal stroke (8 steps x 25 nL)


MINUTE_MS = 60_000


HOUR_MS = 3_600_000


DAY_MS = 86_400_000


LOG = {name: code for code, name in schema.LOG_CODES}


# What a refused request may log: its refusal, the session rules' own entries.
AUTH_LOG_CODES = frozenset(
    LOG[name] for name in ("AUTH_REFUSED", "SESSION_OPENED", "SESSION_CLOSED")
)


ALARM = {name: code for code, name, _priority in schema.ALARMS}


STATE = {name: code for code, name in schema.STATES}


PATIENT_KIND = BOLUS_PATIENT  # STATUS bolus_kind / BOLUS_START kind of a patient bolus


def message_name(msg_id: int) -> str:
    entry = schema.message_by_id(msg_id)
    return entry[1] if entry is not None else f"0x{msg_id:02X}"


def program_fields(**overrides: Any) -> dict[str, Any]:
    """PROGRAM fields: morphine 10 mg/mL, continuous 1 mL/day, no patient bolus,
    unless overridden (the robustness runs' program, and the tests')."""
    fields: dict[str, Any] = {
        "drug_id": 1,
        "conc_ug_ml": 10_000,
        "mode": 1,
        "basal_nl_day": 1_000_000,
        "flex_count": 0,
        "flex_start_min": [0] * 24,
        "flex_rate_nl_day": [0] * 24,
        "flex_days": [0] * 24,
        "pb_dose_nl": 0,
        "pb_lockout_s": 0,
        "pb_max_per_day": 0,
        "low_reservoir_nl": 2_000_000,
        "override_soft": 0,
    }
    fields.update(overrides)
    return fields


def refill_request(
    withdrawn_nl: int, added_nl: int, drug_id: int = 1, conc_ug_ml: int = 10_000
) -> dict[str, Any]:
    """REFILL fields for the drug of :func:`program_fields` (morphine 10 mg/mL)
    unless told: a refill that changes no drug (docs/pump.md 22.2)."""
    return {
        "withdrawn_nl": withdrawn_nl,
        "added_nl": added_nl,
        "drug_id": drug_id,
        "conc_ug_ml": conc_ug_ml,
        "program_crc": 0,
    }


def bolus_fields(**fields: Any) -> dict[str, Any]:
    base = {
        "kind": 1,
        "volume_nl": 0,
        "dose_ng": 0,
        "duration_s": 0,
        "catheter_mm": 0,
        "nl_per_cm": 0,
        "override_soft": 0,
    }
    base.update(fields)
    return base


def program_crc_of(fields: dict[str, Any]) -> int:
    """CRC-32 of a program's packed fields (SPEC section 4.5), whatever the pump says."""
    payload = codec.MESSAGE_TYPES["PROGRAM"].request.build(
        {name: fields[name] for name, _fmt, _unit in schema.PROGRAM_FIELDS}
    )
    return zlib.crc32(payload) & 0xFFFFFFFF


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


_STOPPING = (
    "EMPTY_RESERVOIR",
    "DOSE_LIMIT",
    "MEMORY",
    "OCCLUSION",
    "LEAK",
    "MOTOR_STALL",
    "RUNAWAY",
    "ENCODER_FAILURE",
    "BATTERY_EOS",
)


def _stopping(mask: int) -> bool:
    return any(mask & (1 << (ALARM[name] - 1)) for name in _STOPPING)


def _alarm_ids(mask: int) -> list[int]:
    return [bit + 1 for bit in range(32) if mask >> bit & 1]
