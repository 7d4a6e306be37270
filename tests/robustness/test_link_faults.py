"""Link faults: the ``fault://`` pyserial handler, and a therapy scenario that must
reach the same outcome through a damaged link as through a clean one, with
no command executed twice (bench.robustness.link_faults.link_fault_scenario)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import serial

import bench.link.transports
from bench.board.sim import BoardOptions, VirtualBoard
from bench.link.errors import BenchError
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from bench.link.transports.protocol_fault import Rates, Serial, parse_url
from bench.robustness.common import LOG, program_fields
from bench.robustness.link_faults import clean_scenario, compare_outcomes, link_fault_scenario
from tests.system import kit

assert bench.link.transports.PACKAGE in serial.protocol_handler_packages


# --- the handler ---------------------------------------------------------------------------
def test_url_options_are_parsed_and_the_rest_goes_to_the_inner_port() -> None:
    inner, rates, seed = parse_url("fault:///dev/pts/7?drop=0.01&delay_ms=5&dup=0.02&seed=9")
    assert inner == "/dev/pts/7" and seed == 9
    assert rates == Rates(drop=0.01, dup=0.02, corrupt=0.0, delay_ms=5.0)
    inner, rates, _seed = parse_url("fault://socket://host:1234?logging=debug&corrupt=0.5")
    assert inner == "socket://host:1234?logging=debug" and rates.corrupt == 0.5
    assert parse_url("fault://loop://")[0] == "loop://"


@pytest.mark.parametrize(
    "url",
    [
        "fault://",
        "fault:///dev/pts/1?drop=2",
        "fault:///dev/pts/1?drop=x",
        "fault:///dev/pts/1?delay_ms=-1",
        "fault:///dev/pts/1?seed=1.5",
        "fault:///dev/pts/1?bogus=1",
        "/dev/pts/1",
    ],
)
def test_bad_urls_are_refused_with_a_reason(url: str) -> None:
    with pytest.raises(ValueError):
        parse_url(url)
    with pytest.raises(serial.SerialException):
        serial.serial_for_url(url if url.startswith("fault://") else "fault://" + url + "?x=1")


def loop(options: str) -> Serial:
    port = serial.serial_for_url(f"fault://loop://?{options}", timeout=0.02)
    assert isinstance(port, Serial)
    return port


def through(port: Serial, data: bytes) -> bytes:
    out = b""
    for start in range(0, len(data), 512):  # loop:// holds 4096 bytes
        port.write(data[start : start + 512])
        while True:
            chunk = port.read(4096)
            if not chunk:
                break
            out += chunk
    return out


def test_a_clean_fault_port_changes_nothing() -> None:
    data = bytes(range(256)) * 4
    assert through(loop("seed=1"), data) == data


def test_each_fault_does_what_it_says() -> None:
    data = bytes(range(1, 256))
    port = loop("seed=3")
    port.set_rates("tx", drop=1.0)
    assert through(port, data) == b""
    port.set_rates("tx", drop=0.0, dup=1.0)
    assert through(port, data) == bytes(b for b in data for _ in (0, 1))
    port.set_rates("tx", dup=0.0, corrupt=1.0)
    damaged = through(port, data)
    assert len(damaged) == len(data)
    assert all(bin(a ^ b).count("1") == 1 for a, b in zip(data, damaged, strict=True))
    stats = port.fault_stats()["tx"]
    assert (stats["dropped"], stats["duplicated"], stats["corrupted"]) == (255, 255, 255)


def test_rates_are_per_byte_and_damage_repeats_with_the_seed() -> None:
    data = bytes(range(1, 256)) * 16  # 4 080 bytes
    first = through(loop("drop=0.05&dup=0.05&corrupt=0.05&seed=4"), data)
    again = through(loop("drop=0.05&dup=0.05&corrupt=0.05&seed=4"), data)
    other = through(loop("drop=0.05&dup=0.05&corrupt=0.05&seed=5"), data)
    assert first == again != other
    port = loop("drop=0.05&seed=6")
    through(port, data)
    dropped = port.fault_stats()["tx"]["dropped"] + port.fault_stats()["rx"]["dropped"]
    assert 0.08 * len(data) < dropped < 0.12 * len(data)  # about 5 % each way


def test_delay_holds_bytes_back_in_order() -> None:
    port = loop("delay_ms=30&seed=1")
    started = time.monotonic()
    assert through(port, b"abc") + through(port, b"def") == b"abcdef"
    assert port.fault_stats()["tx"]["delayed_ms"] > 0
    assert time.monotonic() - started < 2.0


# --- the scenario ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clean() -> Any:
    result = clean_scenario(seed=1)
    assert result.mismatches == []
    return result


@pytest.mark.parametrize(
    "options",
    [
        "drop=0.001&dup=0.001&corrupt=0.001&delay_ms=2&seed=1",
        "drop=0.003&dup=0.003&corrupt=0.003&delay_ms=5&seed=2",
    ],
)
def test_a_scenario_reaches_the_same_outcome_through_link_faults(clean: Any, options: str) -> None:
    faulty = link_fault_scenario(options, seed=1)
    assert compare_outcomes(clean, faulty) == []
    # the link really was damaged and the client had to retransmit (what the
    # pump answered from its reply cache shows in LINK_STATS duplicates)
    damaged = sum(
        faulty.faults[side][kind]
        for side in ("tx", "rx")
        for kind in ("dropped", "duplicated", "corrupted")
    )
    assert damaged > 0 and faulty.retransmissions > 0


def test_a_lost_reply_and_a_reboot_never_give_a_bolus_twice() -> None:
    """SPEC 7, 23: the reply cache dies with a reboot, the outcome journal does
    not. The client sends the BOLUS again under the same request id, in a new
    session, and the pump answers with the journalled reply of the copy that
    ran instead of running it again."""
    with VirtualBoard(BoardOptions(seed=3)) as board:
        with (
            RigClient(board.rig_port) as rig,
            PumpClient(f"fault://{board.pump_port}?seed=1", timeout_s=1.0, retries=3) as pump,
        ):
            rig.fill(20_000_000)
            pump.refill(0, 20_000_000)
            program = program_fields(drug_id=0, conc_ug_ml=0, basal_nl_day=1_000_000)
            pump.confirm(pump.program(program)["crc"])
            port = pump.transport.serial
            assert isinstance(port, Serial)
            port.set_rates("rx", drop=1.0)  # the BOLUS reply will be lost
            outcome: dict[str, Any] = {}

            def bolus() -> None:
                try:
                    outcome["reply"] = pump.bolus("clinician", volume_nl=10_000)
                except BenchError as error:
                    outcome["error"] = str(error)

            thread = threading.Thread(target=bolus)
            thread.start()
            deadline = time.monotonic() + 0.5
            while rig.truth()["pumped_nl"] == 0 and time.monotonic() < deadline:
                time.sleep(0.01)  # the bolus runs (its first stroke is at once)
            rig.advance(2_000)  # 8 strokes of it
            rig.power_off()  # a brown-out; the pump reboots
            rig.advance(1)
            rig.power_on()
            port.set_rates("rx", drop=0.0)
            thread.join(10)
            assert not thread.is_alive(), "the client hangs"
            rig.advance(60_000)
            log = pump.log()
            starts = [e for e in log if e["code"] == LOG["BOLUS_START"]]
            assert len(starts) == 1, f"one BOLUS asked for, {len(starts)} started: {starts}"
            # the client was told the outcome of the one copy that ran
            assert outcome.get("reply", {}).get("bolus_id") == starts[0]["a"] & 0xFFFF, outcome
            # it ran once, cut short by the reboot
            ended = [e["a"] for e in log if e["code"] == LOG["BOLUS_INTERRUPTED"]]
            assert ended == [starts[0]["a"] & 0xFFFF], log


def test_a_confirm_that_starts_delivery_logs_program_active_only(
    pump: PumpClient, rig: RigClient
) -> None:
    kit.start_therapy(pump, rig, kit.program())
    names = [e["name"] for e in pump.log()]
    assert "PROGRAM_ACTIVE" in names and "START" not in names, names
