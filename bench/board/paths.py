"""Where things are: the firmware tree the bench runs, and the per-user cache.

The bench runs on a checkout (``pip install -e .``, ``make``) and as an
installed package (a wheel, pipx). Either way it needs the firmware's
sources to build the image a virtual board runs, and somewhere to keep that
image that is neither the installation (site-packages may be read-only and
is shared) nor the current directory:

- the firmware tree: ``--firmware DIR`` (CLI) or ``--pump-firmware DIR``
  (pytest), else ``$PUMPBENCH_FIRMWARE``, else the checkout's ``firmware/``,
  else the copy the package ships (``pumpbench_firmware``, package data);
- the cache: ``$PUMPBENCH_CACHE``, else ``$XDG_CACHE_HOME/pumpbench``, else
  ``~/.cache/pumpbench``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.link.errors import BenchError

ROOT = Path(__file__).resolve().parents[2]
# The checkout's firmware (the tests read its sources; absent in a wheel).
FIRMWARE_DIR = ROOT / "firmware"

ENV_FIRMWARE = "PUMPBENCH_FIRMWARE"
ENV_CACHE = "PUMPBENCH_CACHE"
# The firmware sources as the wheel ships them (pyproject.toml package-dir).
SHIPPED_FIRMWARE_PACKAGE = "pumpbench_firmware"
# The protocol modules the firmware imports, beside it on the board.
PROTOCOL_ON_BOARD = ("__init__.py", "table.py", "wire.py")


@dataclass(frozen=True)
class FirmwareTree:
    """The sources a board image is built from."""

    firmware: Path  # the folder holding main.py, pump/, hal/, virtual/
    protocol: Path  # the folder holding table.py and wire.py
    origin: str  # how it was chosen, for messages

    def version(self) -> str:
        """FIRMWARE_VERSION of pump/version.py (what HELLO must report)."""
        import re

        text = (self.firmware / "pump" / "version.py").read_text()
        found = re.search(r'^FIRMWARE_VERSION\s*=\s*"([^"]+)"', text, re.MULTILINE)
        if found is None:
            raise BenchError(f"{self.firmware}/pump/version.py has no FIRMWARE_VERSION")
        return found.group(1)


_selected: Path | None = None


def select_firmware(path: str | Path | None) -> None:
    """Makes ``path`` the firmware tree of this process (the CLI's --firmware)."""
    global _selected
    _selected = None if path is None or str(path) == "" else Path(path)


def firmware_tree() -> FirmwareTree:
    """The firmware tree this process builds board images from."""
    if _selected is not None:
        return _tree_at(_selected, "--firmware")
    from_env = os.environ.get(ENV_FIRMWARE, "")
    if from_env:
        return _tree_at(Path(from_env), f"${ENV_FIRMWARE}")
    if (FIRMWARE_DIR / "main.py").is_file():
        return FirmwareTree(FIRMWARE_DIR, ROOT / "protocol", "the checkout")
    spec = importlib.util.find_spec(SHIPPED_FIRMWARE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BenchError(
            "no firmware sources: this installation of pumpbench has none; "
            f"give --firmware DIR or set {ENV_FIRMWARE}"
        )
    shipped = Path(next(iter(spec.submodule_search_locations)))
    return FirmwareTree(shipped, _installed_protocol(), "the installed package")


def _tree_at(path: Path, origin: str) -> FirmwareTree:
    """A firmware folder, or a checkout holding firmware/ (and protocol/)."""
    path = path.expanduser().resolve()
    if (path / "firmware" / "main.py").is_file():
        path = path / "firmware"
    if not (path / "main.py").is_file():
        raise BenchError(f"{origin}: {path} is not a firmware tree (no main.py in it)")
    beside = path.parent / "protocol"
    protocol = beside if (beside / "table.py").is_file() else _installed_protocol()
    return FirmwareTree(path, protocol, f"{origin} {path}")


def _installed_protocol() -> Path:
    import protocol

    return Path(protocol.__file__).resolve().parent


def installed_tool(name: str, package: str) -> str:
    """A command of this environment (beside its Python, else on PATH), or BenchError."""
    beside_python = Path(sys.executable).with_name(name)
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        raise BenchError(
            f"{name} is not installed: it comes with pumpbench ({package}); "
            "reinstall pumpbench, or run make venv in a checkout"
        )
    return found


def cache_dir() -> Path:
    """The per-user folder for built images (made on first use)."""
    explicit = os.environ.get(ENV_CACHE, "")
    if explicit:
        base = Path(explicit)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "pumpbench"
    base = base.expanduser()
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot make the cache folder {base}: {exc.strerror}") from None
    return base
