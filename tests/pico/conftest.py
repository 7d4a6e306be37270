"""Every test in this folder runs on the emulated Pico (bench/board/pico.py).

Where Node, `make pico`, the UF2 or the bootrom is missing they are skipped
with one line saying what; with PUMPBENCH_REQUIRE_PICO set (.ci/run) that is
an error instead: CI must run them, never skip them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.board import pico

MISSING = pico.missing()
if MISSING and os.environ.get("PUMPBENCH_REQUIRE_PICO"):
    raise RuntimeError(f"PUMPBENCH_REQUIRE_PICO is set but the emulated Pico lacks: {MISSING}")

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if MISSING is None:
        return
    skip = pytest.mark.skip(reason=f"emulated Pico: {MISSING}")
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(skip)
