"""Program files and the unit grammar: parsing, validation, conversion and back.

No board here: a bad program file must be caught before one is touched, and
every conversion is checked against hand-worked integers.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from bench import units
from bench.link.client import program_crc
from bench.program import file as pf
from bench.program.file import ProgramFileError, load_program, loads
from protocol import schema

PROGRAMS = Path(__file__).resolve().parents[2] / "bench" / "programs"

MORPHINE = """\
drug = "morphine"
concentration = "25 mg/mL"
mode = "continuous"
rate = "10 mg/day"
low_reservoir = "2 mL"

[patient_bolus]
dose = "0.5 mg"
lockout = "30 min"
max_per_day = 4
"""

FLEX = """\
drug = "baclofen"
concentration = "500 ug/mL"
mode = "flex"
rate = "0.8 mL/day"

[[flex]]
start = "07:00"
rate = "600 ug/day"
days = ["mon", "fri", "sun"]

[[flex]]
start = "22:30"
rate = "20 uL/h"
"""


def problems(text: str, file: str = "p.toml") -> list[str]:
    with pytest.raises(ProgramFileError) as caught:
        loads(text, file)
    return caught.value.problems


# --- the unit grammar ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "nl"),
    [
        ("0.1 mL", 100_000),
        ("0.1mL", 100_000),
        ("50 uL", 50_000),
        ("50 µL", 50_000),
        ("200 nL", 200_000 // 1000),
        ("1.5ml", 1_500_000),
        ("1 mL 500 uL", 1_500_000),
        (".25 mL", 250_000),
    ],
)
def test_volumes_are_exact_nanolitres(text: str, nl: int) -> None:
    assert units.volume_nl(text) == nl


@pytest.mark.parametrize(
    ("text", "ng"),
    [("100 ug", 100_000), ("100mcg", 100_000), ("2.5 mg", 2_500_000), ("7 ng", 7)],
)
def test_doses_are_exact_nanograms(text: str, ng: int) -> None:
    assert units.dose_ng(text) == ng


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30 min", 1800), ("1h 30min", 5400), ("1.5 h", 5400), ("2d", 172_800), ("45 s", 45)],
)
def test_durations_are_exact_seconds(text: str, seconds: int) -> None:
    assert units.duration_s(text) == seconds


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (units.volume_nl, "0.1", "is not a volume: a number with a unit (nL, uL or mL)"),
        (units.volume_nl, "0.0000001 mL", "is not a whole number of nL"),
        (units.volume_nl, "1 L", "unknown unit 'L'"),
        (units.volume_nl, "100 ug", "is a drug amount, not a volume"),
        (units.dose_ng, "0.5 ng", "is not a whole number of ng"),
        (units.duration_s, "5 m", "(minutes are min)"),
        (units.duration_s, "0.5 s", "is not a whole number of s"),
        (units.duration_s, "", "expected a duration as text"),
    ],
)
def test_bad_quantities_say_why(parse: object, text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse(text)  # type: ignore[operator]
    assert message in str(caught.value)


def test_concentrations_and_rates_convert_with_integer_maths() -> None:
    assert pf.parse_concentration_ug_ml("25 mg/mL") == 25_000
    assert pf.parse_concentration_ug_ml("500 ug/mL") == 500
    assert pf.parse_concentration_ug_ml("0.5 mg/mL") == 500
    assert pf.parse_concentration_ug_ml("1 ug/uL") == 1_000
    # 10 mg/day at 25 mg/mL is 0.4 mL/day exactly
    assert pf.parse_rate_nl_day("10 mg/day", 25_000) == 400_000
    assert pf.parse_rate_nl_day("0.5 mL/day", 0) == 500_000
    assert pf.parse_rate_nl_day("20 uL/h", 0) == 480_000
    assert pf.parse_rate_nl_day("2.4 ug/d", 25) == 96_000
    # 1 mg/day at 30 mg/mL is 33,333.33 nL/day: rounded down, never more drug
    assert pf.parse_rate_nl_day("1 mg/day", 30_000) == 33_333
    assert pf.dose_to_nl(Fraction(100_000), 3) == 33_333_333


def test_a_dose_needs_a_concentration() -> None:
    with pytest.raises(ValueError, match="needs a concentration"):
        pf.parse_rate_nl_day("1 mg/day", 0)


def test_formatting_is_exact_and_says_when_it_rounds() -> None:
    assert pf.format_volume(400_000) == "0.4 mL"
    assert pf.format_volume(1) == "0.000001 mL"
    assert pf.format_volume(-50_000) == "-0.05 mL"
    assert pf.format_rate(20_000_000) == "20 mL/day"
    assert pf.format_dose(10_000_000) == "10 mg"
    assert pf.format_dose(Fraction(2_425)) == "2.425 ug"
    assert pf.format_dose(Fraction(1, 3)) == "~0.333 ng"
    assert pf.format_duration(5400) == "1 h 30 min"
    assert pf.format_concentration(25_000) == "25 mg/mL"
    assert pf.format_concentration(500) == "500 ug/mL"


# --- files to PROGRAM fields -----------------------------------------------------------


def test_continuous_program_fields() -> None:
    fields = loads(MORPHINE)
    assert fields == {
        **pf.empty_fields(),
        "drug_id": 1,
        "conc_ug_ml": 25_000,
        "mode": 1,
        "basal_nl_day": 400_000,
        "pb_dose_nl": 20_000,  # 0.5 mg at 25 mg/mL
        "pb_lockout_s": 1800,
        "pb_max_per_day": 4,
        "low_reservoir_nl": 2_000_000,
        "override_soft": 0,
    }
    # every schema field, arrays at full length: ready for PROGRAM as they are
    assert list(fields) == [name for name, _fmt, _unit in schema.PROGRAM_FIELDS]
    assert all(len(fields[k]) == 24 for k in ("flex_start_min", "flex_rate_nl_day", "flex_days"))


def test_flex_program_fields_padded_to_24() -> None:
    fields = loads(FLEX)
    assert fields["mode"] == 2
    assert fields["basal_nl_day"] == 800_000
    assert fields["flex_count"] == 2
    assert fields["flex_start_min"] == [420, 1350] + [0] * 22
    assert fields["flex_rate_nl_day"] == [1_200_000, 480_000] + [0] * 22
    assert fields["flex_days"] == [0b1010001, 0] + [0] * 22  # mon, fri, sun; every day


def test_minimum_rate_and_saline() -> None:
    fields = loads('drug = "ziconotide"\nconcentration = "25 ug/mL"\nmode = "minimum_rate"\n')
    assert (fields["mode"], fields["basal_nl_day"]) == (3, 0)
    saline = loads(
        'drug = "none"\nconcentration = "0 ug/mL"\nmode = "continuous"\nrate = "1 mL/day"\n'
    )
    assert (saline["drug_id"], saline["conc_ug_ml"], saline["basal_nl_day"]) == (0, 0, 1_000_000)


def test_every_problem_names_file_key_and_problem() -> None:
    text = """\
drug = "morfine"
concentration = "25 mg/mL"
mode = "flex"
rate = "0.01 mL/day"
lowreservoir = "2 mL"
override_soft = "yes"

[[flex]]
start = "22:00"
rate = "1 mL"
days = ["mon", "xyz"]

[[flex]]
start = "07:00"

[patient_bolus]
dose = "0.1"
lockout = 30
"""
    assert problems(text) == [
        "p.toml: lowreservoir: unknown key (did you mean 'low_reservoir'?); known keys: "
        "description, drug, concentration, mode, rate, flex, patient_bolus, low_reservoir, "
        "override_soft",
        "p.toml: drug: unknown drug 'morfine'; the pump's library has none, morphine, "
        "hydromorphone, ziconotide, baclofen, bupivacaine, clonidine, sufentanil",
        "p.toml: rate: 0.01 mL/day is outside what the pump runs: 0.048 mL/day to 24 mL/day",
        "p.toml: flex[0].rate: '1 mL' is a volume, not a rate; use a volume or drug amount "
        "per day or per h, "
        "e.g. '0.5 mL/day' or '10 mg/day'",
        "p.toml: flex[0].days: unknown day 'xyz'; use mon, tue, wed, thu, fri, sat, sun",
        "p.toml: flex[1].rate: missing",
        "p.toml: flex[1].start: 07:00 is not after the previous step's 22:00; "
        "steps go in time order",
        "p.toml: patient_bolus.max_per_day: missing",
        "p.toml: patient_bolus.dose: '0.1' is not a volume or drug amount: a number with a "
        "unit (nL, uL or mL, or a drug amount in ng, ug (mcg) or mg)",
        "p.toml: patient_bolus.lockout: 30 is not a duration: a number with a unit "
        "(ms, s, min, h or d)",
        "p.toml: override_soft: expected true or false, got 'yes'",
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('mode = "continuous"', "p.toml: rate: missing; a continuous program needs a rate"),
        ('mode = "minimum_rate"\nrate = "1 mL/day"', "p.toml: rate: a minimum_rate program runs"),
        (
            'mode = "continuous"\nrate = "1 mL/day"\n[[flex]]\nstart = "07:00"\nrate = "1 mL/day"',
            "p.toml: flex: flex steps need mode = 'flex' (this is continuous)",
        ),
        ('mode = "flex"', "p.toml: flex: a flex program needs a list of steps"),
        (
            'mode = "continuous"\nrate = "1 mL/day"\n[patient_bolus]\ndose = "1 uL"\n'
            'lockout = "100000 d"\nmax_per_day = 1',
            "p.toml: patient_bolus.lockout: '100000 d' is too large: at most 4294967295 s",
        ),
        ('mode = "paused"', "p.toml: mode: unknown mode 'paused'"),
        ('mode = "continuous"\nrate = "25 mL/day"', "p.toml: rate: 25 mL/day is outside"),
        (
            'mode = "continuous"\nrate = "1 mL/day"\nlow_reservoir = "40 mL"',
            "p.toml: low_reservoir: '40 mL' must be more than 0 and below",
        ),
        (
            'mode = "continuous"\nrate = "1 mL/day"\n[patient_bolus]\ndose = "1 uL"\n'
            'lockout = "0 s"\nmax_per_day = 49',
            "p.toml: patient_bolus.lockout: the lockout must be more than 0",
        ),
    ],
)
def test_structure_problems(body: str, expected: str) -> None:
    found = problems(f'drug = "morphine"\nconcentration = "10 mg/mL"\n{body}\n')
    assert any(p.startswith(expected) for p in found), found


def test_flex_step_limits() -> None:
    steps = "".join(f'[[flex]]\nstart = "{h:02d}:00"\nrate = "1 mL/day"\n' for h in range(24))
    head = 'drug = "none"\nconcentration = "0 ug/mL"\nmode = "flex"\n'
    assert loads(head + steps)["flex_count"] == 24
    extra = '[[flex]]\nstart = "23:30"\nrate = "1 mL/day"\n'
    assert problems(head + steps + extra) == ["p.toml: flex: 25 steps; the pump holds at most 24"]


def test_a_bad_concentration_is_one_problem_not_one_per_dose() -> None:
    text = MORPHINE.replace('"25 mg/mL"', '"25 mg"')
    assert problems(text) == [
        "p.toml: concentration: '25 mg' is a drug amount, not a concentration; "
        "use ng, ug or mg per nL, uL or mL"
    ]
    saline_dose = 'drug = "none"\nconcentration = "0 ug/mL"\nmode = "continuous"\nrate = "1 mg/day"'
    assert problems(saline_dose) == [
        "p.toml: rate: a drug amount needs a concentration; give a volume instead"
    ]


def test_toml_syntax_and_unreadable_files(tmp_path: Path) -> None:
    found = problems('drug = "morphine\n', "bad.toml")
    assert len(found) == 1 and found[0].startswith("bad.toml: (toml): ")
    assert "line 1" in found[0]
    with pytest.raises(ProgramFileError) as caught:
        load_program(tmp_path / "missing.toml")
    assert caught.value.problems[0].startswith(f"{tmp_path / 'missing.toml'}: cannot read")


# --- and back ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", [MORPHINE, FLEX])
def test_fields_round_trip_through_the_readable_form(text: str) -> None:
    fields = loads(text)
    readable = pf.describe(fields)
    assert pf.parse_program(readable) == fields
    assert loads(pf.to_toml(readable)) == fields


def test_describe_gives_volumes_not_doses() -> None:
    readable = pf.describe(loads(MORPHINE))
    assert readable == {
        "drug": "morphine",
        "concentration": "25 mg/mL",
        "mode": "continuous",
        "rate": "0.4 mL/day",
        "patient_bolus": {"dose": "0.02 mL", "lockout": "30 min", "max_per_day": 4},
        "low_reservoir": "2 mL",
        "override_soft": False,
    }


def test_summary_rows_show_the_dose_beside_the_volume() -> None:
    rows = dict(pf.summary_rows(loads(FLEX)))
    assert rows["background rate"] == "0.8 mL/day (400 ug/day)"
    assert rows["flex step 1"] == "07:00 mon,fri,sun: 1.2 mL/day (600 ug/day)"
    assert rows["flex step 2"] == "22:30 every day: 0.48 mL/day (240 ug/day)"
    assert rows["patient bolus"] == "off"
    assert rows["low reservoir"] == "pump default"
    stopped = dict(pf.summary_rows(pf.empty_fields()))
    assert stopped["mode"] == "stopped" and stopped["drug"] == "none"


# --- the shipped examples ---------------------------------------------------------------


def test_shipped_examples_load_and_round_trip() -> None:
    files = sorted(PROGRAMS.glob("*.toml"))
    assert {f.stem for f in files} >= {"morphine-continuous", "baclofen-flex", "ziconotide-start"}
    for path in files:
        fields = load_program(path)
        assert loads(pf.to_toml(pf.describe(fields))) == fields, path
    morphine = load_program(PROGRAMS / "morphine-continuous.toml")
    assert (morphine["basal_nl_day"], morphine["pb_dose_nl"]) == (500_000, 50_000)
    ziconotide = load_program(PROGRAMS / "ziconotide-start.toml")
    assert (ziconotide["conc_ug_ml"], ziconotide["basal_nl_day"]) == (25, 96_000)


def test_program_crc_is_the_crc_of_the_packed_payload() -> None:
    import zlib

    from protocol import codec

    fields = loads(MORPHINE)
    wire = codec.MESSAGE_TYPES["PROGRAM"].request.build(fields)
    assert program_crc(fields) == zlib.crc32(wire)
    assert program_crc(pf.empty_fields()) == zlib.crc32(bytes(len(wire)))


def test_an_overnight_flex_step_is_one_step_across_midnight() -> None:
    text = (
        'drug = "baclofen"\nconcentration = "2000 ug/mL"\nmode = "flex"\nrate = "400 ug/day"\n'
        '[[flex]]\nstart = "02:00"\nrate = "400 ug/day"\n'
        '[[flex]]\nstart = "22:00"\nrate = "800 ug/day"\novernight = true\n'
        'days = ["fri", "sat"]\n'
    )
    fields = loads(text)
    assert fields["flex_count"] == 2
    assert fields["flex_days"][:2] == [0, schema.FLEX_OVERNIGHT | 0b0110000]
    readable = pf.describe(fields)
    assert readable["flex"][1]["overnight"] is True
    assert readable["flex"][1]["days"] == ["fri", "sat"]
    assert loads(pf.to_toml(readable)) == fields
    with pytest.raises(ProgramFileError, match="overnight: expected true or false"):
        loads(text.replace("overnight = true", 'overnight = "yes"'))
