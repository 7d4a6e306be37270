"""Runs check scripts under the real MicroPython interpreter (the judge).

The firmware modules load from the compiled image (build/image, .mpy), as on
a board: compiling source at import costs the heap far more than the firmware
needs. ``protocol/`` is on the path too, so a check can ``import schema`` to
compare the firmware's tables with the host's.

Paths on MICROPYPATH are relative to the project root (the interpreter runs
there): MicroPython keeps each module's ``__file__`` on the heap, so absolute
paths would make heap figures depend on where the checkout lives.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from bench import image
from bench.paths import IMAGE_DIR, ROOT
from bench.sim import micropython_command

SCRIPTS = Path(__file__).with_name("upy")


def run(
    script: str, *args: str, heap: str = "256k", code: str | None = None, path: str = ""
) -> dict:
    """Runs ``upy/<script>`` (or ``-c code``) and returns its last JSON line.

    heap is the check script's own (some load vector files or loop over every
    power-cut point); the firmware's budget is held on the running board.
    """
    search = [p for p in (path, str(image.ensure_compiled(IMAGE_DIR)), str(ROOT / "protocol")) if p]
    env = dict(os.environ, MICROPYPATH=":".join(_from_root(p) for p in search))
    command = [micropython_command(), "-X", f"heapsize={heap}"]
    command += ["-c", code] if code is not None else [str(SCRIPTS / script)]
    result = subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _from_root(path: str) -> str:
    """A path relative to the project root where it lies inside it."""
    try:
        return str(Path(path).resolve().relative_to(ROOT.resolve()))
    except ValueError:
        return path
