"""A Pico in BOOTSEL mode: the bootrom's USB drive that takes a UF2 image.

Hold BOOTSEL while plugging the board in and it shows up as a small FAT
drive (``RPI-RP2`` for an RP2040, ``RP2350`` for an RP2350) holding
``INFO_UF2.TXT``; a ``.uf2`` file copied onto it is written to flash and the
board reboots into it. The drive is found by that file among the mounted
filesystems, not by its label (desktops mount it in different places).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bench.link.errors import BenchError

INFO = "INFO_UF2.TXT"
MOUNTS = Path("/proc/mounts")


def board_id(drive: Path) -> str:
    """The drive's ``Board-ID`` line (``RPI-RP2``, ``RP2350``), or BenchError."""
    try:
        text = (drive / INFO).read_text(errors="replace")
    except OSError:
        raise BenchError(f"{drive}: not a Pico in BOOTSEL mode (no {INFO})") from None
    for line in text.splitlines():
        if line.startswith("Board-ID:"):
            return line.split(":", 1)[1].strip()
    raise BenchError(f"{drive}/{INFO}: no Board-ID line")


def find_drive(mounts: Path = MOUNTS) -> Path:
    """The one mounted BOOTSEL drive; BenchError when there is none or more than one."""
    found = []
    try:
        lines = mounts.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split()
        if len(fields) > 1:
            where = Path(fields[1].replace("\\040", " "))
            if (where / INFO).is_file():
                found.append(where)
    if not found:
        raise BenchError(
            "no board in BOOTSEL mode: hold BOOTSEL while plugging the Pico in, "
            "mount its RPI-RP2 drive (or give --drive DIR)"
        )
    if len(found) > 1:
        raise BenchError(
            f"{len(found)} boards in BOOTSEL mode ({', '.join(map(str, found))}): give --drive"
        )
    return found[0]


def write_uf2(drive: Path, uf2: Path) -> None:
    """Copies the image onto the drive and makes sure it reached it (the board reboots)."""
    target = drive / uf2.name
    try:
        with uf2.open("rb") as source, target.open("wb") as out:
            shutil.copyfileobj(source, out)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        # The board may reboot the moment the last block lands, taking the
        # drive with it: only a failure before that is an error.
        if target.parent.exists():
            raise BenchError(f"{drive}: writing {uf2.name} failed ({exc.strerror})") from None
