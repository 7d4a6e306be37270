"""The pump's receiver as a model: what the firmware must answer to any chunk of bytes.

The link fuzzer (bench/robustness/fuzz.py) judges every reply against it.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from bench.robustness.common import message_name
from protocol import auth, codec, schema

# Requests the fuzzer may let through whole: the queries (schema.QUERIES),
# which read and never change therapy, time or the plant.
SAFE_REQUESTS = {
    port: {
        name
        for _id, name, where, _request, _reply in schema.MESSAGES
        if name in schema.QUERIES and where in (port, schema.PORT_BOTH)
    }
    for port in (schema.PORT_PUMP, schema.PORT_RIG)
}


# ==================================================================================
# 1. The receiver, as protocol/SPEC.md section 6 describes it
# ==================================================================================
def request_sizes(port: str) -> dict[int, int]:
    """Request payload size of every message a port accepts (SPEC section 3)."""
    sizes = {}
    for msg_id, _name, where, request, reply in schema.MESSAGES:
        if reply is not None and where in (port, schema.PORT_BOTH):
            sizes[msg_id] = struct.calcsize(schema.struct_format(request))
    return sizes


ALL_IDS = frozenset(entry[0] for entry in schema.MESSAGES)


QUERY_IDS = frozenset(entry[0] for entry in schema.MESSAGES if entry[1] in schema.QUERIES)


EVENT_IDS = frozenset(entry[0] for entry in schema.MESSAGES if entry[4] is None)


def cobs_decode_partial(data: bytes) -> tuple[bytes, bool]:
    """COBS-decodes as far as the data goes: (bytes decoded, whether it was well formed).

    SPEC section 2 (COBS) and section 18's reference decoder, which raises
    where this returns what it had: a block that runs past the end yields
    the bytes that are there. The receiver rules need that length: with 6 or
    more bytes a header (and a seq to NACK) was decoded.
    """
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        if code == 0:
            return bytes(out), False
        out += data[i + 1 : i + code]
        if i + code > len(data):
            return bytes(out), False
        i += code
        if code < 0xFF and i < len(data):
            out.append(0)
    return bytes(out), True


@dataclass
class Expected:
    """What the device must do with one chunk (the bytes between two 0x00)."""

    counter: str  # the LINK_STATS counter it moves
    nack: tuple[int, int, int, int] | None = None  # (msg_id, seq, code, detail)
    executes: bool = False  # a new request, handed to its handler (step 11)
    msg_id: int = 0
    seq: int = 0
    payload: bytes = b""
    duplicate_of: Expected | None = None  # step 10: answered from the cache
    actual: codec.Frame | None = None  # the reply seen, once verified

    @property
    def replies(self) -> bool:
        return self.nack is not None or self.executes or self.duplicate_of is not None


@dataclass
class SessionView:
    """The pump's open session as the fuzzer knows it (protocol/SPEC.md section 21).

    ``accepted`` is the last counter the pump accepted (the model moves it);
    ``issued`` the last the fuzzer signed with. Time stands still while
    fuzzing, so the session never idles out.
    """

    key: bytes
    role: int
    accepted: int = 0
    issued: int = 0
    ids: int = 0  # request ids issued (each trailer gets a new one)

    def sign(self, covered: bytes) -> bytes:
        """A fresh trailer: a counter above every one accepted so far."""
        self.issued = max(self.issued, self.accepted) + 1
        return self.trailer(covered, self.issued)

    def sign_spent(self, covered: bytes, rng: random.Random) -> bytes:
        """A trailer with a good MAC and a counter the pump has already seen."""
        # one draw whose bounds never depend on the session's state (the
        # counter grows across hypothesis's examples, which it must replay)
        return self.trailer(covered, int(rng.random() * (self.accepted + 1)))

    def trailer(self, covered: bytes, counter: int) -> bytes:
        # a request id never used before (SPEC section 23): the fuzzer's
        # copies of a frame are byte copies, never new frames with an old id
        self.ids += 1
        request_id = struct.pack("<Q", 0xF0220000_00000000 | self.ids)
        mac = auth.frame_mac(self.key, covered + request_id, counter)
        return struct.pack(schema.AUTH_TRAILER_FORMAT, request_id, counter, mac)


class ReceiverModel:
    """The receiver rules of one port, written from protocol/SPEC.md section 6.

    ``feed`` splits a byte stream at 0x00 exactly as the device does and
    classifies every completed chunk. The reply cache (section 7: the last 4
    executed requests but plain queries, keyed by seq and CRC) is modelled,
    so retransmissions are predicted as duplicates; so are the pump port's session rules
    (section 21.4), with ``session`` the open session (None: none known).
    """

    CACHE_SLOTS = 4

    def __init__(self, port: str, session: SessionView | None = None) -> None:
        self.port = port
        self.session = session
        self.sizes = request_sizes(port)
        self._partial = bytearray()
        self.cache: deque[tuple[int, int, Expected]] = deque(maxlen=self.CACHE_SLOTS)
        # therapy requests that ran, by request id (the pump's outcome journal)
        self.outcomes: dict[bytes, Expected] = {}

    def feed(self, data: bytes) -> list[Expected]:
        out: list[Expected] = []
        start = 0
        for end in _zero_positions(data):
            self._partial += data[start:end]
            start = end + 1
            if self._partial:
                out.append(self.classify(bytes(self._partial)))
                self._partial.clear()
        self._partial += data[start:]
        return out

    # SPEC section 6's receiver rules, one case per step in the spec's order:
    # split, it would no longer read against the spec line by line.
    def classify(self, chunk: bytes, *, remember: bool = True) -> Expected:  # noqa: C901, PLR0911, PLR0912
        """Steps 1-11 of section 6 for one chunk; ``remember`` updates the cache."""
        overflow = len(chunk) > schema.MAX_ENCODED
        body, well_formed = cobs_decode_partial(chunk[: schema.MAX_ENCODED])
        if len(body) < schema.HEADER_SIZE:
            return Expected("garbage")  # step 2: no seq to address
        version, msg_id, seq, flags, length = struct.unpack_from(schema.HEADER_FORMAT, body, 0)

        def nack(counter: str, code: int, detail: int = 0) -> Expected:
            return Expected(counter, (msg_id, seq, code, detail), msg_id=msg_id, seq=seq)

        if overflow:
            return nack("oversize", schema.OVERSIZE)
        if not well_formed:
            return nack("bad_frame", schema.BAD_FRAME)
        end = schema.HEADER_SIZE + length
        if end + schema.CRC_SIZE != len(body):
            return nack("bad_frame", schema.BAD_LENGTH)
        crc = int.from_bytes(body[end : end + schema.CRC_SIZE], "little")
        if zlib.crc32(body[:end]) & 0xFFFFFFFF != crc:
            return nack("bad_crc", schema.BAD_CRC)
        if version != schema.PROTOCOL_VERSION:
            return nack("rejected", schema.BAD_VERSION, version)
        if flags & (schema.FLAG_REPLY | schema.FLAG_EVENT):
            return nack("rejected", schema.NOT_A_REQUEST, flags)
        size = self.sizes.get(msg_id)
        if size is None:
            if msg_id in ALL_IDS:
                return nack("rejected", schema.WRONG_PORT, msg_id)
            return nack("rejected", schema.UNKNOWN_MESSAGE, msg_id)
        signed = flags & schema.FLAG_AUTH
        if signed and self.port != schema.PORT_PUMP:
            return nack("rejected", schema.NOT_A_REQUEST, flags)
        if signed:
            size += schema.AUTH_TRAILER_SIZE
        if length != size:
            return nack("rejected", schema.BAD_PAYLOAD, size)
        # a plain query is never cached (section 7): every copy runs afresh
        query = not signed and msg_id in QUERY_IDS
        for cached_seq, cached_crc, original in () if query else self.cache:
            if (cached_seq, cached_crc) == (seq, crc):
                return Expected("duplicates", msg_id=msg_id, seq=seq, duplicate_of=original)
        request_id = self._once_id(msg_id, body[:end], signed)
        if request_id in self.outcomes:
            # SPEC 23: a copy of a therapy request that ran gets its reply again
            original = self.outcomes[request_id]
            return Expected("duplicates", msg_id=msg_id, seq=seq, duplicate_of=original)
        if self.port == schema.PORT_PUMP:
            refusal = self._session_rules(msg_id, body[:end], signed, remember)
            if refusal is not None:
                return nack("rejected", *refusal)
        if signed:
            end -= schema.AUTH_TRAILER_SIZE
        expected = Expected(
            "frames_ok", executes=True, msg_id=msg_id, seq=seq, payload=bytes(body[6:end])
        )
        if remember and not query:
            self.cache.append((seq, crc, expected))
            if request_id is not None:
                self.outcomes[request_id] = expected
        return expected

    def _once_id(self, msg_id: int, covered: bytes, signed: int) -> bytes | None:
        """The request id of a well-signed therapy request in the session (SPEC 23)."""
        name = message_name(msg_id)
        session = self.session
        if not signed or session is None or self.port != schema.PORT_PUMP:
            return None
        if not schema.required_role(name) or name in schema.ONCE_EXCEPT:
            return None
        trailer = len(covered) - schema.AUTH_TRAILER_SIZE
        request_id, counter, mac = struct.unpack_from(schema.AUTH_TRAILER_FORMAT, covered, trailer)
        if auth.frame_mac(session.key, covered[: trailer + 8], counter) != mac:
            return None
        return request_id

    def _session_rules(
        self, msg_id: int, covered: bytes, signed: int, remember: bool
    ) -> tuple[int, int] | None:
        """SPEC section 21.4: the NACK (code, detail) of a refused request, or None."""
        needed = schema.required_role(message_name(msg_id))
        if not signed:
            return (schema.AUTH_REQUIRED, needed) if needed else None
        session = self.session
        if session is None:
            return schema.AUTH_REQUIRED, needed
        trailer = len(covered) - schema.AUTH_TRAILER_SIZE
        _id, counter, mac = struct.unpack_from(schema.AUTH_TRAILER_FORMAT, covered, trailer)
        if auth.frame_mac(session.key, covered[: trailer + 8], counter) != mac:
            return schema.BAD_MAC, 0
        if counter <= session.accepted:
            return schema.REPLAY, session.accepted & 0xFFFF
        if needed > session.role:
            return schema.WRONG_ROLE, needed
        if remember:
            session.accepted = counter
        return None


def _zero_positions(data: bytes) -> Iterable[int]:
    start = 0
    while True:
        found = data.find(0, start)
        if found < 0:
            return
        yield found
        start = found + 1
