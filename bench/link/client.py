"""Typed clients for the pump port and the rig port.

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

import hmac
import queue
import random
import secrets
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import construct

from bench.link import keys as keysmod
from bench.link.errors import BenchError, PumpRefused
from bench.link.transport import Transport
from protocol import auth, codec, schema
from protocol.table import (
    POWER_CUT_AFTER_BYTES,
    POWER_CUT_IN_MS,
    POWER_OFF,
    POWER_ON,
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

# Rig POWER actions (schema POWER comment) and INJECT_FAULT faults.
FAULT_RUNAWAY = 1  # param: extra steps per commanded step

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


OPEN_ATTEMPTS = 3  # challenges asked for when one lapses before AUTH_OPEN arrives


class PumpClient(Client):
    """The pump port: what a clinician programmer or the bench may ask the pump.

    A request that needs a role (schema MESSAGE_ROLES) is sent authenticated,
    in a session of this client's ``role`` opened on first need (SPEC
    section 21). ``keys`` default to bench.link.keys.find(url): a virtual board's
    own, or the environment's. Without a key the request goes out plain and
    the pump refuses it (AUTH_REQUIRED): the pump, not the bench, decides.
    """

    port_kind = schema.PORT_PUMP

    def __init__(
        self,
        url: str,
        *,
        keys: keysmod.DeviceKeys | None = None,
        role: int | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        super().__init__(url, timeout_s=timeout_s, retries=retries)
        self.keys = keys if keys is not None else keysmod.find(url)
        if role is None:
            role = self.keys.highest_role if self.keys is not None else schema.ROLE_READ_ONLY
        self.role = role
        self.session: auth.Session | None = None
        self.sessions_opened = 0
        self.last_request_id = b""  # of the last therapy-changing request
        self.untrusted_replies = 0  # unsigned or badly signed answers refused

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
        if verify is not None:  # the caller checks the reply itself
            return super().request(
                name, fields, timeout_s=timeout_s, seq=seq, signer=signer, verify=verify
            )
        needed = schema.required_role(name)
        if signer is None and self.role and name in SIGNED_READS:
            # a read the bench takes as proof: in the session, signed both ways
            return self._in_session(name, fields, timeout_s, seq, None)
        if signer is not None or needed == schema.ROLE_READ_ONLY or not self.role:
            return super().request(name, fields, timeout_s=timeout_s, seq=seq, signer=signer)
        if name in schema.ONCE_EXCEPT:
            return self._in_session(name, fields, timeout_s, seq, None)
        return self.request_once(name, fields, auth.new_request_id(), timeout_s=timeout_s)

    def request_once(
        self,
        name: str,
        fields: dict[str, Any] | None,
        request_id: bytes,
        *,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """A therapy-changing request under ``request_id`` (SPEC section 23): it runs once.

        Every copy carries the same id, in whatever session: the pump runs the
        first and answers the others with its journalled reply. When no reply
        came at all, the pump is asked for the outcome of the id before
        anything else; the request goes out again only if it never ran.
        """
        self.last_request_id = request_id
        try:
            return self._in_session(name, fields, timeout_s, None, request_id)
        except PumpRefused as refused:
            if refused.code == schema.IN_DOUBT:
                raise self._in_doubt(name) from None
            raise
        except UntrustedReply:
            # Not the pump's word (SPEC 21.6): ask it, signed, what it did.
            pass
        except BenchError as lost:
            if "no reply" not in str(lost):
                raise
        # No reply to any copy, or none to trust: did one of them run?
        state, reply = self.outcome(self.role, request_id)
        if state == OUTCOME_DONE and reply is not None:
            return self._replayed(name, reply)
        if state == OUTCOME_IN_DOUBT:
            raise self._in_doubt(name)
        # It never ran: the same request, under the same id, once more.
        return self._in_session(name, fields, timeout_s, None, request_id)

    def _in_session(
        self,
        name: str,
        fields: dict[str, Any] | None,
        timeout_s: float | None,
        seq: int | None,
        request_id: bytes | None,
    ) -> dict[str, Any]:
        # Signed in our session (opened on first need); once more in a new
        # one if the pump lost it (idled out, rebooted). A therapy request is
        # safe to send again under its id; AUTH_CLOSE changes nothing.
        for attempt in range(2):
            session = self.session or self.open_session()
            try:
                return self._signed(name, fields, timeout_s, seq, session, request_id)
            except PumpRefused as refused:
                lost = refused.code in (schema.AUTH_REQUIRED, schema.SESSION_EXPIRED)
                if not lost or seq is not None or attempt:
                    raise
            self.session = None
        raise AssertionError("unreachable")

    def _signed(
        self,
        name: str,
        fields: dict[str, Any] | None,
        timeout_s: float | None,
        seq: int | None,
        session: auth.Session,
        request_id: bytes | None,
    ) -> dict[str, Any]:
        # One request signed in ``session``; its reply must be signed over it.
        sent: list[bytes] = []

        def sign(covered: bytes) -> bytes:
            trailer = session.sign(covered, request_id)
            sent.append(trailer[schema.REQUEST_ID_SIZE :])  # its counter and MAC
            return trailer

        def verify(frame: codec.Frame) -> None:
            self._verify_reply(name, frame, session, sent[-1])

        return super().request(
            name, fields, timeout_s=timeout_s, seq=seq, signer=sign, verify=verify
        )

    def _verify_reply(
        self, name: str, frame: codec.Frame, session: auth.Session, request_tag: bytes
    ) -> None:
        # SPEC 21.6: the reply to a signed request is signed over it; the
        # only unsigned answers taken are "no session" (the request is sent
        # again under its id in a new one, which is harmless whoever said it).
        if frame.is_signed:
            assert frame.covered is not None and frame.mac is not None
            expected = auth.reply_mac(session.key, frame.covered, request_tag)
            if not hmac.compare_digest(expected, frame.mac):
                self.untrusted_replies += 1
                raise UntrustedReply(
                    f"{self.url}: the reply to {name} has a wrong MAC: forged or meant for "
                    "another request; refused"
                )
            return
        if frame.is_nack and frame.fields["code"] in (
            schema.AUTH_REQUIRED,
            schema.SESSION_EXPIRED,
        ):
            return
        self.untrusted_replies += 1
        raise UntrustedReply(
            f"{self.url}: the reply to {name} is not signed (a device in the link may have "
            "made it); refused"
        )

    def _in_doubt(self, name: str) -> BenchError:
        return BenchError(
            f"{self.url}: {name} was interrupted by a pump reset before its outcome was "
            "journalled (IN_DOUBT): it may have taken effect; read the state back (status, "
            "log) and decide; do not send it again blindly"
        )

    def _replayed(self, name: str, reply: codec.Frame) -> dict[str, Any]:
        if reply.name != name:
            raise BenchError(f"{self.url}: the outcome of this {name} is a {reply.name} reply")
        if reply.is_nack:
            raise Refusal(self.url, name, reply.fields["code"], reply.fields["detail"])
        return reply.fields

    def outcome(self, role: int, request_id: bytes) -> tuple[int, codec.Frame | None]:
        """OUTCOME: what the pump did with ``request_id`` of a ``role`` session.

        -> (OUTCOME_NEW, None): it never ran; (OUTCOME_IN_DOUBT, None): a reset
        came while it ran; (OUTCOME_DONE, reply): the reply it was given,
        decoded as a frame (an ACK or a NACK).
        """
        got = self.request("OUTCOME", {"role": role, "request_id": request_id})  # signed
        if got["state"] != OUTCOME_DONE:
            return got["state"], None
        msg = codec.MESSAGE_IDS.get(got["msg_id"])
        if msg is None:
            raise BenchError(f"{self.url}: OUTCOME names message {got['msg_id']:#x}")
        payload = got["reply"][: got["size"]]
        layout = codec.payload_struct(msg, got["flags"])
        try:
            values = layout.parse(payload)
        except construct.ConstructError as exc:
            raise BenchError(
                f"{self.url}: OUTCOME reply of {msg.name} unreadable ({exc})"
            ) from None
        fields = {
            k: list(v) if isinstance(v, list) else v
            for k, v in values.items()
            if not k.startswith("_")
        }
        return OUTCOME_DONE, codec.Frame(msg.msg_id, msg.name, 0, got["flags"], fields)

    def open_session(self, role: int | None = None) -> auth.Session:
        """Challenge, proof, the pump's proof: a session of ``role`` (default: ours)."""
        role = self.role if role is None else role
        key = self.keys.for_role(role) if self.keys is not None else None
        if key is None:
            raise BenchError(
                f"{self.url}: no {schema.role_name(role).lower()} key for this pump: give "
                f"--key-file or set {keysmod.ENV_FILE} (see README, 'Keys and roles')"
            )
        self.session = None
        # A challenge lives CHALLENGE_S of device time: on a free-running
        # board at high speed, or behind a slow link, it can lapse before
        # AUTH_OPEN arrives (NO_CHALLENGE). Nothing ran: ask for a new one,
        # a few times, then give up with the pump's refusal.
        for attempt in range(OPEN_ATTEMPTS):
            pump_nonce = self.request("AUTH_CHALLENGE", {"role": role})["pump_nonce"]
            client_nonce = secrets.token_bytes(schema.NONCE_SIZE)
            proof = auth.client_proof(key, role, pump_nonce, client_nonce)
            try:
                reply = self.request(
                    "AUTH_OPEN", {"role": role, "client_nonce": client_nonce, "proof": proof}
                )
                break
            except PumpRefused as refused:
                if refused.code != schema.NO_CHALLENGE or attempt == OPEN_ATTEMPTS - 1:
                    raise
        if not hmac.compare_digest(
            reply["proof"], auth.pump_proof(key, role, pump_nonce, client_nonce)
        ):
            raise BenchError(
                f"{self.url}: the pump's session proof is wrong: it does not hold this key "
                "(another pump on this port, or a stale key file)"
            )
        self.session = auth.Session(role, auth.session_key(key, role, pump_nonce, client_nonce))
        self.sessions_opened += 1
        return self.session

    def provision(self, keys: keysmod.DeviceKeys) -> bool:
        """Gives a pump without keys its key store (first use; a frozen UF2 has none).

        -> True when this call provisioned it, False when it already had keys
        (PROVISIONED: whether they are these keys, a session will tell).
        """
        try:
            self.request("PROVISION", {"keystore": keys.keystore()})
        except PumpRefused as refused:
            if refused.code == schema.PROVISIONED:
                return False
            raise
        return True

    def close_session(self) -> None:
        """Ends the session on the pump (it also ends by itself when idle)."""
        if self.session is not None:
            self.request("AUTH_CLOSE")
            self.session = None

    def hello(self) -> dict[str, Any]:
        try:
            reply = self.request("HELLO", _our_schema())
        except PumpRefused as refused:
            if refused.code == schema.SCHEMA_MISMATCH:
                raise BenchError(
                    f"{self.url}: the pump refuses this bench's schema "
                    f"{schema.FINGERPRINT:#010x}: flash matching firmware"
                ) from None
            raise
        self._check_fingerprint(reply, "the pump")
        for key in ("firmware_version", "board", "device_id"):
            reply[key] = text(reply[key])
        return reply

    def status(self) -> dict[str, Any]:
        """STATUS fields, plus names: state_name, mode_name, bolus_kind_name, alarm_names.

        Units as on the wire: reservoir_nl, delivered_nl in nL; window_*_ng
        in ng (dose at the tip); tip_drug_id, tip_conc_ug_ml (the drug now
        leaving the tip) and new_drug_at_tip_s (NEVER_U32: not while stopped);
        rate_nl_day (0 unless delivering); time_to_empty_s (-1: never) and
        refill_date_s (device seconds; NEVER_U32: never).
        """
        reply = self.request("STATUS")
        reply["state_name"] = schema.state_name(reply["state"])
        reply["mode_name"] = mode_name(reply["mode"])
        reply["bolus_kind_name"] = bolus_kind_name(reply["bolus_kind"])
        reply["alarm_names"] = alarm_names(reply["alarms"])
        return reply

    # --- programming: PROGRAM (pending), GET_PROGRAM, CONFIRM or CANCEL_PROGRAM ---

    def program(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Sends a program; the pump only keeps it *pending* until :meth:`confirm`.

        ``fields`` holds every PROGRAM field (bench/program/file.py makes them
        from a file). The reply: ``crc`` (to confirm with), ``soft_override_mask``
        (bit 1 << limit id per soft limit the override accepts), and the
        worst cases the pump worked out, ``max_daily_nl`` (any 24 h 15 min)
        and ``max_hourly_nl`` (any 61 min), basal and boluses together.
        Raises :class:`Refusal` naming the limit when the drug library says no.
        """
        missing = [name for name in PROGRAM_FIELD_NAMES if name not in fields]
        unknown = sorted(set(fields) - set(PROGRAM_FIELD_NAMES))
        if missing or unknown:
            raise ValueError(f"PROGRAM fields: missing {missing}, unknown {unknown}")
        return self.request("PROGRAM", dict(fields))

    def get_program(self, pending: bool = False, *, signed: bool = True) -> dict[str, Any]:
        """The active program (or the pending one): ``crc`` plus every PROGRAM field.

        Reading the pending program back is how the bench proves the pump
        holds exactly what was sent before anyone confirms it. Without a
        pending program the pump refuses with NO_PENDING.
        """
        fields = {"which": 1 if pending else 0}
        if not signed:  # a plain read: its reply proves nothing (SPEC 21.6)
            return Client.request(self, "GET_PROGRAM", fields)
        return self.request("GET_PROGRAM", fields)

    def confirm(self, crc: int) -> int:
        """Makes the pending program active if ``crc`` is its CRC; returns the CRC.

        The pump switches at the next stroke boundary and answers then.
        """
        return self.request("CONFIRM", {"crc": crc})["crc"]

    def cancel_program(self) -> None:
        """Drops the pending program (if any); the active one keeps running."""
        self.request("CANCEL_PROGRAM")

    # --- delivery -----------------------------------------------------------------

    def start(self) -> int:
        """Starts delivering the active program; returns the new state code."""
        return self.request("START")["state"]

    def stop(self) -> int:
        """Stops delivery (and cancels a running bolus); returns the new state code."""
        return self.request("STOP")["state"]

    def bolus(
        self,
        kind: int | str,
        volume_nl: int = 0,
        dose_ng: int = 0,
        duration_s: int = 0,
        catheter_mm: int = 0,
        nl_per_cm: int = 0,
        override_soft: bool = False,
    ) -> dict[str, Any]:
        """Starts a clinician, priming or bridge bolus; returns ``bolus_id`` and ``volume_nl``.

        ``kind`` by number or name (BOLUS_KINDS). A clinician bolus is
        ``volume_nl``, or ``dose_ng`` turned into a volume by the pump from the
        drug its path will push out of the tip; ``duration_s`` spreads it (0: as
        fast as the pump goes). Priming and bridge volumes are the pump's, from
        its drug path (SPEC 22.3): priming fills what is empty of a new catheter
        (``catheter_mm`` at ``nl_per_cm`` given: that catheter was just fitted),
        bridge pushes out the old drug still in the path (given: the catheter's
        size). ``override_soft`` accepts a bolus above the soft limit.
        """
        kind_id = BOLUS_KINDS[kind.lower()] if isinstance(kind, str) else kind
        return self.request(
            "BOLUS",
            {
                "kind": kind_id,
                "volume_nl": volume_nl,
                "dose_ng": dose_ng,
                "duration_s": duration_s,
                "catheter_mm": catheter_mm,
                "nl_per_cm": nl_per_cm,
                "override_soft": 1 if override_soft else 0,
            },
        )

    def patient_bolus(self) -> dict[str, Any]:
        """The patient's button: ``bolus_id`` and ``volume_nl`` (the program's dose).

        Refused with LOCKOUT (detail: seconds left) or DAILY_MAX (detail: the
        maximum) as the program says.
        """
        return self.request("PATIENT_BOLUS")

    def cancel_bolus(self) -> int:
        """Stops the running bolus; returns the nL it delivered (0 if none ran)."""
        return self.request("CANCEL_BOLUS")["delivered_nl"]

    def refill(
        self,
        withdrawn_nl: int,
        added_nl: int,
        drug_id: int | None = None,
        conc_ug_ml: int | None = None,
        program_crc: int = 0,
    ) -> dict[str, Any]:
        """Records a refill: ``withdrawn_nl`` taken out, ``added_nl`` put in.

        ``drug_id`` and ``conc_ug_ml`` name the drug put in (None: the active
        program's, read back first). A new drug or concentration needs
        ``program_crc``, the CRC of the pending program for it: refill and
        program are then committed together (SPEC 22.2); without it the pump
        refuses with DRUG_MISMATCH.

        Returns ``expected_nl`` (what the pump believed was left),
        ``discrepancy_nl`` (withdrawn - expected; negative: less was left,
        over-infusion or a leak), ``flagged`` (1 beyond tolerance, and the
        REFILL_DISCREPANCY alarm is raised) and ``refill_date_s`` (device
        seconds when the reservoir reaches its low level; NEVER_U32: never).
        """
        return self.request(
            "REFILL", self.refill_fields(withdrawn_nl, added_nl, drug_id, conc_ug_ml, program_crc)
        )

    def refill_fields(
        self,
        withdrawn_nl: int,
        added_nl: int,
        drug_id: int | None = None,
        conc_ug_ml: int | None = None,
        program_crc: int = 0,
    ) -> dict[str, Any]:
        """The REFILL request fields; a drug not given is the active program's."""
        if drug_id is None or conc_ug_ml is None:
            active = self.get_program()
            drug_id = active["drug_id"] if drug_id is None else drug_id
            conc_ug_ml = active["conc_ug_ml"] if conc_ug_ml is None else conc_ug_ml
        return {
            "withdrawn_nl": withdrawn_nl,
            "added_nl": added_nl,
            "drug_id": drug_id,
            "conc_ug_ml": conc_ug_ml,
            "program_crc": program_crc,
        }

    def catheter(self, catheter_mm: int, nl_per_cm: int, empty: bool = False) -> int:
        """Tells the pump which catheter is fitted (``empty``: a new one, holding no
        drug yet); returns the volume of its drug path (pump + catheter, nL)."""
        return self.request(
            "CATHETER",
            {"catheter_mm": catheter_mm, "nl_per_cm": nl_per_cm, "empty": 1 if empty else 0},
        )["path_nl"]

    # --- log, alarms, clock ---------------------------------------------------------

    def log(
        self, start: int = 0, count: int | None = None, *, access: bool = False
    ) -> list[dict[str, Any]]:
        """Event-log entries from index ``start``, ``count`` of them (None: to the end).

        ``access``: the access log instead of the therapy history: sessions
        and refusals (schema ACCESS_LOG_CODES), whose PB_REFUSED and
        AUTH_REFUSED entries carry the refusals ever in ``b`` (SPEC 15).
        Pages through GET_LOG or GET_ACCESS_LOG (LOG_PAGE entries a reply). Each entry has
        ``index``, ``time_s`` (device seconds), ``code``, ``name``
        (schema LOG_CODES) and the arguments ``a`` and ``b`` as the schema
        describes them (a CRC arrives as a signed 32-bit ``a``: mask it).
        """
        entries: list[dict[str, Any]] = []
        index = start
        while count is None or len(entries) < count:
            want = LOG_PAGE if count is None else min(LOG_PAGE, count - len(entries))
            page = self.request(
                "GET_ACCESS_LOG" if access else "GET_LOG", {"start": index, "count": want}
            )
            got = page["count"]
            for i in range(got):
                entries.append(
                    {
                        "index": page["index"][i],
                        "time_s": page["time_s"][i],
                        "code": page["code"][i],
                        "name": schema.log_name(page["code"][i]),
                        "a": page["a"][i],
                        "b": page["b"][i],
                    }
                )
            if got == 0:
                break
            index = page["index"][got - 1] + 1
            if index >= page["total"]:
                break
        return entries

    def clear_alarm(self, alarm: int | str) -> int:
        """Clears a latched alarm (by id or name); returns the mask still active.

        Refused with ALARM_ACTIVE while its condition lasts (an empty
        reservoir clears only by a refill).
        """
        return self.request("CLEAR_ALARM", {"alarm": alarm_id(alarm)})["alarms"]

    def set_clock(self, local_offset_s: int) -> None:
        """Sets local time = device seconds + ``local_offset_s`` (flex steps follow it).

        Device second 0 with offset 0 is Monday 00:00 local.
        """
        self.request("SET_CLOCK", {"local_offset_s": local_offset_s})


class RigClient(Client):
    """The rig port: device time, resets, power, the plant and its faults."""

    port_kind = schema.PORT_RIG

    def hello(self) -> dict[str, Any]:
        reply = self.request("RIG_HELLO", _our_schema())
        self._check_fingerprint(reply, "the rig")
        reply["rig_kind"] = text(reply["rig_kind"])
        return reply

    def advance(self, duration_ms: int, *, timeout_s: float | None = None) -> int:
        """Runs device time forward; returns the device time when it stopped.

        On the virtual board this is lockstep: the call returns once the
        firmware has run everything due up to that instant. The default
        deadline grows with the duration (a year of idle time takes seconds).
        """
        if timeout_s is None:
            timeout_s = 10.0 + duration_ms / 86_400_000 * 0.5
        return self.request("ADVANCE", {"duration_ms": duration_ms}, timeout_s=timeout_s)[
            "device_time_ms"
        ]

    def reset(self) -> None:
        self.request("RESET")

    def truth(self) -> dict[str, Any]:
        """What really happened, from the plant: ``pumped_nl`` (out of the reservoir),
        ``tip_nl`` (out of the catheter), ``tip_ng`` (the drug dose that left
        the tip, through the plant's own drug path), ``reservoir_nl``,
        ``steps`` the head turned, ``powered`` and ``journal_bytes`` written.
        """
        return self.request("TRUTH")

    def power(self, action: int, arg: int = 0) -> bool:
        """POWER (POWER_OFF, POWER_ON, POWER_CUT_AFTER_BYTES, POWER_CUT_IN_MS); returns powered."""
        return bool(self.request("POWER", {"action": action, "arg": arg})["powered"])

    def power_off(self) -> bool:
        return self.power(POWER_OFF)

    def power_on(self) -> bool:
        return self.power(POWER_ON)

    def cut_after_bytes(self, journal_bytes: int) -> bool:
        """Cuts power once the firmware has written that many more journal bytes."""
        return self.power(POWER_CUT_AFTER_BYTES, journal_bytes)

    def cut_in_ms(self, ms: int) -> bool:
        """Cuts power after that much device time (ms)."""
        return self.power(POWER_CUT_IN_MS, ms)

    def plant(self, **fields: int) -> None:
        """Sets the plant (docs/plant.md): any PLANT field, the others nominal.

        calibration_ppm (head error), catheter_nl and catheter_empty_nl,
        reservoir_nl, compliance_x10 (0.1 nL/mmHg), resistance_pct (of the
        Poiseuille value), noise_x10 and csf_x10 (0.1 mmHg).
        """
        unknown = set(fields) - set(PLANT_NOMINAL)
        if unknown:
            raise ValueError(f"no PLANT field {', '.join(sorted(unknown))}")
        self.request("PLANT", {**PLANT_NOMINAL, **fields})

    def line(self, **fields: int) -> None:
        """Sets the line (rig LINE, docs/plant.md section 1): material (1
        silicone, 2 polyurethane, 3 braided; 0 keeps PLANT's compliance),
        modulus_kpa, air_nl, air_dissolve_s, inertance, occlusion_site,
        ambient_x10 and daily_life; the others as LINE_NOMINAL. Send PLANT
        first: a material's compliance follows the catheter's length.
        """
        unknown = set(fields) - set(LINE_NOMINAL)
        if unknown:
            raise ValueError(f"no LINE field {', '.join(sorted(unknown))}")
        self.request("LINE", {**LINE_NOMINAL, **fields})

    def inject_fault(self, fault: int | str, param: int = 0, onset_ms: int = 0) -> None:
        """Injects a plant fault (schema FAULTS, by id or name) ``onset_ms`` from now."""
        self.request(
            "INJECT_FAULT", {"fault": fault_id(fault), "param": param, "onset_ms": onset_ms}
        )

    def clear_fault(self, fault: int | str = 0) -> None:
        """Clears a plant fault (0: all of them)."""
        self.request("CLEAR_FAULT", {"fault": fault_id(fault) if fault else 0})

    def fill(self, reservoir_nl: int, conc_ug_ml: int = 0) -> int:
        """Empties the real reservoir and fills it to ``reservoir_nl`` of drug at
        ``conc_ug_ml`` (0: saline; the rig's dose truth, TRUTH ``tip_ng``, counts
        it); returns what was really left (nL), the figure a clinician would
        withdraw at a refill."""
        return self.request("FILL", {"reservoir_nl": reservoir_nl, "conc_ug_ml": conc_ug_ml})[
            "withdrawn_nl"
        ]
