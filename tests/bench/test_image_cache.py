"""The board image: built once, safely, in the per-user cache, from the chosen firmware tree.

A fresh clone has no image: the first `make run` starts several boards at
once (threads of one runner, and other processes such as a pytest run beside
it), and every one of them must start on a whole image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bench.board import image, paths
from bench.board.sim import BoardOptions, VirtualBoard
from bench.link.errors import BenchError
from bench.link.pump import PumpClient

BOARD_IN_A_PROCESS = """
from bench.link.pump import PumpClient
from bench.board.sim import VirtualBoard
with VirtualBoard() as board, PumpClient(board.pump_port) as pump:
    print(pump.hello()["firmware_version"])
"""


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv(paths.ENV_CACHE, str(cache))
    return cache


def _hello_on_a_new_board(results: list[str], barrier: threading.Barrier) -> None:
    barrier.wait()
    try:
        with VirtualBoard(BoardOptions()) as board, PumpClient(board.pump_port) as pump:
            results.append(pump.hello()["firmware_version"])
    except Exception as exc:  # reported by the test, which counts the boards that started
        results.append(f"failed: {exc!r}")


def test_boards_started_at_once_on_an_empty_cache_all_start(empty_cache: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(paths.ROOT))
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", BOARD_IN_A_PROCESS],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    results: list[str] = []
    barrier = threading.Barrier(4)
    threads = [
        threading.Thread(target=_hello_on_a_new_board, args=(results, barrier)) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    outputs = [p.communicate(timeout=60)[0].strip() for p in processes]
    version = paths.firmware_tree().version()
    assert results == [version] * 4
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert [out.splitlines()[-1] for out in outputs] == [version] * 2
    # one image, whole, and nothing half-built left behind
    images = sorted(p.name for p in empty_cache.iterdir() if not p.name.endswith(".lock"))
    assert images == [f"image-{image.image_key()}"]
    assert (empty_cache / images[0] / image.COMPLETE).exists()


def test_the_image_is_rebuilt_when_a_source_changes_and_never_in_the_checkout(
    tmp_path: Path, empty_cache: Path
) -> None:
    checkout_build = paths.ROOT / "build" / "image"
    before = checkout_build.exists()
    tree = _copy_of_the_firmware(tmp_path)
    first = image.ensure_compiled(tree)
    assert image.ensure_compiled(tree) == first  # nothing changed: the same image
    version = tree.firmware / "pump" / "version.py"
    kept = [line for line in version.read_text().splitlines() if "FIRMWARE_VERSION" not in line]
    version.write_text("\n".join([*kept, 'FIRMWARE_VERSION = "9.9.9-dev"']) + "\n")
    second = image.ensure_compiled(tree)
    assert second != first and second.parent == first.parent == empty_cache
    assert (second / "pump" / "version.mpy").read_bytes() != (
        first / "pump" / "version.mpy"
    ).read_bytes()
    assert checkout_build.exists() == before


@pytest.mark.usefixtures("empty_cache")
def test_a_board_runs_the_firmware_tree_it_is_pointed_at(tmp_path: Path) -> None:
    tree = _copy_of_the_firmware(tmp_path)
    version = tree.firmware / "pump" / "version.py"
    kept = [line for line in version.read_text().splitlines() if "FIRMWARE_VERSION" not in line]
    version.write_text("\n".join([*kept, 'FIRMWARE_VERSION = "9.9.9-dev"']) + "\n")
    cli = [sys.executable, "-m", "bench.cli.main", "hello", "--target", "sim"]
    env = dict(os.environ, PYTHONPATH=str(paths.ROOT))
    by_option = subprocess.run(
        [*cli, "--firmware", str(tree.firmware)], env=env, capture_output=True, text=True
    )
    assert by_option.returncode == 0, by_option.stderr
    assert "9.9.9-dev" in by_option.stdout
    by_env = subprocess.run(
        cli, env=dict(env, PUMPBENCH_FIRMWARE=str(tmp_path)), capture_output=True, text=True
    )
    assert by_env.returncode == 0, by_env.stderr
    assert "9.9.9-dev" in by_env.stdout
    nowhere = subprocess.run(
        [*cli, "--firmware", str(tmp_path / "missing")], env=env, capture_output=True, text=True
    )
    assert nowhere.returncode == 2
    assert nowhere.stderr.strip().splitlines() == [
        f"pumpbench: error: --firmware: {tmp_path / 'missing'} is not a firmware tree "
        "(no main.py in it)"
    ]


def test_a_source_the_compiler_rejects_is_named_and_leaves_no_image(
    tmp_path: Path, empty_cache: Path
) -> None:
    tree = _copy_of_the_firmware(tmp_path)
    (tree.firmware / "pump" / "broken.py").write_text("def f(:\n")
    with pytest.raises(BenchError, match=r"mpy-cross rejected .*broken\.py"):
        image.ensure_compiled(tree)
    assert [p for p in empty_cache.iterdir() if not p.name.endswith(".lock")] == []


def _copy_of_the_firmware(tmp_path: Path) -> paths.FirmwareTree:
    """A checkout-shaped copy (firmware/ and protocol/) a developer might point at."""
    shutil.copytree(
        paths.FIRMWARE_DIR, tmp_path / "firmware", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(
        paths.ROOT / "protocol", tmp_path / "protocol", ignore=shutil.ignore_patterns("__pycache__")
    )
    paths.select_firmware(tmp_path)
    try:
        return paths.firmware_tree()
    finally:
        paths.select_firmware(None)
