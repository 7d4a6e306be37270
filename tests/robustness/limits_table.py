"""The drug library's hard limits, read from the firmware's own table.

firmware/pump/limits.py is parsed (never imported or executed) and its
``DRUGS`` tuple read, so the safety invariants are held to exactly the
numbers the pump ships with, but not to the pump's arithmetic on them: the
conversion to volumes is done here, rounding down (a volume that holds at
most the limit), as SPEC section 12.2 states.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

LIMITS_PY = Path(__file__).resolve().parents[2] / "firmware" / "pump" / "limits.py"


@dataclass(frozen=True)
class Drug:
    drug_id: int
    name: str
    conc_min: int  # ug/mL
    conc_max: int
    daily_soft_ng: int
    daily_hard_ng: int
    bolus_soft_ng: int
    bolus_hard_ng: int
    hourly_hard_ng: int

    def volume_nl(self, dose_ng: int, conc_ug_ml: int) -> int:
        """Largest volume whose dose stays within ``dose_ng`` at this concentration."""
        return dose_ng * 1000 // conc_ug_ml


def _value(node: ast.expr, names: dict[str, object]) -> object:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return names[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _value(node.operand, names)
        assert isinstance(value, int)
        return -value
    raise ValueError(f"limits.py: cannot read {ast.dump(node)}")


def read_drugs(path: Path = LIMITS_PY) -> dict[int, Drug]:
    """Drug id -> its row of ``DRUGS`` in firmware/pump/limits.py."""
    tree = ast.parse(path.read_text())
    names: dict[str, object] = {}
    rows = None
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target = node.targets[0]
        if not isinstance(target, ast.Name):
            continue
        if target.id == "DRUGS":
            assert isinstance(node.value, ast.Tuple)
            rows = node.value.elts
        elif isinstance(node.value, ast.Constant):
            names[target.id] = node.value.value
    assert rows is not None, "limits.py has no DRUGS table"
    drugs = {}
    for row in rows:
        assert isinstance(row, ast.Tuple)
        values = [_value(item, names) for item in row.elts]
        drug = Drug(*values)  # type: ignore[arg-type]
        drugs[drug.drug_id] = drug
    return drugs
