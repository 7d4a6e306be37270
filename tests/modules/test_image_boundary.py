"""The image boundary: what ships to a Pico holds nothing of firmware/virtual/.

firmware/manifest.py lists what a Pico gets; firmware/virtual/ (the virtual
board's HAL, its filesystem adapter, the rig and its plant) is never flashed
(firmware/virtual/README.md). Checked on every way the firmware leaves the
host: the manifest's list (bench.board.image.board_files), the folder
``make flash`` and the emulated Pico copy (flash.stage, pico.staged_image),
and the frozen build's manifest (bench.board.firmware includes the same
file). And no shipped module imports from virtual/, not even inside a
function: every import of a shipped module is a shipped module or one of
MicroPython's own (bench.board.image.boundary_problems, which board_files
applies, so the bench refuses such an image before it flashes or freezes it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.board import firmware as firmware_build
from bench.board import flash, image
from bench.board.manifest import read_manifest
from bench.board.paths import FirmwareTree, firmware_tree
from bench.link.errors import BenchError


def test_the_manifest_ships_no_virtual_file_and_no_import_of_one() -> None:
    tree = firmware_tree()
    files = image.board_files(tree)
    assert image.boundary_problems(files, tree.firmware) == []
    virtual = (tree.firmware / "virtual").resolve()
    assert not any(virtual in item.source.resolve().parents for item in files)
    # what the virtual board adds is firmware/virtual/ and nothing else
    extra = {item.target for item in image.shipped_files(tree)} - {f.target for f in files}
    on_disk = {
        f"virtual/{p.relative_to(virtual).as_posix()}"
        for p in virtual.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert extra == on_disk and "virtual/board.py" in extra and "virtual/rig.py" in extra


def test_the_flash_staging_holds_no_virtual_file(tmp_path: Path) -> None:
    # make flash and the emulated Pico (bench/board/pico.py staged_image) copy this folder
    staged = flash.stage(tmp_path / "stage", "armv6m")
    names = {p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()}
    assert names and not any(name.startswith("virtual") for name in names)
    on_board = {item.target for item in image.board_files()}
    assert {n.removesuffix(".mpy") + ".py" if n.endswith(".mpy") else n for n in names} == on_board


def test_the_frozen_build_takes_the_same_manifest() -> None:
    # make firmware freezes what its generated manifest includes besides the
    # port's own modules: firmware/manifest.py, read here as the build reads it
    # (test_frozen_image checks the UF2's frozen modules against board_files).
    tree = firmware_tree()
    included = []
    exec(  # the generated manifest, with include() recorded
        firmware_build.frozen_manifest(tree),
        {"include": included.append},
    )
    assert included == ["$(PORT_DIR)/boards/manifest.py", str(tree.firmware / "manifest.py")]
    frozen = read_manifest(Path(included[1]).parent)
    assert [f.target for f in frozen] == [f.target for f in image.board_files(tree)]
    assert not any(f.target.startswith("virtual/") for f in frozen)


def _tree_with_manifest(tmp_path: Path, extra: str) -> FirmwareTree:
    real = firmware_tree()
    copy = tmp_path / "firmware"
    shutil.copytree(real.firmware, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "protocol").mkdir()
    for name in ("__init__.py", "table.py", "wire.py"):  # the manifest's ../protocol
        shutil.copy2(real.protocol / name, tmp_path / "protocol" / name)
    manifest = copy / "manifest.py"
    manifest.write_text(manifest.read_text() + extra)
    return FirmwareTree(copy, tmp_path / "protocol", "a test copy")


@pytest.mark.parametrize(
    "extra",
    ['package("virtual")\n', 'module("board.py", base_path="virtual")\n'],
    ids=["package", "module"],
)
def test_a_manifest_naming_a_virtual_file_is_refused(tmp_path: Path, extra: str) -> None:
    tree = _tree_with_manifest(tmp_path, extra)
    with pytest.raises(BenchError, match="firmware/virtual/"):
        image.board_files(tree)  # make flash and the emulated Pico stage these
    with pytest.raises(BenchError, match="firmware/virtual/"):
        firmware_build.frozen_manifest(tree)  # make firmware


def test_a_shipped_module_importing_from_virtual_is_found(tmp_path: Path) -> None:
    # The check above can fail: main.py with the virtual board's wiring back in
    # (an import inside a function, as main.py had before virtual/main.py).
    tree = _tree_with_manifest(tmp_path, "")
    main = tree.firmware / "main.py"
    main.write_text(main.read_text() + "\n\ndef _virtual():\n    from virtual import board\n")
    pump_app = tree.firmware / "pump" / "app.py"
    pump_app.write_text(pump_app.read_text() + "\nimport hal.sim\n")
    with pytest.raises(BenchError) as refused:
        image.board_files(tree)  # make flash, make firmware and the emulated Pico stop here
    assert str(refused.value).endswith(
        "main.py imports virtual; pump/app.py imports hal.sim, which does not ship"
    )
