"""Fuzz cases: good requests, mutations, noise, duplicates and refusals the link fuzzer sends."""

from __future__ import annotations

import random
import struct
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cobs import cobs

from bench.link.client import PLANT_NOMINAL
from bench.robustness.common import bolus_fields, message_name, program_fields, refill_request
from bench.robustness.receiver import (
    ALL_IDS,
    SAFE_REQUESTS,
    ReceiverModel,
    SessionView,
    cobs_decode_partial,
    request_sizes,
)
from protocol import codec, schema


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
    # One case per kind in MUTATIONS, in that order: a table, read as one.
    def mutate(self) -> FuzzCase:  # noqa: C901, PLR0911, PLR0912
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


# The fuzzed pump runs morphine 10 mg/mL (bolus hard limit 250 uL) and has no
# pending program. Every entry is (message, maker of (fields, NACK code,
# detail)) for an intact request that its handler must refuse, changing
# nothing (SPEC sections 5 and 16, docs/pump.md
# sections 10-15).
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
