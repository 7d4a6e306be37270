"""The drug library's hard limits, read from the firmware's own table.

firmware/pump/limits.py is imported under the real MicroPython interpreter
and its ``DRUGS`` tuple printed (its drug ids are the schema's, from
protocol/table.py), so the safety invariants are held to exactly the numbers
the pump ships with, but not to the pump's arithmetic on them: the
conversion to volumes is done here, rounding down (a volume that holds at
most the limit), as docs/pump.md section 12.2 states.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from tests.modules import upy

_PRINT_DRUGS = "import json; from pump import limits; print(json.dumps(limits.DRUGS))"


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


@functools.cache
def read_drugs() -> dict[int, Drug]:
    """Drug id -> its row of ``DRUGS`` in firmware/pump/limits.py, as the pump has it."""
    rows = upy.run("", code=_PRINT_DRUGS)
    drugs = {}
    for row in rows:
        drug = Drug(*row)
        drugs[drug.drug_id] = drug
    return drugs
