"""The bench as users install it: a wheel in a fresh virtual environment, no checkout.

The wheel is built from a copy of the project's files, installed with pip
into a new virtual environment outside the checkout, and used from a folder
of its own: `pumpbench run --target sim` runs a scenario and a pytest test
uses the plugin's `pump` and `rig` fixtures. Nothing may be written into
site-packages or the current folder: built images go to the per-user cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.board import image, paths

SKIP_IN_COPY = shutil.ignore_patterns(
    ".git", ".venv", "build", "reports", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)
FIXTURE_TEST = """\
def test_a_board_from_the_installed_plugin(pump, rig):
    assert pump.hello()["board"] == "sim"
    rig.advance(3_600_000)
    assert pump.status()["device_time_ms"] == 3_600_000
"""
LIST_SHIPPED = """\
from bench.board import image
print("\\n".join(sorted(f.target for f in image.shipped_files())))
"""


def _run(command: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=540
    )
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_the_wheel_runs_virtual_boards_outside_the_checkout(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(paths.ROOT, source, ignore=SKIP_IN_COPY)
    # A user's environment: no checkout on the path, no firmware chosen.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PUMPBENCH_", "PYTHON"))}
    env.pop("VIRTUAL_ENV", None)
    env[paths.ENV_CACHE] = str(tmp_path / "cache")
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # so the folder shows only what the bench wrote
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", "dist", "./src"],
        tmp_path,
        env,
    )
    wheels = list((tmp_path / "dist").glob("pumpbench-*.whl"))
    assert len(wheels) == 1
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], tmp_path, env)
    _run([venv / "bin/python", "-m", "pip", "install", "-q", wheels[0], "pytest"], tmp_path, env)

    work = tmp_path / "work"
    work.mkdir()
    # Every file that ships to a board is in the wheel.
    shipped = _run([venv / "bin/python", "-c", LIST_SHIPPED], work, env).split()
    assert shipped == sorted(f.target for f in image.shipped_files())

    shutil.copy(paths.ROOT / "bench" / "scenarios" / "reset.yaml", work)
    out = _run(
        [venv / "bin/pumpbench", "run", "reset.yaml", "--target", "sim", "--no-plots"], work, env
    )
    assert "1 scenario: 1 passed" in out

    (work / "test_installed.py").write_text(FIXTURE_TEST)
    out = _run([venv / "bin/python", "-m", "pytest", "-q", "-p", "no:cacheprovider"], work, env)
    assert "1 passed" in out

    # Built files went to the cache: none in site-packages, none here.
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert list(site.rglob("*.mpy")) == []
    assert sorted(p.name for p in work.iterdir()) == ["reports", "reset.yaml", "test_installed.py"]
    assert list((tmp_path / "cache").glob("image-*/pump/app.mpy"))
