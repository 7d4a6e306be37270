"""Firmware modules under the real MicroPython interpreter (the judge)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from bench import image
from bench.paths import IMAGE_DIR, ROOT
from bench.sim import micropython_command

UPY = Path(__file__).with_name("upy")


def run_upy(script: str, *args: str, heap: str = "256k") -> dict:
    """Runs a check script under MicroPython on the compiled firmware image.

    The firmware modules load as .mpy, as on the board (compiling source at
    import would cost the heap far more than the firmware needs). The heap
    is the check script's (it loads the vectors file); the firmware's own
    budget is checked on the running virtual board.
    """
    # the image, and protocol/ so that checks can `import schema` (the host's
    # tables, to compare the firmware's against)
    env = dict(os.environ, MICROPYPATH=f"{image.ensure_compiled(IMAGE_DIR)}:{ROOT / 'protocol'}")
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
