"""Dose logic under the real MicroPython interpreter: the drug library and
program limits (pump/limits.py), the dose governor (pump/governor.py) and the
reservoir accounting (pump/reservoir.py).

Each check script asserts under MicroPython at the board's heap size and
prints one JSON line; the hot paths (Governor.record, Reservoir.consume) are
run under ``micropython.heap_lock()`` there.
"""

from __future__ import annotations

import tokenize

import pytest

from bench.paths import FIRMWARE_DIR
from tests.firmware import upy

HEAP = "128k"  # the check scripts also import the host schema to compare


def run_upy(script: str) -> dict:
    return upy.run(script, heap=HEAP)


def test_drug_library_and_program_limits() -> None:
    assert run_upy("check_limits.py") == {"ok": True, "drugs": 8}


def test_dose_governor_windows_persistence_and_no_allocation() -> None:
    assert run_upy("check_governor.py") == {"ok": True}


def test_reservoir_accounting_refill_and_no_allocation() -> None:
    assert run_upy("check_reservoir.py") == {"ok": True}


@pytest.mark.parametrize("module", ["limits", "governor", "reservoir"])
def test_module_has_no_floats_and_no_cpython_imports(module: str) -> None:
    # Integer units only: no float literal, no true division, no float();
    # imports limited to what MicroPython has.
    path = FIRMWARE_DIR / "pump" / f"{module}.py"
    with path.open("rb") as handle:
        tokens = list(tokenize.tokenize(handle.readline))
    for tok in tokens:
        where = f"{path.name}:{tok.start[0]}"
        if tok.type == tokenize.NUMBER:
            text = tok.string.lower().replace("_", "")
            is_int = text.isdigit() or text.startswith(("0x", "0b", "0o"))
            assert is_int, f"{where}: non-integer literal {tok.string}"
        elif tok.type == tokenize.OP:
            assert tok.string not in ("/", "/="), f"{where}: true division"
        elif tok.type == tokenize.NAME:
            assert tok.string != "float", f"{where}: float"
    imports = {
        line.split()[1].split(".")[0]
        for line in path.read_text().splitlines()
        if line.startswith(("import ", "from "))
    }
    assert imports <= {"struct", "array", "pump"}, imports
