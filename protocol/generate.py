"""Regenerates protocol/vectors.json and protocol/table.py from the schema.

vectors.json: the golden frames both codecs must match.

Run it (``make vectors``) only when the schema changes on purpose, then review
the diff: a vector that changes is a wire-format change. It also writes
protocol/table.py, the firmware's compact view of the schema.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

from cobs import cobs

from protocol import auth, codec, schema

REPLY = schema.FLAG_REPLY
NACK = schema.FLAG_REPLY | schema.FLAG_ERROR
EVENT = schema.FLAG_EVENT

# (vector name, message, seq, flags, fields)
GOOD: list[tuple[str, str, int, int, dict[str, Any]]] = [
    (
        "hello request",
        "HELLO",
        1,
        0,
        {"protocol_version": schema.PROTOCOL_VERSION, "schema_fingerprint": schema.FINGERPRINT},
    ),
    (
        "hello reply",
        "HELLO",
        1,
        REPLY,
        {
            "protocol_version": schema.PROTOCOL_VERSION,
            "firmware_version": "0.1.0",
            "board": "sim",
            "device_id": "SIM-0001",
            "schema_fingerprint": schema.FINGERPRINT,
            "micropython_version": "1.28.0",
        },
    ),
    ("ping request", "PING", 2, 0, {"token": 0xDEADBEEF}),
    ("ping reply", "PING", 2, REPLY, {"token": 0xDEADBEEF}),
    ("status request", "STATUS", 0x1234, 0, {}),
    (
        "status reply",
        "STATUS",
        0x1234,
        REPLY,
        {
            "device_time_ms": 2_592_000_000,
            "uptime_ms": 86_400_000,
            "state": 2,
            "boot_count": 3,
            "mode": 1,
            "rate_nl_day": 1_000_000,
            "reservoir_nl": 19_000_000,
            "delivered_nl": 1_000_000,
            "bolus_kind": 0,
            "bolus_remaining_nl": 0,
            "alarms": 0,
            "program_crc": 0x22B8A50F,
            "pending": 0,
            "time_to_empty_s": 1_641_600,
            "refill_date_s": 1_555_200,
            "pb_last_day": 0,
            "window_1h_ng": 20_800,
            "window_24h_ng": 499_900,
            "acknowledged": 0,
            "pressure_x10": 74,
            "battery_mv": 3_000,
            "eos_days": 0xFFFF,
            "tip_drug_id": 4,
            "tip_conc_ug_ml": 500,
            "new_drug_at_tip_s": 0,
        },
    ),
    ("link stats request", "LINK_STATS", 7, 0, {}),
    (
        "link stats reply",
        "LINK_STATS",
        7,
        REPLY,
        {
            "frames_ok": 10,
            "garbage": 1,
            "bad_crc": 2,
            "bad_frame": 3,
            "oversize": 4,
            "rejected": 5,
            "duplicates": 6,
            "tx_dropped": 0,
        },
    ),
    (
        "rig hello request",
        "RIG_HELLO",
        0xFFFF,
        0,
        {"protocol_version": schema.PROTOCOL_VERSION, "schema_fingerprint": schema.FINGERPRINT},
    ),
    (
        "rig hello reply",
        "RIG_HELLO",
        0xFFFF,
        REPLY,
        {
            "protocol_version": schema.PROTOCOL_VERSION,
            "rig_kind": "virtual",
            "schema_fingerprint": schema.FINGERPRINT,
            "seed": 42,
        },
    ),
    ("advance 30 days", "ADVANCE", 9, 0, {"duration_ms": 30 * 86_400_000}),
    ("advance reply", "ADVANCE", 9, REPLY, {"device_time_ms": 30 * 86_400_000}),
    ("reset request", "RESET", 10, 0, {}),
    ("reset reply", "RESET", 10, REPLY, {}),
    ("confirm request", "CONFIRM", 20, 0, {"crc": 0x22B8A50F}),
    ("confirm reply", "CONFIRM", 20, REPLY, {"crc": 0x22B8A50F}),
    ("patient bolus request", "PATIENT_BOLUS", 21, 0, {}),
    ("patient bolus reply", "PATIENT_BOLUS", 21, REPLY, {"bolus_id": 7, "volume_nl": 50_000}),
    ("lockout nack", "PATIENT_BOLUS", 22, NACK, {"code": schema.LOCKOUT, "detail": 1200}),
    (
        "refill request",
        "REFILL",
        23,
        0,
        {
            "withdrawn_nl": 1_950_000,
            "added_nl": 20_000_000,
            "drug_id": 4,
            "conc_ug_ml": 2_000,
            "program_crc": 0x22B8A50F,
        },
    ),
    (
        "catheter request",
        "CATHETER",
        25,
        0,
        {"catheter_mm": 600, "nl_per_cm": 2_600, "empty": 1},
    ),
    ("catheter reply", "CATHETER", 25, REPLY, {"path_nl": 176_000}),
    (
        "refill reply",
        "REFILL",
        23,
        REPLY,
        {
            "expected_nl": 2_000_000,
            "discrepancy_nl": -50_000,
            "flagged": 0,
            "refill_date_s": 2_000_000,
        },
    ),
    ("truth request", "TRUTH", 24, 0, {}),
    (
        "truth reply",
        "TRUTH",
        24,
        REPLY,
        {
            "pumped_nl": 1_000_000,
            "tip_nl": 1_000_000,
            "reservoir_nl": 19_000_000,
            "steps": 40_000,
            "powered": 1,
            "journal_bytes": 276_811,
            "pocket_nl": 0,
            "released_nl": 0,
            "tip_ng": 500_000,
        },
    ),
    (
        "bolus event",
        "BOLUS_EVENT",
        2,
        EVENT,
        {"device_time_ms": 3_600_000, "bolus_id": 7, "kind": 4, "action": 2, "volume_nl": 50_000},
    ),
    ("boot event", "BOOT", 1, EVENT, {"device_time_ms": 0, "reset_cause": 0, "boot_count": 1}),
    ("nack bad payload", "PING", 11, NACK, {"code": schema.BAD_PAYLOAD, "detail": 4}),
]


def _bad(name: str, wire: bytes, error: str, seq: int | None) -> dict:
    return {"name": name, "hex": wire.hex(), "error": error, "seq": seq}


def bad_vectors() -> list[dict]:
    """Frames the receiver must reject, with the error it must report."""
    good = codec.encode("STATUS", 0x0102, {})
    body = bytearray(cobs.decode(good[1:-1]))
    flipped = bytearray(body)
    flipped[-1] ^= 0x01
    truncated = body[:-2]
    unknown = codec.encode_raw(0x7F, 0x0103, 0, b"")
    old_version = bytearray(cobs.decode(codec.encode("PING", 0x0104, {"token": 1})[1:-1]))
    old_version[0] = 0

    old_version[-4:] = (zlib.crc32(bytes(old_version[:-4])) & 0xFFFFFFFF).to_bytes(4, "little")
    short_payload = codec.encode_raw(0x02, 0x0105, 0, b"\x01\x02")
    return [
        _bad("bad crc", b"\x00" + cobs.encode(bytes(flipped)) + b"\x00", "BAD_CRC", 0x0102),
        _bad("truncated", b"\x00" + cobs.encode(bytes(truncated)) + b"\x00", "BAD_LENGTH", 0x0102),
        _bad("garbage", b"\x00\x41\x42\x43\x00", "GARBAGE", None),
        _bad("unknown id", unknown, "UNKNOWN_MESSAGE", 0x0103),
        _bad(
            "old version",
            b"\x00" + cobs.encode(bytes(old_version)) + b"\x00",
            "BAD_VERSION",
            0x0104,
        ),
        _bad("short payload", short_payload, "BAD_PAYLOAD", 0x0105),
    ]


def auth_vectors() -> dict[str, Any]:
    """A session from fixed keys and nonces, and a frame signed in it (SPEC section 21)."""
    clinician = bytes(range(32))
    patient = bytes(range(32, 64))
    role = schema.ROLE_CLINICIAN
    pump_nonce = bytes(range(0xA0, 0xB0))
    client_nonce = bytes(range(0xB0, 0xC0))
    key = auth.session_key(clinician, role, pump_nonce, client_nonce)
    session = auth.Session(role, key, counter=6)
    request_id = bytes(range(0xC0, 0xC8))
    signed = codec.encode(
        "CONFIRM", 20, {"crc": 0x22B8A50F}, signer=lambda c: session.sign(c, request_id)
    )
    body = struct.pack("<4s32s32s", schema.KEYSTORE_MAGIC, patient, clinician)
    keystore = body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)
    return {
        "clinician_key": clinician.hex(),
        "patient_key": patient.hex(),
        "keystore": keystore.hex(),
        "role": role,
        "pump_nonce": pump_nonce.hex(),
        "client_nonce": client_nonce.hex(),
        "client_proof": auth.client_proof(clinician, role, pump_nonce, client_nonce).hex(),
        "pump_proof": auth.pump_proof(clinician, role, pump_nonce, client_nonce).hex(),
        "session_key": key.hex(),
        "signed_frame": {
            "hex": signed.hex(),
            "message": "CONFIRM",
            "seq": 20,
            "fields": {"crc": 0x22B8A50F},
            "counter": 7,
            "request_id": request_id.hex(),
        },
    }


def good_vectors() -> list[dict]:
    vectors = []
    for name, message, seq, flags, fields in GOOD:
        wire = codec.encode(message, seq, fields, flags)
        vectors.append(
            {
                "name": name,
                "hex": wire.hex(),
                "message": message,
                "msg_id": codec.MESSAGE_TYPES[message].msg_id,
                "seq": seq,
                "flags": flags,
                "fields": fields,
            }
        )
    return vectors


TABLE_HEADER = """\
# GENERATED from protocol/schema.py by `make vectors` (protocol/generate.py).
# Do not edit: change the schema and regenerate; a test fails when stale.
#
# The firmware's compact view of the schema: protocol constants, message ids
# and the struct format of every payload. The full schema (names, units,
# descriptions) stays on the host, where its heap costs nothing.
"""


def _bytes_literal(value: bytes) -> str:
    """An ASCII bytes constant as ruff formats it: b"..."."""
    return 'b"' + value.decode("ascii") + '"'


def _struct_name(name: str) -> str:
    return name.upper()


def table_text() -> str:
    """The text of protocol/table.py for the current schema."""
    lines = [TABLE_HEADER]
    constants = [
        ("PROTOCOL_VERSION", schema.PROTOCOL_VERSION),
        ("FINGERPRINT", f"0x{schema.FINGERPRINT:08X}"),
        ("HEADER_FORMAT", json.dumps(schema.HEADER_FORMAT)),
        ("HEADER_SIZE", schema.HEADER_SIZE),
        ("CRC_SIZE", schema.CRC_SIZE),
        ("MAX_PAYLOAD", schema.MAX_PAYLOAD),
        ("MAX_BODY", schema.MAX_BODY),
        ("MAX_ENCODED", schema.MAX_ENCODED),
        ("MAX_WIRE", schema.MAX_WIRE),
        ("MAX_ADVANCE_MS", schema.MAX_ADVANCE_MS),
        ("FLAG_REPLY", schema.FLAG_REPLY),
        ("FLAG_ERROR", schema.FLAG_ERROR),
        ("FLAG_EVENT", schema.FLAG_EVENT),
        ("LINK_ERROR_LIMIT", schema.LINK_ERROR_LIMIT),
        ("FLAG_AUTH", schema.FLAG_AUTH),
        ("ROLE_READ_ONLY", schema.ROLE_READ_ONLY),
        ("ROLE_PATIENT", schema.ROLE_PATIENT),
        ("ROLE_CLINICIAN", schema.ROLE_CLINICIAN),
        ("KEY_SIZE", schema.KEY_SIZE),
        ("NONCE_SIZE", schema.NONCE_SIZE),
        ("PROOF_SIZE", schema.PROOF_SIZE),
        ("MAC_SIZE", schema.MAC_SIZE),
        ("AUTH_TRAILER_FORMAT", json.dumps(schema.AUTH_TRAILER_FORMAT)),
        ("AUTH_TRAILER_SIZE", schema.AUTH_TRAILER_SIZE),
        ("REQUEST_ID_SIZE", schema.REQUEST_ID_SIZE),
        ("REPLY_MAC_SIZE", schema.REPLY_MAC_SIZE),
        ("OUTCOMES_KEPT", schema.OUTCOMES_KEPT),
        ("OUTCOME_REPLY_SIZE", schema.OUTCOME_REPLY_SIZE),
        ("SESSION_IDLE_S", schema.SESSION_IDLE_S),
        ("SESSION_MAX_S", schema.SESSION_MAX_S),
        ("CHALLENGE_S", schema.CHALLENGE_S),
        ("KEYSTORE_FILE", json.dumps(schema.KEYSTORE_FILE)),
        ("KEYSTORE_MAGIC", _bytes_literal(schema.KEYSTORE_MAGIC)),
        ("KEYSTORE_SIZE", schema.KEYSTORE_SIZE),
        ("LABEL_OPEN", _bytes_literal(schema.LABEL_OPEN)),
        ("LABEL_PUMP", _bytes_literal(schema.LABEL_PUMP)),
        ("LABEL_SESSION", _bytes_literal(schema.LABEL_SESSION)),
        ("BOLUS_MAX_DURATION_S", schema.BOLUS_MAX_DURATION_S),
        ("FLEX_OVERNIGHT", schema.FLEX_OVERNIGHT),
    ]
    lines += [f"{name} = {value}" for name, value in constants]
    lines.append("\n# names: states, reset causes, modes, bolus kinds, drugs, refills, power")
    for prefix, table in schema.VOCABULARIES:
        lines += [f"{prefix}{name.upper()} = {code}" for code, name in table]
    lines += [f"ALARM_{name} = {code}" for code, name, _priority in schema.ALARMS]
    lines.append(f"ALARM_MAX_ID = {max(code for code, _name, _priority in schema.ALARMS)}")
    lines.append("\n# error codes (NACK)")
    lines += [f"{name} = {code}" for code, name in schema.ERRORS]
    lines.append("\n# message ids; <NAME>_REQUEST / _REPLY / _EVENT: struct formats")
    pump: list[str] = []
    rig: list[str] = []
    for msg_id, name, port, request, reply in schema.MESSAGES:
        lines.append(f"{name} = 0x{msg_id:02X}")
        if reply is None:
            lines.append(f"{name}_EVENT = {json.dumps(schema.struct_format(request))}")
            continue
        lines.append(f"{name}_REQUEST = {json.dumps(schema.struct_format(request))}")
        lines.append(f"{name}_REPLY = {json.dumps(schema.struct_format(reply))}")
        size = struct.calcsize(schema.struct_format(request))
        if port in (schema.PORT_PUMP, schema.PORT_BOTH):
            pump.append(f"    {name}: {size},")
        if port in (schema.PORT_RIG, schema.PORT_BOTH):
            rig.append(f"    {name}: {size},")
    lines.append("NACK_REPLY = " + json.dumps(schema.struct_format(schema.NACK_FIELDS)))
    lines.append("\n# requests each port takes: message id -> request payload size")
    lines.append("PUMP_REQUESTS = {")
    lines += pump
    lines.append("}")
    lines.append("RIG_REQUESTS = {")
    lines += rig
    lines.append("}")
    lines.append("# the session role each request needs (absent: READ_ONLY)")
    lines.append("REQUIRED_ROLE = {")
    for name, role in schema.MESSAGE_ROLES:
        lines.append(f"    {name}: {role},")
    lines.append("}")
    lines.append("# requests with a role that need no request id (SPEC section 23)")
    lines.append("ONCE_EXCEPT = (" + "".join(f"{name}," for name in schema.ONCE_EXCEPT) + ")")
    lines.append("# plain requests that change nothing: never held in the reply cache (SPEC 7)")
    lines.append("QUERIES = (")
    lines += [f"    {name}," for name in schema.QUERIES]
    lines.append(")")
    lines.append("ALL_IDS = (")
    lines += [f"    0x{m[0]:02X}," for m in schema.MESSAGES]
    lines.append(")")
    lines.append("\n# the program's fields in order: (name, number of struct values)")
    lines.append("PROGRAM_FIELDS = (")
    for name, fmt, _unit in schema.PROGRAM_FIELDS:
        count = int(fmt[:-1]) if len(fmt) > 1 and not fmt.endswith("s") else 1
        lines.append(f"    ({json.dumps(name)}, {count}),")
    lines.append(")")
    return "\n".join(lines) + "\n"


TABLE_PATH = Path(__file__).with_name("table.py")
LOGCODES_PATH = Path(__file__).parents[1] / "firmware" / "pump" / "logcodes.py"
LOGCODES_HEADER = """\
# Event-log codes (GET_LOG): generated from protocol/schema.py LOG_CODES by
# `make vectors` (protocol/generate.py); do not edit. The schema says what the
# two arguments a and b of each code carry.
"""


def logcodes_text() -> str:
    """The text of firmware/pump/logcodes.py: the schema's log codes by name."""
    lines = [LOGCODES_HEADER]
    lines += [f"{name} = {code}" for code, name in schema.LOG_CODES]
    lines.append("")
    lines.append("# Codes that go to the access log (GET_ACCESS_LOG), not the therapy history")
    lines.append("# (schema ACCESS_LOG_CODES). A PB_REFUSED or AUTH_REFUSED entry with a = 0")
    lines.append("# starts an access file: it carries the tally (b) over.")
    lines.append(f"ACCESS = ({', '.join(schema.ACCESS_LOG_CODES)})")
    return "\n".join(lines) + "\n"


def main() -> None:
    TABLE_PATH.write_text(table_text())
    LOGCODES_PATH.write_text(logcodes_text())
    print(f"wrote {LOGCODES_PATH}")
    print(f"wrote {TABLE_PATH} (schema fingerprint 0x{schema.FINGERPRINT:08X})")
    path = Path(__file__).with_name("vectors.json")
    doc: dict[str, Any] = {
        "schema_fingerprint": schema.FINGERPRINT,
        "good": good_vectors(),
        "bad": bad_vectors(),
        "auth": auth_vectors(),
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path} ({len(doc['good'])} good, {len(doc['bad'])} bad)")


if __name__ == "__main__":
    main()
