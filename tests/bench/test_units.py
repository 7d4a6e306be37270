"""One unit grammar (bench/units.py) for scenario files, program files and the CLI.

The property: a quantity written with any spelling of any unit means the same
in every place that takes that kind of quantity. Each context either returns
the exact value (in its own field's unit) or, when the value does not fit the
field (finer than the field's unit, or too large), refuses it, saying so; no
context refuses a unit another accepts.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bench import units
from bench.cli import common as cli
from bench.cli import rig as rigcli
from bench.program.file import ProgramFileError, loads
from bench.scenario.load import ScenarioError, parse_scenario

# Independent of bench/units.py: how many base units (nL, ng, ms, mm) one of each is.
FACTORS = {
    "volume": {"nL": 1, "uL": 1_000, "µL": 1_000, "μL": 1_000, "mL": 1_000_000},
    "dose": {"ng": 1, "ug": 1_000, "mcg": 1_000, "µg": 1_000, "μg": 1_000, "mg": 1_000_000},
    "time": {
        "ms": 1,
        "s": 1_000,
        "sec": 1_000,
        "min": 60_000,
        "h": 3_600_000,
        "d": 86_400_000,
        "day": 86_400_000,
    },
    "length": {"mm": 1, "cm": 10},
}
U32 = 0xFFFF_FFFF

HEAD = """\
id: units
title: Units
steps:
"""


def _scenario(step: str) -> Any:
    try:
        return parse_scenario(HEAD + f"  - {step}\n", "u.yaml").steps[0]
    except ScenarioError as exc:
        raise ValueError(str(exc)) from None


def _program(patient_bolus: str) -> dict[str, int]:
    text = (
        'drug = "morphine"\nconcentration = "1 mg/mL"\nmode = "continuous"\n'
        f'rate = "1 mL/day"\n[patient_bolus]\n{patient_bolus}\n'
    )
    try:
        return loads(text)
    except ProgramFileError as exc:
        raise ValueError(str(exc)) from None


def _cli(parse: Callable[[str], int]) -> Callable[[str], int]:
    def run(text: str) -> int:
        try:
            return parse(text)
        except argparse.ArgumentTypeError as exc:
            raise ValueError(str(exc)) from None

    return run


def _q(text: str) -> str:
    return json.dumps(text)  # a YAML and TOML string


# (where, parse to the field's integer, base units per field unit, largest field value)
Context = tuple[str, Callable[[str], int | float], int, int]
CONTEXTS: dict[str, list[Context]] = {
    "time": [
        (
            "scenario advance.duration",
            lambda t: _scenario(f"advance: {{duration: {_q(t)}}}").duration_ms,
            1,
            1 << 62,
        ),
        (
            "scenario bolus.duration",
            lambda t: _scenario(f"bolus: {{volume: 1 uL, duration: {_q(t)}}}").duration_s,
            1_000,
            U32,
        ),
        (
            "scenario measure.max (ms)",
            lambda t: (
                _scenario(f"measure: {{name: v, from: device_time, unit: ms, max: {_q(t)}}}").max
            ),
            1,
            1 << 62,
        ),
        (
            "program patient_bolus.lockout",
            lambda t: _program(f'dose = "1 uL"\nlockout = {_q(t)}\nmax_per_day = 1')[
                "pb_lockout_s"
            ],
            1_000,
            U32,
        ),
        ("cli bolus --duration", _cli(cli._duration), 1_000, U32),
        ("cli run --max-device-time", _cli(cli._device_time), 1, 1 << 62),
        ("cli rig advance", _cli(rigcli.duration_ms), 1, 1 << 62),
    ],
    "volume": [
        (
            "scenario bolus.volume",
            lambda t: _scenario(f"bolus: {{volume: {_q(t)}}}").volume_nl,
            1,
            U32,
        ),
        (
            "scenario refill.volume",
            lambda t: _scenario(f"refill: {{volume: {_q(t)}}}").volume_nl,
            1,
            U32,
        ),
        (
            "scenario measure.min (nL)",
            lambda t: (
                _scenario(f"measure: {{name: v, from: tip_volume, unit: nL, min: {_q(t)}}}").min
            ),
            1,
            1 << 62,
        ),
        # 1 mg/mL: 1 nL holds 1 ng, so a dose and a volume give the same nL here
        (
            "program patient_bolus.dose",
            lambda t: _program(f'dose = {_q(t)}\nlockout = "1 h"\nmax_per_day = 1')["pb_dose_nl"],
            1,
            U32,
        ),
        ("cli bolus --volume", _cli(cli._volume), 1, U32),
        ("cli rig fill --volume", _cli(rigcli.volume_nl), 1, U32),
    ],
    "dose": [
        ("scenario bolus.dose", lambda t: _scenario(f"bolus: {{dose: {_q(t)}}}").dose_ng, 1, U32),
        # a drug amount becomes whole nL, rounded down (never above the prescription)
        (
            "program patient_bolus.dose (rounds down)",
            lambda t: _program(f'dose = {_q(t)}\nlockout = "1 h"\nmax_per_day = 1')["pb_dose_nl"],
            1,
            U32,
        ),
        ("cli bolus --dose", _cli(cli._dose), 1, U32),
    ],
    "length": [
        (
            "scenario bolus.catheter",
            lambda t: _scenario(f"bolus: {{kind: priming, catheter: {_q(t)}}}").catheter_mm,
            1,
            0xFFFF,
        ),
        ("cli catheter --length", _cli(cli._length), 1, 0xFFFF),
    ],
}
FIT_REFUSALS = ("not a whole number", "too large")


def _spelling(name: str, case: int) -> str:
    return (name, name.lower(), name.upper())[case]


@st.composite
def quantities(draw: st.DrawFn) -> tuple[str, str, Fraction]:
    """(kind, text, exact value in base units): one or two terms, any spelling."""
    kind = draw(st.sampled_from(sorted(FACTORS)))
    terms, total = [], Fraction(0)
    for _ in range(draw(st.integers(1, 2))):
        name = draw(st.sampled_from(sorted(FACTORS[kind])))
        places = draw(st.integers(0, 3))
        number = Fraction(draw(st.integers(1, 99_999)), 10**places)
        digits = f"{float(number):.{places}f}" if places else str(number)
        space = draw(st.sampled_from(["", " "]))
        terms.append(f"{digits}{space}{_spelling(name, draw(st.integers(0, 2)))}")
        total += number * FACTORS[kind][name]
    return kind, " ".join(terms), total


def test_the_table_knows_every_spelling_the_test_does() -> None:
    for kind, names in FACTORS.items():
        assert sorted(n.lower() for n in names) == sorted(units.spellings(kind)), kind


@settings(max_examples=150, deadline=None)
@given(quantities())
@example(("dose", "0.1ng 4295mg", Fraction(1, 10) + 4_295_000_000))  # rounds down, but too large
def test_a_quantity_means_the_same_in_every_context(sample: tuple[str, str, Fraction]) -> None:
    kind, text, base = sample
    for where, parse, per_field, largest in CONTEXTS[kind]:
        value = base / per_field
        if where.endswith("(rounds down)") and value.denominator != 1 and value <= largest:
            if value >= 1:
                assert parse(text) == value.numerator // value.denominator, (where, text)
            else:
                with pytest.raises(ValueError, match="no volume at all"):
                    parse(text)
        elif where.startswith("scenario measure"):  # a limit is exact, not a field
            expected: int | float = value.numerator if value.denominator == 1 else float(value)
            assert parse(text) == expected, (where, text)
        elif value.denominator == 1 and value <= largest:
            assert parse(text) == value.numerator, (where, text)
        else:
            with pytest.raises(ValueError) as caught:
                parse(text)
            assert any(why in str(caught.value) for why in FIT_REFUSALS), (where, caught.value)
            assert "\n" not in str(caught.value)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(sorted(FACTORS)),
    st.sampled_from(["m", "L", "kg", "days", "mmHg", "V", "%", "uL", "ng", "ms", "cm"]),
    st.integers(1, 999),
)
def test_a_unit_of_another_kind_is_refused_everywhere(kind: str, name: str, number: int) -> None:
    if name.lower() in {n.lower() for n in FACTORS[kind]}:
        return
    text = f"{number} {name}"
    for where, parse, _per, _largest in CONTEXTS[kind]:
        if "patient_bolus.dose" in where and name in {"uL", "ng"}:
            continue  # a patient bolus is a volume or a drug amount
        with pytest.raises(ValueError) as caught:
            parse(text)
        message = str(caught.value)
        assert "unknown unit" in message or "not a" in message, (where, message)
        assert "\n" not in message, where


# --- where the grammars disagreed: one unit grammar everywhere ------------------------


def test_a_measurement_limit_takes_the_units_a_refill_takes() -> None:
    refill = _scenario("refill: {volume: 20 ml}")
    measure = _scenario("measure: {name: v, from: tip_volume, unit: uL, min: 60 ul}")
    assert refill.volume_nl == 20_000_000
    assert measure.min == 60


def test_advance_takes_the_durations_a_bolus_takes() -> None:
    assert _scenario("bolus: {volume: 1 uL, duration: 1.5h}").duration_s == 5_400
    assert _scenario("advance: {duration: 1.5h}").duration_ms == 5_400_000


def test_a_catheter_length_is_exact() -> None:
    # 62.5 cm in binary floating point is fine; 0.1 + 0.2 style sums must be too
    assert units.length_mm("62.5cm") == 625
    assert units.length_mm("60.1 cm") == 601
    assert cli._length("60.1") == 601
    with pytest.raises(ValueError, match="not a whole number of mm"):
        units.length_mm("60.05 cm")


def test_no_other_module_parses_units() -> None:
    bench = Path(units.__file__).parent
    assert not (bench / "quantities.py").exists()
    for path in bench.glob("*.py"):
        if path.name == "units.py":
            continue
        text = path.read_text()
        for marker in ("DURATION_UNITS", "VOLUME_UNITS", "DOSE_UNITS", "float(number)"):
            assert marker not in text, f"{path.name} has its own unit table ({marker})"
