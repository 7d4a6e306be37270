"""The pump port's client: every pump request typed, authenticated sessions opened on demand,
signed reads checked, changes sent exactly once (SPEC 21-23).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import construct

from bench.link import keys as keysmod
from bench.link.client import (
    BOLUS_KINDS,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    LOG_PAGE,
    OUTCOME_DONE,
    OUTCOME_IN_DOUBT,
    PROGRAM_FIELD_NAMES,
    SIGNED_READS,
    Client,
    Refusal,
    UntrustedReply,
    _our_schema,
    alarm_id,
    alarm_names,
    bolus_kind_name,
    mode_name,
    text,
)
from bench.link.errors import BenchError, PumpRefused
from protocol import auth, codec, schema

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
        its drug path (docs/pump.md 22.3): priming fills what is empty of a new catheter
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
        program are then committed together (docs/pump.md 22.2); without it the pump
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
        AUTH_REFUSED entries carry the refusals ever in ``b`` (docs/pump.md 15).
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
