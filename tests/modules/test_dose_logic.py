"""Dose logic under the real MicroPython interpreter: the drug library and
program limits (pump/limits.py), the dose governor (pump/governor.py) and the
reservoir accounting (pump/reservoir.py) and the drug path (pump/path.py).

Each check script asserts under MicroPython at the board's heap size and
prints one JSON line; the hot paths (Governor.record, Reservoir.consume) are
run under ``micropython.heap_lock()`` there.
"""

from __future__ import annotations

import pytest

from bench.board.paths import FIRMWARE_DIR
from tests.modules import upy
from tests.modules.integer_only import assert_integer_only

HEAP = "256k"  # the check scripts also import the host schema (its canonical text) to compare


def run_upy(script: str) -> dict:
    return upy.run(script, heap=HEAP)


def test_drug_library_and_program_limits() -> None:
    assert run_upy("check_limits.py") == {"ok": True, "drugs": 8}


def test_dose_governor_windows_persistence_and_no_allocation() -> None:
    assert run_upy("check_governor.py") == {"ok": True}


def test_drug_path_fifo_dose_at_the_tip_and_no_allocation() -> None:
    assert run_upy("check_path.py") == {"ok": True}


def test_reservoir_accounting_refill_and_no_allocation() -> None:
    assert run_upy("check_reservoir.py") == {"ok": True}


@pytest.mark.parametrize("module", ["limits", "governor", "reservoir", "path", "dosecheck"])
def test_module_has_no_floats_and_no_cpython_imports(module: str) -> None:
    assert_integer_only(FIRMWARE_DIR / "pump" / f"{module}.py")


@pytest.mark.parametrize(
    "module", ["drive", "therapy", "program", "persist", "commands", "journal", "ticks"]
)
def test_the_rest_of_the_dose_path_is_integer_only(module: str) -> None:
    assert_integer_only(FIRMWARE_DIR / "pump" / f"{module}.py")
