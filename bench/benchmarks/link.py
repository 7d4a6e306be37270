"""Benchmarks of the link: STATUS round trips, session and exactly-once costs, the reply MAC on
the board, framing overhead.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from pathlib import Path

from bench.benchmarks.common import Row, _check_alive, _percentile
from bench.board.image import ensure_compiled
from bench.board.sim import BoardOptions, VirtualBoard, micropython_command
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from protocol import auth, codec, schema

STATUS_REQUESTS = 2000


# --- (a) STATUS round trips ---------------------------------------------------
def status_round_trips(requests: int) -> list[Row]:
    with VirtualBoard(BoardOptions()) as board, PumpClient(board.pump_port) as pump:
        pump.hello()  # the board is up and speaks our schema
        for _ in range(20):  # warm up (first reads, page faults)
            pump.status()
        latencies: list[float] = []
        start = time.perf_counter()
        for _ in range(requests):
            sent = time.perf_counter()
            pump.status()
            latencies.append(time.perf_counter() - sent)
        elapsed = time.perf_counter() - start
        retransmissions = pump.retransmissions
        _check_alive(board)
    note = f"{requests} requests, one in flight"
    if retransmissions:
        note += f", {retransmissions} retransmitted"
    return [
        Row("STATUS round trips", f"{requests / elapsed:,.0f}", "req/s", note),
        Row("STATUS latency, median", f"{statistics.median(latencies) * 1e3:.3f}", "ms"),
        Row("STATUS latency, p95", f"{_percentile(latencies, 0.95) * 1e3:.3f}", "ms"),
    ]


# --- (a') what the sessions cost (protocol/SPEC.md section 21) -------------------
def session_costs(requests: int, opens: int = 50) -> list[Row]:
    """Opening a session, and a signed request beside a plain one (MAC on MicroPython)."""
    with VirtualBoard(BoardOptions()) as board, PumpClient(board.pump_port) as pump:
        pump.hello()
        open_times: list[float] = []
        for _ in range(opens):
            start = time.perf_counter()
            session = pump.open_session()  # AUTH_CHALLENGE, AUTH_OPEN, STATUS
            open_times.append(time.perf_counter() - start)
        rates = {}
        for label, signer in (("plain", None), ("signed", session.sign)):
            start = time.perf_counter()
            for _ in range(requests):
                pump.request("STATUS", signer=signer)
            rates[label] = requests / (time.perf_counter() - start)
        _check_alive(board)
    cost_ms = (1 / rates["signed"] - 1 / rates["plain"]) * 1e3
    return [
        Row(
            "session open, median",
            f"{statistics.median(open_times) * 1e3:.2f}",
            "ms",
            f"{opens} opens: challenge, proof, the pump's proof",
        ),
        Row("STATUS round trips, signed", f"{rates['signed']:,.0f}", "req/s"),
        Row(
            "request + reply MACs per signed frame",
            f"{cost_ms:.3f}",
            "ms",
            f"both ends, against {rates['plain']:,.0f} plain req/s; "
            f"{schema.AUTH_TRAILER_SIZE} + {schema.REPLY_MAC_SIZE} B on the wire",
        ),
    ]


# --- (a'') what exactly-once costs (protocol/SPEC.md section 23) ------------------
def exactly_once_costs(requests: int) -> list[Row]:
    """A therapy request under a new request id (intent, done, flush) and a copy of one
    answered from the outcome journal, beside a signed request that journals nothing."""
    with (
        VirtualBoard(BoardOptions()) as board,
        PumpClient(board.pump_port) as pump,
        RigClient(board.rig_port) as rig,
    ):
        pump.hello()
        session = pump.open_session()
        start = time.perf_counter()
        for _ in range(requests):
            pump.request("STATUS", signer=session.sign)
        signed = (time.perf_counter() - start) / requests
        # ACK_ALARM with no alarm active changes nothing but is journalled
        written = rig.truth()["journal_bytes"]
        start = time.perf_counter()
        for _ in range(requests):
            request_id = auth.new_request_id()
            pump.request_once("ACK_ALARM", {"alarm": 0}, request_id)
        journalled = (time.perf_counter() - start) / requests
        per_request = (rig.truth()["journal_bytes"] - written) / requests
        start = time.perf_counter()
        for _ in range(requests):
            pump.request_once("ACK_ALARM", {"alarm": 0}, request_id)
        answered = (time.perf_counter() - start) / requests
        _check_alive(board)
    return [
        Row(
            "therapy request under a new id",
            f"{journalled * 1e3:.3f}",
            "ms",
            f"ACK_ALARM round trip: look-up, {per_request:.0f} B journalled (intent + reply), "
            f"flush; a signed STATUS (no journal) {signed * 1e3:.3f} ms",
        ),
        Row(
            "copy answered from the outcome journal",
            f"{answered * 1e3:.3f}",
            "ms",
            f"the same ACK_ALARM again: scan of up to {4 * schema.OUTCOMES_KEPT} records",
        ),
    ]


def reply_mac_cost() -> list[Row]:
    """The pump's cost of signing one reply (SPEC 21.6): the firmware's HMAC over a
    STATUS reply on the MicroPython unix port (bench/benchmarks/upy/reply_mac_cost.py)."""
    image = ensure_compiled()
    result = subprocess.run(
        [micropython_command(), "-X", "heapsize=256k", str(REPLY_MAC_SCRIPT)],
        capture_output=True,
        text=True,
        env=dict(os.environ, MICROPYPATH=str(image)),
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"reply MAC timing failed:\n{result.stdout}{result.stderr}")
    us = json.loads(result.stdout.strip().splitlines()[-1])["us_per_mac"]
    return [
        Row(
            "reply MAC per signed reply (pump)",
            f"{us / 1000:.3f}",
            "ms",
            f"HMAC-SHA256 over a STATUS reply, MicroPython unix port; "
            f"+{schema.REPLY_MAC_SIZE} B on the wire",
        )
    ]


REPLY_MAC_SCRIPT = Path(__file__).with_name("upy") / "reply_mac_cost.py"


# --- (c) framing overhead -------------------------------------------------------
def expected_wire_size(payload_size: int) -> int:
    """Wire bytes of a frame with ``payload_size`` payload bytes, from the schema."""
    body = schema.HEADER_SIZE + payload_size + schema.CRC_SIZE
    encoded = body + 1 + body // 254  # COBS: one code byte per started 254-byte block
    return encoded + 2  # the 0x00 delimiters before and after


def framing_overhead() -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    problems: list[str] = []
    ping_id = codec.MESSAGE_TYPES["PING"].msg_id
    for label, size in (("empty", 0), ("max-size", schema.MAX_PAYLOAD)):
        expected = expected_wire_size(size) - size
        # all-zero and all-nonzero payloads: COBS overhead must not depend on content
        for fill in (0x00, 0x55):
            wire = codec.encode_raw(ping_id, 0x1234, 0, bytes([fill]) * size)
            if len(wire) - size != expected:
                problems.append(
                    f"{label} payload filled with {fill:#04x}: {len(wire) - size} bytes of "
                    f"overhead encoded, {expected} from the schema"
                )
        rows.append(
            Row(
                f"frame overhead, {label} payload ({size} B)",
                str(expected),
                "B",
                f"wire {expected_wire_size(size)} B; checked with protocol.codec",
            )
        )
    return rows, problems
