"""`make firmware`: the pump frozen into its own MicroPython UF2.

The build needs the Arm toolchain and the MicroPython sources
(MICROPYTHON_SRC); `.ci/run` provides both. Without them these tests are
skipped with one line saying what is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.board import firmware, image, pico, pico_pump
from bench.board.paths import firmware_tree
from bench.link import keys as keysmod
from bench.link.errors import BenchError
from bench.link.pump import PumpClient
from protocol import schema

# A full build takes about a minute on 2 quiet cores (three when they are busy).
pytestmark = pytest.mark.timeout(900)


def _missing() -> str:
    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("cmake") is None:
        return "no Arm toolchain: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi cmake"
    if not os.environ.get(firmware.ENV_SOURCES):
        return "no MicroPython sources: set MICROPYTHON_SRC (.ci/run sets it from CI's inputs)"
    return ""


@pytest.fixture(scope="session")
def frozen_uf2() -> Path:
    missing = _missing()
    if missing:
        pytest.skip(missing)
    return firmware.build()


def test_the_uf2_holds_the_firmware_bin_at_the_flash_base(frozen_uf2: Path) -> None:
    record = json.loads((frozen_uf2.parent / "manifest.json").read_text())
    data = frozen_uf2.read_bytes()
    base, binary = firmware.bin_from_uf2(data)
    assert base == 0x10000000
    assert len(data) == 512 * ((len(binary) + 255) // 256)
    size = record["firmware_bin"]["size"]
    assert firmware.hashlib.sha256(binary[:size]).hexdigest() == record["firmware_bin"]["sha256"]
    assert set(binary[size:]) <= {0}  # the last block's padding
    # every block names the RP2040 family, as picotool would write it
    families = {int.from_bytes(data[i + 28 : i + 32], "little") for i in range(0, len(data), 512)}
    assert families == {0xE48BFF56}


def test_the_image_says_what_is_inside(frozen_uf2: Path) -> None:
    record = json.loads((frozen_uf2.parent / "manifest.json").read_text())
    version = firmware_tree().version()
    assert frozen_uf2.name == f"pump-{version}-RPI_PICO.uf2"
    assert record["firmware_version"] == version
    assert record["schema_fingerprint"] == f"0x{schema.FINGERPRINT:08X}"
    assert record["micropython_version"] == "1.28.0"
    assert record["frozen_modules"] == sorted(f.target for f in image.board_files())
    assert "main.py" in record["frozen_modules"]  # the board boots into the pump
    assert not any(m.startswith("virtual/") for m in record["frozen_modules"])
    assert record["uf2"]["sha256"] == firmware.hashlib.sha256(frozen_uf2.read_bytes()).hexdigest()


def test_a_uf2_round_trips_any_payload() -> None:
    payload = bytes(range(256)) * 3 + b"\x01\x02"
    base, back = firmware.bin_from_uf2(firmware.uf2_from_bin(payload, 0x10000000, 0xE48BFF56))
    assert base == 0x10000000
    assert back[: len(payload)] == payload and set(back[len(payload) :]) <= {0}
    with pytest.raises(BenchError, match="not a UF2"):
        firmware.bin_from_uf2(b"\x00" * 512)


def _fake_binary(rp2350: bool) -> bytes:
    # 3 KB and a bit: an RP2350 binary carries the IMAGE_DEF start marker early
    data = bytearray(bytes(range(256)) * 12 + b"\x01\x02")
    if rp2350:
        data[312:316] = firmware.PICOBIN_BLOCK_MARKER_START
    return bytes(data)


def test_an_rp2350_uf2_starts_with_the_e10_block_and_is_read_past_it() -> None:
    board = firmware.BOARDS["RPI_PICO2"]
    binary = _fake_binary(rp2350=True)
    image = firmware.uf2_from_bin(binary, board.flash_base, board.family, e10=True)
    first = image[:512]
    assert first == firmware.e10_block()
    # what picotool --abs-block writes: absolute family, at the end of 16 MB,
    # block 0 of 2, 256 bytes of 0xEF, tagged "ignore" for the bootrom
    assert int.from_bytes(first[28:32], "little") == 0xE48BFF57
    assert int.from_bytes(first[12:16], "little") == 0x10FFFF00
    assert int.from_bytes(first[8:12], "little") == 0x0000A000
    assert first[32:288] == b"\xef" * 256 and first[288:292] == bytes.fromhex("04e35799")
    assert firmware.uf2_family(image) == 0xE48BFF59
    base, back = firmware.bin_from_uf2(image)  # (not a 16 MB hole up to the E10 block)
    assert base == 0x10000000 and back[: len(binary)] == binary
    firmware.check_uf2(image, board)


def test_a_uf2_the_bootrom_would_not_take_is_refused_before_it_is_written() -> None:
    pico2 = firmware.BOARDS["RPI_PICO2"]
    pico = firmware.BOARDS["RPI_PICO"]
    rp2040_bin = _fake_binary(rp2350=False)
    # an RP2040 binary dressed as an RP2350 image (no IMAGE_DEF): what the
    # build gave before -DMICROPY_BOARD went inside CMAKE_ARGS
    with pytest.raises(BenchError, match="IMAGE_DEF"):
        firmware.check_uf2(firmware.uf2_from_bin(rp2040_bin, 0x10000000, pico2.family, True), pico2)
    with pytest.raises(BenchError, match="E10"):
        firmware.check_uf2(
            firmware.uf2_from_bin(_fake_binary(True), 0x10000000, pico2.family), pico2
        )
    with pytest.raises(BenchError, match="family 0xe48bff59"):
        firmware.check_uf2(firmware.uf2_from_bin(rp2040_bin, 0x10000000, pico2.family), pico)
    with pytest.raises(BenchError, match="at 0x10000100"):
        firmware.check_uf2(firmware.uf2_from_bin(rp2040_bin, 0x10000100, pico.family), pico)
    firmware.check_uf2(firmware.uf2_from_bin(rp2040_bin, 0x10000000, pico.family), pico)


def test_without_sources_make_firmware_says_what_is_missing_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(firmware.ENV_SOURCES, raising=False)
    monkeypatch.setattr(firmware.shutil, "which", lambda _name: "/usr/bin/true")
    assert firmware.main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MICROPYTHON_SRC" in err[0]


# --- the frozen image on the emulated Pico (bench/board/pico.py) ----------------------------
# The frozen firmware's heap budget, with the board and the app
# built and during a stroke's PIO move, under 64 KB of the RP2040 port's 245,888.
FROZEN_HEAP_BUDGET = 64 * 1024


@pytest.fixture(scope="module")
def frozen_pico(frozen_uf2: Path) -> Iterator[tuple[pico.PicoBoard, keysmod.DeviceKeys]]:
    lack = pico.missing()
    if lack:
        pytest.skip(f"emulated Pico: {lack}")
    # An empty filesystem, as a board just flashed with this UF2 has: the
    # keys come over the pump port (PROVISION), not from a file copied in.
    # Real time: maintenance() presses BOOTSEL inside the 2 s window after a
    # reset, which fast mode (idle time skipped) can leap over.
    with pico.PicoBoard(firmware=False, keys=None, uf2=frozen_uf2, mode="realtime") as board:
        keys = keysmod.generate()
        yield board, keys
        assert board.alive, board.stderr_text()


@pytest.mark.realtime  # the board runs in real-time mode
def test_the_frozen_uf2_boots_into_the_pump_on_an_empty_filesystem(
    frozen_pico: tuple[pico.PicoBoard, keysmod.DeviceKeys],
) -> None:
    board, keys = frozen_pico
    with pico_pump.CtrlCNoise(board.pump_port):  # a host talking while it boots
        hello = pico_pump.wait_hello(board)
    assert hello["firmware_version"] == firmware_tree().version()
    assert hello["micropython_version"] == "1.28.0"
    assert hello["board"] != "sim"
    with PumpClient(board.pump_port, keys=keys, timeout_s=30.0) as pump:
        pump.hello()
        assert pump.provision(keys) is True
        pump.open_session()
        pump.close_session()


@pytest.mark.realtime  # the board runs in real-time mode
def test_the_frozen_firmware_runs_in_64_kb_of_heap(
    frozen_pico: tuple[pico.PicoBoard, keysmod.DeviceKeys],
) -> None:
    board, _keys = frozen_pico
    pico_pump.maintenance(board)
    heap = pico_pump.measure_heap(board)
    assert heap["steps"] == 8
    print(f"frozen image on the emulated Pico: {heap}")
    assert heap["idle_alloc"] <= FROZEN_HEAP_BUDGET, heap
    assert heap["stroke_alloc"] <= FROZEN_HEAP_BUDGET, heap


@pytest.mark.realtime  # the board runs in real-time mode
def test_the_frozen_firmware_s_peak_heap_in_a_session_and_a_bolus_is_under_64_kb(
    frozen_pico: tuple[pico.PicoBoard, keysmod.DeviceKeys],
) -> None:
    # The whole pump as main.py runs it, watched at every pass of its loop
    # (bench/board/pico_heap.py): a session with a few requests, then a program
    # and a clinician bolus run to its end.
    from bench.board import pico_heap
    from tests.system import kit

    board, keys = frozen_pico
    program = pico_heap.session_and_bolus(kit.program(basal_nl_day=1_000_000), 1_000)

    def work(pump: PumpClient) -> None:
        pump.provision(keys)  # (idempotent: the first test may have done it)
        program(pump)

    heap = pico_heap.measure(board, work, keys=keys)
    print(f"frozen image on the emulated Pico, in a session and a bolus: {heap}")
    pico_pump.wait_hello(board)
    assert heap["heap_total"] == 245_888  # the RP2040 port's heap
    assert heap["session_alloc"] > 0 and heap["bolus_alloc"] > 0, heap
    assert heap["session_alloc"] <= FROZEN_HEAP_BUDGET, heap
    assert heap["bolus_alloc"] <= FROZEN_HEAP_BUDGET, heap
    assert heap["peak_alloc"] <= FROZEN_HEAP_BUDGET, heap


@pytest.mark.realtime  # the board runs in real-time mode
def test_a_power_cut_mid_stroke_on_the_frozen_image_is_recovered_within_a_stroke(
    frozen_pico: tuple[pico.PicoBoard, keysmod.DeviceKeys],
) -> None:
    # The frozen pump with its journal on real littlefs:
    # the power is cut at the STEP pin halfway through a stroke (flash kept as
    # it was at that instant); after power-on the accounting is within one
    # stroke of what the pins moved, never under. Real time: the cut is armed
    # between two strokes 17 s apart, which fast mode could leap over.
    from tests.system import kit

    board, keys = frozen_pico
    nl_per_step = 25  # board_config PL_PER_STEP / 1000
    board.bootsel(False)
    board.reset()  # out of the heap test's maintenance: the pump boots
    pico_pump.wait_hello(board)
    with PumpClient(board.pump_port, keys=keys, timeout_s=30.0) as pump:
        pump.hello()
        pump.provision(keys)  # (idempotent: the first test may have done it)
        board.request("reset_pins")
        pico_pump.start_program(pump, kit.program(basal_nl_day=1_000_000))
        deadline = time.monotonic() + 90.0
        done = 0
        while time.monotonic() < deadline:
            n = board.status()["step_rises_enabled"]
            if n >= 8 and n % 8 == 0:
                done = n
                break
            time.sleep(0.05)
        assert done, "no first stroke on the frozen image"
        before = pump.status()["delivered_nl"]
        board.cut_at_step(done + 4)
        deadline = time.monotonic() + 90.0
        while board.status()["powered"] and time.monotonic() < deadline:
            time.sleep(0.05)
    status_at_cut = board.status()
    assert not status_at_cut["powered"], "no power cut"
    moved = status_at_cut["step_rises_enabled"]
    assert moved == done + 4
    board.power(True)
    pico_pump.wait_hello(board)
    with PumpClient(board.pump_port, keys=keys, timeout_s=30.0) as pump:
        after = pump.status()["delivered_nl"]
    # what the cut stroke moved (4 steps) is counted, at most the whole stroke
    assert before + 4 * nl_per_step <= after <= before + 8 * nl_per_step, (before, after)


def test_scenarios_run_on_the_frozen_uf2_through_the_pico_target(frozen_uf2: Path) -> None:
    # `pumpbench run --target pico --uf2 FILE`: the emulated Pico and its rig,
    # the same path as the .mpy install, booting the frozen image (its key
    # store alone on the filesystem). `handshake` needs the rig and costs
    # seconds; `motor-stall` (2 h of device time, about 2 minutes of wall
    # time) passes on it too, in `make bench` ("frozen: motor-stall").
    from bench.report.records import Outcome
    from bench.scenario.load import load_scenario
    from bench.scenario.runner import run_scenario

    lack = pico.missing()
    if lack:
        pytest.skip(f"emulated Pico: {lack}")
    target = pico_pump.pico_target(frozen_uf2)
    target.preflight()
    assert target.label == f"pico ({frozen_uf2.name})"
    scenario = load_scenario(firmware.ROOT / "bench" / "scenarios" / "handshake.yaml")
    record = run_scenario(scenario, target)
    assert record.outcome is Outcome.PASS, (record.outcome, record.problems, record.log[-8:])
    # (its filesystem holds no pump module: only the frozen image can answer)
    assert record.device is not None and record.device.board == "pico"
    assert record.device.firmware_version == firmware_tree().version()


def test_a_changed_recipe_starts_the_build_folder_clean(tmp_path: Path) -> None:
    # An incremental MicroPython build after a frozen module changed gave other
    # bytes than a clean build (stale qstrs): a changed recipe wipes the folder.
    build_dir = tmp_path / "build-RPI_PICO"
    build_dir.mkdir()
    (build_dir / "old.o").write_text("from before the stamp")
    firmware._start_clean_if_changed(build_dir, "recipe A")
    assert not (build_dir / "old.o").exists()
    (build_dir / "kept.o").write_text("built for A")
    firmware._start_clean_if_changed(build_dir, "recipe A")
    assert (build_dir / "kept.o").exists()  # the same recipe: make's own increments
    firmware._start_clean_if_changed(build_dir, "recipe B")
    assert not (build_dir / "kept.o").exists()
    assert (build_dir / ".pump-recipe").read_text() == "recipe B"
