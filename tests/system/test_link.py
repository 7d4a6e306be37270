"""The running firmware's link: damaged frames, duplicates, one reply each.

Each test talks to a real virtual board (firmware under MicroPython) over
its pty, writing raw bytes where a test needs a frame no client would send.
"""

from __future__ import annotations

import zlib

import pytest
from cobs import cobs

from bench.link.errors import PumpRefused
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from protocol import codec, schema, table
from protocol.table import RESET_CAUSE_RIG_RESET


def after_reset(frame: codec.Frame) -> bool:
    return bool(frame.fields["reset_cause"] == RESET_CAUSE_RIG_RESET)


REPLY_WAIT_S = 2.0


def raw_exchange(client: PumpClient | RigClient, wire: bytes, seq: int) -> codec.Frame:
    """Sends raw bytes and returns the frame the device answers to ``seq``."""
    client.transport.expect(seq)
    client.transport.send(wire)
    frame = client.transport.wait_reply(seq, REPLY_WAIT_S)
    assert frame is not None, f"no reply to seq {seq}"
    return frame


def body_of(wire: bytes) -> bytearray:
    return bytearray(cobs.decode(wire[1:-1]))


def frame_of(body: bytes) -> bytes:
    return b"\x00" + cobs.encode(bytes(body)) + b"\x00"


def with_crc(body: bytearray) -> bytearray:
    body[-4:] = (zlib.crc32(bytes(body[:-4])) & 0xFFFFFFFF).to_bytes(4, "little")
    return body


def assert_still_serves(pump: PumpClient) -> None:
    assert pump.ping(0x12345678) == 0x12345678


def damaged(stats: dict[str, int]) -> int:
    return stats["garbage"] + stats["bad_frame"] + stats["bad_crc"] + stats["oversize"]


def test_line_noise_before_a_frame_is_counted_and_the_frame_served(pump: PumpClient) -> None:
    # Noise glued to the front of a frame: the frame's leading 0x00 ends the
    # noise, which is counted once; the frame itself is answered.
    noise = b"\xff\x13\x11 hello \x03\x04"
    seq = pump.next_seq()
    frame = raw_exchange(pump, noise + codec.encode("PING", seq, {"token": 3}), seq)
    assert frame.fields == {"token": 3} and not frame.is_nack
    assert damaged(pump.link_stats()) == 1


def test_short_garbage_is_counted_without_reply(pump: PumpClient) -> None:
    pump.transport.send(b"\x00\x41\x42\x43\x00")
    assert_still_serves(pump)
    stats = pump.link_stats()
    assert stats["garbage"] == 1 and damaged(stats) == 1
    assert pump.transport.unsolicited_replies == 0


def test_bad_crc_is_nacked_with_its_seq(pump: PumpClient) -> None:
    body = body_of(codec.encode("STATUS", 0x0A0B, {}))
    body[-1] ^= 0x40
    frame = raw_exchange(pump, frame_of(body), 0x0A0B)
    assert frame.is_nack and frame.fields["code"] == schema.BAD_CRC
    assert pump.link_stats()["bad_crc"] == 1
    assert_still_serves(pump)


def test_truncated_frame_is_nacked(pump: PumpClient) -> None:
    body = body_of(codec.encode("PING", 0x0C0D, {"token": 5}))
    frame = raw_exchange(pump, frame_of(body[:-3]), 0x0C0D)
    assert frame.is_nack and frame.fields["code"] == schema.BAD_LENGTH
    assert pump.link_stats()["bad_frame"] == 1
    assert_still_serves(pump)


def test_oversize_frame_is_counted_nacked_and_dropped(pump: PumpClient) -> None:
    body = body_of(codec.encode("PING", 0x0E0F, {"token": 5}))
    oversized = frame_of(body + bytes(range(1, 256)) * 2)
    frame = raw_exchange(pump, oversized, 0x0E0F)
    assert frame.is_nack and frame.fields["code"] == schema.OVERSIZE
    assert pump.link_stats()["oversize"] == 1
    assert_still_serves(pump)


@pytest.mark.parametrize(
    ("wire", "seq", "code"),
    [
        (codec.encode_raw(0x7E, 0x0101, 0, b""), 0x0101, schema.UNKNOWN_MESSAGE),
        (codec.encode("ADVANCE", 0x0102, {"duration_ms": 1}), 0x0102, schema.WRONG_PORT),
        (codec.encode_raw(0x02, 0x0103, 0, b"\x01"), 0x0103, schema.BAD_PAYLOAD),
        (
            codec.encode("PING", 0x0104, {"token": 1}, schema.FLAG_REPLY),
            0x0104,
            schema.NOT_A_REQUEST,
        ),
    ],
    ids=["unknown id", "rig message on pump port", "short payload", "reply sent to device"],
)
def test_refused_frames_get_a_clear_nack(
    pump: PumpClient, wire: bytes, seq: int, code: int
) -> None:
    frame = raw_exchange(pump, wire, seq)
    assert frame.is_nack and frame.fields["code"] == code
    assert pump.link_stats()["rejected"] == 1
    assert_still_serves(pump)


def test_wrong_protocol_version_is_refused(pump: PumpClient) -> None:
    body = body_of(codec.encode("PING", 0x0201, {"token": 1}))
    body[0] = schema.PROTOCOL_VERSION + 1
    frame = raw_exchange(pump, frame_of(with_crc(body)), 0x0201)
    assert frame.is_nack and frame.fields["code"] == schema.BAD_VERSION
    assert_still_serves(pump)


def test_retransmitted_advance_is_not_executed_twice(rig: RigClient) -> None:
    wire = codec.encode("ADVANCE", 0x0300, {"duration_ms": 3_600_000})
    first = raw_exchange(rig, wire, 0x0300)
    again = raw_exchange(rig, wire, 0x0300)
    assert first.fields == again.fields == {"device_time_ms": 3_600_000}
    assert rig.advance(0) == 3_600_000
    assert rig.link_stats()["duplicates"] == 1


def test_retransmitted_reset_reboots_once(pump: PumpClient, rig: RigClient) -> None:
    wire = codec.encode("RESET", 0x0400, {})
    raw_exchange(rig, wire, 0x0400)
    boot = pump.wait_event("BOOT", REPLY_WAIT_S, where=after_reset)
    raw_exchange(rig, wire, 0x0400)
    assert boot.fields["reset_cause"] == 1
    assert pump.status()["boot_count"] == boot.fields["boot_count"] == 2


def test_same_seq_with_new_content_is_a_new_request(rig: RigClient) -> None:
    raw_exchange(rig, codec.encode("ADVANCE", 0x0500, {"duration_ms": 10}), 0x0500)
    second = raw_exchange(rig, codec.encode("ADVANCE", 0x0500, {"duration_ms": 20}), 0x0500)
    assert second.fields["device_time_ms"] == 30


def test_advance_beyond_a_year_is_refused_and_time_stands(rig: RigClient) -> None:
    with pytest.raises(PumpRefused) as caught:
        rig.advance(schema.MAX_ADVANCE_MS + 1)
    assert caught.value.code == schema.BAD_VALUE
    assert rig.advance(0) == 0


def test_client_retransmits_through_a_damaged_reply_path(pump: PumpClient) -> None:
    # A link-error NACK makes the client resend the same request unchanged.
    body = body_of(codec.encode("PING", 0x0600, {"token": 77}))
    body[-2] ^= 0xFF
    pump.transport.send(frame_of(body))  # damaged copy: NACK BAD_CRC for seq 0x600
    assert pump.request("PING", {"token": 77}, seq=0x0600)["token"] == 77


def test_requests_during_a_long_advance_never_evict_it(rig: RigClient) -> None:
    # A deferred ADVANCE holds its reply-cache slot until answered: more
    # requests than the cache has slots must not make it run twice.
    seq = rig.next_seq()
    wire = codec.encode("ADVANCE", seq, {"duration_ms": 20 * 86_400_000})
    rig.transport.expect(seq)
    rig.transport.send(wire)
    for token in range(6):
        assert rig.ping(token) == token
    done = rig.transport.wait_reply(seq, 120.0)  # 20 days: seconds, more on a busy host
    assert done is not None and done.fields == {"device_time_ms": 20 * 86_400_000}
    rig.transport.expect(seq)
    rig.transport.send(wire)  # a late retransmission is answered from the cache
    again = rig.transport.wait_reply(seq, REPLY_WAIT_S)
    assert again is not None and again.fields == done.fields
    assert rig.advance(0) == 20 * 86_400_000


def test_hello_from_another_schema_is_refused(pump: PumpClient, rig: RigClient) -> None:
    for client, name in ((pump, "HELLO"), (rig, "RIG_HELLO")):
        with pytest.raises(PumpRefused) as caught:
            client.request(
                name,
                {"protocol_version": schema.PROTOCOL_VERSION, "schema_fingerprint": 0x12345678},
            )
        assert caught.value.code == schema.SCHEMA_MISMATCH


# --- plain queries never take a reply-cache slot (SPEC section 7) -----------------------
# A poller or a keyless flood of queries between a request with an effect and
# its retransmission must not push the effect's reply out of the 4-slot cache:
# the copy would run again (a flooded rig port would advance device time twice).


def _queries(port: str, count: int, first_seq: int) -> list[tuple[bytes, int]]:
    """``count`` plain queries of every kind the port takes, in turn, all-zero payloads."""
    sizes = table.PUMP_REQUESTS if port == schema.PORT_PUMP else table.RIG_REQUESTS
    kinds = [msg_id for msg_id in table.QUERIES if msg_id in sizes]
    return [
        (
            codec.encode_raw(
                kinds[i % len(kinds)], first_seq + i, 0, bytes(sizes[kinds[i % len(kinds)]])
            ),
            first_seq + i,
        )
        for i in range(count)
    ]


@pytest.mark.parametrize("count", [0, 3, 4, 5, 9, 40])
def test_queries_between_an_advance_and_its_copy_never_run_it_twice(
    rig: RigClient, count: int
) -> None:
    before = rig.advance(0)
    wire = codec.encode("ADVANCE", 0x0500, {"duration_ms": 60_000})
    first = raw_exchange(rig, wire, 0x0500)
    for query, seq in _queries(schema.PORT_RIG, count, 0x5000):
        raw_exchange(rig, query, seq)
    duplicates = rig.link_stats()["duplicates"]
    again = raw_exchange(rig, wire, 0x0500)
    assert again.fields == first.fields == {"device_time_ms": before + 60_000}
    assert rig.advance(0) == before + 60_000
    assert rig.link_stats()["duplicates"] == duplicates + 1


@pytest.mark.parametrize("count", [0, 4, 5, 40])
def test_queries_between_a_challenge_and_its_copy_keep_its_nonce(
    pump: PumpClient, count: int
) -> None:
    wire = codec.encode("AUTH_CHALLENGE", 0x0600, {"role": schema.ROLE_CLINICIAN})
    first = raw_exchange(pump, wire, 0x0600)
    for query, seq in _queries(schema.PORT_PUMP, count, 0x6000):
        raw_exchange(pump, query, seq)
    again = raw_exchange(pump, wire, 0x0600)
    assert again.fields == first.fields  # the same nonce: no second challenge was made


def test_a_retransmitted_query_is_answered_afresh(pump: PumpClient) -> None:
    wire = codec.encode("LINK_STATS", 0x0700, {})
    first = raw_exchange(pump, wire, 0x0700)
    again = raw_exchange(pump, wire, 0x0700)
    # run twice: the second answer counts both copies, and neither as a duplicate
    assert again.fields["frames_ok"] == first.fields["frames_ok"] + 1
    assert again.fields["duplicates"] == first.fields["duplicates"]
