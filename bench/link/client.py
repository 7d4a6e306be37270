"""Typed clients for the pump port and the rig port: what both share.

The clients themselves are pump.py (:class:`PumpClient`) and rig.py
(:class:`RigClient`); here are the base :class:`Client`, the names and
nominal values they use, and refusals explained.

Every call has a deadline. A request that gets no reply in time is sent
again *unchanged* (same sequence number), so the device answers it from its
reply cache instead of executing it twice; link-level NACKs (BAD_CRC, ...)
are retransmitted the same way. A NACK that refuses the request itself is
raised as :class:`PumpRefused` and never retried. A therapy-changing request
carries a request id, the same in every copy and every session, and the pump
runs it at most once whatever happens to its reply cache (SPEC section 23).

Units are the wire's, in integers: volumes nL, rates nL/day, concentrations
ug/mL, doses ng, times s (ms where the field says so). Converting from and
to human units is bench/program/file.py's job, not the clients'.
"""

from __future__ import annotations

import queue
import random
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from bench.link import keys as keysmod
from bench.link.errors import BenchError, PumpRefused
from bench.link.transport import Transport
from protocol import codec, schema
from protocol.table import (
    REFILL_BAD_VOLUME,
    REFILL_OVER_CAPACITY,
)

DEFAULT_TIMEOUT_S = 1.0


DEFAULT_RETRIES = 3


# The PROGRAM mode field and STATUS mode (schema PROGRAM_FIELDS comment).
MODE_NAMES = tuple(name for _code, name in schema.MODES)


# BOLUS kind (schema: 1 clinician, 2 priming, 3 bridge); STATUS bolus_kind
# also reports 0 (none) and 4 (patient), as firmware/pump/therapy.py does.
BOLUS_KINDS = {
    name.lower(): code for code, name in schema.BOLUS_KINDS if name not in ("NONE", "PATIENT")
}


BOLUS_KIND_NAMES = tuple(name for _code, name in schema.BOLUS_KINDS)


# RESERVOIR NACK details (firmware/pump/reservoir.py refill codes).
RESERVOIR_REASONS = {
    REFILL_OVER_CAPACITY: "added volume above the reservoir's capacity",
    REFILL_BAD_VOLUME: "bad volume",
}


# Read-only requests whose reply the bench takes as proof: sent in the
# session when the client has a key, so that the reply is signed (SPEC 21.6).
SIGNED_READS = ("GET_PROGRAM", "OUTCOME")


class UntrustedReply(BenchError):
    """An answer to a signed request that the pump did not sign (SPEC 21.6)."""


# OUTCOME states (SPEC section 23)
OUTCOME_NEW = 0


OUTCOME_IN_DOUBT = 1


OUTCOME_DONE = 2


# STATUS and REFILL report "never" as all ones in an unsigned field (-1 in a
# signed one): a refill date when nothing is consumed, a time to empty at 0.
NEVER_U32 = 0xFFFF_FFFF


def _array_size(message: str, field: str) -> int:
    """The entry count of an array field ("12I" -> 12), from the schema."""
    reply = schema.message_by_name(message)[4]
    return next(int(fmt[:-1]) for name, fmt, _unit in reply if name == field)


LOG_PAGE = _array_size("GET_LOG", "code")  # entries per GET_LOG reply


PROGRAM_FIELD_NAMES = tuple(name for name, _fmt, _unit in schema.PROGRAM_FIELDS)


def limit_name(limit_id: int) -> str:
    """The name of a drug-library limit id (HARD_LIMIT / SOFT_LIMIT detail)."""
    return str(schema.limit_name(limit_id))


def soft_limit_names(mask: int) -> list[str]:
    """The soft limits in a PROGRAM reply's soft_override_mask (bit 1 << limit id)."""
    return [limit_name(bit) for bit in range(16) if mask >> bit & 1]


def alarm_names(mask: int) -> list[str]:
    """The alarms set in a STATUS/CLEAR_ALARM mask: bit (id - 1) is alarm id."""
    return [schema.alarm_name(bit + 1) for bit in range(32) if mask >> bit & 1]


# The plant as docs/plant.md describes it: 60 cm catheter, 5 nL/mmHg line,
# Poiseuille resistance, 0.5 mmHg sensor noise, CSF 7.4 mmHg (lying).
PLANT_NOMINAL = {
    "calibration_ppm": 0,
    "catheter_nl": 156_000,
    "catheter_empty_nl": 0,
    "reservoir_nl": 0,
    "compliance_x10": 50,
    "resistance_pct": 100,
    "noise_x10": 5,
    "csf_x10": 74,
}


# LINE (docs/plant.md section 1): the historic lumped line, no air, no
# inertance, occlusions at the tip, sea level, a quiet patient.
LINE_NOMINAL = {
    "material": 0,
    "modulus_kpa": 0,
    "air_nl": 0,
    "air_dissolve_s": 0,
    "inertance": 0,
    "occlusion_site": 0,
    "ambient_x10": 0,
    "daily_life": 0,
}


def fault_id(fault: int | str) -> int:
    """A plant fault by id or schema name (case-insensitive); ValueError if unknown."""
    if isinstance(fault, int):
        return fault
    for code, name in schema.FAULTS:
        if name == fault.upper():
            return code
    raise ValueError(f"no fault {fault!r}: {', '.join(n for _c, n in schema.FAULTS)}")


def alarm_id(alarm: int | str) -> int:
    """An alarm by id or by schema name (case-insensitive); ValueError if unknown."""
    if isinstance(alarm, int):
        return alarm
    for code, name, _priority in schema.ALARMS:
        if name == alarm.upper():
            return code
    if alarm.isdigit() and int(alarm) <= 0xFF:  # the field is one byte
        return int(alarm)
    names = ", ".join(name for _code, name, _priority in schema.ALARMS)
    raise ValueError(f"unknown alarm {alarm!r}; alarms are {names}")


def mode_name(mode: int) -> str:
    return MODE_NAMES[mode] if 0 <= mode < len(MODE_NAMES) else f"MODE_{mode}"


def bolus_kind_name(kind: int) -> str:
    return BOLUS_KIND_NAMES[kind] if 0 <= kind < len(BOLUS_KIND_NAMES) else f"KIND_{kind}"


def program_crc(fields: Mapping[str, Any]) -> int:
    """The CRC the pump must answer PROGRAM with: CRC-32 of the packed fields.

    The pump's CRC covers exactly the PROGRAM payload, so the bench can check
    the echo independently instead of trusting it.
    """
    payload = codec.MESSAGE_TYPES["PROGRAM"].request.build(dict(fields))
    return zlib.crc32(payload) & 0xFFFF_FFFF


def explain_refusal(code: int, detail: int) -> str:
    """What a NACK's detail means for this code, or "" when it means nothing more."""
    if code in (schema.HARD_LIMIT, schema.SOFT_LIMIT):
        text = f"limit {limit_name(detail)} ({detail})"
        if code == schema.SOFT_LIMIT:
            text += "; needs the soft-limit override"
        return text
    if code == schema.BAD_PROGRAM:
        field = PROGRAM_FIELD_NAMES[detail] if detail < len(PROGRAM_FIELD_NAMES) else detail
        return f"field {field}"
    if code == schema.ALARM_ACTIVE and detail:
        return f"alarm {schema.alarm_name(detail)}"
    if code == schema.LOCKOUT:  # the 16-bit detail saturates
        return f"{detail} s of lockout left" + (" or more" if detail == 0xFFFF else "")
    if code == schema.DAILY_MAX:
        return f"{detail} patient boluses a day at most"
    if code == schema.RESERVOIR:
        return RESERVOIR_REASONS.get(detail, f"reason {detail}")
    if code == schema.DURATION:
        return f"{detail} min at most"
    if code == schema.AUTH_REQUIRED:
        role = schema.role_name(detail).lower() if detail else "a"
        return f"needs a {role} session: give --key-file or {keysmod.ENV_FILE}"
    return ""


def _port_of(request: str) -> str:
    for _id, name, port, *_fields in schema.MESSAGES:
        if name == request:
            return str(port)
    return ""


def _explain_in_context(request: str, code: int, detail: int) -> str:
    """What a refusal means given the request it answered (which port, which step)."""
    if code == schema.WRONG_PORT:
        port = _port_of(request)
        if port == schema.PORT_PUMP:
            return "this is the rig port: give the pump port (`pumpbench sim` prints both)"
        if port == schema.PORT_RIG:
            return "this is the pump port: give the rig port (`pumpbench sim` prints both)"
    if code == schema.BAD_MAC and request == "AUTH_OPEN":
        return (
            "the key does not match this pump (a key file of another pump, or an old one): "
            f"give this pump's --key-file or {keysmod.ENV_FILE}"
        )
    return explain_refusal(code, detail)


class Refusal(PumpRefused):
    """A :class:`PumpRefused` whose message says what the detail means.

    A limit refusal reads "HARD_LIMIT: limit daily_hard (4)" instead of
    "(detail 4)": a person at the bench should not need the firmware source to
    know why the pump said no. ``limit`` is the limit name for HARD_LIMIT and
    SOFT_LIMIT, else None. (bench/link/errors.py can take this in when it is free.)
    """

    def __init__(self, port: str, request: str, code: int, detail: int) -> None:
        super().__init__(port, request, code, detail)
        self.limit = limit_name(detail) if code in (schema.HARD_LIMIT, schema.SOFT_LIMIT) else None
        meaning = _explain_in_context(request, code, detail)
        if meaning:
            self.args = (f"{port}: {request} refused: {self.code_name}: {meaning}",)
        elif not detail:  # "(detail 0)" says nothing
            self.args = (f"{port}: {request} refused: {self.code_name}",)


def text(value: str) -> str:
    """Fixed-size strings arrive padded; construct strips the padding."""
    return value.rstrip("\x00")


class Client:
    """Request/reply over one port. Subclasses add the typed methods."""

    port_kind = ""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.transport = Transport(url)
        # A random first sequence number: a client that reconnects must not
        # collide with the device's cache of the previous session's replies.
        self._seq = random.randrange(0x10000)
        self.retransmissions = 0

    def close(self) -> None:
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        return self._seq

    def request(
        self,
        name: str,
        fields: dict[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
        seq: int | None = None,
        signer: codec.Signer | None = None,
        verify: Callable[[codec.Frame], None] | None = None,
    ) -> dict[str, Any]:
        """Sends one request and returns the reply fields (``signer``: authenticated;
        ``verify`` raises on a reply it does not trust, SPEC 21.6)."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        seq = self.next_seq() if seq is None else seq
        wire = codec.encode(name, seq, fields, signer=signer)
        self.transport.expect(seq)
        tries = self.retries + 1
        try:
            for attempt in range(tries):
                if attempt:
                    self.retransmissions += 1
                self.transport.send(wire)
                frame = self.transport.wait_reply(seq, timeout)
                if frame is None:
                    continue
                if frame.is_nack and frame.fields["code"] < schema.LINK_ERROR_LIMIT:
                    # The request was damaged on the way (its id byte too,
                    # perhaps): resend it unchanged.
                    self.transport.expect(seq)
                    continue
                if verify is not None:
                    verify(frame)
                if frame.name != name:
                    raise BenchError(
                        f"{self.url}: reply to {name} (seq {seq}) came back as {frame.name}"
                    )
                if frame.is_nack:
                    raise Refusal(self.url, name, frame.fields["code"], frame.fields["detail"])
                return frame.fields
        finally:
            self.transport.forget(seq)
        raise BenchError(
            f"{self.url}: no reply to {name} (seq {seq}) within {timeout:g} s, {tries} tries"
        )

    def wait_event(
        self,
        name: str,
        timeout_s: float | None = None,
        where: Callable[[codec.Frame], bool] | None = None,
    ) -> codec.Frame:
        """The next event called ``name`` (and matching ``where``); others are dropped."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.url}: no {name} event within {timeout_s} s")
            try:
                frame = self.transport.events.get(timeout=left)
            except queue.Empty:
                continue
            if frame.name == name and (where is None or where(frame)):
                return frame

    def clear_events(self) -> int:
        """Drops every event received so far (from an earlier boot, say)."""
        dropped = 0
        while True:
            try:
                self.transport.events.get_nowait()
            except queue.Empty:
                return dropped
            dropped += 1

    def link_stats(self) -> dict[str, int]:
        return self.request("LINK_STATS")

    def ping(self, token: int | None = None) -> int:
        token = random.randrange(1 << 32) if token is None else token
        echoed = self.request("PING", {"token": token})["token"]
        if echoed != token:
            raise BenchError(f"{self.url}: PING echoed {echoed:#x}, sent {token:#x}")
        return echoed

    def _check_fingerprint(self, reply: dict[str, Any], what: str) -> None:
        theirs = reply["schema_fingerprint"]
        if reply["protocol_version"] != schema.PROTOCOL_VERSION or theirs != schema.FINGERPRINT:
            raise BenchError(
                f"{self.url}: {what} speaks protocol v{reply['protocol_version']} "
                f"schema {theirs:#010x}; this bench speaks v{schema.PROTOCOL_VERSION} "
                f"schema {schema.FINGERPRINT:#010x}: flash matching firmware"
            )


def _our_schema() -> dict[str, int]:
    return {"protocol_version": schema.PROTOCOL_VERSION, "schema_fingerprint": schema.FINGERPRINT}
