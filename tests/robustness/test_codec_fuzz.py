"""The host codec under hypothesis: decode raises only CodecError, every message
of the schema round-trips with any in-range values, and the stream splitter
never loses a complete frame."""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any

from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import auth, codec, schema

FUZZ = settings(max_examples=int(os.environ.get("ROBUSTNESS_CODEC_EXAMPLES", "300")), deadline=None)


def field_values(fmt: str, unit: str = "") -> st.SearchStrategy[Any]:
    """Any value the schema format can carry."""
    if fmt.endswith("s") and unit == "bytes":
        return st.binary(min_size=int(fmt[:-1]), max_size=int(fmt[:-1]))
    if fmt.endswith("s"):
        # ASCII without NUL (NUL is the padding, stripped when read)
        alphabet = st.characters(min_codepoint=1, max_codepoint=127)
        return st.text(alphabet, max_size=int(fmt[:-1]))
    if len(fmt) > 1:
        count = int(fmt[:-1])
        return st.lists(field_values(fmt[-1]), min_size=count, max_size=count)
    bits = struct.calcsize(fmt) * 8
    if fmt.islower():
        return st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    return st.integers(0, (1 << bits) - 1)


def payloads(fields: tuple[tuple[str, str, str], ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({name: field_values(fmt, unit) for name, fmt, unit in fields})


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, int, dict[str, Any], int]:
    """(name, seq, fields, flags) of any request, reply, event or NACK."""
    msg = draw(st.sampled_from(sorted(codec.MESSAGE_TYPES.values(), key=lambda m: m.msg_id)))
    seq = draw(st.integers(0, 0xFFFF))
    if msg.is_event:
        return msg.name, seq, draw(payloads(msg.request_fields)), schema.FLAG_EVENT
    kind = draw(st.sampled_from(("request", "reply", "nack")))
    if kind == "request":
        return msg.name, seq, draw(payloads(msg.request_fields)), 0
    if kind == "reply":
        assert msg.reply_fields is not None
        return msg.name, seq, draw(payloads(msg.reply_fields)), schema.FLAG_REPLY
    nack = draw(payloads(schema.NACK_FIELDS))
    return msg.name, seq, nack, schema.FLAG_REPLY | schema.FLAG_ERROR


def decode_or_codec_error(chunk: bytes) -> codec.Frame | None:
    try:
        return codec.decode(chunk)
    except codec.CodecError as error:
        assert error.code in {code for code, _name in schema.ERRORS}
        return None


@FUZZ
@given(st.binary(max_size=600))
def test_decoding_any_bytes_raises_only_codec_errors(data: bytes) -> None:
    decode_or_codec_error(data)


@FUZZ
@given(st.binary(max_size=300))
def test_decoding_any_cobs_chunk_raises_only_codec_errors(body: bytes) -> None:
    # well-formed COBS around anything: the body parser is reached
    decode_or_codec_error(cobs.encode(body))


@FUZZ
@given(
    msg_id=st.integers(0, 255),
    flags=st.integers(0, 255),
    version=st.sampled_from((schema.PROTOCOL_VERSION, schema.PROTOCOL_VERSION, 0, 2, 255)),
    payload=st.binary(max_size=schema.MAX_PAYLOAD),
    length_delta=st.sampled_from((0, 0, 0, -1, 1, 7)),
)
def test_decoding_intact_frames_of_any_content_raises_only_codec_errors(
    msg_id: int, flags: int, version: int, payload: bytes, length_delta: int
) -> None:
    # a valid CRC around any header and payload: every layout parser is reached
    header = struct.pack(
        schema.HEADER_FORMAT, version, msg_id, 7, flags, (len(payload) + length_delta) & 0xFF
    )
    body = header + payload
    body += struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)
    frame = decode_or_codec_error(cobs.encode(body))
    if frame is not None:
        assert (frame.msg_id, frame.seq, frame.flags) == (msg_id, 7, flags)


@FUZZ
@given(messages())
def test_every_message_round_trips_with_any_values(message: tuple[str, int, dict, int]) -> None:
    name, seq, fields, flags = message
    wire = codec.encode(name, seq, fields, flags)
    assert wire[0] == 0 and wire[-1] == 0 and 0 not in wire[1:-1]
    assert len(wire) <= schema.MAX_WIRE
    frame = codec.decode(wire[1:-1])
    assert (frame.seq, frame.flags, frame.fields) == (seq, flags, fields)
    assert frame.name == name or frame.is_nack


@FUZZ
@given(
    name=st.sampled_from(sorted(codec.MESSAGE_TYPES)),
    fields=st.dictionaries(
        st.sampled_from(("token", "crc", "kind", "volume_nl", "which", "x")),
        st.one_of(st.integers(-(2**70), 2**70), st.text(max_size=3), st.none(), st.floats()),
    ),
)
def test_encoding_bad_values_raises_only_codec_errors(name: str, fields: dict) -> None:
    try:
        codec.encode(name, 1, fields)
    except codec.CodecError:
        pass


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], bytes]:
    """Good frames with junk between them (junk may hold 0x00 and anything)."""
    frames = [
        codec.encode(name, seq, fields, flags)
        for name, seq, fields, flags in draw(st.lists(messages(), min_size=1, max_size=6))
    ]
    stream = b""
    for frame in frames:
        stream += draw(st.binary(max_size=20)) + frame
    return frames, stream + draw(st.binary(max_size=20).filter(lambda b: 0 not in b))


@FUZZ
@given(streams(), st.lists(st.integers(1, 64), min_size=1, max_size=30))
def test_split_stream_never_loses_a_complete_frame(
    sample: tuple[list[bytes], bytes], cuts: list[int]
) -> None:
    frames, stream = sample
    buffer = bytearray()
    chunks: list[bytes] = []
    position = 0
    for size in cuts * (len(stream) // sum(cuts) + 1):  # arbitrary read sizes
        if position >= len(stream):
            break
        buffer += stream[position : position + size]
        position += size
        chunks += codec.split_stream(buffer)
    # every frame's bytes come out whole, in order, and decode to themselves
    wanted = [frame[1:-1] for frame in frames]
    found = iter(chunks)
    for inner in wanted:
        assert any(chunk == inner for chunk in found), "a complete frame was lost"
    assert 0 not in buffer  # only the unterminated tail stays behind
    assert bytes(buffer) == stream[len(stream) - len(buffer) :]


@FUZZ
@given(
    message=messages(),
    key=st.binary(min_size=32, max_size=32),
    counter=st.integers(0, auth.COUNTER_MAX - 1),
)
def test_every_request_round_trips_signed(
    message: tuple[str, int, dict[str, Any], int], key: bytes, counter: int
) -> None:
    # An authenticated request decodes to its own fields, its counter and the
    # MAC of its header, payload and counter; any frame fits the wire.
    name, seq, fields, flags = message
    if flags:
        return  # replies, NACKs and events are never signed
    session = auth.Session(schema.ROLE_CLINICIAN, key, counter)
    try:
        wire = codec.encode(name, seq, fields, signer=session.sign)
    except codec.CodecError as error:
        assert error.code == schema.OVERSIZE  # no message of the schema is this big
        raise
    frame = codec.decode(wire[1:-1])
    assert frame.fields == fields and frame.counter == counter + 1
    body = cobs.decode(wire[1:-1])
    covered = body[: -schema.CRC_SIZE - schema.MAC_SIZE - 4]
    assert frame.mac == auth.frame_mac(key, covered, counter + 1)
    assert len(wire) <= schema.MAX_WIRE
