"""``forge://``: a device in the middle of the link that rewrites the pump's replies.

    forge://<inner url>?mode=payload|strip|nack|echo

wraps any other pyserial URL, like ``fault://``, and passes the host's bytes
through unchanged; on the way back it decodes every frame and rewrites each
reply (events and the session handshake pass untouched) as ``mode`` says,
with a good CRC, so that only authentication can tell:

=========  ===================================================================
payload    one bit of the reply payload flipped: a forged ACK or read-back
           (a bolus volume, a program field)
strip      the reply MAC removed and FLAG_AUTH cleared: a downgrade to an
           unauthenticated reply with the same fields
nack       an ACK turned into a NACK HARD_LIMIT: a forged refusal of a
           request that ran
echo       the host's own request sent back in place of the reply (what an
           echoing link does)
=========  ===================================================================

``port.forged`` counts the frames rewritten. For the tests of protocol/SPEC.md
section 21.6 (authenticated replies); import ``bench.link.transports`` first.
"""

from __future__ import annotations

import struct
import threading
import zlib
from urllib.parse import parse_qsl

from cobs import cobs
from serial.serialutil import SerialException

from bench.link.transports import protocol_fault
from protocol import schema

SCHEME = "forge://"
# The handshake passes untouched: the relay forges what the session carries.
_HANDSHAKE = (
    schema.message_by_name("AUTH_CHALLENGE")[0],
    schema.message_by_name("AUTH_OPEN")[0],
)
MODES = ("payload", "strip", "nack", "echo")


class Serial(protocol_fault.Serial):
    """A port whose replies are rewritten (see the module docstring)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.mode = "payload"
        self.forged = 0
        self._rx_partial = bytearray()
        self._last_request: bytes | None = None
        self._forge_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def open(self) -> None:
        url = str(self.port)
        if not url.lower().startswith(SCHEME):
            raise SerialException(f"expected {SCHEME}<inner url>?mode=..., got {url!r}")
        rest = url[len(SCHEME) :]
        inner, _sep, query = rest.rpartition("?") if "?" in rest else (rest, "", "")
        for key, value in parse_qsl(query):
            if key != "mode" or value not in MODES:
                raise SerialException(f"forge:// takes mode={'|'.join(MODES)}, got {key}={value}")
            self.mode = value
        self._port = protocol_fault.SCHEME + inner
        try:
            super().open()
        finally:
            self._port = url

    def write(self, data: bytes | bytearray | memoryview) -> int:
        sent = bytes(data)
        with self._forge_lock:
            self._last_request = sent.strip(b"\x00") or self._last_request
        return super().write(sent)

    def _pull(self, block: bool) -> None:
        inner = self._port_open()
        waiting = inner.in_waiting
        if not waiting and not block:
            return
        data = inner.read(max(1, waiting))
        if not data:
            return
        out = bytearray()
        self._rx_partial += data
        while True:
            end = self._rx_partial.find(0)
            if end < 0:
                break
            chunk = bytes(self._rx_partial[:end])
            del self._rx_partial[: end + 1]
            if chunk:
                out += b"\x00" + self._rewrite(chunk) + b"\x00"
        if out:
            with self._held_lock:
                self._held.append((0.0, bytes(out)))

    def _rewrite(self, chunk: bytes) -> bytes:
        try:
            body = bytearray(cobs.decode(chunk))
        except cobs.DecodeError:
            return chunk
        if len(body) < schema.HEADER_SIZE + schema.CRC_SIZE:
            return chunk
        flags = body[4]
        if not flags & schema.FLAG_REPLY:
            return chunk  # an event
        if body[1] in _HANDSHAKE:
            return chunk  # the session opens (its own proofs catch a forgery)
        payload = body[schema.HEADER_SIZE : -schema.CRC_SIZE]
        if self.mode == "echo":
            with self._forge_lock:
                request = self._last_request
            if request is None:
                return chunk
            self.forged += 1
            return request
        if self.mode == "payload":
            if not payload or flags & schema.FLAG_ERROR:
                return chunk
            payload[0] ^= 0x01
        elif self.mode == "strip":
            if not flags & schema.FLAG_AUTH:
                return chunk
            flags &= ~schema.FLAG_AUTH
            payload = payload[: -schema.REPLY_MAC_SIZE]
        elif self.mode == "nack":
            if flags & schema.FLAG_ERROR:
                return chunk
            mac = payload[-schema.REPLY_MAC_SIZE :] if flags & schema.FLAG_AUTH else b""
            flags |= schema.FLAG_ERROR
            payload = bytearray(struct.pack("<BH", schema.HARD_LIMIT, 4)) + mac
        self.forged += 1
        header = struct.pack(
            schema.HEADER_FORMAT, body[0], body[1], body[2] | body[3] << 8, flags, len(payload)
        )
        covered = header + bytes(payload)
        forged = covered + struct.pack("<I", zlib.crc32(covered) & 0xFFFFFFFF)
        return bytes(cobs.encode(forged))
