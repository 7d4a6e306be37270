"""The firmware image: which files ship to the board, compiled with mpy-cross.

A Pico gets what ``firmware/manifest.py`` lists (``board_files``: the pump,
the rp2 HAL, the protocol table and codec); the virtual board runs every
``.py`` of the firmware tree (``shipped_files``: ``firmware/virtual/`` too,
the virtual board's HAL, the rig and the plant, never flashed) with the same
protocol modules, placed under ``protocol/``. ``image_sizes`` weighs the two.
Every
file is compiled here, to prove the board's compiler takes it; on a board
flashed with mpremote ``main.py`` stays source, as MicroPython runs it by name.

The virtual board runs the same compiled image, from the per-user cache
(bench.board.paths.cache_dir): one folder per distinct image, named by a hash of
everything that goes into it, built once under a lock and moved into place
whole, so any number of boards, threads or processes may ask for it at once.

Usage: ``python -m bench.board.image --out build/mpy [--arch armv6m]``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.board.manifest import MANIFEST, read_manifest
from bench.board.paths import (
    PROTOCOL_ON_BOARD,
    ROOT,
    FirmwareTree,
    cache_dir,
    firmware_tree,
    installed_tool,
)
from bench.link.errors import BenchError

# Images not used for this long are removed when a new one is built.
CACHE_KEEP_S = 14 * 24 * 3600
COMPLETE = ".complete"  # written last: a folder without it was never finished
VIRTUAL = "virtual/"  # firmware/virtual/: never flashed (its README)


@dataclass(frozen=True)
class ShippedFile:
    source: Path  # in the firmware tree
    target: str  # path on the board, "/" separated, ".py"


def shipped_files(tree: FirmwareTree | None = None) -> list[ShippedFile]:
    """What the virtual board runs: every module of the tree, the simulator and rig too."""
    tree = tree or firmware_tree()
    files = [
        ShippedFile(path, path.relative_to(tree.firmware).as_posix())
        for path in sorted(tree.firmware.rglob("*.py"))
        if "__pycache__" not in path.parts and path.name != MANIFEST
    ]
    files += [ShippedFile(tree.protocol / name, f"protocol/{name}") for name in PROTOCOL_ON_BOARD]
    return files


def board_files(tree: FirmwareTree | None = None) -> list[ShippedFile]:
    """What a Pico gets: the files firmware/manifest.py lists (no simulator, no rig).

    A manifest naming anything under firmware/virtual/ is refused here, so
    ``make flash``, ``make firmware`` and the emulated Pico never take it.
    """
    tree = tree or firmware_tree()
    virtual = (tree.firmware / VIRTUAL).resolve()
    files = []
    for item in read_manifest(tree.firmware):
        source = item.source
        if item.target.startswith(VIRTUAL) or virtual in source.resolve().parents:
            raise BenchError(
                f"{tree.firmware / MANIFEST} ships {item.target}: nothing under "
                "firmware/virtual/ is ever flashed (firmware/virtual/README.md)"
            )
        if item.target.startswith("protocol/"):  # the tree's protocol, wherever it is
            source = tree.protocol / item.target.removeprefix("protocol/")
        files.append(ShippedFile(source, item.target))
    problems = boundary_problems(files, tree.firmware)
    if problems:
        raise BenchError(
            f"{tree.firmware / MANIFEST}: the image breaks its boundary: " + "; ".join(problems)
        )
    return files


@dataclass(frozen=True)
class ImageSizes:
    shipped_bytes: int  # .mpy of the manifest's files: what a Pico gets
    shipped_files: int
    virtual_bytes: int  # .mpy of the rest of the tree: the virtual board's extra
    virtual_files: int

    def line(self) -> str:
        return (
            f"shipped image {self.shipped_bytes} bytes ({self.shipped_files} files); "
            f"the virtual board's extra {self.virtual_bytes} bytes "
            f"({self.virtual_files} files, not flashed)"
        )


def image_sizes(arch: str | None = "armv6m", tree: FirmwareTree | None = None) -> ImageSizes:
    """Bytes of .mpy of what ships (the manifest) and of what only the virtual board runs."""
    tree = tree or firmware_tree()
    every = shipped_files(tree)
    with tempfile.TemporaryDirectory(prefix="mpy-sizes-") as out:
        return sizes_of(every, compile_all(Path(out), arch, tree, every), tree)


def sizes_of(every: list[ShippedFile], built: list[Path], tree: FirmwareTree) -> ImageSizes:
    """image_sizes() of files already compiled (``built[i]`` from ``every[i]``)."""
    on_board = {item.target for item in board_files(tree)}
    sizes = {item.target: path.stat().st_size for item, path in zip(every, built, strict=True)}
    missing = on_board - sizes.keys()
    if missing:  # the manifest names a file the tree's image does not hold
        raise BenchError(f"firmware/manifest.py ships {sorted(missing)}, not in the image")
    shipped = [size for target, size in sizes.items() if target in on_board]
    extra = [size for target, size in sizes.items() if target not in on_board]
    return ImageSizes(sum(shipped), len(shipped), sum(extra), len(extra))


# MicroPython's built-in modules the shipped firmware may import (the rp2
# port's and the unix port's). typing: only inside a try, for the type checker.
MICROPYTHON_MODULES = frozenset(
    {
        "array",
        "binascii",
        "errno",
        "gc",
        "hashlib",
        "machine",
        "micropython",
        "os",
        "rp2",
        "select",
        "struct",
        "sys",
        "time",
        "typing",
    }
)


def module_of(target: str) -> str:
    """``pump/app.py`` -> ``pump.app``; ``pump/__init__.py`` -> ``pump``."""
    parts = target.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: Path) -> list[tuple[str, list[str]]]:
    """Every import in the file, at any depth: (module, names imported from it)."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level or not node.module:
                raise BenchError(f"{source}: a relative import (firmware imports are absolute)")
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def boundary_problems(files: list[ShippedFile], firmware: Path) -> list[str]:
    """What breaks the image boundary in ``files`` (an image for a Pico); empty if nothing.

    A file under firmware/virtual/, or an import (at any depth, inside a
    function too) of virtual/ or of a module that does not ship: every import
    of a shipped module is a shipped module or one of MicroPython's own.
    """
    shipped = {module_of(item.target) for item in files}
    problems = [f"{item.target} ships" for item in files if item.target.startswith("virtual/")]
    for item in files:
        for module, names in imports_of(item.source):
            top = module.split(".")[0]
            if top == "virtual":
                problems.append(f"{item.target} imports {module}")
                continue
            if module not in shipped and top not in MICROPYTHON_MODULES:
                problems.append(f"{item.target} imports {module}, which does not ship")
            # `from pump import link`: a module of the tree must ship too
            for name in names:
                sub = f"{module}.{name}"
                in_tree = (firmware / sub.replace(".", "/")).with_suffix(".py").is_file()
                if in_tree and sub not in shipped:
                    problems.append(f"{item.target} imports {sub}, which does not ship")
    return problems


def mpy_cross_command() -> str:
    return installed_tool("mpy-cross", "mpy-cross")


def compile_all(
    out: Path,
    arch: str | None = None,
    tree: FirmwareTree | None = None,
    files: list[ShippedFile] | None = None,
) -> list[Path]:
    """Compiles ``files`` (default: every shipped file) into ``out``; BenchError on a rejection."""
    built = []
    command = mpy_cross_command()
    for item in shipped_files(tree) if files is None else files:
        target = out / Path(item.target).with_suffix(".mpy")
        target.parent.mkdir(parents=True, exist_ok=True)
        error = _compile(command, item, target, arch)
        if error:
            raise BenchError(f"mpy-cross rejected {item.source}: {error}")
        built.append(target)
    return built


def _compile(command: str, item: ShippedFile, output: Path, arch: str | None = None) -> str:
    """Runs mpy-cross on one file; returns its complaint, empty on success.

    The .mpy names the file by its path on the board (``-s``), as a traceback
    on the board should, not by where the checkout lives: MicroPython keeps
    that name on the heap, so an absolute path would make the heap, the image
    size and every figure measured from them depend on the checkout's path.
    """
    argv = [command, "-o", str(output), "-s", item.target]
    if arch:
        argv.append(f"-march={arch}")
    argv.append(str(item.source))
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    return result.stderr.strip() if result.returncode != 0 else ""


@functools.cache
def _compiler_version(command: str) -> str:
    result = subprocess.run([command, "--version"], capture_output=True, text=True, check=False)
    return result.stdout.strip()


def image_key(tree: FirmwareTree | None = None) -> str:
    """A name for the image: changes with any source, the compiler or this recipe."""
    digest = hashlib.sha256()
    digest.update(Path(__file__).read_bytes())  # how it is compiled lives here
    digest.update(_compiler_version(mpy_cross_command()).encode())
    for item in shipped_files(tree):
        digest.update(item.target.encode() + b"\0")
        digest.update(item.source.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


_in_process = threading.Lock()


def ensure_compiled(
    tree: FirmwareTree | None = None, say: Callable[[str], None] | None = None
) -> Path:
    """The compiled image of ``tree`` in the cache, built first if it is not there.

    The virtual board runs these .mpy files, as the board does: compiling
    source at import time would cost the firmware's heap far more than the
    firmware itself needs. Safe from any number of threads and processes at
    once: one builds (under a file lock), the others wait and use its image.
    ``say`` hears one line when a build starts (a person waits for it).
    """
    tree = tree or firmware_tree()
    cache = cache_dir()
    final = cache / f"image-{image_key(tree)}"
    if (final / COMPLETE).exists():
        _touch(final)
        return final
    with _in_process, _file_lock(cache / f"{final.name}.lock"):
        if not (final / COMPLETE).exists():
            if say is not None:
                say(f"compiling the firmware image ({tree.origin}) into {final}")
            _build(tree, cache, final)
    return final


def _build(tree: FirmwareTree, cache: Path, final: Path) -> None:
    partial = Path(tempfile.mkdtemp(prefix=".building-", dir=cache))
    try:
        compile_all(partial, tree=tree)
        (partial / COMPLETE).write_text(f"{tree.origin}\n")
        if final.exists():  # left unfinished by a build that was killed
            shutil.rmtree(final)
        os.replace(partial, final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    _prune(cache, keep=final)


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)


def _prune(cache: Path, keep: Path) -> None:
    """Removes images nobody used for CACHE_KEEP_S (the cache would only grow)."""
    now = time.time()
    for old in cache.glob("image-*"):
        if old == keep or old.suffix == ".lock":
            continue
        with contextlib.suppress(OSError):
            if now - old.stat().st_mtime > CACHE_KEEP_S:
                shutil.rmtree(old)
                (cache / f"{old.name}.lock").unlink(missing_ok=True)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "mpy")
    parser.add_argument("--arch", help="mpy-cross -march (armv6m: RP2040, armv7emsp: RP2350)")
    args = parser.parse_args(argv)
    tree = firmware_tree()
    every = shipped_files(tree)
    try:
        built = compile_all(args.out, args.arch, tree, every)
        sizes = sizes_of(every, built, tree)
    except BenchError as exc:
        raise SystemExit(f"bench.board.image: {exc}") from None
    size = sum(path.stat().st_size for path in built)
    print(f"mpy-cross: {len(built)} files compiled into {args.out}, {size} bytes of .mpy")
    print(sizes.line())


if __name__ == "__main__":
    main()
