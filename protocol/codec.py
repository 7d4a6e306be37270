"""Host-side codec for the pump and rig protocol, built with construct.

Every structure here is derived from ``protocol.schema`` at import time; no
layout is written twice. The firmware encodes the same frames with ``struct``
(``protocol/wire.py``); ``protocol/vectors.json`` holds golden frames that both
codecs must reproduce.

Decoding never raises anything but :class:`CodecError` (with the schema error
code that the firmware would have answered with).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import construct as c
from cobs import cobs

from protocol import schema

_INTEGERS = {
    "B": c.Int8ul,
    "H": c.Int16ul,
    "I": c.Int32ul,
    "Q": c.Int64ul,
    "b": c.Int8sl,
    "h": c.Int16sl,
    "i": c.Int32sl,
    "q": c.Int64sl,
}


def _field(fmt: str, unit: str) -> c.Construct:
    """The construct of one schema field: "H", "16s" (text, or bytes) or "24H" (array)."""
    if fmt.endswith("s"):
        if unit == "bytes":
            return c.Bytes(int(fmt[:-1]))
        return c.PaddedString(int(fmt[:-1]), "ascii")
    if len(fmt) > 1:
        return c.Array(int(fmt[:-1]), _INTEGERS[fmt[-1]])
    return _INTEGERS[fmt]


def _payload_struct(fields: tuple) -> c.Struct:
    return c.Struct(*(name / _field(fmt, unit) for name, fmt, unit in fields), c.Terminated)


_HEADER = c.Struct(
    "version" / c.Int8ul,
    "msg_id" / c.Int8ul,
    "seq" / c.Int16ul,
    "flags" / c.Int8ul,
    "length" / c.Int8ul,
    "payload" / c.Bytes(c.this.length),
)

BODY = c.Struct(
    "header" / c.RawCopy(_HEADER),
    "crc" / c.Checksum(c.Int32ul, lambda data: zlib.crc32(data), c.this.header.data),
    c.Terminated,
)

NACK = _payload_struct(schema.NACK_FIELDS)

# A signer makes the trailer of an authenticated request from the bytes it
# covers (header and payload): request id, counter and MAC (protocol/auth.py
# Session.sign).
Signer = Callable[[bytes], bytes]


@dataclass(frozen=True)
class MessageType:
    """One row of the schema's message table, with its construct payloads."""

    msg_id: int
    name: str
    port: str
    request: c.Struct
    reply: c.Struct | None
    request_fields: tuple
    reply_fields: tuple | None

    @property
    def is_event(self) -> bool:
        return self.reply is None


MESSAGE_TYPES: dict[str, MessageType] = {}
MESSAGE_IDS: dict[int, MessageType] = {}
for _msg_id, _name, _port, _request, _reply in schema.MESSAGES:
    _type = MessageType(
        _msg_id,
        _name,
        _port,
        _payload_struct(_request),
        None if _reply is None else _payload_struct(_reply),
        _request,
        _reply,
    )
    MESSAGE_TYPES[_name] = _type
    MESSAGE_IDS[_msg_id] = _type


class CodecError(Exception):
    """A frame that cannot be encoded or decoded; ``code`` is a schema error code."""

    def __init__(self, code: int, text: str, seq: int | None = None) -> None:
        super().__init__(f"{schema.error_name(code)}: {text}")
        self.code = code
        self.seq = seq


@dataclass
class Frame:
    """A decoded frame: header, message name and payload fields."""

    msg_id: int
    name: str
    seq: int
    flags: int
    fields: dict[str, Any] = field(default_factory=dict)
    # An authenticated request's trailer: its counter, MAC and request id;
    # a signed reply's MAC (SPEC 21.6), with the bytes it covers
    counter: int | None = None
    mac: bytes | None = None
    request_id: bytes | None = None
    covered: bytes | None = None

    @property
    def is_signed(self) -> bool:
        return bool(self.flags & schema.FLAG_AUTH and self.flags & schema.FLAG_REPLY)

    @property
    def is_reply(self) -> bool:
        return bool(self.flags & schema.FLAG_REPLY)

    @property
    def is_nack(self) -> bool:
        return bool(self.flags & schema.FLAG_ERROR)

    @property
    def is_event(self) -> bool:
        return bool(self.flags & schema.FLAG_EVENT)


def payload_struct(msg: MessageType, flags: int) -> c.Struct:
    """The payload layout of a frame of type ``msg`` carrying ``flags``."""
    if flags & schema.FLAG_ERROR:
        return NACK
    if flags & schema.FLAG_REPLY:
        if msg.reply is None:
            raise CodecError(schema.NOT_A_REQUEST, f"{msg.name} is an event and has no reply")
        return msg.reply
    return msg.request


def encode(
    name: str,
    seq: int,
    fields: dict[str, Any] | None = None,
    flags: int = 0,
    signer: Signer | None = None,
) -> bytes:
    """Encodes one message as wire bytes, delimiters included.

    With a ``signer`` the request is authenticated: FLAG_AUTH is set and the
    payload ends with the signer's trailer (counter and MAC, SPEC section 21).
    """
    try:
        msg = MESSAGE_TYPES[name]
    except KeyError:
        raise CodecError(schema.UNKNOWN_MESSAGE, f"no message named {name!r}") from None
    try:
        payload = payload_struct(msg, flags).build(fields or {})
    except KeyError as exc:
        raise CodecError(schema.BAD_VALUE, f"{name}: field {exc} missing", seq) from None
    except (TypeError, ValueError) as exc:
        raise CodecError(schema.BAD_VALUE, f"{name}: {exc}", seq) from None
    except c.ConstructError as exc:
        raise CodecError(schema.BAD_VALUE, f"{name}: {exc}", seq) from exc
    return encode_raw(msg.msg_id, seq, flags, payload, signer)


def encode_raw(
    msg_id: int, seq: int, flags: int, payload: bytes, signer: Signer | None = None
) -> bytes:
    """Frames an already packed payload (also for deliberately odd frames in tests)."""
    if signer is not None:
        flags |= schema.FLAG_AUTH
        header = struct.pack(
            schema.HEADER_FORMAT,
            schema.PROTOCOL_VERSION,
            msg_id,
            seq & 0xFFFF,
            flags,
            len(payload) + schema.AUTH_TRAILER_SIZE,
        )
        payload = bytes(payload) + signer(header + bytes(payload))
    if len(payload) > schema.MAX_PAYLOAD:
        raise CodecError(schema.OVERSIZE, f"payload of {len(payload)} bytes", seq)
    body = BODY.build(
        {
            "header": {
                "value": {
                    "version": schema.PROTOCOL_VERSION,
                    "msg_id": msg_id,
                    "seq": seq & 0xFFFF,
                    "flags": flags,
                    "length": len(payload),
                    "payload": payload,
                }
            },
            "crc": None,
        }
    )
    return b"\x00" + cobs.encode(body) + b"\x00"


def decode(encoded: bytes) -> Frame:
    """Decodes the bytes between two delimiters (without the 0x00s)."""
    if len(encoded) > schema.MAX_ENCODED:
        raise CodecError(schema.OVERSIZE, f"{len(encoded)} encoded bytes")
    try:
        body = cobs.decode(encoded)
    except cobs.DecodeError as exc:
        raise CodecError(schema.BAD_FRAME, str(exc)) from None
    seq = int.from_bytes(body[2:4], "little") if len(body) >= schema.HEADER_SIZE else None
    try:
        parsed = BODY.parse(body)
    except c.ChecksumError:
        raise CodecError(schema.BAD_CRC, "CRC-32 mismatch", seq) from None
    except c.ConstructError as exc:
        raise CodecError(
            schema.BAD_LENGTH, f"malformed body ({exc.__class__.__name__})", seq
        ) from None
    header = parsed.header.value
    if header.version != schema.PROTOCOL_VERSION:
        raise CodecError(schema.BAD_VERSION, f"version {header.version}", seq)
    payload = header.payload
    counter = mac = request_id = None
    if header.flags & schema.FLAG_AUTH and not header.flags & schema.FLAG_REPLY:
        if len(payload) < schema.AUTH_TRAILER_SIZE:
            raise CodecError(schema.BAD_PAYLOAD, f"{len(payload)} bytes: no auth trailer", seq)
        cut = len(payload) - schema.AUTH_TRAILER_SIZE
        request_id, counter, mac = struct.unpack_from(schema.AUTH_TRAILER_FORMAT, payload, cut)
        payload = payload[:cut]
    covered = None
    if header.flags & schema.FLAG_AUTH and header.flags & schema.FLAG_REPLY:
        if len(payload) < schema.REPLY_MAC_SIZE:
            raise CodecError(schema.BAD_PAYLOAD, f"{len(payload)} bytes: no reply MAC", seq)
        cut = len(payload) - schema.REPLY_MAC_SIZE
        mac = bytes(payload[cut:])
        payload = payload[:cut]
        covered = bytes(body[: schema.HEADER_SIZE + cut])
    msg = MESSAGE_IDS.get(header.msg_id)
    if msg is not None:
        name = msg.name
        layout = payload_struct(msg, header.flags)
    elif header.flags & schema.FLAG_ERROR:
        # A NACK echoes whatever id it refuses, known to us or not.
        name = f"UNKNOWN_0x{header.msg_id:02X}"
        layout = NACK
    else:
        raise CodecError(schema.UNKNOWN_MESSAGE, f"message id 0x{header.msg_id:02x}", seq)
    try:
        values = layout.parse(payload)
    except c.ConstructError:
        raise CodecError(schema.BAD_PAYLOAD, f"{name}: {len(payload)} payload bytes", seq) from None
    fields = {
        k: list(v) if isinstance(v, c.ListContainer) else v
        for k, v in values.items()
        if not k.startswith("_")
    }
    return Frame(
        header.msg_id, name, header.seq, header.flags, fields, counter, mac, request_id, covered
    )


def split_stream(buffer: bytearray) -> list[bytes]:
    """Removes every complete frame from ``buffer`` and returns their encoded bytes.

    Bytes after the last delimiter stay in ``buffer`` for the next call; empty
    chunks (the gap between two delimiters) are dropped.
    """
    chunks: list[bytes] = []
    while True:
        end = buffer.find(0)
        if end < 0:
            return chunks
        chunk = bytes(buffer[:end])
        del buffer[: end + 1]
        if chunk:
            chunks.append(chunk)
