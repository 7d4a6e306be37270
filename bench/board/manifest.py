"""The firmware's manifest (firmware/manifest.py), read on the host.

The manifest is in MicroPython's own format, so that the frozen build
(``make firmware``) includes it as it is; this module gives the same file
list to the bench (``make flash`` copies it as .mpy). Only what the
manifest uses is understood: ``module(path, base_path=".")`` and
``package(name, files=None, base_path=".")``. Anything else is an error,
not a silent omission.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.link.errors import BenchError

MANIFEST = "manifest.py"


@dataclass(frozen=True)
class ManifestFile:
    source: Path  # on the host
    target: str  # its path on the board, "/" separated


def read_manifest(firmware: Path) -> list[ManifestFile]:
    """Every file the manifest in ``firmware`` ships, in the order it names them."""
    path = firmware / MANIFEST
    shipped: list[ManifestFile] = []

    def module(module_path: str, base_path: str = ".", opt: int | None = None) -> None:
        del opt  # an optimisation level: the same files
        source = (firmware / base_path / module_path).resolve()
        _must_exist(source, path)
        shipped.append(ManifestFile(source, module_path))

    def package(
        package_path: str,
        files: tuple[str, ...] | None = None,
        base_path: str = ".",
        opt: int | None = None,
    ) -> None:
        del opt
        root = (firmware / base_path / package_path).resolve()
        if files is None:
            found = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
            files = tuple(p.relative_to(root).as_posix() for p in found)
        for name in files:
            source = root / name
            _must_exist(source, path)
            shipped.append(ManifestFile(source, f"{package_path}/{name}"))

    try:
        code = compile(path.read_text(), str(path), "exec")
    except OSError as exc:
        raise BenchError(f"{path}: cannot read the firmware manifest ({exc.strerror})") from None
    try:
        exec(code, {"__builtins__": {}, "module": module, "package": package})
    except (NameError, TypeError) as exc:
        raise BenchError(
            f"{path}: {exc} (bench/board/manifest.py reads module() and package())"
        ) from None
    return shipped


def _must_exist(source: Path, manifest: Path) -> None:
    if not source.is_file():
        raise BenchError(f"{manifest}: names {source}, which does not exist")
