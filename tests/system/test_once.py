"""Therapy-changing requests run at most once per request id (protocol/SPEC.md section 23).

The sequences: a reply lost while another peer pushes it out of
the reply cache, a resend answered REPLAY, a resend after a reboot; every
one must leave exactly one BOLUS_START in the log and hand the client the
reply of the one copy that ran. The power-cut sweep is in
tests/robustness/test_exactly_once.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bench.board.sim import VirtualBoard
from bench.link import client as clientmod
from bench.link.errors import PumpRefused
from bench.link.keys import DeviceKeys
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from bench.robustness.common import bolus_fields
from protocol import auth, codec, schema
from tests.system import kit

PB = {"pb_dose_nl": 20_000, "pb_lockout_s": 3600, "pb_max_per_day": 4}
BOLUS = bolus_fields(volume_nl=10_000)


@pytest.fixture
def therapy(pump: PumpClient, rig: RigClient) -> None:
    kit.start_therapy(pump, rig, kit.program(**PB))
    rig.advance(60_000)


def bolus_starts(pump: PumpClient) -> list[dict[str, Any]]:
    return [e for e in pump.log() if e["name"] == "BOLUS_START"]


def as_keys(pump: PumpClient, keys: DeviceKeys, act: Callable[[PumpClient], None]) -> None:
    """Runs ``act`` as another peer on the same link (another key, its own session)."""
    saved = (pump.keys, pump.role, pump.session)
    pump.keys, pump.role, pump.session = keys, keys.highest_role, None
    try:
        act(pump)
    finally:
        pump.keys, pump.role, pump.session = saved


def lose_first_reply(
    pump: PumpClient, monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], None]
) -> list[codec.Frame]:
    """The first reply to the next request is lost; ``meanwhile`` runs before the resend."""
    wait_reply = pump.transport.wait_reply
    lost: list[codec.Frame] = []

    def hook(seq: int, timeout_s: float) -> codec.Frame | None:
        frame = wait_reply(seq, timeout_s)
        if lost or frame is None:
            return frame
        lost.append(frame)
        monkeypatch.setattr(pump.transport, "wait_reply", wait_reply)
        meanwhile()
        pump.transport.expect(seq)  # as if that reply had never come
        return None

    monkeypatch.setattr(pump.transport, "wait_reply", hook)
    return lost


@pytest.mark.usefixtures("therapy")
@pytest.mark.parametrize("reboot", [False, True])
def test_a_lost_bolus_reply_pushed_out_of_the_cache_by_another_peer_runs_once(
    board: VirtualBoard,
    pump: PumpClient,
    rig: RigClient,
    monkeypatch: pytest.MonkeyPatch,
    reboot: bool,
) -> None:
    # The bolus's reply is lost; a patient programmer on the same
    # link opens a session, sends a request and closes it (the clinician's
    # session is replaced, its reply evicted from the 4-slot cache); maybe
    # the pump reboots too. The client's resend meets no session, opens one
    # and sends the bolus again under the same request id.
    def patient_meanwhile() -> None:
        def press(peer: PumpClient) -> None:
            try:
                peer.patient_bolus()  # BOLUS_ACTIVE: the clinician's runs
            except PumpRefused:
                pass
            peer.close_session()
            peer.ping()

        as_keys(pump, board.keys.only(schema.ROLE_PATIENT), press)
        if reboot:
            rig.reset()
            pump.wait_event("BOOT", timeout_s=5)

    pump.open_session()
    before = len(bolus_starts(pump))
    lost = lose_first_reply(pump, monkeypatch, patient_meanwhile)
    reply = pump.bolus("clinician", volume_nl=10_000)
    assert lost and not lost[0].is_nack
    assert reply == lost[0].fields  # the reply of the one copy that ran
    starts = bolus_starts(pump)[before:]
    assert len(starts) == 1, starts
    assert starts[0]["a"] & 0xFFFF == reply["bolus_id"]


@pytest.mark.usefixtures("therapy")
@pytest.mark.parametrize("meanwhile", ["PING", "AUTH_CHALLENGE"])
def test_an_identical_resend_after_keyless_requests_gets_the_original_reply(
    pump: PumpClient, monkeypatch: pytest.MonkeyPatch, meanwhile: str
) -> None:
    # 4 keyless requests meanwhile: PINGs take no cache slot (plain queries,
    # SPEC 7); 4 keyless challenges do evict the reply, and then the outcome
    # journal answers the identical resend (SPEC 23), never REPLAY: the CLI
    # would tell the operator "refused" while the bolus runs.
    fields = {"token": 7} if meanwhile == "PING" else {"role": schema.ROLE_PATIENT}

    def pings() -> None:
        as_keys(
            pump, DeviceKeys(), lambda peer: [peer.request(meanwhile, fields) for _ in range(4)]
        )

    pump.open_session()
    before = len(bolus_starts(pump))
    lost = lose_first_reply(pump, monkeypatch, pings)
    reply = pump.bolus("clinician", volume_nl=10_000)
    assert reply == lost[0].fields
    assert len(bolus_starts(pump)) == before + 1
    assert pump.retransmissions >= 1


@pytest.mark.usefixtures("therapy")
def test_a_request_with_no_reply_at_all_is_looked_up_before_anything_else(
    pump: PumpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every copy's reply lost: the client asks OUTCOME for the id and hands
    # back the journalled reply instead of sending the bolus again.
    pump.open_session()
    before = len(bolus_starts(pump))
    wait_reply = pump.transport.wait_reply
    dropped: list[int] = []

    def drop_bolus_replies(seq: int, timeout_s: float) -> codec.Frame | None:
        frame = wait_reply(seq, timeout_s)
        if frame is not None and frame.name == "BOLUS":
            dropped.append(seq)
            pump.transport.expect(seq)  # as if it had never come
            return None
        return frame

    monkeypatch.setattr(pump.transport, "wait_reply", drop_bolus_replies)
    monkeypatch.setattr(pump, "timeout_s", 0.3)
    reply = pump.bolus("clinician", volume_nl=10_000)
    monkeypatch.setattr(pump.transport, "wait_reply", wait_reply)
    assert len(dropped) == pump.retries + 1
    starts = bolus_starts(pump)[before:]
    assert len(starts) == 1 and starts[0]["a"] & 0xFFFF == reply["bolus_id"]


@pytest.mark.usefixtures("therapy")
def test_the_outcome_of_an_id_survives_a_reset_and_a_new_session(
    pump: PumpClient, rig: RigClient
) -> None:
    request_id = auth.new_request_id()
    reply = pump.request_once("BOLUS", BOLUS, request_id)
    role = schema.ROLE_CLINICIAN
    state, kept = pump.outcome(role, request_id)
    assert state == clientmod.OUTCOME_DONE and kept is not None and kept.fields == reply
    rig.reset()
    pump.wait_event("BOOT", timeout_s=5)
    state, kept = pump.outcome(role, request_id)
    assert state == clientmod.OUTCOME_DONE and kept is not None and kept.fields == reply
    before = len(bolus_starts(pump))
    pump.session = None  # the reboot ended it; a new session, the same id
    assert pump.request_once("BOLUS", BOLUS, request_id) == reply
    assert len(bolus_starts(pump)) == before
    # an id never used: it never ran
    assert pump.outcome(role, auth.new_request_id()) == (clientmod.OUTCOME_NEW, None)
    # a refusal is an outcome too: the same answer, whatever changed since
    refused_id = auth.new_request_id()
    too_big = bolus_fields(volume_nl=50_000_000)
    with pytest.raises(PumpRefused) as first:
        pump.request_once("BOLUS", too_big, refused_id)
    with pytest.raises(PumpRefused) as again:
        pump.request_once("BOLUS", too_big, refused_id)
    assert (again.value.code, again.value.detail) == (first.value.code, first.value.detail)


@pytest.mark.usefixtures("therapy")
def test_an_id_used_for_another_request_is_refused(pump: PumpClient) -> None:
    request_id = auth.new_request_id()
    pump.request_once("BOLUS", BOLUS, request_id)
    before = len(bolus_starts(pump))
    with pytest.raises(PumpRefused) as caught:
        pump.request_once("BOLUS", bolus_fields(volume_nl=20_000), request_id)
    assert (caught.value.code, caught.value.detail) == (
        schema.ID_REUSED,
        schema.message_by_name("BOLUS")[0],
    )
    with pytest.raises(PumpRefused) as caught:
        pump.request_once("STOP", {}, request_id)
    assert caught.value.code == schema.ID_REUSED
    assert len(bolus_starts(pump)) == before
    # and a therapy request without an id is refused
    zero = bytes(schema.REQUEST_ID_SIZE)
    with pytest.raises(PumpRefused) as caught:
        pump.request_once("STOP", {}, zero)
    assert caught.value.code == schema.NO_REQUEST_ID
    assert pump.status()["state_name"] == "RUNNING"


@pytest.fixture
def patient(board: VirtualBoard, pump: PumpClient) -> Iterator[PumpClient]:
    saved = (pump.keys, pump.role, pump.session)
    keys = board.keys.only(schema.ROLE_PATIENT)
    pump.keys, pump.role, pump.session = keys, keys.highest_role, None
    yield pump
    pump.keys, pump.role, pump.session = saved


@pytest.mark.usefixtures("therapy")
def test_a_patient_flood_never_pushes_out_a_clinicians_outcome(
    board: VirtualBoard, pump: PumpClient, rig: RigClient
) -> None:
    # Outcomes are kept per role: however many requests a patient's
    # programmer sends, the clinician's newest OUTCOMES_KEPT are known.
    request_id = auth.new_request_id()
    reply = pump.request_once("BOLUS", BOLUS, request_id)
    rig.advance(60_000)
    patient_ids = []

    def presses(peer: PumpClient) -> None:
        for _ in range(3 * schema.OUTCOMES_KEPT):
            patient_ids.append(auth.new_request_id())
            try:
                peer.request_once("PATIENT_BOLUS", None, patient_ids[-1])
            except PumpRefused:
                pass  # lockout, mostly: a refusal is an outcome too
            peer.close_session()

    as_keys(pump, board.keys.only(schema.ROLE_PATIENT), presses)
    state, kept = pump.outcome(schema.ROLE_CLINICIAN, request_id)
    assert state == clientmod.OUTCOME_DONE and kept is not None and kept.fields == reply
    # the patient's own newest OUTCOMES_KEPT are known; far older ones may be gone
    for rid in patient_ids[-schema.OUTCOMES_KEPT :]:
        assert pump.outcome(schema.ROLE_PATIENT, rid)[0] == clientmod.OUTCOME_DONE
    assert pump.outcome(schema.ROLE_PATIENT, patient_ids[0])[0] == clientmod.OUTCOME_NEW
    assert pump.request_once("BOLUS", BOLUS, request_id) == reply
