"""``make firmware``: the pump frozen into its own MicroPython UF2 for a Pico.

A product built on MicroPython ships its code frozen into the firmware
image: the bytecode stays in flash, so the heap holds only what the pump
allocates (about a quarter of what the same modules cost loaded as .mpy
files from littlefs). Steps:

1. The MicroPython sources (``--src`` or ``$MICROPYTHON_SRC``: a release
   tarball, or a folder such as a checkout) unpacked into ``build/``.
2. Its ``mpy-cross`` built (the frozen build compiles with the tree's own).
3. A frozen manifest generated into the build folder: the port's board
   manifest plus ``firmware/manifest.py`` (the pump, its monitors, the rp2
   HAL, the protocol table and codec, and ``main.py``, so the board boots
   into the pump; no simulator, no rig).
4. ``ports/rp2`` built for the board with ``-DPICO_NO_PICOTOOL=1`` (the
   SDK would otherwise fetch and build picotool), the build date pinned
   (``SOURCE_DATE_EPOCH``) so the same sources give the same bytes.
5. The UF2 written here from ``firmware.bin`` (256-byte blocks at the
   board's flash base, its family id), named
   ``build/firmware/pump-<version>-<BOARD>.uf2``, and
   ``build/firmware/manifest.json``: sha256 and sizes, the frozen modules
   and their bytecode size, the MicroPython, firmware and schema versions.

Usage: ``python -m bench.board.firmware [--src PATH] [--board RPI_PICO]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.board.image import board_files
from bench.board.paths import ROOT, FirmwareTree, firmware_tree
from bench.link.errors import BenchError
from protocol import schema

ENV_SOURCES = "MICROPYTHON_SRC"
OUT_DIR = ROOT / "build" / "firmware"
SOURCES_DIR = ROOT / "build" / "micropython"
UNPACKED = ".unpacked"  # written last: a folder without it was never finished


@dataclass(frozen=True)
class Board:
    name: str  # ports/rp2/boards/<name>
    family: int  # the UF2 family id the bootrom accepts
    flash_base: int
    rp2350: bool = False  # an IMAGE_DEF block in the binary; the E10 block in the UF2


BOARDS = {
    "RPI_PICO": Board("RPI_PICO", 0xE48BFF56, 0x10000000),  # RP2040
    "RPI_PICO2": Board("RPI_PICO2", 0xE48BFF59, 0x10000000, rp2350=True),  # Arm secure
}

# --- UF2 (github.com/microsoft/uf2: the block format the bootrom reads) --------------
UF2_MAGIC_START0 = 0x0A324655
UF2_MAGIC_START1 = 0x9E5D5157
UF2_MAGIC_END = 0x0AB16F30
UF2_FLAG_FAMILY = 0x00002000
UF2_FLAG_EXTENSIONS = 0x00008000
UF2_PAYLOAD = 256
UF2_BLOCK = 512
# RP2350 erratum E10 (drag and drop meets a partition table): picotool starts
# every RP2350 flash UF2 with one block of the "absolute" family at the end of
# a 16 MB flash, 256 bytes of 0xEF tagged "ignore me" for bootroms that know
# the tag. The SDK asks for it (--abs-block) while PICO_RP2350_A2_SUPPORTED.
ABSOLUTE_FAMILY = 0xE48BFF57
E10_ADDRESS = 0x10FFFF00
UF2_EXTENSION_RP2_IGNORE_BLOCK = 0x9957E304
# The RP2350 bootrom boots only a binary with an IMAGE_DEF block (PICOBIN
# start marker) in its first 4 KB; the SDK's crt0 embeds it (no picotool).
PICOBIN_BLOCK_MARKER_START = bytes.fromhex("d3deffff")  # 0xFFFFDED3, little-endian


def e10_block() -> bytes:
    """The RP2350-E10 block picotool writes first (``--abs-block``), byte for byte."""
    header = struct.pack(
        "<IIIIIIII",
        UF2_MAGIC_START0,
        UF2_MAGIC_START1,
        UF2_FLAG_FAMILY | UF2_FLAG_EXTENSIONS,
        E10_ADDRESS,
        UF2_PAYLOAD,
        0,
        2,
        ABSOLUTE_FAMILY,
    )
    payload = b"\xef" * UF2_PAYLOAD + struct.pack("<I", UF2_EXTENSION_RP2_IGNORE_BLOCK)
    return header + payload.ljust(476, b"\x00") + struct.pack("<I", UF2_MAGIC_END)


def _ignored(block: bytes) -> bool:
    """The E10 block: not flashed, not part of the image."""
    family = struct.unpack_from("<I", block, 28)[0]
    return family == ABSOLUTE_FAMILY and block[32 : 32 + UF2_PAYLOAD] == b"\xef" * UF2_PAYLOAD


def uf2_from_bin(data: bytes, base: int, family: int, e10: bool = False) -> bytes:
    """The UF2 image of ``data`` placed at ``base``: one 512-byte block per 256 bytes
    (after the RP2350-E10 block when ``e10``)."""
    count = (len(data) + UF2_PAYLOAD - 1) // UF2_PAYLOAD
    blocks = [e10_block()] if e10 else []
    for index in range(count):
        chunk = data[index * UF2_PAYLOAD : (index + 1) * UF2_PAYLOAD]
        header = struct.pack(
            "<IIIIIIII",
            UF2_MAGIC_START0,
            UF2_MAGIC_START1,
            UF2_FLAG_FAMILY,
            base + index * UF2_PAYLOAD,
            UF2_PAYLOAD,
            index,
            count,
            family,
        )
        payload = chunk.ljust(476, b"\x00")
        blocks.append(header + payload + struct.pack("<I", UF2_MAGIC_END))
    return b"".join(blocks)


def bin_from_uf2(image: bytes) -> tuple[int, bytes]:
    """(base address, contiguous bytes) of a UF2 image; BenchError when it is not one."""
    if len(image) % UF2_BLOCK:
        raise BenchError("not a UF2 image: its size is not a multiple of 512")
    blocks = []
    for offset in range(0, len(image), UF2_BLOCK):
        block = image[offset : offset + UF2_BLOCK]
        m0, m1, _flags, addr, size, _no, _count, _family = struct.unpack_from("<IIIIIIII", block)
        (end,) = struct.unpack_from("<I", block, UF2_BLOCK - 4)
        if (m0, m1, end) != (UF2_MAGIC_START0, UF2_MAGIC_START1, UF2_MAGIC_END):
            raise BenchError(f"not a UF2 image: bad magic in the block at byte {offset}")
        if _ignored(block):
            continue
        blocks.append((addr, block[32 : 32 + size]))
    if not blocks:
        raise BenchError("not a UF2 image: no block to flash")
    blocks.sort()
    base = blocks[0][0]
    data = bytearray()
    for addr, payload in blocks:
        data[addr - base : addr - base + len(payload)] = payload
    return base, bytes(data)


def uf2_family(image: bytes) -> int:
    """The family id of the image's blocks (the E10 block aside)."""
    for offset in range(0, len(image) - UF2_BLOCK + 1, UF2_BLOCK):
        block = image[offset : offset + UF2_BLOCK]
        if not _ignored(block):
            return int(struct.unpack_from("<I", block, 28)[0])
    raise BenchError("not a UF2 image: no block to flash")


def check_uf2(image: bytes, board: Board) -> None:
    """BenchError unless ``image`` is what ``board``'s bootrom takes: every block of
    its family, numbered in order, contiguous from the flash base; on an RP2350 the
    E10 block first and an IMAGE_DEF block in the first 4 KB of the binary."""
    blocks = [image[i : i + UF2_BLOCK] for i in range(0, len(image), UF2_BLOCK)]
    if board.rp2350:
        if not blocks or not _ignored(blocks[0]):
            raise BenchError(f"{board.name}: the UF2 does not start with the RP2350-E10 block")
        blocks = blocks[1:]
    for number, block in enumerate(blocks):
        _m0, _m1, _flags, addr, size, no, count, family = struct.unpack_from("<IIIIIIII", block)
        expected = (board.flash_base + number * UF2_PAYLOAD, UF2_PAYLOAD, number, len(blocks))
        if family != board.family or (addr, size, no, count) != expected:
            raise BenchError(
                f"{board.name}: UF2 block {number} is family {family:#x} at {addr:#x} "
                f"({no}/{count}); expected family {board.family:#x} at {expected[0]:#x}"
            )
    if board.rp2350:
        _base, binary = bin_from_uf2(image)
        if PICOBIN_BLOCK_MARKER_START not in binary[:4096]:
            raise BenchError(f"{board.name}: no IMAGE_DEF block in the first 4 KB")


# --- the sources ----------------------------------------------------------------------


def sources(given: str | None) -> Path:
    """A MicroPython source tree: the folder given, or the tarball unpacked into build/."""
    text = given or os.environ.get(ENV_SOURCES, "")
    if not text:
        raise BenchError(
            "make firmware needs the MicroPython sources: give MICROPYTHON_SRC=PATH "
            "(a release tarball or a checkout of v1.28.0: micropython-v1.28.0-rp2-src.tar.xz)"
        )
    path = Path(text).expanduser().resolve()
    if path.is_dir():
        tree = path
    elif path.is_file():
        tree = _unpack(path)
    else:
        raise BenchError(f"{ENV_SOURCES}: {path} does not exist")
    if not (tree / "ports" / "rp2" / "Makefile").is_file():
        raise BenchError(f"{ENV_SOURCES}: {path} holds no MicroPython rp2 port (ports/rp2)")
    return tree


def _unpack(tarball: Path) -> Path:
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()[:12]
    tree = SOURCES_DIR / f"src-{digest}"
    if (tree / UNPACKED).exists():
        return tree
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    print(f"firmware: unpacking {tarball.name} into {tree}", flush=True)
    with tarfile.open(tarball) as archive:
        archive.extractall(tree, filter="data")
    (tree / UNPACKED).write_text(f"{tarball}\n")
    return tree


def micropython_version(tree: Path) -> str:
    """MICROPY_VERSION_MAJOR.MINOR.MICRO of py/mpconfig.h."""
    text = (tree / "py" / "mpconfig.h").read_text()
    parts = [
        re.search(rf"#define MICROPY_VERSION_{part} (\d+)", text)
        for part in ("MAJOR", "MINOR", "MICRO")
    ]
    if not all(parts):
        raise BenchError(f"{tree}/py/mpconfig.h: no MicroPython version")
    return ".".join(m.group(1) for m in parts if m)


def _build_date() -> str:
    """SOURCE_DATE_EPOCH: given, else the project's last commit, else 0 (reproducible)."""
    given = os.environ.get("SOURCE_DATE_EPOCH")
    if given:
        return given
    try:
        found = subprocess.run(
            ["git", "-C", str(ROOT), "log", "-1", "--format=%ct"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        found = ""
    return found or "0"


# --- the build ------------------------------------------------------------------------


def _make(args: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("w") as out:
        result = subprocess.run(["make", *args], stdout=out, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise BenchError(f"make {' '.join(args[:3])} failed (log {log}):\n" + "\n".join(tail))


def frozen_manifest(firmware: FirmwareTree) -> str:
    """The frozen build's manifest: the port's own modules and the pump's
    (firmware/manifest.py, whose files board_files lists; never firmware/virtual/)."""
    board_files(firmware)  # refuses a manifest that names firmware/virtual/
    return (
        "# Generated by bench/board/firmware.py: the port's modules and the pump's manifest.\n"
        'include("$(PORT_DIR)/boards/manifest.py")\n'
        f'include("{firmware.firmware / "manifest.py"}")\n'
    )


def build(
    src: str | None = None, board_name: str = "RPI_PICO", jobs: int = 2, out: Path = OUT_DIR
) -> Path:
    """Builds the frozen UF2 into ``out``; returns its path. BenchError with one clear line."""
    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("cmake") is None:
        raise BenchError(
            "make firmware needs the Arm toolchain and cmake: apt-get install gcc-arm-none-eabi "
            "libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib cmake"
        )
    board = BOARDS.get(board_name)
    if board is None:
        raise BenchError(f"no board {board_name}: one of {', '.join(BOARDS)}")
    tree = sources(src)
    version = micropython_version(tree)
    firmware = firmware_tree()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        MICROPY_GIT_TAG=f"v{version}",
        MICROPY_GIT_HASH=os.environ.get("MICROPY_GIT_HASH", "release"),
        SOURCE_DATE_EPOCH=_build_date(),
    )
    started = time.monotonic()
    if not (tree / "mpy-cross" / "build" / "mpy-cross").exists():
        print("firmware: building the tree's mpy-cross", flush=True)
        _make(["-C", str(tree / "mpy-cross"), f"-j{jobs}"], env, out / "mpy-cross.log")
    frozen = out / f"frozen-{board.name}.py"
    frozen.write_text(frozen_manifest(firmware))
    build_dir = out / f"build-{board.name}"
    # CMAKE_ARGS on the make command line replaces the port's own, and with
    # them its -DMICROPY_BOARD: without it here every board built RPI_PICO
    # (measured: a "RPI_PICO2" build gave the RPI_PICO bytes, PICO_PLATFORM
    # rp2040). The board, its folder and the manifest all go inside it.
    port = tree / "ports" / "rp2"
    cmake_args = (
        f"-DPICO_NO_PICOTOOL=1 -DMICROPY_BOARD={board.name} "
        f"-DMICROPY_BOARD_DIR={port / 'boards' / board.name} "
        f"-DMICROPY_FROZEN_MANIFEST={frozen}"
    )
    _start_clean_if_changed(build_dir, _recipe(tree, board.name, frozen, env, cmake_args))
    print(f"firmware: building MicroPython {version} for {board.name} in {build_dir}", flush=True)
    _make(
        [
            "-C",
            str(port),
            f"BOARD={board.name}",
            f"BUILD={build_dir}",
            f"-j{jobs}",
            f"CMAKE_ARGS={cmake_args}",
        ],
        env,
        out / f"build-{board.name}.log",
    )
    binary = (build_dir / "firmware.bin").read_bytes()
    fw_version = firmware.version()
    uf2 = out / f"pump-{fw_version}-{board.name}.uf2"
    image = uf2_from_bin(binary, board.flash_base, board.family, e10=board.rp2350)
    check_uf2(image, board)
    uf2.write_bytes(image)
    modules = _frozen_modules(build_dir)
    record = {
        "firmware_version": fw_version,
        "schema_fingerprint": f"0x{schema.FINGERPRINT:08X}",
        "micropython_version": version,
        "board": board.name,
        "uf2": {"name": uf2.name, "size": uf2.stat().st_size, "sha256": _sha256(uf2.read_bytes())},
        "firmware_bin": {"size": len(binary), "sha256": _sha256(binary)},
        "frozen_modules": sorted(modules),
        "frozen_bytecode_bytes": sum(modules.values()),
        "build_date_epoch": int(env["SOURCE_DATE_EPOCH"]),
        "build_seconds": round(time.monotonic() - started, 1),
    }
    manifest_path(board.name, out).write_text(json.dumps(record, indent=2) + "\n")
    return uf2


def manifest_path(board_name: str = "RPI_PICO", out: Path = OUT_DIR) -> Path:
    """``manifest.json`` for the Pico (RP2040); ``manifest-<BOARD>.json`` for another
    board, so that building one never overwrites the other's record."""
    return out / ("manifest.json" if board_name == "RPI_PICO" else f"manifest-{board_name}.json")


def _recipe(tree: Path, board_name: str, frozen: Path, env: dict[str, str], cmake_args: str) -> str:
    """A digest of everything the image is made of but the MicroPython tree's own files
    (cmake configures a build folder once: changed arguments need a new folder)."""
    digest = hashlib.sha256()
    parts = (str(tree), board_name, env["SOURCE_DATE_EPOCH"], env["MICROPY_GIT_HASH"], cmake_args)
    for part in parts:
        digest.update(part.encode() + b"\0")
    digest.update(frozen.read_bytes())
    for item in sorted(board_files(), key=lambda f: f.target):
        digest.update(item.target.encode() + b"\0" + item.source.read_bytes())
    return digest.hexdigest()


def _start_clean_if_changed(build_dir: Path, recipe: str) -> None:
    """Removes the build folder when the recipe changed since it was built.

    MicroPython's incremental build keeps what it collected from the earlier
    frozen modules (the qstr pool), so after a change it gave other bytes than
    a clean build of the same sources (measured: another firmware.bin sha256).
    A clean build makes the image a function of its sources alone.
    """
    stamp = build_dir / ".pump-recipe"
    if build_dir.exists() and (not stamp.exists() or stamp.read_text() != recipe):
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(recipe)


def _frozen_modules(build_dir: Path) -> dict[str, int]:
    """The pump's modules in the image and their bytecode size (the .mpy files frozen)."""
    names = {item.target for item in board_files()}
    found = {}
    for mpy in (build_dir / "frozen_mpy").rglob("*.mpy"):
        target = mpy.relative_to(build_dir / "frozen_mpy").with_suffix(".py").as_posix()
        if target in names:
            found[target] = mpy.stat().st_size
    missing = names - set(found)
    if missing:
        raise BenchError(f"the build froze no {', '.join(sorted(missing))}")
    return found


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--src", help=f"MicroPython sources: a tarball or a folder (${ENV_SOURCES})"
    )
    parser.add_argument("--board", default="RPI_PICO", choices=sorted(BOARDS))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)
    try:
        uf2 = build(args.src, args.board, args.jobs)
    except BenchError as exc:
        print(f"make firmware: {exc}", file=sys.stderr)
        return 2
    record = json.loads(manifest_path(args.board).read_text())
    print(
        f"firmware: {uf2} ({record['uf2']['size']:,} B; firmware.bin "
        f"{record['firmware_bin']['size']:,} B, {len(record['frozen_modules'])} pump modules "
        f"frozen, {record['frozen_bytecode_bytes']:,} B of bytecode) in {record['build_seconds']} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
