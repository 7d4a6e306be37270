"""PROVISION: a pump without keys (a board just flashed with a frozen UF2) takes its key
store over its own link, once; and `pumpbench flash --uf2` through a BOOTSEL drive."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.board import firmware as firmware_build
from bench.board import flash
from bench.board.sim import BoardOptions, VirtualBoard
from bench.link import keys as keysmod
from bench.link.client import PumpRefused
from bench.link.errors import BenchError
from bench.link.pump import PumpClient
from protocol import schema


@pytest.fixture
def unkeyed() -> Iterator[VirtualBoard]:
    with VirtualBoard(BoardOptions(provision=False)) as board:
        yield board
        assert board.alive, board.stderr_text()


def _logged(pump: PumpClient) -> list[str]:
    return [entry["name"] for entry in pump.log()]


def test_a_pump_without_keys_takes_them_once_and_keeps_them(unkeyed: VirtualBoard) -> None:
    keys = keysmod.generate()
    with PumpClient(unkeyed.pump_port, keys=keys) as pump:
        with pytest.raises(PumpRefused, match="NO_KEY"):
            pump.open_session()
        assert pump.provision(keys) is True
        pump.open_session()
        pump.close_session()
        assert "KEYS_PROVISIONED" in _logged(pump)
        # once provisioned, no one on the link can replace the keys
        intruder = keysmod.generate()
        assert pump.provision(intruder) is False
    unkeyed.restart()  # the key store is in flash: it survives a reset
    with PumpClient(unkeyed.pump_port, keys=keys) as pump:
        pump.open_session()
    with PumpClient(unkeyed.pump_port, keys=intruder) as pump:
        with pytest.raises(PumpRefused, match="BAD_MAC"):
            pump.open_session()


def test_a_damaged_or_empty_key_store_is_refused_and_changes_nothing(
    unkeyed: VirtualBoard,
) -> None:
    keys = keysmod.generate()
    damaged = bytearray(keys.keystore())
    damaged[10] ^= 0x01  # its CRC no longer holds
    with PumpClient(unkeyed.pump_port, keys=keys) as pump:
        for blob in (bytes(damaged), keysmod.DeviceKeys().keystore()):
            with pytest.raises(PumpRefused) as refused:
                pump.request("PROVISION", {"keystore": blob})
            assert refused.value.code == schema.BAD_VALUE
        assert "KEYS_PROVISIONED" not in _logged(pump)
        assert pump.provision(keys) is True  # still unprovisioned: the good one takes


def test_flash_uf2_writes_the_image_to_the_bootsel_drive_then_provisions(
    unkeyed: VirtualBoard, tmp_path: Path
) -> None:
    drive = tmp_path / "RPI-RP2"
    drive.mkdir()
    (drive / "INFO_UF2.TXT").write_text(
        "UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\nBoard-ID: RPI-RP2\n"
    )
    uf2 = tmp_path / "pump-test-RPI_PICO.uf2"
    uf2.write_bytes(firmware_build.uf2_from_bin(b"\x01" * 600, 0x10000000, 0xE48BFF56))
    key_file = tmp_path / "pump.keys"
    reply = flash.flash_uf2(unkeyed.pump_port, uf2, key_file, drive, wait_s=10)
    assert reply["board"] == "sim"
    assert (drive / uf2.name).read_bytes() == uf2.read_bytes()
    with PumpClient(unkeyed.pump_port, keys=keysmod.load(key_file)) as pump:
        pump.open_session()  # the key file made for it is the pump's


def test_flash_uf2_refuses_an_image_for_another_chip_and_a_missing_drive(tmp_path: Path) -> None:
    drive = tmp_path / "RP2350"
    drive.mkdir()
    (drive / "INFO_UF2.TXT").write_text("Board-ID: RP2350\n")
    uf2 = tmp_path / "pico.uf2"
    uf2.write_bytes(firmware_build.uf2_from_bin(b"\x01" * 300, 0x10000000, 0xE48BFF56))
    with pytest.raises(BenchError, match=r"a RP2350 board; pico\.uf2 is for RPI-RP2"):
        flash.flash_uf2("/dev/null", uf2, tmp_path / "k", drive, wait_s=1)
    assert not (tmp_path / "k").exists()  # nothing made for a board that was not flashed
    code = flash.main(
        ["--port", "/dev/ttyACM-none", "--key-file", str(tmp_path / "k"), "--uf2", str(uf2)]
    )
    assert code == 2
