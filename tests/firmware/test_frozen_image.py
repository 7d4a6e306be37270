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

from bench.board import firmware, image, pico
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
        return "no MicroPython sources: set MICROPYTHON_SRC (.ci/run points it at ../shared/rp2)"
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
    assert not any(
        m.startswith("rig/") or m.startswith("hal/sim") for m in record["frozen_modules"]
    )
    assert record["uf2"]["sha256"] == firmware.hashlib.sha256(frozen_uf2.read_bytes()).hexdigest()


def test_the_same_sources_give_the_same_bytes(frozen_uf2: Path, tmp_path: Path) -> None:
    again = firmware.build(out=tmp_path / "again")
    first = json.loads((frozen_uf2.parent / "manifest.json").read_text())
    second = json.loads((again.parent / "manifest.json").read_text())
    assert second["firmware_bin"] == first["firmware_bin"]
    assert again.read_bytes() == frozen_uf2.read_bytes()


def test_a_uf2_round_trips_any_payload() -> None:
    payload = bytes(range(256)) * 3 + b"\x01\x02"
    base, back = firmware.bin_from_uf2(firmware.uf2_from_bin(payload, 0x10000000, 0xE48BFF56))
    assert base == 0x10000000
    assert back[: len(payload)] == payload and set(back[len(payload) :]) <= {0}
    with pytest.raises(BenchError, match="not a UF2"):
        firmware.bin_from_uf2(b"\x00" * 512)


def test_without_sources_make_firmware_says_what_is_missing_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(firmware.ENV_SOURCES, raising=False)
    monkeypatch.setattr(firmware.shutil, "which", lambda _name: "/usr/bin/true")
    assert firmware.main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MICROPYTHON_SRC" in err[0]


# --- the frozen image on the emulated Pico (bench/board/pico.py) ----------------------------
# The budget of issue 18: the frozen firmware's heap, with the board and the app
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
    with pico.CtrlCNoise(board.pump_port):  # a host talking while it boots
        hello = pico.wait_hello(board)
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
    pico.maintenance(board)
    heap = pico.measure_heap(board)
    assert heap["steps"] == 8
    print(f"frozen image on the emulated Pico: {heap}")
    assert heap["idle_alloc"] <= FROZEN_HEAP_BUDGET, heap
    assert heap["stroke_alloc"] <= FROZEN_HEAP_BUDGET, heap


@pytest.mark.realtime  # the board runs in real-time mode
def test_a_power_cut_mid_stroke_on_the_frozen_image_is_recovered_within_a_stroke(
    frozen_pico: tuple[pico.PicoBoard, keysmod.DeviceKeys],
) -> None:
    # The frozen pump with its journal on real littlefs (issue 18, item 3):
    # the power is cut at the STEP pin halfway through a stroke (flash kept as
    # it was at that instant); after power-on the accounting is within one
    # stroke of what the pins moved, never under. Real time: the cut is armed
    # between two strokes 17 s apart, which fast mode could leap over.
    from tests.firmware import kit

    board, keys = frozen_pico
    nl_per_step = 25  # board_config PL_PER_STEP / 1000
    board.bootsel(False)
    board.reset()  # out of the heap test's maintenance: the pump boots
    pico.wait_hello(board)
    with PumpClient(board.pump_port, keys=keys, timeout_s=30.0) as pump:
        pump.hello()
        pump.provision(keys)  # (idempotent: the first test may have done it)
        board.request("reset_pins")
        pico.start_program(pump, kit.program(basal_nl_day=1_000_000))
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
    pico.wait_hello(board)
    with PumpClient(board.pump_port, keys=keys, timeout_s=30.0) as pump:
        after = pump.status()["delivered_nl"]
    # what the cut stroke moved (4 steps) is counted, at most the whole stroke
    assert before + 4 * nl_per_step <= after <= before + 8 * nl_per_step, (before, after)


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
