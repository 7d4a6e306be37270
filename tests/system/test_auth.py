"""Authenticated roles on the running firmware (protocol/SPEC.md section 21).

Every rejection path sends the bad thing and checks that nothing changed:
the pump's state, its programs and its log (but for the AUTH_REFUSED entry
the refusal itself adds), and the drug that really moved (rig truth).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import pytest
from cobs import cobs

from bench.board.sim import BoardOptions, VirtualBoard
from bench.link.client import Client
from bench.link.errors import PumpRefused
from bench.link.keys import DeviceKeys, generate
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from bench.robustness.common import bolus_fields
from protocol import auth, codec, schema
from tests.system import kit

PB = {"pb_dose_nl": 50_000, "pb_lockout_s": 3600, "pb_max_per_day": 4}
AUTH_LOG_CODES = {"AUTH_REFUSED", "SESSION_OPENED", "SESSION_CLOSED"}

# A valid request of every message that needs a role: refused only for who
# sends it, never for what it says.
CHANGES: dict[str, dict[str, Any]] = {
    "PROGRAM": kit.program(basal_nl_day=500_000, **PB),
    "CONFIRM": {},  # the pending program's CRC, filled in by the test
    "CANCEL_PROGRAM": {},
    "START": {},
    "STOP": {},
    "BOLUS": bolus_fields(volume_nl=10_000),
    "PATIENT_BOLUS": {},
    "CANCEL_BOLUS": {},
    "REFILL": {
        "withdrawn_nl": 0,
        "added_nl": 1_000_000,
        "drug_id": 1,  # the program's: morphine 10 mg/mL
        "conc_ug_ml": 10_000,
        "program_crc": 0,
    },
    "CATHETER": {"catheter_mm": 600, "nl_per_cm": 2_600, "empty": 0},
    "CLEAR_ALARM": {"alarm": 1},
    "ACK_ALARM": {"alarm": 0},
    "SET_CLOCK": {"local_offset_s": 3600},
    "AUTH_CLOSE": {},
}
CLINICIAN_ONLY = [name for name, role in schema.MESSAGE_ROLES if role == schema.ROLE_CLINICIAN]


def test_the_table_covers_every_message_that_needs_a_role() -> None:
    assert set(CHANGES) == {name for name, _role in schema.MESSAGE_ROLES}


@pytest.fixture
def therapy(pump: PumpClient, rig: RigClient) -> int:
    """1 mL/day with patient boluses, an hour delivered, a program pending."""
    kit.start_therapy(pump, rig, kit.program(**PB))
    rig.advance(3_600_000)
    crc = int(pump.program(CHANGES["PROGRAM"])["crc"])  # reopens the idle session
    rig.advance(3_600_000)
    pump.open_session()  # the hour idled the last one out
    return crc


def acting_as(client: PumpClient, keys: DeviceKeys) -> Iterator[PumpClient]:
    # The one client on the port takes other keys (two clients on one pty
    # would steal each other's bytes); the clinician's come back afterwards.
    saved = (client.keys, client.role, client.session)
    client.keys, client.role, client.session = keys, keys.highest_role, None
    yield client
    client.keys, client.role, client.session = saved


@pytest.fixture
def stranger(therapy: int, pump: PumpClient) -> Iterator[PumpClient]:  # noqa: ARG001
    """The pump port's client with no key: read-only."""
    yield from acting_as(pump, DeviceKeys())


@pytest.fixture
def patient(
    therapy: int,  # noqa: ARG001
    board: VirtualBoard,
    pump: PumpClient,
) -> Iterator[PumpClient]:
    """The patient's programmer: the patient key only."""
    yield from acting_as(pump, board.keys.only(schema.ROLE_PATIENT))


def snapshot(pump: PumpClient, rig: RigClient) -> dict[str, Any]:
    """What a refused request must leave as it was (the journal grows by its log entry)."""
    try:
        pending: dict[str, Any] | None = pump.get_program(pending=True, signed=False)
    except PumpRefused:
        pending = None
    truth = rig.truth()
    del truth["journal_bytes"]
    return {
        "status": pump.status(),
        "active": pump.get_program(signed=False),
        "pending": pending,
        "log": [e for e in pump.log() if e["name"] not in AUTH_LOG_CODES],
        "truth": truth,
    }


def fields_for(name: str, pending_crc: int) -> dict[str, Any]:
    return {"crc": pending_crc} if name == "CONFIRM" else CHANGES[name]


def refused(client: PumpClient, name: str, fields: dict[str, Any], **kw: Any) -> tuple[int, int]:
    """Sends one request; returns the NACK's (code, detail). Fails on an ACK."""
    with pytest.raises(Exception) as caught:
        client.request(name, fields, **kw)
    exc = caught.value
    assert hasattr(exc, "code"), exc
    return exc.code, exc.detail


def exchange(client: Client, wire: bytes, seq: int) -> codec.Frame:
    """Sends prepared bytes and returns the one reply to ``seq``."""
    client.transport.expect(seq)
    try:
        client.transport.send(wire)
        frame = client.transport.wait_reply(seq, 2.0)
    finally:
        client.transport.forget(seq)
    assert frame is not None, "no reply"
    return frame


def nack_of(frame: codec.Frame) -> tuple[int, int]:
    assert frame.is_nack, f"{frame.name} was executed: {frame.fields}"
    return frame.fields["code"], frame.fields["detail"]


def tamper(wire: bytes, offset: int) -> bytes:
    """The frame with one body byte flipped and its CRC made good again."""
    body = bytearray(cobs.decode(wire[1:-1]))
    body[offset] ^= 0x01
    return codec.encode_raw(body[1], int.from_bytes(body[2:4], "little"), body[4], body[6:-4])


def last_refusal(pump: PumpClient) -> dict[str, Any]:
    entries = [e for e in pump.log(access=True) if e["name"] == "AUTH_REFUSED"]
    assert entries, "the refusal was not logged"
    return entries[-1]


# --- who may do what ---------------------------------------------------------


@pytest.mark.usefixtures("therapy")
def test_read_only_needs_no_key(stranger: PumpClient) -> None:
    opened = stranger.sessions_opened
    assert stranger.hello()["device_id"] == "SIM-0001"
    assert stranger.status()["state_name"] == "RUNNING"
    assert stranger.get_program()["basal_nl_day"] == 1_000_000
    assert [e["name"] for e in stranger.log()][:1] == ["BOOT"]
    stranger.ping()
    stranger.link_stats()
    assert stranger.session is None and stranger.sessions_opened == opened


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_every_change_without_a_session_is_refused(
    therapy: int, stranger: PumpClient, pump: PumpClient, rig: RigClient, name: str
) -> None:
    before = snapshot(pump, rig)
    code, detail = refused(stranger, name, fields_for(name, therapy))
    assert (code, detail) == (schema.AUTH_REQUIRED, schema.required_role(name))
    assert snapshot(pump, rig) == before
    entry = last_refusal(pump)
    assert entry["a"] == schema.AUTH_REQUIRED | schema.message_by_name(name)[0] << 8


@pytest.mark.parametrize("name", CLINICIAN_ONLY)
def test_the_patient_role_may_not_make_clinician_changes(
    therapy: int, patient: PumpClient, pump: PumpClient, rig: RigClient, name: str
) -> None:
    before = snapshot(pump, rig)
    code, detail = refused(patient, name, fields_for(name, therapy))
    assert (code, detail) == (schema.WRONG_ROLE, schema.ROLE_CLINICIAN)
    assert patient.session is not None and patient.session.role == schema.ROLE_PATIENT
    assert snapshot(pump, rig) == before
    assert last_refusal(pump)["a"] & 0xFF == schema.WRONG_ROLE


@pytest.mark.usefixtures("therapy")
def test_the_patient_role_may_request_a_patient_bolus(
    patient: PumpClient, pump: PumpClient
) -> None:
    assert patient.patient_bolus()["volume_nl"] == PB["pb_dose_nl"]
    assert pump.status()["bolus_kind_name"] == "PATIENT"
    opened = [e for e in pump.log(access=True) if e["name"] == "SESSION_OPENED"]
    assert opened[-1]["a"] == schema.ROLE_PATIENT


# --- the frame rules -----------------------------------------------------------


def signed(client: PumpClient, name: str, fields: dict[str, Any]) -> tuple[bytes, int]:
    session = client.session or client.open_session()
    seq = client.next_seq()
    return codec.encode(name, seq, fields, signer=session.sign), seq


@pytest.mark.usefixtures("therapy")
@pytest.mark.parametrize("where", ["mac", "payload", "counter", "header"])
def test_a_frame_whose_mac_does_not_match_is_refused(
    pump: PumpClient, rig: RigClient, where: str
) -> None:
    wire, seq = signed(pump, "BOLUS", CHANGES["BOLUS"])
    body_size = len(cobs.decode(wire[1:-1]))
    offset = {
        "mac": body_size - 5,  # the MAC's last byte
        "payload": 6 + 1,  # volume_nl
        "counter": body_size - 4 - schema.MAC_SIZE - 4,
        "header": 4,  # flags: REPLY-less, AUTH kept, one more bit
    }[where]
    before = snapshot(pump, rig)
    bad = tamper(wire, offset) if where != "header" else _with_flag(wire, 0x10)
    assert nack_of(exchange(pump, bad, seq))[0] == schema.BAD_MAC
    assert snapshot(pump, rig) == before
    # the session goes on: the good frame (its counter still unused) runs
    assert not exchange(pump, wire, seq).is_nack


def _with_flag(wire: bytes, flag: int) -> bytes:
    body = bytearray(cobs.decode(wire[1:-1]))
    return codec.encode_raw(
        body[1], int.from_bytes(body[2:4], "little"), body[4] | flag, body[6:-4]
    )


@pytest.mark.usefixtures("therapy")
def test_a_replayed_frame_is_answered_not_run(pump: PumpClient, rig: RigClient) -> None:
    wire, seq = signed(pump, "BOLUS", CHANGES["BOLUS"])
    reply = exchange(pump, wire, seq)
    assert not reply.is_nack
    rig.advance(60_000)  # the bolus is over
    for token in range(4):  # the reply cache has forgotten it (signed queries
        # are cached; plain ones never take a slot, SPEC section 7)
        exchange(pump, *signed(pump, "PING", {"token": token}))
    before = snapshot(pump, rig)
    # SPEC 23: its request id was journalled with its reply: the copy gets
    # that reply again (not REPLAY, which an operator would read as "refused")
    again = exchange(pump, wire, seq)
    assert not again.is_nack and again.fields == reply.fields
    # under another sequence number the header differs: the MAC fails first
    body = bytearray(cobs.decode(wire[1:-1]))
    other = codec.encode_raw(body[1], seq + 100, body[4], body[6:-4])
    assert nack_of(exchange(pump, other, seq + 100))[0] == schema.BAD_MAC
    # in a new session the old frame is worthless
    pump.open_session()
    assert nack_of(exchange(pump, wire, seq))[0] == schema.BAD_MAC
    assert snapshot(pump, rig) == before
    starts = [e for e in pump.log() if e["name"] == "BOLUS_START"]
    assert len(starts) == 1


@pytest.mark.usefixtures("therapy")
def test_a_counter_that_does_not_rise_is_refused(pump: PumpClient, rig: RigClient) -> None:
    pump.stop()
    session = pump.session
    assert session is not None
    spent = session.counter
    session.counter = spent - 1  # a client bug: the next frame reuses a counter
    before = snapshot(pump, rig)
    code, detail = refused(pump, "START", {})
    assert (code, detail) == (schema.REPLAY, spent)
    assert snapshot(pump, rig) == before


@pytest.mark.usefixtures("therapy")
def test_a_retransmission_is_answered_from_the_cache_and_runs_once(pump: PumpClient) -> None:
    wire, seq = signed(pump, "BOLUS", CHANGES["BOLUS"])
    first = exchange(pump, wire, seq)  # as if this reply were lost...
    again = exchange(pump, wire, seq)  # ...and the client sent the same bytes
    assert not first.is_nack and again.fields == first.fields
    assert sum(e["name"] == "BOLUS_START" for e in pump.log()) == 1


def test_the_rig_port_takes_no_session(rig: RigClient) -> None:
    session = auth.Session(schema.ROLE_CLINICIAN, bytes(32))
    wire = codec.encode("ADVANCE", 5, {"duration_ms": 60_000}, signer=session.sign)
    frame = exchange(rig, wire, 5)
    assert nack_of(frame)[0] == schema.NOT_A_REQUEST
    assert rig.truth()["steps"] == 0 and rig.advance(0) == 0


# --- sessions end ---------------------------------------------------------------


@pytest.mark.usefixtures("therapy")
def test_an_idle_session_expires_and_the_client_opens_another(
    pump: PumpClient, rig: RigClient
) -> None:
    pump.set_clock(0)  # opens the session
    rig.advance((schema.SESSION_IDLE_S + 1) * 1000)
    wire, seq = signed(pump, "STOP", {})
    before = snapshot(pump, rig)
    assert nack_of(exchange(pump, wire, seq))[0] == schema.SESSION_EXPIRED
    assert snapshot(pump, rig) == before
    closed = [e for e in pump.log(access=True) if e["name"] == "SESSION_CLOSED"]
    assert (closed[-1]["a"], closed[-1]["b"]) == (schema.ROLE_CLINICIAN, 1)
    # the one copy sent was refused, so the client may open a session and resend
    opened = pump.sessions_opened
    pump.stop()
    assert pump.sessions_opened == opened + 1
    assert pump.status()["state_name"] == "IDLE"


@pytest.mark.usefixtures("therapy")
def test_a_session_ends_at_its_maximum_life_however_busy(pump: PumpClient, rig: RigClient) -> None:
    session = pump.open_session()
    step_ms = (schema.SESSION_IDLE_S - 60) * 1000
    used_ms = 0
    while used_ms + step_ms <= schema.SESSION_MAX_S * 1000:
        rig.advance(step_ms)
        used_ms += step_ms
        pump.request("STATUS", signer=session.sign)  # a signed frame keeps it alive
    rig.advance(schema.SESSION_MAX_S * 1000 - used_ms + 1000)
    code, _detail = refused(pump, "STATUS", {}, signer=session.sign)
    assert code == schema.SESSION_EXPIRED
    closed = [e for e in pump.log(access=True) if e["name"] == "SESSION_CLOSED"]
    assert closed[-1]["b"] == 2


@pytest.mark.usefixtures("therapy")
def test_a_reboot_ends_the_session_and_the_client_opens_another(
    pump: PumpClient, rig: RigClient
) -> None:
    pump.stop()
    opened = pump.sessions_opened
    rig.reset()
    pump.wait_event("BOOT", timeout_s=5)
    pump.start()  # refused AUTH_REQUIRED once, then sent in a new session
    assert pump.sessions_opened == opened + 1
    assert pump.status()["state_name"] == "RUNNING"
    names = [e["name"] for e in pump.log()]
    after_reboot = names[len(names) - names[::-1].index("BOOT") :]
    assert after_reboot.count("START") == 1


@pytest.mark.usefixtures("therapy")
def test_a_closed_session_takes_no_more_frames(pump: PumpClient, rig: RigClient) -> None:
    session = pump.open_session()
    pump.close_session()
    before = snapshot(pump, rig)
    code, _ = refused(pump, "STOP", {}, signer=session.sign)
    assert code == schema.AUTH_REQUIRED
    assert snapshot(pump, rig) == before


# --- the handshake ----------------------------------------------------------------


def open_with(
    client: PumpClient, key: bytes, role: int, challenge_role: int | None = None
) -> dict[str, Any]:
    """A handshake by hand: challenge (for ``challenge_role``), then AUTH_OPEN as ``role``."""
    nonce = client.request("AUTH_CHALLENGE", {"role": challenge_role or role})["pump_nonce"]
    mine = bytes(range(16))
    proof = auth.client_proof(key, role, nonce, mine)
    return client.request("AUTH_OPEN", {"role": role, "client_nonce": mine, "proof": proof})


def test_handshake_refusals_open_no_session(
    board: VirtualBoard, pump: PumpClient, rig: RigClient
) -> None:
    key = board.keys.clinician
    assert key is not None
    clinician = schema.ROLE_CLINICIAN
    no_challenge = {
        "role": clinician,
        "client_nonce": bytes(16),
        "proof": bytes(32),
    }
    assert refused(pump, "AUTH_OPEN", no_challenge) == (schema.NO_CHALLENGE, 0)
    # a wrong key: BAD_MAC; and the challenge is spent, right proof or not
    nonce = pump.request("AUTH_CHALLENGE", {"role": clinician})["pump_nonce"]
    wrong = auth.client_proof(generate().clinician or b"", clinician, nonce, bytes(16))
    fields = {"role": clinician, "client_nonce": bytes(16), "proof": wrong}
    assert refused(pump, "AUTH_OPEN", fields) == (schema.BAD_MAC, 0)
    fields["proof"] = auth.client_proof(key, clinician, nonce, bytes(16))
    assert refused(pump, "AUTH_OPEN", fields) == (schema.NO_CHALLENGE, 0)
    # a challenge for one role does not open another
    with pytest.raises(Exception) as caught:
        open_with(pump, key, clinician, challenge_role=schema.ROLE_PATIENT)
    assert getattr(caught.value, "code", None) == schema.NO_CHALLENGE
    # a challenge answered too late
    nonce = pump.request("AUTH_CHALLENGE", {"role": clinician})["pump_nonce"]
    rig.advance((schema.CHALLENGE_S + 1) * 1000)
    fields["proof"] = auth.client_proof(key, clinician, nonce, bytes(16))
    assert refused(pump, "AUTH_OPEN", fields) == (schema.NO_CHALLENGE, 0)
    for role in (0, 3):
        assert refused(pump, "AUTH_CHALLENGE", {"role": role}) == (schema.BAD_VALUE, 0)
    names = [e["name"] for e in pump.log(access=True)]
    assert "SESSION_OPENED" not in names[-6:] and "AUTH_REFUSED" in names
    # and the right handshake still works
    assert open_with(pump, key, clinician)["idle_s"] == schema.SESSION_IDLE_S


def test_a_role_without_a_key_cannot_open_a_session() -> None:
    keys = generate()
    options = BoardOptions(keys=DeviceKeys(clinician=keys.clinician))
    with (
        VirtualBoard(options) as board,
        PumpClient(board.pump_port, keys=keys, role=schema.ROLE_PATIENT) as patient,
    ):
        code, detail = refused(patient, "PATIENT_BOLUS", {})
        assert (code, detail) == (schema.NO_KEY, schema.ROLE_PATIENT)
        assert patient.session is None


def test_a_damaged_key_store_refuses_every_change_and_delivery_goes_on(tmp_path: Any) -> None:
    journal = str(tmp_path)
    with VirtualBoard(BoardOptions(journal_dir=journal)) as board:
        keys = board.keys
        with PumpClient(board.pump_port) as pump, RigClient(board.rig_port) as rig:
            kit.start_therapy(pump, rig, kit.program())
    store = tmp_path / schema.KEYSTORE_FILE
    damaged = bytearray(store.read_bytes())
    damaged[20] ^= 0xFF
    store.write_bytes(bytes(damaged))
    options = BoardOptions(journal_dir=journal, provision=False)
    with (
        VirtualBoard(options) as board,
        PumpClient(board.pump_port, keys=keys) as pump,
        RigClient(board.rig_port) as rig,
    ):
        rig.fill(10_000_000)
        code, detail = refused(pump, "STOP", {})
        assert (code, detail) == (schema.NO_KEY, schema.ROLE_CLINICIAN)
        rig.advance(3_600_000)
        assert pump.status()["state_name"] == "RUNNING"
        assert rig.truth()["pumped_nl"] > 0
        failed = [e for e in pump.log() if e["name"] == "SELF_TEST_FAILED"]
        assert [(e["a"], e["b"]) for e in failed] == [(3, 0)]


# --- the key stays inside ------------------------------------------------------------


@pytest.mark.usefixtures("therapy")
def test_no_reply_carries_a_key(board: VirtualBoard, pump: PumpClient) -> None:
    # Every pump request, plain and signed, with an all-zero payload: no
    # reply holds a role key, in either byte order or as hex text.
    secrets = [k for k in (board.keys.clinician, board.keys.patient) if k]
    replies = bytearray()
    for msg_id, name, port, request, reply in schema.MESSAGES:
        if port == schema.PORT_RIG or reply is None or name == "AUTH_CLOSE":
            continue
        size = struct.calcsize(schema.struct_format(request))
        for signed_too in (False, True):
            session = pump.session or pump.open_session()
            seq = pump.next_seq()
            wire = codec.encode_raw(
                msg_id, seq, 0, bytes(size), session.sign if signed_too else None
            )
            frame = exchange(pump, wire, seq)
            replies += codec.encode(frame.name, frame.seq, frame.fields, frame.flags)
    assert len(replies) > 1000
    for key in secrets:
        for piece in (key, key[::-1], key.hex().encode()):
            assert bytes(piece[:8]) not in replies


# --- the log ---------------------------------------------------------------------------


@pytest.mark.usefixtures("therapy")
def test_every_refusal_is_in_the_access_log_with_its_tally_and_a_reset_loses_none(
    stranger: PumpClient, rig: RigClient
) -> None:
    # docs/pump.md 15: one access-log entry per refusal, b = refusals ever; the
    # tally lives in the journal, not in RAM (a reset must not restart it:
    # 502 refusals are never 2 in the log after a reset).
    def entries() -> list[tuple[int, int]]:
        return [
            (e["a"], e["b"])
            for e in stranger.log(access=True)
            if e["name"] == "AUTH_REFUSED" and e["a"]
        ]

    stop, bolus = (
        schema.message_by_name(n)[0] << 8 | schema.AUTH_REQUIRED for n in ("STOP", "BOLUS")
    )
    before = entries()
    counted = before[-1][1] if before else 0
    for _ in range(3):
        refused(stranger, "STOP", {})
    refused(stranger, "BOLUS", CHANGES["BOLUS"])
    assert entries() == [
        *before,
        (stop, counted + 1),
        (stop, counted + 2),
        (stop, counted + 3),
        (bolus, counted + 4),
    ]
    rig.reset()
    stranger.wait_event("BOOT", timeout_s=5)
    refused(stranger, "STOP", {})
    assert entries()[-1] == (stop, counted + 5)  # the count went on across the reset


# --- the bench client across lost replies -------------------------------------------


@pytest.mark.usefixtures("therapy")
def test_a_request_resent_into_an_expired_session_runs_once(
    pump: PumpClient, rig: RigClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first copy is lost on the way; the second meets an idle-expired
    # session. No copy ran (the pump kept its reply cache, same boot), so the
    # client opens a session and sends it once more.
    pump.set_clock(0)
    rig.advance((schema.SESSION_IDLE_S + 1) * 1000)
    send = pump.transport.send
    dropped: list[bytes] = []

    def lossy(wire: bytes) -> None:
        if not dropped:
            dropped.append(wire)
            return
        send(wire)

    monkeypatch.setattr(pump.transport, "send", lossy)
    pump.timeout_s = 0.2
    pump.stop()
    assert dropped and pump.retransmissions >= 1
    assert pump.status()["state_name"] == "IDLE"
    assert [e["name"] for e in pump.log()].count("STOP") == 1


@pytest.mark.usefixtures("therapy")
def test_a_request_whose_reply_was_lost_across_a_reboot_runs_once(
    pump: PumpClient, rig: RigClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bolus runs, its ACK is lost, the pump reboots: the retransmission
    # meets no session; the client opens one and sends the bolus again under
    # the same request id (SPEC 23), and the pump answers with the journalled
    # reply of the first copy instead of running it again.
    pump.open_session()
    wait_reply = pump.transport.wait_reply
    lost: list[int] = []

    def reply_lost_then_reboot(seq: int, timeout_s: float) -> codec.Frame | None:
        frame = wait_reply(seq, timeout_s)
        if lost or frame is None:
            return frame
        lost.append(seq)
        pump.transport.expect(seq)  # as if that reply had never come
        rig.reset()
        pump.wait_event("BOOT", timeout_s=5)
        return None

    monkeypatch.setattr(pump.transport, "wait_reply", reply_lost_then_reboot)
    reply = pump.bolus("clinician", volume_nl=10_000)
    monkeypatch.setattr(pump.transport, "wait_reply", wait_reply)
    starts = [e for e in pump.log() if e["name"] == "BOLUS_START"]
    assert len(starts) == 1
    assert starts[0]["a"] & 0xFFFF == reply["bolus_id"] and reply["volume_nl"] == 10_000


@pytest.mark.usefixtures("therapy")
def test_a_flood_of_refusals_never_ages_the_therapy_history_out_of_the_log(
    stranger: PumpClient, rig: RigClient
) -> None:
    history = stranger.log()
    assert not [e for e in history if e["name"] in AUTH_LOG_CODES]  # not in the history
    tally = [e["b"] for e in stranger.log(access=True) if e["name"] == "AUTH_REFUSED"]
    counted = tally[-1] if tally else 0
    for _ in range(24 * 12):  # a day of three refused changes every five minutes
        for name in ("STOP", "BOLUS", "PROGRAM"):
            refused(stranger, name, CHANGES[name])
        rig.advance(5 * 60_000)
    assert stranger.log()[: len(history)] == history
    access = stranger.log(access=True)
    refusals = [e for e in access if e["name"] == "AUTH_REFUSED"]
    assert refusals[-1]["b"] == counted + 3 * 24 * 12  # none uncounted
    # the access log is a bounded ring: the flood pushed out its oldest entries
    assert len(access) <= 2 * 256
