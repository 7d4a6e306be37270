"""Regenerates protocol/vectors.json, the golden frames both codecs must match.

Run it (``make vectors``) only when the schema changes on purpose, then review
the diff: a vector that changes is a wire-format change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cobs import cobs

from protocol import codec, schema

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
        {"device_time_ms": 2_592_000_000, "uptime_ms": 86_400_000, "state": 1, "boot_count": 3},
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
    import zlib

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


def main() -> None:
    path = Path(__file__).with_name("vectors.json")
    doc: dict[str, Any] = {
        "schema_fingerprint": schema.FINGERPRINT,
        "good": good_vectors(),
        "bad": bad_vectors(),
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path} ({len(doc['good'])} good, {len(doc['bad'])} bad)")


if __name__ == "__main__":
    main()
