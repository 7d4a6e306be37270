"""Therapy is never starved by link traffic (issue 13, item 1).

A keyless flood of PING frames on the pump port (or on the rig port of the
virtual board) at full speed, for 10 s (lockstep) or 5 min (free-running) of
device time: the link serves a
bounded slice per main-loop pass, so strokes and the watchdog feed keep their
timing. Delivery stays within one stroke of the program, no reset, no alarm.

The flood is written at the speed the firmware reads it: a thread writes
frames to the port's pty until the pty's buffer is full and the write
blocks, so the firmware always has bytes waiting. In lockstep the virtual
board then lets device time run at the pace of a 115,200-baud line (hal/sim.py
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

import pytest

from bench.client import PumpClient, RigClient
from bench.sim import BoardOptions, VirtualBoard
from protocol import codec
from tests.firmware.kit import DAY_MS, MINUTE_MS, STROKE_NL, program, start_therapy, truth

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
    frames.write_bytes(FLOOD_FRAMES * 16)
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
    pumped = truth(rig)["pumped_nl"]
    span = 10_000
    client = pump if port == "pump" else rig
    served = client.request("LINK_STATS")["frames_ok"]
    with flood(board.pump_port if port == "pump" else board.rig_port, tmp_path):
        started = time.monotonic()
        while client.request("LINK_STATS")["frames_ok"] < served + 100:
            assert time.monotonic() - started < 10, "the flood did not start"
        rig.advance(span, timeout_s=120)
    # the minute was flooded (how densely in device time depends on how fast
    # the host refills the pty; the free-running test floods in real time)
    served = client.request("LINK_STATS")["frames_ok"] - served
    assert served > 1_000, f"only {served} frames served"
    delivered = truth(rig)["pumped_nl"] - pumped
    due = rate * span // DAY_MS
    assert abs(delivered - due) <= STROKE_NL, (delivered, due)
    status = pump.status()
    assert status["boot_count"] == boots, "reset under the flood"
    assert status["alarms"] == 0, status["alarm_names"]
    assert status["state_name"] == "RUNNING"


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
            before = pump.status()
            rig.advance(5 * MINUTE_MS, timeout_s=60)
            after = pump.status()
        served = client.request("LINK_STATS")["frames_ok"] - served
        assert served > 5_000, f"only {served} frames served"
        delivered = after["delivered_nl"] - before["delivered_nl"]
        due = rate * (after["device_time_ms"] - before["device_time_ms"]) // DAY_MS
        assert abs(delivered - due) <= 2 * STROKE_NL, (delivered, due)
        status = pump.status()
        assert status["boot_count"] == boots, "reset under the flood"
        assert status["alarms"] == 0, status["alarm_names"]
        assert board.alive, board.stderr_text()
