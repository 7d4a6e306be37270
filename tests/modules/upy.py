"""Runs check scripts under the real MicroPython interpreter (the judge).

The firmware modules load from the compiled image (bench.board.image, .mpy, in the
per-user cache), as on a board: compiling source at import costs the heap
far more than the firmware needs. ``protocol/`` is on the path too, so a
check can ``import schema`` to compare the firmware's tables with the host's.

The interpreter runs in a scratch folder of short links (``image``,
``extra``, ``protocol``) and MICROPYPATH names those links: MicroPython keeps
each module's ``__file__`` on the heap, so the paths must not depend on where
the checkout or the cache lives, or heap figures would.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from bench.board import image
from bench.board.paths import ROOT
from bench.board.sim import micropython_command

SCRIPTS = Path(__file__).with_name("upy")


def run(
    script: str, *args: str, heap: str = "256k", code: str | None = None, path: str = ""
) -> dict:
    """Runs ``upy/<script>`` (or ``-c code``) and returns its last JSON line.

    heap is the check script's own (some load vector files or loop over every
    power-cut point); the firmware's budget is held on the running board.
    """
    links = {
        "extra": path,
        "image": str(image.ensure_compiled()),
        "protocol": str(ROOT / "protocol"),
    }
    with tempfile.TemporaryDirectory(prefix="upy-") as scratch:
        for name, target in links.items():
            if target:
                os.symlink(Path(target).resolve(), Path(scratch, name))
        search = ":".join(name for name, target in links.items() if target)
        command = [micropython_command(), "-X", f"heapsize={heap}"]
        command += ["-c", code] if code is not None else [str(SCRIPTS / script)]
        result = subprocess.run(
            [*command, *args],
            capture_output=True,
            text=True,
            env=dict(os.environ, MICROPYPATH=search),
            cwd=scratch,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])
