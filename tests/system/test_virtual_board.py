"""The virtual board as a whole: handshake, lockstep time, resets, heap."""

from __future__ import annotations

import pytest

from bench.board.sim import DEFAULT_HEAP, BoardOptions, VirtualBoard
from bench.link.errors import BenchError
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from protocol import codec, schema
from protocol.table import RESET_CAUSE_RIG_RESET


def after_reset(frame: codec.Frame) -> bool:
    return bool(frame.fields["reset_cause"] == RESET_CAUSE_RIG_RESET)


DAY_MS = 86_400_000


def test_hello_reports_version_board_and_fingerprint(pump: PumpClient) -> None:
    hello = pump.hello()
    assert hello["protocol_version"] == schema.PROTOCOL_VERSION
    assert hello["schema_fingerprint"] == schema.FINGERPRINT
    assert hello["board"] == "sim" and hello["device_id"] == "SIM-0001"
    assert hello["firmware_version"]


def test_rig_hello_reports_its_seed() -> None:
    with VirtualBoard(BoardOptions(seed=1234)) as vb, RigClient(vb.rig_port) as rig:
        assert rig.hello()["seed"] == 1234


def test_time_stands_still_without_a_grant(pump: PumpClient) -> None:
    times = {pump.status()["device_time_ms"] for _ in range(20)}
    assert times == {0}


def test_advance_of_30_days_lands_exactly(pump: PumpClient, rig: RigClient) -> None:
    assert rig.advance(30 * DAY_MS) == 30 * DAY_MS
    status = pump.status()
    assert status["device_time_ms"] == 30 * DAY_MS
    assert status["uptime_ms"] == 30 * DAY_MS
    assert status["state"] == 1


def test_advances_add_up_across_the_tick_wrap(pump: PumpClient, rig: RigClient) -> None:
    # 2**30 ms is 12.4 days: the firmware's ticks wrap inside this run.
    total = 0
    for step in (7 * DAY_MS, 1, 6 * DAY_MS + 12_345, 999):
        total += step
        assert rig.advance(step) == total
    assert pump.status()["device_time_ms"] == total


def test_reset_reboots_firmware_but_not_time(pump: PumpClient, rig: RigClient) -> None:
    rig.advance(DAY_MS)
    rig.reset()
    boot = pump.wait_event("BOOT", 2.0, where=after_reset)
    assert boot.fields == {"device_time_ms": DAY_MS, "reset_cause": 1, "boot_count": 2}
    status = pump.status()
    assert status["uptime_ms"] == 0 and status["device_time_ms"] == DAY_MS


def test_pump_port_serves_while_an_advance_runs(board: VirtualBoard) -> None:
    # Both ports are served by one loop: a STATUS between two slices of a
    # long ADVANCE sees a device time inside the grant.
    with PumpClient(board.pump_port) as pump, RigClient(board.rig_port) as rig:
        seq = rig.next_seq()
        rig.transport.expect(seq)
        rig.transport.send(codec.encode("ADVANCE", seq, {"duration_ms": 20 * DAY_MS}))
        seen = pump.status()["device_time_ms"]
        done = rig.transport.wait_reply(seq, 120.0)  # 20 days: a few seconds of wall time
        assert done is not None and done.fields["device_time_ms"] == 20 * DAY_MS
        assert 0 <= seen < 20 * DAY_MS  # answered while the ADVANCE ran, not after it


def test_firmware_runs_in_the_stated_heap() -> None:
    # Every test runs the board at the README's budget (DEFAULT_HEAP); a
    # board with far too little heap must fail to start, which shows the
    # budget is really applied.
    with VirtualBoard(BoardOptions(heap=DEFAULT_HEAP)) as vb, PumpClient(vb.pump_port) as pump:
        assert pump.status()["state"] == 1
    with VirtualBoard(BoardOptions(heap="16k")) as vb:
        with pytest.raises(BenchError), PumpClient(vb.pump_port, timeout_s=0.5, retries=1) as pump:
            pump.status()
        assert "MemoryError" in _stderr_after_exit(vb)


def _stderr_after_exit(vb: VirtualBoard) -> str:
    assert vb.process is not None
    vb.process.wait(timeout=10)
    return vb.stderr_text()
