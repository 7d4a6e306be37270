"""Replies the bench can trust (protocol/SPEC.md section 21.6).

Inside a session the pump signs every reply over the request it answers;
the client takes nothing else as the answer to a signed request. A device
in the middle of the link (``forge://``, bench/link/transports/protocol_forge.py)
that rewrites replies gets every forged ACK, refusal and read-back refused,
and the pump runs what it was asked at most once.
"""

from __future__ import annotations

import pytest

from bench.board.sim import VirtualBoard
from bench.cli.main import main
from bench.link.client import UntrustedReply
from bench.link.errors import BenchError
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from bench.robustness.common import bolus_fields
from protocol import auth, codec, schema
from tests.system import kit


@pytest.fixture
def therapy(pump: PumpClient, rig: RigClient) -> None:
    kit.start_therapy(pump, rig, kit.program())
    rig.advance(60_000)


def exchange(client: PumpClient, wire: bytes, seq: int) -> codec.Frame:
    client.transport.expect(seq)
    try:
        client.transport.send(wire)
        frame = client.transport.wait_reply(seq, 2.0)
    finally:
        client.transport.forget(seq)
    assert frame is not None, "no reply"
    return frame


def _keeping(session: auth.Session, trailers: list[bytes]) -> codec.Signer:
    def sign(covered: bytes) -> bytes:
        trailers.append(session.sign(covered))
        return trailers[-1]

    return sign


@pytest.mark.usefixtures("therapy")
def test_a_reply_in_a_session_is_signed_over_the_request_it_answers(pump: PumpClient) -> None:
    session = pump.open_session()
    for name, fields in (
        ("BOLUS", bolus_fields(volume_nl=10_000)),  # an ACK
        ("BOLUS", bolus_fields(volume_nl=10_000)),  # a refusal: BOLUS_ACTIVE
        ("STATUS", None),  # a read in the session
    ):
        trailers: list[bytes] = []
        seq = pump.next_seq()
        wire = codec.encode(name, seq, fields, signer=_keeping(session, trailers))
        reply = exchange(pump, wire, seq)
        assert reply.is_signed and reply.covered is not None, name
        tag = trailers[-1][schema.REQUEST_ID_SIZE :]
        assert reply.mac == auth.reply_mac(session.key, reply.covered, tag), name
        # the same reply does not verify for another request
        other = bytes(len(tag))
        assert reply.mac != auth.reply_mac(session.key, reply.covered, other)
    # a read outside a session says so: no signature
    seq = pump.next_seq()
    plain = exchange(pump, codec.encode("STATUS", seq), seq)
    assert not plain.is_signed and plain.mac is None


@pytest.mark.usefixtures("therapy")
@pytest.mark.parametrize("mode", ["payload", "strip", "nack"])
def test_a_forging_relay_gets_every_forged_reply_refused(
    board: VirtualBoard, pump: PumpClient, rig: RigClient, mode: str
) -> None:
    starts = len([e for e in pump.log() if e["name"] == "BOLUS_START"])
    program = pump.get_program()
    pump.close()  # one client on the pty at a time
    url = f"forge://{board.pump_port}?mode={mode}"
    with PumpClient(url, keys=board.keys, timeout_s=0.5, retries=1) as relayed:
        port = relayed.transport.serial
        with pytest.raises(UntrustedReply):
            relayed.bolus("clinician", volume_nl=10_000)
        with pytest.raises(UntrustedReply):
            relayed.get_program()  # the read-back the bench takes as proof
        assert relayed.untrusted_replies >= 2 and getattr(port, "forged", 0) >= 2
    with PumpClient(board.pump_port, keys=board.keys) as direct:
        log = direct.log()
        assert len([e for e in log if e["name"] == "BOLUS_START"]) <= starts + 1  # once at most
        assert direct.get_program() == program
    rig.advance(60_000)


def test_a_link_that_echoes_requests_gives_no_reply(board: VirtualBoard) -> None:
    # An echo is no pump: a request's own bytes coming back are no reply
    # (PumpClient.confirm() must not succeed on loop://).
    with PumpClient("loop://", keys=board.keys, timeout_s=0.2, retries=1) as echo:
        with pytest.raises(BenchError, match="no reply"):
            echo.ping()
        assert echo.transport.unsolicited_replies >= 1


def test_status_on_an_echoing_link_is_an_error_not_a_traceback(
    capsys: pytest.CaptureFixture,
) -> None:
    assert main(["status", "--port", "loop://"]) != 0
    err = capsys.readouterr().err
    assert "no reply" in err and "Traceback" not in err
