"""An independent decoder written from protocol/SPEC.md alone.

Nothing here imports protocol.schema, protocol.codec or protocol.table: the
message layouts come from the tables of SPEC sections 4.1-4.5, the
header from section 2, the NACK payload from section 5, the trailer and
reply-MAC sizes from sections 2, 21.4 and 21.6. Every golden vector and
every frame of a session on a virtual board (signed and plain requests and
replies, NACKs, events) must decode to what the bench's own codec says, and
each table's stated payload size must be the sum of its fields. A SPEC that
drifts from the firmware fails here.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from typing import Any

import pytest
from cobs import cobs

from bench.board.paths import ROOT

SPEC = (ROOT / "protocol" / "SPEC.md").read_text()
VECTORS = json.loads((ROOT / "protocol" / "vectors.json").read_text())

_SCALAR = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q", "i8": "b", "i16": "h", "i32": "i"}
_TYPE = r"(u8|u16|u32|u64|i8|i16|i32|char|bytes)(?:\[(\d+)\])?"


def _section(title: str) -> str:
    start = SPEC.index(title)
    end = SPEC.find("\n## ", start + len(title))
    nxt = SPEC.find("\n### ", start + len(title))
    ends = [e for e in (end, nxt) if e > 0]
    return SPEC[start : min(ends) if ends else len(SPEC)]


def _rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = line.replace("\\|", "\x00").strip().strip("|").split("|")
            rows.append([cell.replace("\x00", "|").strip() for cell in cells])
    return rows


Field = tuple[str, str, int]  # name, type ("u32", "char", "bytes", ...), count (1 or N)


def _field(name: str, kind: str, count: str | None) -> Field:
    return name, kind, int(count) if count else 1


def _typed_table(title: str, name_col: int, type_col: int) -> list[Field]:
    fields = []
    for row in _rows(_section(title))[1:]:
        if len(row) <= max(name_col, type_col):
            continue  # another table of the section
        name = re.fullmatch(r"`(\w+)`", row[name_col])
        kind = re.fullmatch(_TYPE, row[type_col])
        if name and kind:
            fields.append(_field(name.group(1), kind.group(1), kind.group(2)))
    return fields


STATUS_FIELDS = _typed_table("### 4.4 STATUS reply", 1, 2)
PROGRAM_FIELDS = _typed_table("### 4.5 The program", 2, 3)
HEADER = _rows(_section("### Header"))
COUNTERS = re.findall(r"`(\w+)`", _rows(_section("### 4.1 Pump port"))[4][3].split(":")[1])
TRAILER = int(re.search(r"the (\d+)-byte auth trailer", SPEC).group(1))
REPLY_MAC = int(re.search(r"the (\d+)-byte reply MAC", SPEC).group(1))
NACK = [(name, kind) for _off, kind, name in (_rows(_section("## 5. NACK"))[1:3])]


def _cell(text: str, known: dict[int, tuple[str, list[Field], list[Field] | None]]) -> list[Field]:
    """The fields a table cell describes, and checks its [size]."""
    size = re.search(r"(?<![\w\]])\[(\d+)\](?!.*(?<![\w\]])\[\d+\])", text)
    if text.startswith("—"):
        fields: list[Field] = []
    elif "fields of section 4.4" in text:
        fields = STATUS_FIELDS
    elif "fields of section 4.5" in text:
        fields = PROGRAM_FIELDS
    elif re.search(r"then the \d+ program fields", text):
        fields = [("crc", "u32", 1), *PROGRAM_FIELDS]
    elif "eight" in text and "counters" in text:
        fields = [(name, "u32", 1) for name in COUNTERS]
    elif text.startswith("as GET_LOG"):
        by_name = {v[0]: v for v in known.values()}
        request, reply = by_name["GET_LOG"][1], by_name["GET_LOG"][2]
        fields = reply if "from the" in text else request
        assert reply is not None
    else:
        fields = [
            _field(m.group(1), m.group(2), m.group(3))
            for m in re.finditer(r"`(\w+)` " + _TYPE, text)
            if m.group(3) or m.group(2) not in ("char", "bytes")  # "`size` bytes": prose
        ]
    if size:
        assert _size(fields) == int(size.group(1)), f"SPEC size [{size.group(1)}]: {text[:60]}"
    return fields


def _size(fields: list[Field]) -> int:
    total = 0
    for _name, kind, count in fields:
        unit = 1 if kind in ("char", "bytes") else struct.calcsize("<" + _SCALAR[kind])
        total += unit * count
    return total


def _messages() -> dict[int, tuple[str, list[Field], list[Field] | None]]:
    known: dict[int, tuple[str, list[Field], list[Field] | None]] = {}
    for title in ("### 4.1 Pump port", "### 4.2 Rig port"):
        for row in _rows(_section(title))[1:]:
            msg_id, name = int(row[0], 16), row[1]
            request = _cell(row[2], known)
            reply = _cell(row[3], known)
            if msg_id in known and known[msg_id][0] == name:
                continue  # PING and LINK_STATS on both ports
            known[msg_id] = (name, request, reply)
    for row in _rows(_section("### 4.3 Events"))[1:]:
        known[int(row[0], 16)] = (row[1], _cell(row[2], known), None)
    return known


MESSAGES = _messages()


def _decode_fields(fields: list[Field], payload: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pos = 0
    for name, kind, count in fields:
        if kind in ("char", "bytes"):
            raw = payload[pos : pos + count]
            out[name] = raw.rstrip(b"\x00").decode("ascii") if kind == "char" else raw
            pos += count
            continue
        fmt = f"<{count}{_SCALAR[kind]}"
        values = struct.unpack_from(fmt, payload, pos)
        out[name] = list(values) if count > 1 else values[0]
        pos += struct.calcsize(fmt)
    assert pos == len(payload), f"{pos} of {len(payload)} payload bytes decoded"
    return out


def spec_decode(wire: bytes) -> tuple[str, int, int, dict[str, Any]]:
    """(name, seq, flags, fields) of one encoded frame, from the SPEC alone."""
    body = cobs.decode(wire.strip(b"\x00"))
    header_fmt = "<" + "".join(_SCALAR[row[2]] for row in HEADER[1:6])
    version, msg_id, seq, flags, length = struct.unpack_from(header_fmt, body, 0)
    assert version == 1
    end = 6 + length
    assert len(body) == end + 4
    assert struct.unpack_from("<I", body, end)[0] == zlib.crc32(body[:end]) & 0xFFFFFFFF
    payload = body[6:end]
    name, request, reply = MESSAGES[msg_id]
    if flags & 0x08:
        payload = payload[: -(REPLY_MAC if flags & 0x01 else TRAILER)]
    if flags & 0x02:
        nack = [(n.strip("`"), k, 1) for n, k in NACK]
        return name, seq, flags, _decode_fields(nack, payload)
    fields = reply if flags & 0x01 else request
    assert fields is not None
    return name, seq, flags, _decode_fields(fields, payload)


def _same(spec_value: Any, codec_value: Any) -> bool:
    if isinstance(codec_value, bytes) and isinstance(spec_value, list):
        return bytes(spec_value) == codec_value  # u8[N] in the SPEC: the same bytes
    if isinstance(spec_value, bytes):
        return codec_value in (spec_value, spec_value.hex()) or (
            isinstance(codec_value, str) and bytes.fromhex(codec_value) == spec_value
        )
    return bool(spec_value == codec_value)


def check_against_spec(
    wire: bytes, name: str, seq: int, flags: int, fields: dict[str, Any]
) -> None:
    got_name, got_seq, got_flags, got = spec_decode(wire)
    assert (got_name, got_seq, got_flags) == (name, seq, flags)
    assert set(got) == set(fields), f"{name}: SPEC fields {sorted(got)} vs {sorted(fields)}"
    for key, value in fields.items():
        assert _same(got[key], value), f"{name}.{key}: SPEC {got[key]!r}, codec {value!r}"


def test_the_spec_tables_cover_every_message_with_consistent_sizes() -> None:
    status = re.search(r"the (\d+) fields of section 4.4", SPEC)
    program = re.search(r"the program: (\d+) fields of section 4.5", SPEC)
    assert status and len(STATUS_FIELDS) == int(status.group(1))
    assert program and len(PROGRAM_FIELDS) == int(program.group(1))
    assert len(MESSAGES) >= 40
    assert TRAILER == 28 and REPLY_MAC == 12  # sizes stated in the prose


@pytest.mark.parametrize("vector", VECTORS["good"], ids=lambda v: v["name"])
def test_every_golden_vector_decodes_from_the_spec_alone(vector: dict[str, Any]) -> None:
    wire = bytes.fromhex(vector["hex"])
    check_against_spec(wire, vector["message"], vector["seq"], vector["flags"], vector["fields"])


def test_the_signed_golden_frame_decodes_from_the_spec_alone() -> None:
    signed = VECTORS["auth"]["signed_frame"]
    name, seq, flags, fields = spec_decode(bytes.fromhex(signed["hex"]))
    assert (name, seq, flags & 0x08) == (signed["message"], signed["seq"], 0x08)
    assert fields == signed["fields"]


def test_every_frame_of_a_session_decodes_from_the_spec_alone(pump: Any, rig: Any) -> None:
    # Every frame the bench receives on a virtual board (signed replies and
    # refusals included) is decoded again from the SPEC and compared with
    # the bench codec's reading.
    from bench.link.client import PumpRefused
    from tests.system import kit

    seen: list[tuple[bytes, Any]] = []
    for client in (pump, rig):
        deliver = client.transport._deliver

        def tap(chunk: bytes, deliver: Any = deliver) -> None:
            from protocol import codec

            seen.append((chunk, codec.decode(chunk)))
            deliver(chunk)

        client.transport._deliver = tap
    kit.start_therapy(
        pump, rig, kit.program(pb_dose_nl=20_000, pb_lockout_s=3600, pb_max_per_day=4)
    )
    rig.advance(60_000)
    pump.status()
    pump.get_program()
    pump.bolus("clinician", volume_nl=10_000)
    try:
        pump.bolus("clinician", volume_nl=10_000)  # a signed refusal: BOLUS_ACTIVE
    except PumpRefused:
        pass
    pump.log()
    pump.log(access=True)
    pump.outcome(2, pump.last_request_id)
    rig.truth()
    pump.link_stats()
    assert len(seen) >= 15
    for chunk, frame in seen:
        check_against_spec(chunk, frame.name, frame.seq, frame.flags, frame.fields)
    assert any(frame.flags == 0x09 for _c, frame in seen)  # a signed ACK
    assert any(frame.flags == 0x0B for _c, frame in seen)  # a signed NACK
