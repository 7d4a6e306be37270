"""Firmware modules under the real MicroPython interpreter (the judge)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from bench.sim import FIRMWARE_DIR, ROOT, micropython_command

UPY = Path(__file__).with_name("upy")


def run_upy(script: str, *args: str, heap: str = "64k") -> dict:
    env = dict(os.environ, MICROPYPATH=f"{FIRMWARE_DIR}:{ROOT}")
    result = subprocess.run(
        [micropython_command(), "-X", f"heapsize={heap}", str(UPY / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_firmware_codec_matches_golden_vectors() -> None:
    counts = run_upy("check_vectors.py", str(ROOT / "protocol" / "vectors.json"))
    vectors = json.loads((ROOT / "protocol" / "vectors.json").read_text())
    assert counts == {"good": len(vectors["good"]), "bad": len(vectors["bad"])}


def test_scheduler_and_wrapping_ticks() -> None:
    assert run_upy("check_scheduler.py") == {"ok": True}
