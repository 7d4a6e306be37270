"""`make flash PORT=<pty> KEYS=...` against a running emulated Pico, as a real one gets it.

The board runs the stock UF2 with an empty filesystem in real-time mode
(mpremote waits with its own wall-clock timeouts). `make flash` probes it
with mpremote, compiles with ``mpy-cross -march=armv6m``, copies, provisions
the keys, resets and checks HELLO and a session; then a second `make flash`
reaches the same board running the pump after maintenance (reset, BOOTSEL
held within the window), as a person does with a real one.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.board import pico, pico_pump
from bench.board.paths import firmware_tree
from bench.link import keys as keysmod
from bench.link.pump import PumpClient

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.realtime,  # mpremote's own wall-clock timeouts
]

ROOT = Path(__file__).resolve().parents[2]


def _make_flash(port: str, keys: Path) -> subprocess.CompletedProcess[str]:
    # bench.board.flash waits 30 s for a person when it finds the pump, not a REPL.
    # The emulated board boots in about 3 s of its own time, but on a busy host
    # that is many more seconds of wall time (CI failed on the default 20 s).
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            "flash",
            f"PORT={port}",
            f"KEYS={keys}",
            "BOOT_TIMEOUT=300",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_make_flash_turns_a_stock_emulated_pico_into_the_pump(tmp_path: Path) -> None:
    key_file = tmp_path / "pump.keys"
    with pico.PicoBoard(firmware=False, keys=None, mode="realtime") as board:
        done = _make_flash(board.pump_port, key_file)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"HELLO ok: firmware {firmware_tree().version()}, board pico" in done.stdout
        keys = keysmod.load(key_file)  # made by make flash, then provisioned
        files = board.files()
        assert "/main.py" in files and "/pump/app.mpy" in files, sorted(files)
        with PumpClient(board.pump_port, keys=keys, timeout_s=30.0) as pump:
            assert pump.hello()["board"] == "pico"
            pump.open_session()
            pump.close_session()

        # Again, on the board now running the pump (Ctrl-C is off, so mpremote
        # cannot break in): a person resets it and holds BOOTSEL within the
        # maintenance window, then runs make flash.
        pico_pump.maintenance(board)
        again = _make_flash(board.pump_port, key_file)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "HELLO ok" in again.stdout
