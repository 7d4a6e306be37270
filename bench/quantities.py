"""Units of measurements and limits: one table, exact conversions.

A measurement is judged in the unit its scenario names ("uL", "min", "%"),
while the pump and rig report in their wire units (nL, ms, 0.1 mmHg). This
module knows which units measure the same dimension and how they convert,
so a limit written as ``max: 0.5 mL`` against a field in nL is exact and a
unit that would need a guess (``m``: minutes or metres?) is refused.

Units are case-sensitive where case carries meaning (``mL`` vs ``ML`` never
arises, but ``ms`` vs ``Ms`` would): the table lists the spellings accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Unit:
    """A unit: its dimension and how many base units one of it is."""

    name: str
    dimension: str
    factor: Fraction  # base units per one of this unit


def _units(dimension: str, **factors: Fraction | int) -> dict[str, Unit]:
    return {name: Unit(name, dimension, Fraction(f)) for name, f in factors.items()}


_TABLE: dict[str, Unit] = {
    # volume: base nL
    **_units("volume", nL=1, uL=1_000, mL=1_000_000),
    # dose (drug mass): base ng
    **_units("dose", ng=1, ug=1_000, mg=1_000_000),
    # time: base ms
    **_units("time", ms=1, s=1_000, min=60_000, h=3_600_000, d=86_400_000),
    # flow rate: base nL/day
    **{
        name: Unit(name, "rate", Fraction(f))
        for name, f in {
            "nL/day": 1,
            "uL/day": 1_000,
            "mL/day": 1_000_000,
            "nL/h": 24,
            "uL/h": 24_000,
            "mL/h": 24_000_000,
        }.items()
    },
    # pressure: base 0.1 mmHg (the sensor's wire unit)
    **{
        name: Unit(name, "pressure", Fraction(f)) for name, f in {"0.1 mmHg": 1, "mmHg": 10}.items()
    },
    **_units("voltage", mV=1, V=1_000),
    **{"%": Unit("%", "percent", Fraction(1))},
    **_units("count", count=1),
    **{"B": Unit("B", "bytes", Fraction(1))},
}
# Other spellings people write (micro sign, Greek mu).
_ALIASES = {"µL": "uL", "μL": "uL", "µL/h": "uL/h", "μL/h": "uL/h", "sec": "s", "µg": "ug"}


def unit(name: str) -> Unit | None:
    """The unit called ``name``, or None if this table does not know it."""
    name = _ALIASES.get(name, name)
    return _TABLE.get(name)


def known_units(dimension: str) -> list[str]:
    return [u.name for u in _TABLE.values() if u.dimension == dimension]


def convertible(source: str, target: str) -> bool:
    """Whether a value in ``source`` (a wire unit) can be shown in ``target``."""
    if source == target:
        return True
    a, b = unit(source), unit(target)
    return a is not None and b is not None and a.dimension == b.dimension


def convert(value: int | float, source: str, target: str) -> int | float:
    """``value`` in ``source`` expressed in ``target``; exact where it can be.

    An integer stays an integer when the conversion is exact (3 600 000 ms is
    1 h, not 1.0 h), so a report reads the way the scenario was written.
    """
    if source == target:
        return value
    a, b = unit(source), unit(target)
    if a is None or b is None or a.dimension != b.dimension:
        raise ValueError(f"cannot convert {source!r} to {target!r}")
    if isinstance(value, int):
        exact = Fraction(value) * a.factor / b.factor
        return exact.numerator if exact.denominator == 1 else float(exact)
    return float(value * a.factor / b.factor)


_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_TERM = re.compile(rf"\s*({_NUMBER})\s*(%|[A-Za-zµμ][A-Za-zµμ/]*)?\s*")


def parse_quantity(text: str, target: str) -> int | float:
    """``"0.5 mL"``, ``"1h 30min"``, ``"-2 %"``, ``"15 mmHg"`` expressed in ``target``.

    Terms are added ("1h 30min"), each with a unit of ``target``'s dimension.
    A lone bare number is taken in ``target`` itself. ``m`` is refused:
    minutes are ``min``.
    """
    goal = unit(target)
    text = str(text).strip()
    terms: list[tuple[Fraction, str | None]] = []
    pos = 0
    while pos < len(text):
        match = _TERM.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"{text!r} is not a quantity: numbers with units (e.g. 0.5 mL, 30min)")
        terms.append((Fraction(match.group(1)), match.group(2)))
        pos = match.end()
    if not terms:
        raise ValueError("expected a number with a unit")
    if len(terms) > 1 and any(name is None for _value, name in terms):
        raise ValueError(f"{text!r}: every term needs a unit")
    total = Fraction(0)
    for value, name in terms:
        if name is None or name == target:
            total += value
            continue
        if name == "m":
            raise ValueError(f"{text!r}: unknown unit 'm' (minutes are min)")
        found = unit(name)
        if found is None:
            raise ValueError(f"{text!r}: unknown unit {name!r}")
        if goal is None or found.dimension != goal.dimension:
            raise ValueError(f"{text!r} is in {name}, which does not convert to {target}")
        total += value * found.factor / goal.factor
    return total.numerator if total.denominator == 1 else float(total)
