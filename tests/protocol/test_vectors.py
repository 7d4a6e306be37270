"""Golden vectors against the host codec (construct + cobs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cobs import cobs

from protocol import auth, codec, generate, schema

VECTORS = json.loads((Path(codec.__file__).with_name("vectors.json")).read_text())


def test_firmware_table_is_generated_from_this_schema() -> None:
    # The firmware speaks through protocol/table.py; stale means the schema
    # changed without `make vectors`.
    assert generate.TABLE_PATH.read_text() == generate.table_text(), "run `make vectors`"


def test_vectors_match_this_schema() -> None:
    # A schema change without `make vectors` must not go unnoticed.
    assert VECTORS["schema_fingerprint"] == schema.FINGERPRINT


@pytest.mark.parametrize("vector", VECTORS["good"], ids=lambda v: v["name"])
def test_good_vector_decodes_to_its_fields(vector: dict) -> None:
    wire = bytes.fromhex(vector["hex"])
    assert wire[0] == 0 and wire[-1] == 0 and 0 not in wire[1:-1]
    frame = codec.decode(wire[1:-1])
    assert (frame.name, frame.msg_id, frame.seq, frame.flags) == (
        vector["message"],
        vector["msg_id"],
        vector["seq"],
        vector["flags"],
    )
    assert frame.fields == vector["fields"]


@pytest.mark.parametrize("vector", VECTORS["good"], ids=lambda v: v["name"])
def test_good_vector_encodes_to_its_bytes(vector: dict) -> None:
    wire = codec.encode(vector["message"], vector["seq"], vector["fields"], vector["flags"])
    assert wire.hex() == vector["hex"]


HOST_REJECTS = {
    "BAD_CRC": schema.BAD_CRC,
    "BAD_LENGTH": schema.BAD_LENGTH,
    "BAD_VERSION": schema.BAD_VERSION,
    "UNKNOWN_MESSAGE": schema.UNKNOWN_MESSAGE,
    "BAD_PAYLOAD": schema.BAD_PAYLOAD,
}


@pytest.mark.parametrize("vector", VECTORS["bad"], ids=lambda v: v["name"])
def test_bad_vector_is_rejected_with_its_code(vector: dict) -> None:
    wire = bytes.fromhex(vector["hex"])
    with pytest.raises(codec.CodecError) as caught:
        codec.decode(wire[1:-1])
    if vector["error"] in HOST_REJECTS:
        assert caught.value.code == HOST_REJECTS[vector["error"]]
        assert caught.value.seq == vector["seq"]


def test_every_message_round_trips() -> None:
    for msg in codec.MESSAGE_TYPES.values():
        request = {name: _sample(fmt, unit) for name, fmt, unit in msg.request_fields}
        flags = schema.FLAG_EVENT if msg.is_event else 0
        assert codec.decode(codec.encode(msg.name, 77, request, flags)[1:-1]).fields == request
        if msg.reply_fields is not None:
            reply = {name: _sample(fmt, unit) for name, fmt, unit in msg.reply_fields}
            frame = codec.decode(codec.encode(msg.name, 78, reply, schema.FLAG_REPLY)[1:-1])
            assert frame.fields == reply and frame.is_reply


def _sample(fmt: str, unit: str) -> object:
    if fmt.endswith("s"):
        return bytes(range(int(fmt[:-1]))) if unit == "bytes" else "abc"
    if len(fmt) > 1:
        return [3] * int(fmt[:-1])
    return 3


def test_split_stream_keeps_partial_frame() -> None:
    wire = codec.encode("PING", 5, {"token": 9})
    buffer = bytearray(b"\x00\x00" + wire + wire[:4])
    chunks = codec.split_stream(buffer)
    assert [codec.decode(c).fields for c in chunks] == [{"token": 9}]
    assert buffer == bytearray(wire[1:4])


def test_oversize_and_unencodable_values_are_codec_errors() -> None:
    with pytest.raises(codec.CodecError) as caught:
        codec.decode(b"\x01" * (schema.MAX_ENCODED + 1))
    assert caught.value.code == schema.OVERSIZE
    with pytest.raises(codec.CodecError):
        codec.encode("PING", 1, {"token": -1})
    with pytest.raises(codec.CodecError):
        codec.encode("NO_SUCH_MESSAGE", 1, {})


def test_crc_is_standard_crc32() -> None:
    # The check value pinned in SPEC.md: CRC-32 of "123456789".
    import binascii

    assert binascii.crc32(b"123456789") == 0xCBF43926


AUTH = VECTORS["auth"]


def _hex(name: str) -> bytes:
    return bytes.fromhex(AUTH[name])


def test_auth_vectors_derive_the_session_from_the_key_and_nonces() -> None:
    key, role = _hex("clinician_key"), AUTH["role"]
    nonces = (_hex("pump_nonce"), _hex("client_nonce"))
    assert auth.client_proof(key, role, *nonces) == _hex("client_proof")
    assert auth.pump_proof(key, role, *nonces) == _hex("pump_proof")
    assert auth.session_key(key, role, *nonces) == _hex("session_key")
    # three labels, three different values: one never stands in for another
    assert len({_hex("client_proof"), _hex("pump_proof"), _hex("session_key")}) == 3


def test_auth_vector_frame_carries_its_counter_and_mac() -> None:
    signed = AUTH["signed_frame"]
    wire = bytes.fromhex(signed["hex"])
    frame = codec.decode(wire[1:-1])
    assert (frame.name, frame.seq, frame.fields) == (
        signed["message"],
        signed["seq"],
        signed["fields"],
    )
    assert frame.flags & schema.FLAG_AUTH and frame.counter == signed["counter"]
    body = cobs.decode(wire[1:-1])
    covered = body[: len(body) - schema.CRC_SIZE - schema.MAC_SIZE - 4]
    assert frame.mac == auth.frame_mac(_hex("session_key"), covered, signed["counter"])


def test_a_signed_frame_without_room_for_its_trailer_is_refused() -> None:
    wire = codec.encode_raw(0x07, 5, schema.FLAG_AUTH, b"\x01\x02\x03")
    with pytest.raises(codec.CodecError) as caught:
        codec.decode(wire[1:-1])
    assert caught.value.code == schema.BAD_PAYLOAD


def test_auth_vector_keystore_is_what_the_bench_provisions() -> None:
    from bench.link.keys import DeviceKeys, from_keystore

    keys = DeviceKeys(clinician=_hex("clinician_key"), patient=_hex("patient_key"))
    assert keys.keystore() == _hex("keystore")
    assert from_keystore(_hex("keystore"), "vector") == keys
