"""Units: one grammar and one table for every number a person types.

Scenario files (durations, volumes, doses, catheter lengths, measurement
limits), program files (volumes, doses, rates, lockouts) and the command line
(``pumpbench bolus --volume 0.1mL``, ``pumpbench rig advance 1.5h``) all read
quantities here, so a unit accepted in one place is accepted in all of them.

A quantity is one or more ``number unit`` terms that are added ("1h 30min").
Every value is exact: numbers are read as fractions, never floats, and a
field that holds whole nanolitres (or ms, ng, ...) refuses a value finer than
that rather than rounding it. Unit names are case-insensitive ("mL", "ml",
"uL", "UL"); micro may be written u, µ (micro sign) or μ (Greek mu), and mcg
is the clinical spelling of ug. ``m`` is refused: minutes are ``min``.

A compound unit ``a/b`` is any two units of the table (``uL/h``,
``mg/day``, ``mg/mL``); its dimension is theirs (``volume/time``).
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


def _units(dimension: str, **factors: int) -> dict[str, Unit]:
    return {name: Unit(name, dimension, Fraction(f)) for name, f in factors.items()}


# Base units are the wire's: nL, ng, ms, mm, 0.1 mmHg, mV.
_TABLE: dict[str, Unit] = {
    **_units("volume", nL=1, uL=1_000, mL=1_000_000),
    **_units("dose", ng=1, ug=1_000, mg=1_000_000),
    **_units("time", ms=1, s=1_000, min=60_000, h=3_600_000, d=86_400_000),
    **_units("length", mm=1, cm=10),
    **{"0.1 mmHg": Unit("0.1 mmHg", "pressure", Fraction(1))},
    **_units("pressure", mmHg=10),
    **_units("voltage", mV=1, V=1_000),
    **{"%": Unit("%", "percent", Fraction(1))},
    **_units("count", count=1),
    **{"B": Unit("B", "bytes", Fraction(1))},
}
# Other spellings people write; looked up case-insensitively like the names.
_ALIASES = {
    "µl": "uL",
    "μl": "uL",
    "µg": "ug",
    "μg": "ug",
    "mcg": "ug",
    "sec": "s",
    "day": "d",
}
_BY_LOWER = {name.lower(): u for name, u in _TABLE.items()}
_BY_LOWER.update({alias: _TABLE[name] for alias, name in _ALIASES.items()})
assert len({name.lower() for name in _TABLE}) == len(_TABLE), "unit names differ only by case"

DIMENSION_WORDS = {
    "volume": "volume",
    "dose": "drug amount",
    "time": "duration",
    "length": "length",
    "pressure": "pressure",
    "voltage": "voltage",
    "percent": "share",
    "volume/time": "rate",
    "dose/time": "rate",
    "dose/volume": "concentration",
}
MAX_DIGITS = 30  # a number longer than this fits no field, in any unit


def unit(name: str) -> Unit | None:
    """The unit called ``name`` (``uL``, ``ul``, ``µL``, ``uL/h``), or None."""
    found = _BY_LOWER.get(name.strip().lower())
    if found is not None or "/" not in name:
        return found
    top, _, per = name.partition("/")
    a, b = _BY_LOWER.get(top.strip().lower()), _BY_LOWER.get(per.strip().lower())
    if a is None or b is None or "/" in per:
        return None
    return Unit(f"{a.name}/{b.name}", f"{a.dimension}/{b.dimension}", a.factor / b.factor)


def known_units(dimension: str) -> list[str]:
    """The unit names of ``dimension`` (``volume`` -> nL, uL, mL)."""
    if "/" in dimension:
        top, _, per = dimension.partition("/")
        return [f"{a}/{b}" for a in known_units(top) for b in known_units(per)]
    return [u.name for u in _TABLE.values() if u.dimension == dimension]


def spellings(dimension: str) -> list[str]:
    """Every name accepted for a unit of ``dimension``, aliases included (any case)."""
    return [name for name, u in _BY_LOWER.items() if u.dimension == dimension]


def convertible(source: str, target: str) -> bool:
    """Whether a value in ``source`` (a wire unit) can be shown in ``target``."""
    if source == target:
        return True
    a, b = unit(source), unit(target)
    return a is not None and b is not None and a.dimension == b.dimension


def convert(value: int | float, source: str, target: str) -> int | float:
    """``value`` in ``source`` expressed in ``target`` (for showing a result).

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
_WORD = r"(?:%|[^\W\d_]+(?:\s*/\s*[^\W\d_]+)?)"
_TERM = re.compile(rf"\s*({_NUMBER})\s*({_WORD})?\s*")


def _names(dimension: str) -> str:
    if "/" in dimension:
        top, _, per = dimension.partition("/")
        return f"{_names(top)} per {_names(per)}"
    names = known_units(dimension)
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def parse(
    text: object,
    target: str,
    *,
    bare: bool = False,
    signed: bool = False,
    what: str | None = None,
    names: str | None = None,
) -> Fraction:
    """``text`` ("0.5 mL", "1h 30min", "20 uL/h") exactly, in the unit ``target``.

    Every term needs a unit of ``target``'s dimension, unless ``bare``: then a
    lone number is taken in ``target`` itself. A sign is refused unless
    ``signed``. Errors are one line: what was written, and what is expected
    (``what``, and ``names``: the units that fit, by default all of them).
    """
    goal = unit(target)
    if goal is None:
        raise ValueError(f"unknown target unit {target!r}")
    what = what or DIMENSION_WORDS.get(goal.dimension, goal.dimension)
    names = names or _names(goal.dimension)
    if isinstance(text, bool) or not isinstance(text, str | int) or not str(text).strip():
        raise ValueError(f"expected a {what} as text: a number with a unit ({names})")
    stripped = str(text).strip()
    terms: list[tuple[str, str | None]] = []
    pos = 0
    while pos < len(stripped):
        match = _TERM.match(stripped, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"{text!r} is not a {what}: a number with a unit ({names})")
        terms.append((match.group(1), match.group(2)))
        pos = match.end()
    total = Fraction(0)
    for number, name in terms:
        if len(number) > MAX_DIGITS:  # no field holds it; and Fraction() would be slow
            raise ValueError(
                f"{number[:12]}... ({len(number)} digits) is not a {what}: far beyond any field"
            )
        if number[0] in "+-" and not signed:
            raise ValueError(f"{text!r} is not a {what}: no sign, a number with a unit ({names})")
        if name is None:
            if not bare or len(terms) > 1:
                raise ValueError(f"{text!r} is not a {what}: a number with a unit ({names})")
            total += Fraction(number)
            continue
        found = unit(name)
        if found is None:
            hint = " (minutes are min)" if name.lower() == "m" else ""
            raise ValueError(f"{text!r}: unknown unit {name!r}{hint}; use {names}")
        if found.dimension != goal.dimension:
            kind = DIMENSION_WORDS.get(found.dimension, found.dimension)
            raise ValueError(f"{text!r} is a {kind}, not a {what}; use {names}")
        total += Fraction(number) * found.factor / goal.factor
    return total


def dimension_of(text: object) -> str | None:
    """The dimension of the first unit written in ``text`` (``"10 mg/day"``: dose/time)."""
    match = _TERM.match(text) if isinstance(text, str) else None
    found = unit(match.group(2)) if match is not None and match.group(2) else None
    return found.dimension if found is not None else None


def whole(
    text: object,
    target: str,
    *,
    what: str | None = None,
    names: str | None = None,
    low: int = 0,
    high: int = 0xFFFF_FFFF,
) -> int:
    """``text`` as a whole number of ``target`` in ``low..high`` (default: a u32).

    A value finer than ``target`` is refused, never rounded.
    """
    value = parse(text, target, what=what, names=names, signed=low < 0)
    if value.denominator != 1:
        raise ValueError(f"{text!r} is not a whole number of {target}")
    if value.numerator > high:
        raise ValueError(f"{text!r} is too large: at most {high} {target}")
    if value.numerator < low:
        raise ValueError(f"{text!r} is too small: at least {low} {target}")
    return value.numerator


def duration_ms(text: object) -> int:
    """``"30d"``, ``"1h 30min"``, ``"1.5h"``, ``"250ms"`` in whole ms."""
    return whole(text, "ms", high=(1 << 63) - 1)


def duration_s(text: object) -> int:
    """``"30 min"``, ``"1.5 h"``, ``"2000ms"`` in whole seconds (a u32)."""
    return whole(text, "s")


def volume_nl(text: object) -> int:
    """``"0.1 mL"``, ``"50uL"``, ``"200 nL"`` in whole nanolitres (a u32)."""
    return whole(text, "nL")


def dose_ng(text: object) -> int:
    """``"100 ug"``, ``"2.5 mg"``, ``"500 ng"`` in whole nanograms (a u32)."""
    return whole(text, "ng")


def length_mm(text: object) -> int:
    """A catheter length, ``"60cm"`` or ``"625 mm"``, in whole mm (1 to 65535)."""
    return whole(text, "mm", what="catheter length", low=1, high=0xFFFF)
