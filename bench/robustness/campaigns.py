"""Robustness runs against the real firmware on virtual boards (docs/robustness.md).

Three campaigns, each a library used by the short tests in tests/robustness/
and, at length, by ``python -m bench.robustness`` (the ``make bench`` part),
which prints figures:

1. **Link fuzzing** (:class:`LinkFuzz`): random bytes, mutated frames and
   refused requests, interleaved with good ones, on the pump and the rig
   port. Every frame is also classified by :class:`ReceiverModel`, a model
   of the receiver rules of protocol/SPEC.md section 6 written from the
   spec, so each reply (or its absence) and every LINK_STATS counter is
   predicted and compared. Therapy must not change (time stands still while
   fuzzing, so STATUS, the active program, the log and the rig's truth must
   be identical before and after).
2. **Power-loss campaign** (:class:`PowerLossCampaign`): the virtual-board
   process is killed at random instants (frozen mid-stroke, mid-request,
   mid-journal-write, mid-ADVANCE) and restarted on the same journal; after
   each restart the journal's story is checked against what the dead
   process's rig said.
3. **Link faults** (:func:`link_fault_scenario`): a therapy scenario run
   through ``fault://`` (bench/link/transports/protocol_fault.py) must end with
   the same event log as the same scenario on a clean link.

The safety invariants under random command sequences (hypothesis stateful
testing) live in tests/robustness/test_invariants.py; the check they share
with the campaign is here (:func:`bolus_story`).

Usage: ``python -m bench.robustness [--frames N] [--cycles N] [--scenarios N]
[--seed S]``; nothing here asserts a time, and the exit code is 1 when an
invariant was broken.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import tempfile
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import serial
from cobs import cobs

from bench.board.sim import BoardOptions, VirtualBoard
from bench.link.client import PLANT_NOMINAL, PumpClient, RigClient
from bench.link.errors import BenchError, PumpRefused
from protocol import auth, codec, schema
from protocol.table import BOLUS_PATIENT, RESET_CAUSE_POWER_ON

STROKE_NL = 200  # the firmware's nominal stroke (8 steps x 25 nL)
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

COUNTERS = (
    "frames_ok",
    "garbage",
    "bad_crc",
    "bad_frame",
    "oversize",
    "rejected",
    "duplicates",
    "tx_dropped",
)
LOG = {name: code for code, name in schema.LOG_CODES}
# What a refused request may log: its refusal, the session rules' own entries.
AUTH_LOG_CODES = frozenset(
    LOG[name] for name in ("AUTH_REFUSED", "SESSION_OPENED", "SESSION_CLOSED")
)
ALARM = {name: code for code, name, _priority in schema.ALARMS}
STATE = {name: code for code, name in schema.STATES}
PATIENT_KIND = BOLUS_PATIENT  # STATUS bolus_kind / BOLUS_START kind of a patient bolus

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

    def classify(self, chunk: bytes, *, remember: bool = True) -> Expected:
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


def message_name(msg_id: int) -> str:
    entry = schema.message_by_id(msg_id)
    return entry[1] if entry is not None else f"0x{msg_id:02X}"


# ==================================================================================
# 2. The frame fuzzer
# ==================================================================================
def random_value(fmt: str, rng: random.Random, unit: str = "") -> Any:
    """A random value of a schema field format, within the format's range."""
    if fmt.endswith("s") and unit == "bytes":
        return bytes(rng.randrange(256) for _ in range(int(fmt[:-1])))
    if fmt.endswith("s"):
        size = int(fmt[:-1])
        return "".join(
            rng.choice("ABCDEFabcdef0123456789-") for _ in range(rng.randrange(size + 1))
        )
    if len(fmt) > 1:
        return [random_value(fmt[-1], rng) for _ in range(int(fmt[:-1]))]
    bits = struct.calcsize(fmt) * 8
    if fmt.islower():
        return rng.randrange(-(1 << (bits - 1)), 1 << (bits - 1))
    # favour the edges: 0, 1, the maximum, and small numbers
    choice = rng.random()
    if choice < 0.15:
        return rng.choice((0, 1, (1 << bits) - 1))
    if choice < 0.4:
        return rng.randrange(min(1 << bits, 1000))
    return rng.randrange(1 << bits)


def random_fields(fields: Sequence[tuple[str, str, str]], rng: random.Random) -> dict[str, Any]:
    return {name: random_value(fmt, rng, unit) for name, fmt, unit in fields}


@dataclass
class FuzzCase:
    """Bytes to send, what they are, and for a refused request the refusal."""

    kind: str
    wire: bytes
    refusal: tuple[int, int | None] | None = None  # (code, detail or None: any)


def _body(wire: bytes) -> bytearray:
    return bytearray(cobs_decode_partial(wire[1:-1])[0])


def _frame(body: bytes | bytearray) -> bytes:
    return b"\x00" + cobs.encode(bytes(body)) + b"\x00"


def _fix_crc(body: bytearray) -> bytearray:
    end = len(body) - schema.CRC_SIZE
    body[end:] = (zlib.crc32(bytes(body[:end])) & 0xFFFFFFFF).to_bytes(4, "little")
    return body


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
    unless told: a refill that changes no drug (SPEC 22.2)."""
    return {
        "withdrawn_nl": withdrawn_nl,
        "added_nl": added_nl,
        "drug_id": drug_id,
        "conc_ug_ml": conc_ug_ml,
        "program_crc": 0,
    }


class FrameFuzzer:
    """Random and damaged frames for one port, from a ``random.Random``.

    Hypothesis hands in its own controlled Random (``st.randoms()``), so a
    failing batch shrinks; the long runs use a seeded one.
    """

    MUTATIONS = (
        "bit_flips",
        "truncate",
        "extend",
        "repeat_slice",
        "drop_byte",
        "insert_zero",
        "payload_byte",
        "length_field",
        "unknown_id",
        "wrong_port_id",
        "reply_flag",
        "event_flag",
        "version",
        "payload_size",
        "oversize",
        "header_only",
        "content_bit",
    )

    def __init__(
        self,
        port: str,
        rng: random.Random,
        seq: int = 0x4000,
        session: SessionView | None = None,
    ) -> None:
        self.port = port
        self.rng = rng
        self.session = session if port == schema.PORT_PUMP else None
        self._seq = seq & 0x7FFF  # good and refused requests: seqs below 0x8000
        self.sizes = request_sizes(port)
        self.safe = sorted(SAFE_REQUESTS[port])
        self.requests = sorted(
            codec.MESSAGE_IDS[msg_id].name for msg_id in self.sizes if msg_id in codec.MESSAGE_IDS
        )
        self._recent_good: deque[bytes] = deque(maxlen=6)
        # stateless checks only (remember=False)
        self._model = ReceiverModel(port, self.session)

    def next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0x7FFF
        return self._seq

    # --- good frames -------------------------------------------------------------
    def good_fields(self, name: str) -> dict[str, Any]:
        rng = self.rng
        if name in ("HELLO", "RIG_HELLO"):
            return {
                "protocol_version": schema.PROTOCOL_VERSION,
                "schema_fingerprint": schema.FINGERPRINT,
            }
        if name == "PING":
            return {"token": rng.randrange(1 << 32)}
        if name == "GET_PROGRAM":
            return {"which": 0}
        if name in ("GET_LOG", "TRACE", "ANNUNCIATION"):
            return {"start": rng.randrange(64), "count": rng.randrange(20)}
        return random_fields(codec.MESSAGE_TYPES[name].request_fields, rng)

    def good(self) -> FuzzCase:
        name = self.rng.choice(self.safe)
        # in a session, half of them signed: a plain query's copy runs afresh,
        # a signed one's is answered from the reply cache (SPEC section 7)
        signer = self.session.sign if self.session and self.rng.random() < 0.5 else None
        wire = codec.encode(name, self.next_seq(), self.good_fields(name), signer=signer)
        self._recent_good.append(wire)
        return FuzzCase("good " + name, wire)

    def any_request(self) -> tuple[str, bytes]:
        """A request of this port with random field values, as raw material."""
        name = self.rng.choice(self.requests)
        if name in self.safe:
            fields = self.good_fields(name)
        else:
            fields = random_fields(codec.MESSAGE_TYPES[name].request_fields, self.rng)
        # a request of the session (signed) as often as a plain one
        signer = self.session.sign if self.session and self.rng.random() < 0.5 else None
        return name, codec.encode(name, self.next_seq(), fields, signer=signer)

    # --- damage --------------------------------------------------------------------
    def mutate(self) -> FuzzCase:
        rng = self.rng
        name, wire = self.any_request()
        kind = rng.choice(self.MUTATIONS)
        inner = bytearray(wire[1:-1])
        if kind == "bit_flips":
            for _ in range(rng.randint(1, 4)):
                inner[rng.randrange(len(inner))] ^= 1 << rng.randrange(8)
            return FuzzCase(f"{kind} {name}", b"\x00" + bytes(inner) + b"\x00")
        if kind == "truncate":
            return FuzzCase(f"{kind} {name}", b"\x00" + bytes(inner[: rng.randrange(len(inner))]))
        if kind == "extend":
            extra = bytes(rng.randint(1, 255) for _ in range(rng.randint(1, 12)))
            return FuzzCase(f"{kind} {name}", b"\x00" + bytes(inner) + extra + b"\x00")
        if kind == "repeat_slice":
            a = rng.randrange(len(inner))
            b = rng.randint(a, len(inner))
            return FuzzCase(f"{kind} {name}", b"\x00" + bytes(inner[:b] + inner[a:]) + b"\x00")
        if kind == "drop_byte":
            del inner[rng.randrange(len(inner))]
            return FuzzCase(f"{kind} {name}", b"\x00" + bytes(inner) + b"\x00")
        if kind == "insert_zero":
            at = rng.randrange(1, len(inner))
            return FuzzCase(
                f"{kind} {name}",
                b"\x00" + bytes(inner[:at]) + b"\x00" + bytes(inner[at:]) + b"\x00",
            )
        if kind == "oversize":
            extra = bytes(rng.randint(1, 255) for _ in range(rng.randint(1, 300)))
            return FuzzCase(f"{kind} {name}", b"\x00" + bytes(inner) + extra * 2 + b"\x00")
        body = _body(wire)
        if kind == "header_only":
            return FuzzCase(
                f"{kind} {name}", _frame(body[: rng.randrange(1, schema.HEADER_SIZE + 2)])
            )
        if kind == "payload_byte":  # the CRC no longer matches
            at = rng.randrange(len(body) - schema.CRC_SIZE)
            body[at] ^= rng.randint(1, 255)
            return FuzzCase(f"{kind} {name}", _frame(body))
        if kind == "length_field":  # with and without a CRC that matches
            body[5] = (body[5] + rng.choice((-2, -1, 1, 2, 17, 200))) & 0xFF
            if rng.random() < 0.5:
                _fix_crc(body)
            return FuzzCase(f"{kind} {name}", _frame(body))
        # From here on the CRC is made valid again around the damage: the
        # frame arrives intact and must be refused by its content.
        if kind == "unknown_id":
            body[1] = rng.choice([i for i in range(256) if i not in ALL_IDS])
        elif kind == "wrong_port_id":
            body[1] = rng.choice(sorted(ALL_IDS - set(self.sizes)))
        elif kind == "reply_flag":
            body[4] |= rng.choice((schema.FLAG_REPLY, schema.FLAG_REPLY | schema.FLAG_ERROR))
        elif kind == "event_flag":
            body[4] |= schema.FLAG_EVENT
        elif kind == "version":
            body[0] = rng.choice([v for v in range(256) if v != schema.PROTOCOL_VERSION])
        elif kind == "content_bit":  # one bit of header, payload or auth trailer
            at = rng.randrange(len(body) - schema.CRC_SIZE)
            body[at] ^= 1 << rng.randrange(8)
        elif kind == "payload_size":
            payload = bytearray(body[6:-4])
            if payload and rng.random() < 0.5:
                payload = payload[: rng.randrange(len(payload))]
            else:
                payload += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            payload = payload[: schema.MAX_PAYLOAD]
            if len(payload) == len(body) - 10:
                payload = payload[:-1] if payload else bytearray(b"\x01")
            body = body[:5] + bytearray([len(payload)]) + payload + b"\x00\x00\x00\x00"
        return FuzzCase(f"{kind} {name}", _frame(_fix_crc(body)))

    def noise(self) -> FuzzCase:
        rng = self.rng
        size = rng.randint(1, 300)
        if rng.random() < 0.5:
            data = bytes(rng.randint(1, 255) for _ in range(size))
        else:
            data = bytes(rng.randrange(256) for _ in range(size))
        return FuzzCase("noise", data + b"\x00")

    def duplicate(self) -> FuzzCase:
        if not self._recent_good:
            return self.good()
        return FuzzCase("duplicate", self.rng.choice(self._recent_good))

    # --- refused requests: intact frames whose values a handler must refuse -------------
    def refusal(self) -> FuzzCase:
        rng = self.rng
        choices = _PUMP_REFUSALS if self.port == schema.PORT_PUMP else _RIG_REFUSALS
        name, make = rng.choice(choices)
        fields, code, detail = make(rng)
        needed = schema.required_role(name) if self.port == schema.PORT_PUMP else 0
        if needed and self.session is None:  # refused before its handler
            code, detail = schema.AUTH_REQUIRED, needed
        signer = self.session.sign if needed and self.session else None
        wire = codec.encode(name, self.next_seq(), fields, signer=signer)
        return FuzzCase(f"refused {name}", wire, (code, detail))

    def auth_refusal(self) -> FuzzCase:
        """A change the session rules refuse: plain, a bad MAC, a spent counter;
        or a handshake that cannot open a session (SPEC section 21)."""
        rng = self.rng
        name = rng.choice([n for n, _role in schema.MESSAGE_ROLES])
        fields = random_fields(codec.MESSAGE_TYPES[name].request_fields, rng)
        seq = self.next_seq()
        how = rng.choice(("plain", "bad_mac", "spent", "no_challenge", "bad_role"))
        session = self.session
        if how == "no_challenge":  # the fuzzer never asks for a challenge
            fields = random_fields(codec.MESSAGE_TYPES["AUTH_OPEN"].request_fields, rng)
            fields["role"] = rng.choice((schema.ROLE_PATIENT, schema.ROLE_CLINICIAN))
            wire = codec.encode("AUTH_OPEN", seq, fields)
            return FuzzCase("refused AUTH_OPEN", wire, (schema.NO_CHALLENGE, 0))
        if how == "bad_role":
            role = rng.choice((0, *range(3, 256)))
            wire = codec.encode("AUTH_CHALLENGE", seq, {"role": role})
            return FuzzCase("refused AUTH_CHALLENGE", wire, (schema.BAD_VALUE, 0))
        if how == "plain" or session is None:
            wire = codec.encode(name, seq, fields)
            return FuzzCase(f"plain {name}", wire, (schema.AUTH_REQUIRED, None))
        if how == "spent":
            wire = codec.encode(name, seq, fields, signer=lambda c: session.sign_spent(c, rng))
            return FuzzCase(f"spent {name}", wire, (schema.REPLAY, None))
        body = _body(codec.encode(name, seq, fields, signer=session.sign))
        body[-schema.CRC_SIZE - 1 - rng.randrange(schema.MAC_SIZE)] ^= 1 << rng.randrange(8)
        return FuzzCase(f"bad_mac {name}", _frame(_fix_crc(body)), (schema.BAD_MAC, 0))

    # --- a batch ------------------------------------------------------------------------
    def case(self) -> FuzzCase:
        roll = self.rng.random()
        if roll < 0.15:
            case = self.noise()
        elif roll < 0.6:
            case = self.mutate()
        elif roll < 0.78:
            pump = self.port == schema.PORT_PUMP
            case = self.auth_refusal() if pump and self.rng.random() < 0.4 else self.refusal()
        elif roll < 0.92:
            case = self.good()
        else:
            case = self.duplicate()
        return case

    def batch(self, size: int) -> list[FuzzCase]:
        """``size`` cases none of which could execute a request that changes anything."""
        cases: list[FuzzCase] = []
        while len(cases) < size:
            case = self.case()
            if self.harmless(case):
                cases.append(case)
        return cases

    def harmless(self, case: FuzzCase) -> bool:
        # A mutation or noise that happens to form an intact request for a
        # message that changes things (a bare STOP, say) is not sent: the
        # fuzzer tests the refusal of bad input, not the commands themselves.
        model = self._model
        chunks = [chunk for chunk in case.wire.split(b"\x00") if chunk]
        for chunk in chunks:
            expected = model.classify(chunk, remember=False)
            if not expected.executes:
                continue
            if case.refusal is not None and len(chunks) == 1:
                continue
            if message_name(expected.msg_id) not in SAFE_REQUESTS[self.port]:
                return False
        return True


def _refuse(
    name: str, code: int, detail: int | None, make: Callable[[random.Random], dict[str, Any]]
) -> tuple[str, Callable[[random.Random], tuple[dict[str, Any], int, int | None]]]:
    return name, lambda rng: (make(rng), code, detail)


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


# The fuzzed pump runs morphine 10 mg/mL (bolus hard limit 250 uL) and has no
# pending program. Every entry is (message, maker of (fields, NACK code,
# detail)) for an intact request that its handler must refuse, changing
# nothing (SPEC sections 5 and 10-16).
_PUMP_REFUSALS = [
    _refuse("PROGRAM", schema.BAD_PROGRAM, 2, lambda r: program_fields(mode=r.randint(4, 255))),
    _refuse(
        "PROGRAM",
        schema.BAD_PROGRAM,
        3,
        lambda r: program_fields(basal_nl_day=r.randint(1, 47_999)),
    ),
    _refuse(
        "PROGRAM",
        schema.BAD_PROGRAM,
        11,
        lambda r: program_fields(low_reservoir_nl=r.randint(40_000_000, 0xFFFFFFFF)),
    ),
    _refuse("PROGRAM", schema.HARD_LIMIT, 1, lambda r: program_fields(drug_id=r.randint(8, 255))),
    _refuse(
        "PROGRAM",
        schema.HARD_LIMIT,
        2,
        lambda r: program_fields(conc_ug_ml=r.randint(25_001, 10**9)),
    ),
    _refuse(
        "PROGRAM",
        schema.HARD_LIMIT,
        3,
        lambda r: program_fields(mode=3, basal_nl_day=r.randint(24_000_001, 0xFFFFFFFF)),
    ),
    _refuse(
        "PROGRAM",
        schema.HARD_LIMIT,
        9,
        lambda r: program_fields(pb_dose_nl=1000, pb_lockout_s=r.randint(1, 599), pb_max_per_day=1),
    ),
    _refuse("CONFIRM", schema.NO_PENDING, 0, lambda r: {"crc": r.randrange(1 << 32)}),
    _refuse("GET_PROGRAM", schema.NO_PENDING, 0, lambda r: {"which": r.randint(1, 255)}),
    _refuse(
        "HELLO",
        schema.SCHEMA_MISMATCH,
        schema.PROTOCOL_VERSION,
        lambda r: {
            "protocol_version": schema.PROTOCOL_VERSION,
            "schema_fingerprint": r.choice([schema.FINGERPRINT ^ 1, 0, 0xFFFFFFFF]),
        },
    ),
    _refuse(
        "BOLUS", schema.BAD_VALUE, 0, lambda r: bolus_fields(kind=r.choice([0, *range(4, 256)]))
    ),
    _refuse(
        "BOLUS", schema.BAD_VALUE, 1, lambda r: bolus_fields(kind=1, duration_s=r.randrange(99))
    ),
    _refuse(
        "BOLUS", schema.BAD_VALUE, 1, lambda r: bolus_fields(kind=2, nl_per_cm=r.randrange(9999))
    ),
    _refuse(
        "BOLUS",
        schema.HARD_LIMIT,
        5,
        lambda r: bolus_fields(volume_nl=r.randint(250_001, 0xFFFFFFFF)),
    ),
    _refuse(
        "REFILL",
        schema.RESERVOIR,
        2,
        lambda r: refill_request(r.randint(40_000_001, 0xFFFFFFFF), 1_000_000),
    ),
    _refuse(
        "REFILL",
        schema.RESERVOIR,
        1,
        lambda r: refill_request(1_000, r.randint(40_000_001, 0xFFFFFFFF)),
    ),
    _refuse(
        "CLEAR_ALARM", schema.BAD_VALUE, 0, lambda r: {"alarm": r.choice([0, *range(18, 256)])}
    ),
    _refuse("ACK_ALARM", schema.BAD_VALUE, 0, lambda r: {"alarm": r.randint(18, 255)}),
    _refuse(
        "SET_CLOCK",
        schema.BAD_VALUE,
        0,
        lambda r: {"local_offset_s": r.randint(604_800, 0xFFFFFFFF)},
    ),
]

_PLANT_INDEX = {name: i for i, (name, _fmt, _unit) in enumerate(schema.message_by_name("PLANT")[3])}


def _bad_plant(rng: random.Random) -> tuple[dict[str, Any], int, int | None]:
    # Exactly one field out of its range: the NACK detail is its index.
    field_name, value = rng.choice(
        [
            ("calibration_ppm", rng.choice([200_001, -200_001, 2**31 - 1])),
            ("catheter_nl", rng.choice([0, 2_599, 520_001])),
            ("compliance_x10", rng.choice([0, 1_001, 65_535])),
            ("resistance_pct", rng.choice([0, 10_001])),
            ("noise_x10", rng.choice([1_001, 65_535])),
            ("csf_x10", rng.choice([-501, 1_501, -32_768])),
        ]
    )
    return {**PLANT_NOMINAL, field_name: value}, schema.BAD_VALUE, _PLANT_INDEX[field_name]


_RIG_REFUSALS = [
    _refuse(
        "ADVANCE",
        schema.BAD_VALUE,
        0,
        lambda r: {"duration_ms": r.randint(schema.MAX_ADVANCE_MS + 1, 2**64 - 1)},
    ),
    _refuse(
        "POWER",
        schema.BAD_VALUE,
        0,
        lambda r: {"action": r.randint(4, 255), "arg": r.randrange(99)},
    ),
    ("PLANT", _bad_plant),
    _refuse(
        "INJECT_FAULT",
        schema.BAD_VALUE,
        0,
        lambda r: {"fault": r.choice([0, *range(14, 256)]), "param": 1, "onset_ms": 0},
    ),
    _refuse(
        "INJECT_FAULT",
        schema.BAD_VALUE,
        1,
        # TIMER_FAST: the factor in per mille, 1000 (x1) to 1000000 (x1000)
        lambda r: {
            "fault": 13,
            "param": r.choice([0, -1, 999, 1_000_001, 2**31 - 1]),
            "onset_ms": 0,
        },
    ),
    _refuse("CLEAR_FAULT", schema.BAD_VALUE, 0, lambda r: {"fault": r.randint(14, 255)}),
    _refuse(
        "RIG_HELLO",
        schema.SCHEMA_MISMATCH,
        schema.PROTOCOL_VERSION,
        lambda r: {
            "protocol_version": schema.PROTOCOL_VERSION,
            "schema_fingerprint": r.choice([schema.FINGERPRINT ^ 0x80, 0]),
        },
    ),
]


# ==================================================================================
# 3. Fuzzing the running firmware
# ==================================================================================
class Stall(BenchError):
    """The device did not answer a good frame in time."""


class RawPort:
    """A port read synchronously, frame by frame: every reply and event is seen.

    The clients (bench.link.client) sort replies by seq and drop the rest; the
    fuzzer must see each reply, including NACKs to damaged seqs, in order.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.serial = serial.serial_for_url(url, baudrate=115200, timeout=0.02)
        except (serial.SerialException, ValueError, OSError) as exc:
            raise BenchError(f"{url}: cannot open port ({exc})") from None
        self.serial.reset_input_buffer()
        self._buffer = bytearray()
        self._frames: deque[codec.Frame] = deque()
        self.events: list[codec.Frame] = []
        self.undecodable = 0

    def close(self) -> None:
        self.serial.close()

    def send(self, data: bytes) -> None:
        self.serial.write(data)
        self.serial.flush()

    def frames_until(
        self, done: Callable[[codec.Frame], bool], timeout_s: float = 3.0
    ) -> list[codec.Frame]:
        """Replies (events set aside) in arrival order, up to the first that is ``done``."""
        deadline = time.monotonic() + timeout_s
        got: list[codec.Frame] = []
        while True:
            while self._frames:
                frame = self._frames.popleft()
                got.append(frame)
                if done(frame):
                    return got
            if time.monotonic() > deadline:
                raise Stall(f"{self.url}: no answer within {timeout_s:g} s ({len(got)} frames)")
            data = self.serial.read(max(1, self.serial.in_waiting))
            if not data:
                continue
            self._buffer += data
            for chunk in codec.split_stream(self._buffer):
                try:
                    frame = codec.decode(chunk)
                except codec.CodecError:
                    self.undecodable += 1
                    continue
                if frame.is_event:
                    self.events.append(frame)
                else:
                    self._frames.append(frame)


@dataclass
class FuzzStats:
    frames: int = 0  # chunks the device had to judge: frames, damaged frames, noise
    bytes: int = 0
    batches: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    predicted: Counter[str] = field(default_factory=Counter)  # LINK_STATS deltas
    nacks: Counter[str] = field(default_factory=Counter)  # NACK codes seen, by name
    mismatches: list[str] = field(default_factory=list)


class LinkFuzz:
    """Fuzzes one port of a running board and checks every answer against the model."""

    def __init__(
        self, port_kind: str, url: str, rng: random.Random, session: SessionView | None = None
    ) -> None:
        self.kind = port_kind
        self.port = RawPort(url)
        self.session = session
        self.model = ReceiverModel(port_kind, session)
        self.fuzzer = FrameFuzzer(port_kind, rng, seq=rng.randrange(0x8000), session=session)
        # The harness's own requests (the sentinels) use seqs from 0x8000 up,
        # the fuzzer's intact requests seqs below: a sentinel can never be
        # taken for a retransmission of a fuzzed request (the device would
        # answer it from its cache, with old counters).
        self._seq = rng.randrange(0x8000)
        self.stats = FuzzStats()
        self._pending: Counter[str] = Counter()
        self.counters = self._sentinel()  # LINK_STATS now; checked from here on

    def close(self) -> None:
        self.port.close()

    def _fail(self, text: str) -> None:
        self.stats.mismatches.append(f"{self.kind} port: {text}")

    def next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0x7FFF
        return 0x8000 | self._seq

    def request(self, name: str, fields: dict[str, Any] | None = None) -> codec.Frame:
        """A good request (the model sees it too, so the counters stay predicted)."""
        seq = self.next_seq()
        wire = codec.encode(name, seq, fields)
        *unfinished, expected = self.model.feed(wire)
        if unfinished:  # batches end with a delimiter: nothing may be pending
            raise BenchError(f"{self.kind} port: a fuzz batch left a partial frame")
        self.port.send(wire)
        frames = self.port.frames_until(lambda f: f.seq == seq and f.name == name)
        for extra in frames[:-1]:
            self._fail(f"unexpected {_describe(extra)} before the reply to {name}")
        reply = frames[-1]
        expected.actual = reply
        self._pending[expected.counter] += 1
        if reply.is_nack:
            self._pending["rejected"] += 1
        return reply

    def _sentinel(self) -> dict[str, int]:
        reply = self.request("LINK_STATS")
        if reply.is_nack:
            raise Stall(f"{self.kind} port: LINK_STATS refused: {reply.fields}")
        self._pending = Counter()  # the reply counts itself already
        return dict(reply.fields)

    def batch(self, size: int) -> None:
        """Sends ``size`` fuzz cases and a good LINK_STATS; checks replies and counters."""
        cases = self.fuzzer.batch(size)
        plan: list[tuple[Expected, FuzzCase]] = []
        for case in cases:
            self.stats.kinds[case.kind.split()[0]] += 1
            self.stats.bytes += len(case.wire)
            for expected in self.model.feed(case.wire):
                plan.append((expected, case))
        self.stats.frames += len(plan)
        self.stats.batches += 1
        self.port.send(b"".join(case.wire for case in cases))
        try:
            before = dict(self.counters)
            self.counters = self._check_batch(plan, cases[-1], before)
        except Stall as stall:
            self._fail(f"stalled after {', '.join(c.kind for c in cases)}: {stall}")
            raise

    def _check_batch(
        self, plan: list[tuple[Expected, FuzzCase]], last: FuzzCase, before: dict[str, int]
    ) -> dict[str, int]:
        seq = self.next_seq()
        wire = codec.encode("LINK_STATS", seq)
        # The sentinel's leading 0x00 also ends a batch's unfinished last chunk.
        *unfinished, sentinel = self.model.feed(wire)
        plan = plan + [(expected, last) for expected in unfinished]
        self.stats.frames += len(unfinished)
        self.port.send(wire)
        frames = self.port.frames_until(
            lambda f: f.seq == seq and f.name == "LINK_STATS" and not f.is_nack
        )
        predicted = self._pending
        self._pending = Counter()
        answering = [(e, case) for e, case in plan if e.replies]
        if len(frames) - 1 != len(answering):
            got = "; ".join(_describe(f) for f in frames[:-1])
            want = "; ".join(_describe_expected(e) for e, _case in answering)
            self._fail(
                f"{len(frames) - 1} replies, {len(answering)} expected: got [{got}] want [{want}]"
            )
        for (expected, case), frame in zip(answering, frames, strict=False):
            problem = _compare(expected, case, frame)
            if problem:
                self._fail(f"{case.kind}: {problem}")
            expected.actual = frame
            if frame.is_nack:
                self.stats.nacks[schema.error_name(frame.fields["code"])] += 1
            if expected.executes and frame.is_nack:
                predicted["rejected"] += 1
        for expected, _case in plan:
            predicted[expected.counter] += 1
        predicted[sentinel.counter] += 1
        after = dict(frames[-1].fields)
        sentinel.actual = frames[-1]
        for name in COUNTERS:
            delta = after[name] - before[name]
            if delta != predicted[name]:
                self._fail(f"LINK_STATS {name} moved {delta}, the model says {predicted[name]}")
        self.stats.predicted.update(predicted)
        return after


def _compare(expected: Expected, case: FuzzCase, frame: codec.Frame) -> str:
    """What is wrong with ``frame`` as the answer to ``expected`` ("" if nothing)."""
    if expected.nack is not None:
        got = (frame.msg_id, frame.seq, frame.fields.get("code"), frame.fields.get("detail"))
        if not frame.is_nack or got != expected.nack:
            return f"got {_describe(frame)}, want {_describe_expected(expected)}"
        return ""
    if (frame.msg_id, frame.seq) != (expected.msg_id, expected.seq) or not frame.is_reply:
        return f"got {_describe(frame)}, want {_describe_expected(expected)}"
    if expected.duplicate_of is not None:
        original = expected.duplicate_of.actual
        if original is None:
            return "a duplicate of a request whose reply was never seen"
        if (frame.flags, frame.fields) != (original.flags, original.fields):
            return f"cached reply {_describe(frame)} differs from the first {_describe(original)}"
        return ""
    if case.refusal is not None and expected is not None and frame.is_nack is False:
        if len([c for c in case.wire.split(b"\x00") if c]) == 1:
            return f"executed, want NACK {schema.error_name(case.refusal[0])}: {frame.fields}"
    if frame.is_nack:
        code, detail = frame.fields["code"], frame.fields["detail"]
        if code < schema.LINK_ERROR_LIMIT:
            return f"an intact request got link error {schema.error_name(code)}"
        if case.refusal is not None:
            want_code, want_detail = case.refusal
            if code != want_code or (want_detail is not None and detail != want_detail):
                return (
                    f"NACK {schema.error_name(code)} detail {detail}, want "
                    f"{schema.error_name(want_code)} detail {want_detail}"
                )
    return ""


def _describe(frame: codec.Frame) -> str:
    if frame.is_nack:
        return (
            f"NACK {schema.error_name(frame.fields['code'])}/{frame.fields['detail']} "
            f"{frame.name} seq {frame.seq:#06x}"
        )
    return f"{'ACK' if frame.is_reply else 'frame'} {frame.name} seq {frame.seq:#06x}"


def _describe_expected(expected: Expected) -> str:
    if expected.nack is not None:
        msg_id, seq, code, detail = expected.nack
        return f"NACK {schema.error_name(code)}/{detail} {message_name(msg_id)} seq {seq:#06x}"
    what = "cached reply" if expected.duplicate_of is not None else "reply"
    return f"{what} {message_name(expected.msg_id)} seq {expected.seq:#06x}"


def fuzz_setup(pump: PumpClient, rig: RigClient) -> None:
    """The therapy the fuzzer must not disturb: morphine 10 mg/mL at 1 mL/day,
    patient boluses allowed, 20 mL in the reservoir, ten minutes delivered."""
    rig.fill(20_000_000)
    pump.refill(0, 20_000_000)
    fields = program_fields(pb_dose_nl=20_000, pb_lockout_s=3_600, pb_max_per_day=4)
    crc = pump.program(fields)["crc"]
    pump.confirm(crc)
    rig.advance(10 * MINUTE_MS)


class FuzzSession:
    """Both ports of one board under the fuzzer, with the therapy snapshot around it."""

    def __init__(self, board: VirtualBoard, rng: random.Random) -> None:
        self.board = board
        self.rng = rng
        # A clinician session, so that signed requests reach their handlers
        # and the session rules themselves are fuzzed (SPEC section 21).
        with PumpClient(board.pump_port) as client:
            opened = client.open_session()
        self.session = SessionView(opened.key, opened.role)
        self.pump = LinkFuzz(schema.PORT_PUMP, board.pump_port, rng, self.session)
        self.rig = LinkFuzz(schema.PORT_RIG, board.rig_port, rng)
        self.before = self.snapshot()

    def close(self) -> None:
        self.pump.close()
        self.rig.close()

    def snapshot(self) -> dict[str, Any]:
        """Everything therapy is made of; time stands still, so all of it must hold."""
        status = self.pump.request("STATUS").fields
        program = self.pump.request("GET_PROGRAM", {"which": 0}).fields
        log = self.pump.request("GET_LOG", {"start": 0, "count": 0}).fields["total"]
        truth = self.rig.request("TRUTH").fields
        return {"status": status, "program": program, "log_total": log, "truth": truth}

    def run(self, frames: int, batch: int = 6) -> None:
        """Fuzzes both ports (two thirds pump) until ``frames`` chunks were judged."""
        while self.pump.stats.frames + self.rig.stats.frames < frames:
            target = self.pump if self.rng.random() < 0.67 else self.rig
            target.batch(self.rng.randint(1, batch))

    def therapy_changes(self) -> list[str]:
        after = self.snapshot()
        changes = []
        for part in ("status", "program", "truth"):
            for name, value in self.before[part].items():
                if name == "journal_bytes":  # the log entries of refusals (below)
                    continue
                if after[part].get(name) != value:
                    changes.append(f"{part} {name}: {value} -> {after[part].get(name)}")
        for entry in self.new_log_entries(self.before["log_total"]):
            if entry not in AUTH_LOG_CODES:  # refusals are logged, nothing else may be
                changes.append(f"log: new entry {schema.log_name(entry)}")
        return changes

    def new_log_entries(self, start: int) -> list[int]:
        """The codes of the log entries from index ``start`` on."""
        codes: list[int] = []
        while True:
            page = self.pump.request("GET_LOG", {"start": start, "count": 12}).fields
            codes += page["code"][: page["count"]]
            if not page["count"] or page["index"][page["count"] - 1] + 1 >= page["total"]:
                return codes
            start = page["index"][page["count"] - 1] + 1

    @property
    def mismatches(self) -> list[str]:
        return self.pump.stats.mismatches + self.rig.stats.mismatches


# ==================================================================================
# 4. The event log's story (shared with tests/robustness/test_invariants.py)
# ==================================================================================
def bolus_story(entries: Sequence[dict[str, Any]]) -> tuple[list[str], dict[int, int]]:
    """Problems in the boluses an event log tells, and the boluses still open.

    Rules (SPEC sections 12 and 15): a bolus id starts once (BOLUS_START
    a = id | kind << 16); it ends at most once, with BOLUS_DONE,
    BOLUS_CANCELLED or BOLUS_INTERRUPTED, never before it started. Returns
    (problems, {open bolus id: index of its BOLUS_START}).
    """
    problems: list[str] = []
    started: dict[int, int] = {}
    ended: dict[int, int] = {}
    ends = (LOG["BOLUS_DONE"], LOG["BOLUS_CANCELLED"], LOG["BOLUS_INTERRUPTED"])
    for entry in entries:
        code = entry["code"]
        if code == LOG["BOLUS_START"]:
            bolus_id = entry["a"] & 0xFFFF
            if bolus_id in started:
                problems.append(
                    f"bolus {bolus_id} started twice (log {started[bolus_id]} and {entry['index']})"
                )
            started[bolus_id] = entry["index"]
        elif code in ends:
            bolus_id = entry["a"] & 0xFFFF
            if bolus_id not in started:
                problems.append(
                    f"{entry['name']} of bolus {bolus_id}, never started (log {entry['index']})"
                )
            elif bolus_id in ended:
                problems.append(
                    f"bolus {bolus_id} ended twice (log {ended[bolus_id]} and {entry['index']})"
                )
            ended[bolus_id] = entry["index"]
    open_ids = {b: i for b, i in started.items() if b not in ended}
    return problems, open_ids


def program_crc_of(fields: dict[str, Any]) -> int:
    """CRC-32 of a program's packed fields (SPEC section 11.2), whatever the pump says."""
    payload = codec.MESSAGE_TYPES["PROGRAM"].request.build(
        {name: fields[name] for name, _fmt, _unit in schema.PROGRAM_FIELDS}
    )
    return zlib.crc32(payload) & 0xFFFFFFFF


# ==================================================================================
# 5. Power loss: killing the virtual-board process
# ==================================================================================
# Refusals by the session rules: the campaign's requests must never meet one.
AUTH_REFUSALS = (
    schema.AUTH_REQUIRED,
    schema.WRONG_ROLE,
    schema.BAD_MAC,
    schema.REPLAY,
    schema.SESSION_EXPIRED,
)

ACTIVITIES = ("strokes", "bolus", "patient_bolus", "programming", "confirm", "refill", "stop_start")
EXACT_KILLS = ("frozen", "mid_stroke", "in_request", "torn_write")
RATES_NL_DAY = (1_200_000, 2_400_000, 4_800_000)
# About how many journal bytes each request writes: where a torn-write cut
# aimed at it lands (CONFIRM and REFILL write a snapshot).
_REQUEST_BYTES = {"CONFIRM": 1_200, "REFILL": 1_200}
_SMALL_REQUEST_BYTES = 80


@dataclass
class CampaignStats:
    cycles: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    activities: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    max_over_count_nl: int = 0  # exact kills: the pump's count minus the plant's
    max_bracket_nl: int = 0  # in_advance kills: width of the plant's bracket
    seconds: float = 0.0


@dataclass
class _Story:
    """One cycle: what was going on, how the process died, what the bench saw."""

    activity: str
    old_crc: int
    old_running: bool | None  # None: a stopping alarm hid it
    old_account: int
    kind: str = ""
    request: tuple[str, dict[str, Any] | None] | None = None
    new_fields: dict[str, Any] | None = None
    new_crc: int | None = None
    refill_nl: int | None = None
    bolus_id: int | None = None
    bolus_running_at_death: bool | None = None
    mid_stroke: bool = False
    cut: bool | None = None
    raw_seq: int = -1
    signer: codec.Signer | None = None  # the session of the raw request
    acked: dict[str, dict[str, Any]] = field(default_factory=dict)
    death_ms: int = 0

    @property
    def where(self) -> str:
        request = f" {self.request[0]}" if self.request else ""
        return f"{self.activity}{request}/{self.kind}"


def campaign_program(rng: random.Random, mode: int | None = None) -> dict[str, Any]:
    """A saline program (no drug limits in the way): the campaign is about the journal."""
    mode = rng.choice((1, 1, 1, 2, 3, 0)) if mode is None else mode
    fields = program_fields(
        drug_id=0,
        conc_ug_ml=0,
        mode=mode,
        basal_nl_day=rng.choice(RATES_NL_DAY) if mode in (1, 2) else 0,
        pb_dose_nl=rng.choice((1_000, 2_000, 4_000)),
        pb_lockout_s=600,
        pb_max_per_day=rng.randint(1, 24),
        low_reservoir_nl=rng.choice((1_000_000, 2_000_000)),
    )
    if mode == 2:
        steps = sorted(rng.sample(range(1440), rng.randint(1, 4)))
        pad = [0] * (24 - len(steps))
        fields["flex_count"] = len(steps)
        fields["flex_start_min"] = steps + pad
        fields["flex_rate_nl_day"] = [rng.choice(RATES_NL_DAY) for _ in steps] + pad
    return fields


class PowerLossCampaign:
    """Kills the virtual-board process at random instants; checks every restart.

    Each cycle: an activity (basal strokes, a clinician or patient bolus, a
    pending program, CONFIRM, REFILL, STOP or START), then a kill:

    - ``frozen``: device time stands still at a random instant (lockstep:
      ADVANCE a random number of ms), the rig's TRUTH is read, the process is
      killed. What the plant pumped at death is known exactly.
    - ``mid_stroke``: the same, stopped within a stroke (ADVANCE in 5 ms
      steps until TRUTH shows the head moved; a stroke lasts 20 ms).
    - ``in_request``: a pump request is sent and the process killed 0-0.8 ms
      later, while the firmware handles it and writes its journal (time
      stands still: truth exact).
    - ``torn_write``: the rig cuts power after a random number of journal
      bytes (POWER action 2: the write that crosses it lands torn), aimed at
      the activity's writes; then the powered-off process is killed. Truth
      exact (the rig outlives the cut).
    - ``in_advance``: an ADVANCE of 2-3000 ms is sent and the process killed
      0-1.5 ms later, while strokes run. The instant of death is unknown, so
      the plant's volume is bracketed: at least TRUTH before the ADVANCE, at
      most that plus every stroke the grant could hold.

    A new process then starts on the same journal (VirtualBoard.restart,
    new ptys) and the checks run (docs/robustness.md). Before the next
    cycle the new plant is filled to the pump's own account and device time
    is brought back to where the dead process had it: the Pico keeps its
    seconds across a reset, the virtual board's clock restarts at 0.
    """

    def __init__(self, rng: random.Random, journal_dir: str) -> None:
        self.rng = rng
        self.board = VirtualBoard(
            BoardOptions(journal_dir=journal_dir, seed=rng.randrange(1 << 16))
        )
        self.stats = CampaignStats()
        self.pump = PumpClient(self.board.pump_port, timeout_s=0.5)
        self.rig = RigClient(self.board.rig_port, timeout_s=0.5)
        self.log_seen = 0
        self.log_entries: list[dict[str, Any]] = []
        self._reported: set[str] = set()  # log problems already reported
        self.rig.fill(30_000_000)
        self.pump.refill(0, 30_000_000)
        self.pump.confirm(self.pump.program(campaign_program(rng, mode=1))["crc"])
        self.rig.advance(5_000)
        self.life_start_delivered = 0  # the pump's count when this process started
        self._read_log()

    # --- plumbing -------------------------------------------------------------------
    def close(self) -> None:
        self.pump.close()
        self.rig.close()
        self.board.close()

    def _connect(self) -> None:
        self.pump = PumpClient(self.board.pump_port, timeout_s=0.5)
        self.rig = RigClient(self.board.rig_port, timeout_s=0.5)
        self.pump.hello()
        self.rig.hello()

    def _restart(self) -> None:
        self.pump.close()
        self.rig.close()
        self.board.restart()
        self._connect()

    def _read_log(self) -> list[dict[str, Any]]:
        new = self.pump.log(self.log_seen)
        if new and new[0]["index"] != self.log_seen:
            self._violation(f"log entries {self.log_seen}..{new[0]['index'] - 1} are missing")
        if new:
            self.log_seen = new[-1]["index"] + 1
        self.log_entries += new
        return new

    def _violation(self, text: str) -> None:
        self.stats.violations.append(f"cycle {self.stats.cycles}: {text}")

    def _kill_now(self) -> None:
        if not self.board.alive:
            self._violation(f"the board died by itself:\n{self.board.stderr_text()}")
        self.board.kill()

    # --- one cycle ----------------------------------------------------------------------
    def run(self, cycles: int) -> CampaignStats:
        started = time.perf_counter()
        for _ in range(cycles):
            self.cycle()
        self.stats.seconds += time.perf_counter() - started
        return self.stats

    def cycle(self) -> None:
        rng = self.rng
        self.stats.cycles += 1
        status = self.pump.status()
        story = _Story(
            activity=rng.choice(ACTIVITIES),
            old_crc=self.pump.get_program()["crc"],
            old_running=None
            if _stopping(status["alarms"])
            else status["state"] == STATE["RUNNING"],
            old_account=status["reservoir_nl"],
        )
        self.stats.activities[story.activity] += 1
        self._begin(story, status)
        status = self.pump.status()
        kinds = ["frozen", "in_advance", "torn_write"]
        if story.request is not None:
            kinds += ["in_request", "in_request", "torn_write"]
        if status["bolus_kind"] or status["rate_nl_day"] >= 2_400_000:
            kinds += ["mid_stroke", "mid_stroke"]
        story.kind = rng.choice(kinds)
        self.stats.kills[story.kind] += 1
        if story.request is not None and story.kind not in ("in_request", "torn_write"):
            self._request(story)  # done before the kill, which comes later
        p_low, p_high = self._kill(story)
        self._restart()
        self._check(story, p_low, p_high)
        self._next_life(story)

    def _begin(self, story: _Story, status: dict[str, Any]) -> None:
        rng = self.rng
        activity = story.activity
        if activity in ("bolus", "patient_bolus"):
            if activity == "bolus":
                fields: dict[str, Any] | None = bolus_fields(
                    volume_nl=rng.choice((200, 400, 1_000, 2_000, 6_000)),
                    duration_s=rng.choice((0, 0, 5, 30)),
                )
                story.request = ("BOLUS", fields)
            else:
                story.request = ("PATIENT_BOLUS", None)
            if rng.random() < 0.5:
                self._request(story)  # running before the kill is chosen
                story.request = None
                self.rig.advance(rng.choice((0, 10, 260, 1_000)))
        elif activity in ("programming", "confirm"):
            story.new_fields = campaign_program(rng)
            story.new_crc = self.pump.program(story.new_fields)["crc"]
            if activity == "confirm":
                story.request = ("CONFIRM", {"crc": story.new_crc})
        elif activity == "refill":
            # a fill clearly different from the account, so the outcome is plain
            story.refill_nl = max(
                (20_000_000, 30_000_000, 38_000_000), key=lambda v: abs(v - story.old_account)
            )
            withdrawn = status["reservoir_nl"]
            story.request = ("REFILL", self.pump.refill_fields(withdrawn, story.refill_nl))
        elif activity == "stop_start":
            story.request = ("STOP", None) if story.old_running else ("START", None)

    def _request(self, story: _Story) -> None:
        assert story.request is not None
        name, fields = story.request
        try:
            reply = self.pump.request(name, fields)
        except PumpRefused as refused:
            if refused.code in AUTH_REFUSALS:
                self._violation(f"{name} refused {refused.code_name}: not exercised")
            self.stats.outcomes[f"{name} refused {refused.code_name}"] += 1
            return
        self._acked(story, name, reply)

    def _acked(self, story: _Story, name: str, reply: dict[str, Any]) -> None:
        story.acked[name] = reply
        if name in ("BOLUS", "PATIENT_BOLUS"):
            story.bolus_id = reply["bolus_id"]

    def _send_raw(self, story: _Story) -> None:
        assert story.request is not None
        name, fields = story.request
        story.raw_seq = self.pump.next_seq()
        self.pump.transport.expect(story.raw_seq)
        self.pump.transport.send(codec.encode(name, story.raw_seq, fields, signer=story.signer))

    def _collect(self, story: _Story, wait_s: float) -> bool:
        """Takes the raw request's reply if one came within ``wait_s``."""
        if story.request is None or story.raw_seq < 0:
            return False
        try:
            frame = self.pump.transport.wait_reply(story.raw_seq, wait_s)
        except BenchError:
            frame = None  # the port went with the process
        if frame is None:
            return False
        story.raw_seq = -1
        name = story.request[0]
        if frame.is_nack:
            code = frame.fields["code"]
            if code in AUTH_REFUSALS:  # the campaign's own session must hold
                self._violation(f"{name} refused {schema.error_name(code)}: not exercised")
            self.stats.outcomes[f"{name} refused {schema.error_name(code)}"] += 1
        else:
            self._acked(story, name, frame.fields)
        return True

    def _kill(self, story: _Story) -> tuple[int, int]:
        """Kills the process the chosen way; returns what the plant pumped (low, high)."""
        rng = self.rng
        rig = self.rig
        kind = story.kind
        if story.request is not None and schema.required_role(story.request[0]):
            # A change goes in a session (SPEC 21), opened now, before any
            # cut is armed: the kill falls in the request's own work.
            story.signer = self.pump.open_session().sign
        if kind == "in_advance":
            status = self.pump.status()
            pumped = rig.truth()["pumped_nl"]
            duration = rng.randint(2, 3_000)
            story.death_ms = status["device_time_ms"] + duration
            seq = rig.next_seq()
            rig.transport.send(codec.encode("ADVANCE", seq, {"duration_ms": duration}))
            _spin(rng.uniform(0.0, 0.0015))
            self._kill_now()
            bound = _stroke_bound(status, duration) * STROKE_NL
            self.stats.max_bracket_nl = max(self.stats.max_bracket_nl, bound)
            return pumped, pumped + bound
        if kind == "in_request":
            pumped = rig.truth()["pumped_nl"]
            story.death_ms = rig.advance(0)
            self._send_raw(story)
            _spin(rng.uniform(0.0, 0.0008))
            self._kill_now()
            self._collect(story, 0.05)
            return pumped, pumped
        if kind == "frozen":
            rig.advance(rng.randint(0, 5_000))
        elif kind == "mid_stroke":
            story.mid_stroke = self._into_a_stroke()
        elif kind == "torn_write":
            self._torn_write(story)
        if story.bolus_id is not None and rig.truth()["powered"]:
            story.bolus_running_at_death = self.pump.status()["bolus_kind"] != 0
        pumped = rig.truth()["pumped_nl"]
        story.death_ms = rig.advance(0)
        self._kill_now()
        return pumped, pumped

    def _into_a_stroke(self) -> bool:
        """Advances until a stroke has started and not ended (5 ms steps)."""
        rig = self.rig
        status = self.pump.status()
        start = rig.truth()["pumped_nl"]
        if not status["bolus_kind"] and status["rate_nl_day"]:
            # basal only: find a stroke at 100 ms, then wait for the next one
            interval = STROKE_NL * DAY_MS // status["rate_nl_day"]
            for _ in range(interval // 100 + 2):
                rig.advance(100)
                if rig.truth()["pumped_nl"] != start:
                    rig.advance(max(0, interval - 150))
                    start = rig.truth()["pumped_nl"]
                    break
        for _ in range(120):
            rig.advance(5)
            if rig.truth()["pumped_nl"] != start:
                return True
        return False

    def _torn_write(self, story: _Story) -> None:
        rng = self.rng
        rig = self.rig
        aim = _SMALL_REQUEST_BYTES
        if story.request is not None:
            aim = _REQUEST_BYTES.get(story.request[0], _SMALL_REQUEST_BYTES)
        rig.cut_after_bytes(rng.randint(0, aim) if rng.random() < 0.8 else rng.randint(0, 1_300))
        if story.request is not None:
            self._send_raw(story)
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline and rig.truth()["powered"]:
                if self._collect(story, 0.005):  # answered before the cut
                    break
        for step in range(50):
            if not rig.truth()["powered"]:
                break
            rig.advance(rng.randint(100, 3_000) if step < 30 else 30_000)
        story.cut = not rig.truth()["powered"]
        # nothing written in 10 min (delivery stopped): the kill is a frozen one
        self.stats.outcomes[f"torn_write: {'cut' if story.cut else 'nothing written'}"] += 1

    # --- after the restart ------------------------------------------------------------
    def _check(self, story: _Story, p_low: int, p_high: int) -> None:
        where = story.where
        pump = self.pump
        status = pump.status()
        program = pump.get_program()
        new = self._read_log()
        boots = [i for i, e in enumerate(new) if e["code"] == LOG["BOOT"]]
        if len(boots) != 1:
            self._violation(f"{where}: {len(boots)} BOOT entries, want 1: {new}")
            return
        boot = new[boots[0]]
        before_boot, after_boot = new[: boots[0]], new[boots[0] + 1 :]
        # an unexpected-reset event, every time
        if (boot["a"], boot["b"]) != (RESET_CAUSE_POWER_ON, 1):
            self._violation(f"{where}: BOOT a={boot['a']} b={boot['b']}, want a=0 b=1")
        if not any(
            e["code"] == LOG["ALARM_RAISED"] and e["a"] == ALARM["UNEXPECTED_RESET"]
            for e in after_boot
        ):
            self._violation(f"{where}: UNEXPECTED_RESET not raised at boot")
        if not status["alarms"] & (1 << (ALARM["UNEXPECTED_RESET"] - 1)):
            self._violation(f"{where}: UNEXPECTED_RESET not active after boot")
        if status["pending"] or status["bolus_kind"]:
            self._violation(
                f"{where}: after boot pending={status['pending']} bolus_kind={status['bolus_kind']}"
            )
        resumed = [e for e in after_boot if e["code"] == LOG["BOLUS_START"]]
        if resumed:
            self._violation(f"{where}: started again after boot: {resumed}")
        # A PROGRAM_ACTIVE after BOOT finishes an activation whose entry a cut
        # lost (SPEC 22, section 15): only for the program now active, and
        # only when its entry is not already there.
        for entry in after_boot:
            if entry["code"] != LOG["PROGRAM_ACTIVE"]:
                continue
            crc = entry["a"] & 0xFFFFFFFF
            before = any(
                e["code"] == LOG["PROGRAM_ACTIVE"] and e["a"] & 0xFFFFFFFF == crc
                for e in before_boot
            )
            if crc != status["program_crc"] or before:
                self._violation(f"{where}: program activation logged again after boot: {entry}")
        self._check_program(story, status, program, before_boot)
        self._check_refill(story, status, before_boot)
        self._check_boluses(story, after_boot)
        # accounting: the pump's count of this life against the dead plant's
        counted = status["delivered_nl"] - self.life_start_delivered
        if not p_low <= counted <= p_high + STROKE_NL:
            plant = f"{p_low}" if p_low == p_high else f"{p_low}..{p_high}"
            self._violation(
                f"{where}: the pump counted {counted} nL this life, the plant pumped {plant} nL"
            )
        if story.kind in EXACT_KILLS:
            self.stats.max_over_count_nl = max(self.stats.max_over_count_nl, counted - p_low)

    def _check_program(
        self,
        story: _Story,
        status: dict[str, Any],
        program: dict[str, Any],
        before_boot: list[dict[str, Any]],
    ) -> None:
        where = story.where
        crc = program["crc"]
        fields = {name: value for name, value in program.items() if name != "crc"}
        if program_crc_of(fields) != crc or status["program_crc"] != crc:
            self._violation(
                f"{where}: active program not whole: GET_PROGRAM crc {crc:#x}, its fields "
                f"{program_crc_of(fields):#x}, STATUS {status['program_crc']:#x}"
            )
        allowed = {story.old_crc}
        if story.activity == "confirm" and story.new_crc is not None:
            allowed.add(story.new_crc)
            if "CONFIRM" in story.acked:
                allowed = {story.new_crc}
        if crc not in allowed:
            want = ", ".join(f"{c:#x}" for c in sorted(allowed))
            self._violation(f"{where}: active program {crc:#x}, want {want}")
        is_new = crc == story.new_crc and crc != story.old_crc
        if is_new and not any(
            e["code"] == LOG["PROGRAM_ACTIVE"] and e["a"] & 0xFFFFFFFF == crc
            for e in self.log_entries
        ):
            self._violation(f"{where}: program {crc:#x} active, no PROGRAM_ACTIVE entry names it")
        if story.activity in ("programming", "confirm"):
            self.stats.outcomes[f"{story.activity}: {'new' if is_new else 'old'} program"] += 1
        logged_new = any(
            e["code"] == LOG["PROGRAM_ACTIVE"] and e["a"] == story.new_crc for e in before_boot
        )
        if logged_new and not is_new and story.new_crc != story.old_crc:
            self._violation(f"{where}: PROGRAM_ACTIVE {story.new_crc:#x} logged, {crc:#x} active")
        if _stopping(status["alarms"]):
            return
        running = status["state"] == STATE["RUNNING"]
        if is_new:
            assert story.new_fields is not None
            if running != (story.new_fields["mode"] != 0):
                self._violation(f"{where}: the new program runs={running}")
        elif story.activity == "stop_start":
            wanted = "STOP" if story.old_running else "START"
            if wanted in story.acked and running == story.old_running:
                self._violation(f"{where}: {wanted} was ACKed but did not survive")
            if any(e["code"] == LOG[wanted] for e in before_boot) and running == story.old_running:
                self._violation(f"{where}: {wanted} logged but not in force")
        elif story.old_running is not None and running != story.old_running:
            self._violation(f"{where}: running {story.old_running} -> {running}")

    def _check_refill(
        self, story: _Story, status: dict[str, Any], before_boot: list[dict[str, Any]]
    ) -> None:
        if story.refill_nl is None:
            return
        where = story.where
        account = status["reservoir_nl"]
        # refilled: the new fill, less what this life delivered after it
        refilled = abs(account - story.refill_nl) < abs(account - story.old_account)
        if "REFILL" in story.acked and not refilled:
            self._violation(f"{where}: REFILL was ACKed, the account is {account} nL")
        logged = any(e["code"] == LOG["REFILL"] and e["a"] == story.refill_nl for e in before_boot)
        if logged and not refilled:
            self._violation(f"{where}: REFILL logged, the account is {account} nL")
        self.stats.outcomes[f"refill: {'new' if refilled else 'old'} account"] += 1

    def _check_boluses(self, story: _Story, after_boot: list[dict[str, Any]]) -> None:
        where = story.where
        problems, open_ids = bolus_story(self.log_entries)
        for problem in problems:
            if problem in self._reported:
                continue
            self._reported.add(problem)
            self._violation(f"{where}: {problem}")
        for bolus_id, index in open_ids.items():
            problem = f"bolus {bolus_id} (log {index}) never ended"
            if problem in self._reported:
                continue
            self._reported.add(problem)
            self._violation(f"{where}: {problem}")
        if story.bolus_id is None:
            return
        started = [
            e
            for e in self.log_entries
            if e["code"] == LOG["BOLUS_START"] and e["a"] & 0xFFFF == story.bolus_id
        ]
        if not started:
            self._violation(f"{where}: bolus {story.bolus_id} was ACKed and is not in the log")
        interrupted = [
            e
            for e in after_boot
            if e["code"] == LOG["BOLUS_INTERRUPTED"] and e["a"] == story.bolus_id
        ]
        if story.bolus_running_at_death and not interrupted and story.bolus_id not in open_ids:
            self._violation(f"{where}: bolus {story.bolus_id} was running, no BOLUS_INTERRUPTED")
        if interrupted and started and interrupted[0]["b"] > started[0]["b"] + STROKE_NL:
            delivered, target = interrupted[0]["b"], started[0]["b"]
            self._violation(f"{where}: interrupted bolus delivered {delivered} nL of {target}")
        self.stats.outcomes[
            "bolus: interrupted" if interrupted else "bolus: ended before the cut"
        ] += 1

    def _next_life(self, story: _Story) -> None:
        """Brings the clock back to where the dead process had it, refills the plant.

        The Pico restores its device seconds after a reset (hal/rp2.py saves
        them); the virtual board's clock restarts at 0 with the process. Left
        so, every window of the dose governor and every patient-bolus lockout
        would wait for time to pass the old maximum, and catching up with
        delivery running would pile hours of basal into one governor minute.
        So the pump is powered off at once (it has delivered nothing at
        device time 0), time is advanced to the instant of death with the
        pump off, and the pump is powered on again: a second boot, at the
        right time, with its own BOOT entry (not checked: it is the bench's).
        """
        pump = self.pump
        rig = self.rig
        if story.death_ms:
            rig.power_off()
            rig.advance(story.death_ms, timeout_s=30.0)
            rig.power_on()
            self._wait_for_pump()
        status = pump.status()
        self.life_start_delivered = status["delivered_nl"]
        account = status["reservoir_nl"]
        if account < 8_000_000:
            rig.fill(30_000_000)
            pump.refill(account, 30_000_000)
        else:
            rig.fill(account)
        for alarm in _alarm_ids(status["alarms"]):
            if alarm != ALARM["UNEXPECTED_RESET"]:
                self.stats.outcomes[f"alarm after restart: {schema.alarm_name(alarm)}"] += 1
            try:
                pump.clear_alarm(alarm)
            except PumpRefused:
                pass
        self._read_log()

    def _wait_for_pump(self) -> None:
        # The pump port is silent while the firmware boots: ask until it answers.
        deadline = time.monotonic() + 5.0
        while True:
            try:
                self.pump.request("PING", {"token": 1}, timeout_s=0.05)
                return
            except BenchError:
                if time.monotonic() > deadline:
                    raise


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


def _stroke_bound(status: dict[str, Any], duration_ms: int) -> int:
    """Most strokes a grant of ``duration_ms`` can hold now (basal and a bolus)."""
    count = 0
    rate = status["rate_nl_day"]
    if rate:
        count += duration_ms // (STROKE_NL * DAY_MS // rate) + 2
    if status["bolus_kind"]:
        count += duration_ms // 250 + 2
    return count


# ==================================================================================
# 6. Link faults: the same scenario through fault:// and on a clean link
# ==================================================================================
@dataclass
class ScenarioResult:
    url_options: str
    seconds: float = 0.0
    requests: int = 0
    retransmissions: int = 0
    link: dict[str, int] = field(default_factory=dict)  # the pump port's LINK_STATS
    faults: dict[str, dict[str, float]] = field(default_factory=dict)  # fault:// tallies
    mismatches: list[str] = field(default_factory=list)
    log: list[tuple[int, int, int, int]] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)


# What the scenario commands, each once: the log must show each once (a
# CONFIRM that starts delivery logs PROGRAM_ACTIVE, not START: SPEC 15).
SCENARIO_ONCE = {
    "PROGRAM_PENDING": 2,
    "PROGRAM_ACTIVE": 2,
    "BOLUS_START": 3,
    "BOLUS_CANCELLED": 1,
    "REFILL": 1,
    "STOP": 1,
    "START": 1,
    "CLOCK_SET": 1,
}
# STATUS fields that describe the link or the moment, not the therapy.
_NOT_THERAPY = ("uptime_ms",)


def therapy_scenario(pump: PumpClient, rig: RigClient) -> int:
    """Program, confirm, boluses, time, status: the outcome must not depend on the link.

    Returns the number of pump requests made.
    """
    requests = 0

    def ask(name: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
        nonlocal requests
        requests += 1
        return pump.request(name, fields)

    ask(
        "HELLO",
        {"protocol_version": schema.PROTOCOL_VERSION, "schema_fingerprint": schema.FINGERPRINT},
    )
    withdrawn = rig.fill(20_000_000)
    ask("REFILL", refill_request(withdrawn, 20_000_000, drug_id=0, conc_ug_ml=0))
    ask("SET_CLOCK", {"local_offset_s": 8 * 3600})
    program = program_fields(pb_dose_nl=20_000, pb_lockout_s=3_600, pb_max_per_day=4)
    crc = ask("PROGRAM", program)["crc"]
    ask("GET_PROGRAM", {"which": 1})
    ask("CONFIRM", {"crc": crc})
    rig.advance(10 * MINUTE_MS)
    ask("PATIENT_BOLUS")
    rig.advance(30 * MINUTE_MS)
    ask("STATUS")
    ask("BOLUS", bolus_fields(volume_nl=5_000, duration_s=600))
    rig.advance(2 * MINUTE_MS)
    ask("CANCEL_BOLUS")
    rig.advance(HOUR_MS)
    ask("PATIENT_BOLUS")
    rig.advance(2 * HOUR_MS)
    flex = program_fields(
        mode=2,
        basal_nl_day=500_000,
        flex_count=2,
        flex_start_min=[8 * 60, 20 * 60] + [0] * 22,
        flex_rate_nl_day=[1_500_000, 800_000] + [0] * 22,
    )
    crc = ask("PROGRAM", flex)["crc"]
    ask("CONFIRM", {"crc": crc})
    rig.advance(HOUR_MS)
    ask("STOP")
    ask("START")
    rig.advance(HOUR_MS)
    ask("STATUS")
    ask("GET_LOG", {"start": 0, "count": 12})
    return requests


def link_fault_scenario(url_options: str, seed: int = 0, *, retries: int = 25) -> ScenarioResult:
    """The therapy scenario through ``fault://<pump port>?<url_options>`` (rig clean).

    The result's ``log`` and ``status`` are read afterwards over a clean
    connection; compare them with :func:`clean_scenario`'s.
    """
    register_fault_handler()
    result = ScenarioResult(url_options)
    with VirtualBoard(BoardOptions(seed=seed)) as board:
        url = f"fault://{board.pump_port}?{url_options}" if url_options else board.pump_port
        started = time.perf_counter()
        with (
            PumpClient(url, timeout_s=0.1, retries=retries) as pump,
            RigClient(board.rig_port) as rig,
        ):
            result.requests = therapy_scenario(pump, rig)
            result.retransmissions = pump.retransmissions
            stats = getattr(pump.transport.serial, "fault_stats", None)
            if stats is not None:
                result.faults = stats()
        result.seconds = time.perf_counter() - started
        with PumpClient(board.pump_port) as pump:
            result.link = pump.link_stats()
            result.status = {k: v for k, v in pump.status().items() if k not in _NOT_THERAPY}
            # the session rules' own entries (a session reopened after a lost
            # reply, say) are not therapy: the rest must match the clean run
            result.log = [
                (e["time_s"], e["code"], e["a"], e["b"])
                for e in pump.log()
                if e["code"] not in AUTH_LOG_CODES
            ]
        if not board.alive:
            result.mismatches.append(f"the board died:\n{board.stderr_text()}")
    counts = Counter(code for _t, code, _a, _b in result.log)
    for name, once in SCENARIO_ONCE.items():
        if counts[LOG[name]] != once:
            result.mismatches.append(f"{name} logged {counts[LOG[name]]} times, commanded {once}")
    return result


def register_fault_handler() -> None:
    """Makes ``fault://`` URLs work (importing bench.link.transports registers it)."""
    from bench.link import transports

    transports.register()


def clean_scenario(seed: int = 0) -> ScenarioResult:
    return link_fault_scenario("", seed)


def compare_outcomes(clean: ScenarioResult, faulty: ScenarioResult) -> list[str]:
    """Where the faulty run's outcome differs from the clean run's."""
    problems = list(faulty.mismatches)
    if faulty.log != clean.log:
        for i, (a, b) in enumerate(zip(clean.log, faulty.log, strict=False)):
            if a != b:
                problems.append(f"log entry {i}: clean {_entry(a)}, through faults {_entry(b)}")
                break
        if len(clean.log) != len(faulty.log):
            problems.append(f"log length: clean {len(clean.log)}, through faults {len(faulty.log)}")
    for name, value in clean.status.items():
        if faulty.status.get(name) != value:
            problems.append(
                f"STATUS {name}: clean {value}, through faults {faulty.status.get(name)}"
            )
    return problems


def _entry(entry: tuple[int, int, int, int]) -> str:
    time_s, code, a, b = entry
    return f"{schema.log_name(code)}(a={a}, b={b}) at {time_s} s"


# ==================================================================================
# 7. make bench: the long runs, with figures
# ==================================================================================
def _rows_fuzz(frames: int, seed: int) -> tuple[list[tuple[str, str, str]], list[str]]:
    with VirtualBoard(BoardOptions(seed=seed)) as board:
        with PumpClient(board.pump_port) as pump, RigClient(board.rig_port) as rig:
            fuzz_setup(pump, rig)
        session = FuzzSession(board, random.Random(seed))
        started = time.perf_counter()
        problems: list[str] = []
        try:
            session.run(frames)
        except Stall as stall:
            problems.append(str(stall))
        seconds = time.perf_counter() - started
        problems += session.mismatches + [
            f"therapy changed: {c}" for c in session.therapy_changes()
        ]
        if not board.alive:
            problems.append(f"the board died:\n{board.stderr_text()}")
        session.close()
    rows = []
    judged = session.pump.stats.frames + session.rig.stats.frames
    rows.append(("fuzz: chunks judged (pump + rig)", f"{judged}", "frames"))
    rows.append(("fuzz: rate", f"{judged / seconds:.0f}", "frames/s"))
    for fuzz in (session.pump, session.rig):
        counters = fuzz.counters
        text = ", ".join(f"{name} {counters[name]}" for name in COUNTERS)
        rows.append((f"fuzz: {fuzz.kind} LINK_STATS", text, ""))
    auth_nacks = ("AUTH_REQUIRED", "WRONG_ROLE", "BAD_MAC", "REPLAY", "NO_CHALLENGE")
    text = ", ".join(f"{name} {session.pump.stats.nacks[name]}" for name in auth_nacks)
    rows.append(("fuzz: pump refusals by the session rules", text, ""))
    rows.append(("fuzz: replies and counters off the model", f"{len(session.mismatches)}", ""))
    return rows, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Robustness long runs (docs/robustness.md).")
    parser.add_argument("--frames", type=int, default=50_000, help="fuzzed chunks")
    parser.add_argument("--cycles", type=int, default=600, help="power-loss kills")
    parser.add_argument("--scenarios", type=int, default=6, help="link-fault scenario runs")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    args = parser.parse_args(argv)
    print(f"robustness long runs, seed {args.seed} (repeat with --seed {args.seed})")
    rows: list[tuple[str, str, str]] = []
    problems: list[str] = []
    started = time.perf_counter()

    fuzz_rows, fuzz_problems = _rows_fuzz(args.frames, args.seed)
    rows += fuzz_rows
    problems += fuzz_problems

    with tempfile.TemporaryDirectory(prefix="pump-campaign-") as journal:
        campaign = PowerLossCampaign(random.Random(args.seed), journal)
        try:
            stats = campaign.run(args.cycles)
        finally:
            campaign.close()
    rows.append(("power loss: kills", f"{stats.cycles}", f"in {stats.seconds:.1f} s"))
    rows.append(("power loss: by instant", _counts(stats.kills), ""))
    rows.append(("power loss: by activity", _counts(stats.activities), ""))
    for outcome, count in sorted(stats.outcomes.items()):
        rows.append((f"  {outcome}", f"{count}", ""))
    rows.append(
        ("power loss: largest over-count (exact kills)", f"{stats.max_over_count_nl}", "nL")
    )
    rows.append(("power loss: widest bracket (in_advance)", f"{stats.max_bracket_nl}", "nL"))
    rows.append(("power loss: invariant violations", f"{len(stats.violations)}", ""))
    problems += stats.violations

    clean = clean_scenario(args.seed)
    rates = (0.0005, 0.001, 0.002)
    for run in range(args.scenarios):
        rate = rates[run % len(rates)]
        options = f"drop={rate}&dup={rate}&corrupt={rate}&delay_ms=2&seed={args.seed + run}"
        result = link_fault_scenario(options, args.seed)
        differences = compare_outcomes(clean, result)
        problems += [f"fault:// {options}: {d}" for d in differences]
        damaged = (
            sum(
                int(result.faults[side][k])
                for side in ("tx", "rx")
                for k in ("dropped", "duplicated", "corrupted")
            )
            if result.faults
            else 0
        )
        rows.append(
            (
                f"link faults {rate:g}/byte",
                f"{result.requests} requests, {result.retransmissions} retransmitted",
                f"{damaged} bytes damaged, {result.link.get('duplicates', 0)} duplicates "
                f"answered from cache, {result.seconds:.1f} s, "
                + ("same outcome" if not differences else f"{len(differences)} differences"),
            )
        )

    width = max(len(r[0]) for r in rows)
    for figure, value, note in rows:
        print(f"{figure:<{width}}  {value}  {note}".rstrip())
    print(f"({time.perf_counter() - started:.1f} s)")
    for problem in problems:
        print(f"VIOLATION: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counter.items()))


if __name__ == "__main__":
    sys.exit(main())
