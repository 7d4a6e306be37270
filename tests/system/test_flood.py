"""Therapy is never starved by link traffic.

A keyless flood of PING frames on the pump port (or on the rig port of the
virtual board) at full speed, for 10 s (lockstep) or 5 min (free-running) of
device time: the link serves a
bounded slice per main-loop pass, so strokes and the watchdog feed keep their
timing. Delivery stays within one stroke of the program, no reset, no alarm.

The flood is written at the speed the firmware reads it: a thread writes
frames to the port's pty until the pty's buffer is full and the write
blocks, so the firmware always has bytes waiting. In lockstep the virtual
board then lets device time run at the pace of a 115,200-baud line (virtual/board.py
LINE_BYTES_PER_S): 10 s of device time is 115 KB of flood.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bench.board.sim import BoardOptions, VirtualBoard
from bench.link.errors import BenchError
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from protocol import codec
from tests.system.kit import DAY_MS, MINUTE_MS, STROKE_NL, program, start_therapy

FLOOD_FRAMES = b"".join(
    # sequence numbers the clients never use, all different (no reply-cache hit)
    codec.encode("PING", 40_000 + i, {"token": i})
    for i in range(256)
)


@contextmanager
def flood(port: str, tmp_path: Path) -> Iterator[None]:
    """Writes PING frames to ``port`` without pause until the block ends.

    A shell loop of ``cat`` (C, not a Python thread) refills the pty as fast
    as the firmware drains it.
    """
    frames = tmp_path / "flood.bin"
    frames.write_bytes(FLOOD_FRAMES)
    writer = subprocess.Popen(
        ["sh", "-c", f'while :; do cat "{frames}"; done > "{port}"'],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield
    finally:
        os.killpg(writer.pid, signal.SIGTERM)
        writer.wait(5)


def through_flood(
    client: PumpClient | RigClient,
    name: str,
    fields: dict[str, int] | None = None,
    deadline_s: float = 60,
) -> dict[str, Any]:
    """A request on a flooded port, where the host's reader falls behind the
    flood's replies and the device drops some: the same bytes (same seq) are
    sent until a reply gets through. A copy of a query runs afresh; a copy of
    ADVANCE is answered from the reply cache (the flood's queries never evict
    it) or ignored while it is pending: it runs once."""
    seq = client.next_seq()
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return client.request(name, fields, timeout_s=3, seq=seq)
        except BenchError:
            if time.monotonic() > deadline:
                raise


def served_since(client: PumpClient | RigClient, before: int) -> int:
    return int(through_flood(client, "LINK_STATS")["frames_ok"]) - before


@pytest.mark.timeout(300)
@pytest.mark.parametrize("port", ["pump", "rig"])
def test_a_flood_does_not_starve_delivery(
    board: VirtualBoard, pump: PumpClient, rig: RigClient, port: str, tmp_path: Path
) -> None:
    # 24 mL/day: 1.4 strokes a second; 10 s of device time under the flood
    # (115 KB at the line's pace: seconds of wall time, more on a busy host)
    rate = 24_000_000
    start_therapy(pump, rig, program(drug_id=0, conc_ug_ml=0, basal_nl_day=rate))
    rig.advance(10 * MINUTE_MS)
    boots = pump.status()["boot_count"]
    client = pump if port == "pump" else rig
    served = client.request("LINK_STATS")["frames_ok"]
    with flood(board.pump_port if port == "pump" else board.rig_port, tmp_path):
        started = time.monotonic()
        while served_since(client, served) < 100:
            assert time.monotonic() - started < 30, "the flood did not start"
        # Device time passes at the line's pace only while the host keeps the
        # pty full; a busy host leaves gaps that time leaps. So the flood
        # runs, 2 s of device time at a time, until it has lasted 10 s
        # of device time AND 1,000 frames were served in it.
        pumped = through_flood(rig, "TRUTH")["pumped_nl"]
        first_ms = through_flood(rig, "ADVANCE", {"duration_ms": 0})["device_time_ms"]
        now_ms = first_ms
        while now_ms - first_ms < 10_000 or served_since(client, served) < 1_000:
            assert time.monotonic() - started < 180, "the flood was too thin to judge"
            # on the flooded rig port the ADVANCE's reply may be dropped too
            before_ms = now_ms
            now_ms = through_flood(rig, "ADVANCE", {"duration_ms": 2_000})["device_time_ms"]
            assert now_ms == before_ms + 2_000, "an ADVANCE ran twice"
        delivered = through_flood(rig, "TRUTH")["pumped_nl"] - pumped
    due = rate * (now_ms - first_ms) // DAY_MS
    assert abs(delivered - due) <= STROKE_NL, (delivered, due, now_ms - first_ms)
    status = pump.status()
    assert status["boot_count"] == boots, "reset under the flood"
    assert status["alarms"] == 0, status["alarm_names"]
    assert status["state_name"] == "RUNNING"


@pytest.mark.realtime
@pytest.mark.timeout(300)
@pytest.mark.parametrize("port", ["pump", "rig"])
def test_a_flood_in_real_time_does_not_starve_delivery(port: str, tmp_path: Path) -> None:
    # A free-running board (60 x wall time): here the firmware's own work
    # takes real time, as on a Pico. 24 mL/day is a stroke every 0.72 s of
    # device time; 5 minutes of device time (5 s of wall time) of flood.
    with (
        VirtualBoard(BoardOptions(speed=60)) as board,
        PumpClient(board.pump_port) as pump,
        RigClient(board.rig_port) as rig,
    ):
        rate = 24_000_000
        start_therapy(pump, rig, program(drug_id=0, conc_ug_ml=0, basal_nl_day=rate))
        rig.advance(MINUTE_MS, timeout_s=30)
        boots = pump.status()["boot_count"]
        client = pump if port == "pump" else rig
        served = client.request("LINK_STATS")["frames_ok"]
        with flood(board.pump_port if port == "pump" else board.rig_port, tmp_path):
            # each STATUS says what was delivered at the instant it was
            # answered, however late the flood made it
            before = through_flood(pump, "STATUS")
            through_flood(rig, "ADVANCE", {"duration_ms": 5 * MINUTE_MS})
            after = through_flood(pump, "STATUS")
        served = served_since(client, served)
        assert served > 5_000, f"only {served} frames served"
        delivered = after["delivered_nl"] - before["delivered_nl"]
        due = rate * (after["device_time_ms"] - before["device_time_ms"]) // DAY_MS
        assert abs(delivered - due) <= 2 * STROKE_NL, (delivered, due)
        status = pump.status()
        assert status["boot_count"] == boots, "reset under the flood"
        assert status["alarms"] == 0, status["alarm_names"]
        assert board.alive, board.stderr_text()
