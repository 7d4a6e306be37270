"""Therapy program files: a program in human units (TOML), to PROGRAM fields and back.

A PROGRAM message is thirteen fields, three of them 24-entry arrays, in nL/day,
minutes of the day and day-of-week bit masks: nobody should type that. A
program file says the same thing the way a prescription does (a drug by name,
"25 mg/mL", "10 mg/day", "07:00", ["mon", "fri"]) and this module turns it
into the exact fields, or says which key of which file is wrong and why.

Every conversion is exact: numbers are read as fractions of integers, never
floats. A volume must come out as whole nanolitres and a duration as whole
seconds, or the file is refused (a value finer than the pump can represent is
a typing error, not something to round silently). The one place that rounds
is a dose turned into a volume with the concentration (a rate in "mg/day", a
patient bolus in "ug"): it rounds *down* to whole nL (whole nL/day for a
rate), so the programmed dose is never above the prescribed one and at most
1 nL (or 1 nL/day) below it; the firmware's drug library rounds the same way
(firmware/pump/limits.py volume_nl).

The file checks units and structure: what the PROGRAM fields can hold and
what the pump's program.validate() refuses as malformed. Whether a dose is
allowed is the pump's drug library's call (hard and soft limits), never the
bench's: a file can be valid and still be refused by the pump.

The same unit parser serves the command line (``pumpbench bolus --volume
0.1mL``): one grammar for volumes, doses and durations everywhere.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

from bench import units
from bench.link.errors import BenchError
from protocol import schema
from protocol.table import MODE_CONTINUOUS, MODE_FLEX, MODE_MINIMUM_RATE, MODE_STOPPED

# --- units ---------------------------------------------------------------------
# One grammar for every unit (bench/units.py): case-insensitive names, micro
# as u, µ or μ, mcg for ug, terms added ("1h 30min"), exact fractions.

U32_MAX = 0xFFFF_FFFF  # the widest PROGRAM and BOLUS field
MAX_DIGITS = units.MAX_DIGITS  # a number longer than this fits no field, in any unit
_SECONDS = {"d": 86_400, "h": 3_600, "min": 60, "s": 1}  # for format_duration
_TIME_OF_DAY = re.compile(r"(\d{1,2}):(\d{2})")


def _whole(value: Fraction, text: str, base: str) -> int:
    """The exact integer, which must also fit the 32-bit fields these values go in."""
    if value.denominator != 1:
        raise ValueError(f"{text!r} is not a whole number of {base}")
    if value.numerator > U32_MAX:
        raise ValueError(f"{text!r} is too large: at most {U32_MAX} {base}")
    return value.numerator


def parse_amount(text: object) -> tuple[str, Fraction]:
    """A volume or a drug amount: ``("volume", nL)`` or ``("dose", ng)``, exact.

    Decided by the unit, so "0.05 mL" and "100 ug" both work where the
    prescription may be written either way (a patient bolus, a rate).
    """
    if units.dimension_of(text) == "dose":
        return "dose", units.parse(text, "ng")
    names = "nL, uL or mL, or a drug amount in ng, ug (mcg) or mg"
    return "volume", units.parse(text, "nL", what="volume or drug amount", names=names)


def parse_concentration_ug_ml(text: object) -> int:
    """``"25 mg/mL"``, ``"500 ug/mL"`` in whole ug/mL (the PROGRAM field's unit)."""
    return units.whole(text, "ug/mL")


class NoConcentration(ValueError):
    """A drug amount cannot become a volume without a concentration above 0."""


def dose_to_nl(dose_ng: Fraction, conc_ug_ml: int) -> int:
    """The largest whole volume (nL) holding no more than ``dose_ng`` at ``conc_ug_ml``.

    Rounds down, as the firmware does: a prescription in drug amount is never
    exceeded. 1 nL of C ug/mL holds C/1000 ng.
    """
    if conc_ug_ml <= 0:
        raise NoConcentration("a drug amount needs a concentration; give a volume instead")
    exact = dose_ng * 1000 / conc_ug_ml
    volume = exact.numerator // exact.denominator
    if volume > U32_MAX:
        raise ValueError(f"{format_dose(dose_ng)} is too large a volume at this concentration")
    return volume


def parse_rate_nl_day(text: object, conc_ug_ml: int) -> int:
    """``"0.5 mL/day"``, ``"20 uL/h"`` or ``"10 mg/day"`` in nL/day.

    A volume rate must be whole nL/day; a dose rate is converted with the
    concentration and rounded down to whole nL/day (:func:`dose_to_nl`).
    """
    if units.dimension_of(text) == "dose/time":
        return dose_to_nl(units.parse(text, "ng/d"), conc_ug_ml)
    names = "a volume or drug amount per day or per h, e.g. '0.5 mL/day' or '10 mg/day'"
    return units.whole(text, "nL/d", what="rate", names=names)


def parse_time_of_day(text: object) -> int:
    """``"07:00"`` as the minute of the local day (0..1439)."""
    match = _TIME_OF_DAY.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a time of day: HH:MM, e.g. '07:00'")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if hours > 23 or minutes > 59:
        raise ValueError(f"{text!r} is not a time of day: 00:00 to 23:59")
    return hours * 60 + minutes


# --- formatting: fields back to the same units ---------------------------------


def _decimal(value: Fraction, places: int = 6) -> str:
    """Exact decimal text when it has at most ``places`` decimals, else rounded with '~'."""
    scaled = value * 10**places
    rounded = round(scaled)
    text = f"{abs(rounded) // 10**places}.{abs(rounded) % 10**places:0{places}d}"
    text = text.rstrip("0").rstrip(".")
    sign = "-" if rounded < 0 else ""
    return ("" if scaled == rounded else "~") + sign + text


def format_volume(nl: int) -> str:
    """nL as mL, exactly: 400_000 -> "0.4 mL"."""
    return f"{_decimal(Fraction(nl, 1_000_000))} mL"


def format_rate(nl_day: int) -> str:
    return f"{_decimal(Fraction(nl_day, 1_000_000))} mL/day"


def format_dose(ng: Fraction | int) -> str:
    """A drug amount in the largest unit that keeps it at least 1: mg, ug or ng."""
    ng = Fraction(ng)
    for unit, factor in (("mg", 1_000_000), ("ug", 1_000)):
        if abs(ng) >= factor:
            return f"{_decimal(ng / factor, 3)} {unit}"
    return f"{_decimal(ng, 3)} ng"


def dose_ng(volume_nl: int, conc_ug_ml: int) -> Fraction:
    """The drug in ``volume_nl`` at ``conc_ug_ml``, exactly (ng)."""
    return Fraction(volume_nl * conc_ug_ml, 1000)


def format_concentration(ug_ml: int) -> str:
    if ug_ml and ug_ml % 1000 == 0:
        return f"{ug_ml // 1000} mg/mL"
    return f"{ug_ml} ug/mL"


def format_duration(seconds: int) -> str:
    """Whole seconds in the fewest terms: 5400 -> "1 h 30 min"."""
    if seconds == 0:
        return "0 s"
    parts = []
    for unit in ("d", "h", "min", "s"):
        count, seconds = divmod(seconds, _SECONDS[unit])
        if count:
            parts.append(f"{count} {unit}")
    return " ".join(parts)


def format_time_of_day(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


# --- the program model -----------------------------------------------------------

# Drug ids of the pump's drug library (protocol/schema.py DRUGS; its limits
# are the firmware's). "none" is saline: concentration 0.
DRUGS = {name: drug_id for drug_id, name in schema.DRUGS}
DRUG_NAMES = {drug_id: name for name, drug_id in DRUGS.items()}

# The PROGRAM mode field (protocol/schema.py MODES), by index, as a file writes it.
MODES = tuple(name.lower() for _code, name in schema.MODES)

# Day-mask bits of a flex step: bit 0 Monday .. bit 6 Sunday; 0 = every day.
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# What firmware/pump/program.py accepts as a running rate (the mechanism's
# range) and as a patient-bolus count; mirrored so that a file gets a message
# naming its key instead of a BAD_PROGRAM with a field index.
MIN_RATE_NL_DAY = 48_000
MAX_RATE_NL_DAY = 24_000_000
MAX_PB_PER_DAY = 48
# The pump's reservoir (firmware/pump/reservoir.py DEFAULT_CAPACITY_NL): the
# low-reservoir alarm level must be below it.
RESERVOIR_CAPACITY_NL = 40_000_000

PROGRAM_FIELD_NAMES = tuple(name for name, _fmt, _unit in schema.PROGRAM_FIELDS)
FLEX_STEPS = next(int(fmt[:-1]) for name, fmt, _ in schema.PROGRAM_FIELDS if name == "flex_days")

TOP_KEYS = (
    "description",
    "drug",
    "concentration",
    "mode",
    "rate",
    "flex",
    "patient_bolus",
    "low_reservoir",
    "override_soft",
)
FLEX_KEYS = ("start", "rate", "days", "overnight")
PB_KEYS = ("dose", "lockout", "max_per_day")


def empty_fields() -> dict[str, Any]:
    """Every PROGRAM field at 0, arrays at their full length (the stopped program)."""
    fields: dict[str, Any] = {}
    for name, fmt, _unit in schema.PROGRAM_FIELDS:
        fields[name] = [0] * int(fmt[:-1]) if len(fmt) > 1 else 0
    return fields


class ProgramFileError(BenchError):
    """A program file is invalid; each problem is one line, ``file: key: problem``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


T = TypeVar("T")


class _Reader:
    """Collects every problem of one file, so a person fixes them in one go."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[str] = []
        # When the concentration itself is wrong, doses cannot be converted;
        # that is one problem (the concentration's), not one per dose.
        self.concentration_bad = False

    def problem(self, key: str, text: str) -> None:
        self.problems.append(f"{self.file}: {key}: {text}")

    def keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                known = ", ".join(allowed)
                self.problem(f"{where}{key}", f"unknown key{hint}; known keys: {known}")

    def value(self, key: str, raw: object, parse: Callable[[Any], T]) -> T | None:
        try:
            return parse(raw)
        except NoConcentration as exc:
            if not self.concentration_bad:
                self.problem(key, str(exc))
            return None
        except ValueError as exc:
            self.problem(key, str(exc))
            return None


def _drug(raw: object) -> int:
    if not isinstance(raw, str) or raw.lower() not in DRUGS:
        raise ValueError(f"unknown drug {raw!r}; the pump's library has {', '.join(DRUGS)}")
    return DRUGS[raw.lower()]


def _mode(raw: object) -> int:
    if not isinstance(raw, str) or raw.lower() not in MODES:
        raise ValueError(f"unknown mode {raw!r}; use {', '.join(MODES)}")
    return MODES.index(raw.lower())


def _running_rate(raw: object, conc_ug_ml: int) -> int:
    rate = parse_rate_nl_day(raw, conc_ug_ml)
    if not MIN_RATE_NL_DAY <= rate <= MAX_RATE_NL_DAY:
        raise ValueError(
            f"{format_rate(rate)} is outside what the pump runs: "
            f"{format_rate(MIN_RATE_NL_DAY)} to {format_rate(MAX_RATE_NL_DAY)}"
        )
    return rate


def _days(raw: object) -> int:
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"expected a list of days from {', '.join(DAYS)}, e.g. ['mon', 'fri']")
    mask = 0
    for day in raw:
        name = day.lower() if isinstance(day, str) else day
        if name not in DAYS:
            raise ValueError(f"unknown day {day!r}; use {', '.join(DAYS)}")
        if mask & 1 << DAYS.index(name):
            raise ValueError(f"{day!r} is listed twice")
        mask |= 1 << DAYS.index(name)
    return mask


def _count(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValueError(f"expected a whole number, got {raw!r}")
    if not 1 <= raw <= MAX_PB_PER_DAY:
        raise ValueError(f"{raw} is out of range 1..{MAX_PB_PER_DAY}")
    return raw


def _positive(parse: Callable[[Any], int], what: str) -> Callable[[Any], int]:
    def checked(raw: object) -> int:
        value = parse(raw)
        if value <= 0:
            raise ValueError(f"{what} must be more than 0")
        return value

    return checked


def _flex(reader: _Reader, fields: dict[str, Any], steps: object, conc: int) -> None:
    if not isinstance(steps, list) or not steps:
        reader.problem("flex", "a flex program needs a list of steps ([[flex]] tables)")
        return
    if len(steps) > FLEX_STEPS:
        reader.problem("flex", f"{len(steps)} steps; the pump holds at most {FLEX_STEPS}")
        return
    previous = -1
    for i, step in enumerate(steps):
        where = f"flex[{i}]"
        if not isinstance(step, dict):
            reader.problem(where, "expected a table with start, rate and days")
            continue
        reader.keys(step, FLEX_KEYS, f"{where}.")
        for key in ("start", "rate"):
            if key not in step:
                reader.problem(f"{where}.{key}", "missing")
        start = reader.value(f"{where}.start", step.get("start"), parse_time_of_day)
        if "start" in step and start is not None:
            if start <= previous:
                reader.problem(
                    f"{where}.start",
                    f"{step['start']} is not after the previous step's "
                    f"{format_time_of_day(previous)}; steps go in time order",
                )
            previous = start
            fields["flex_start_min"][i] = start
        if "rate" in step:
            rate = reader.value(f"{where}.rate", step["rate"], lambda r: _running_rate(r, conc))
            fields["flex_rate_nl_day"][i] = rate or 0
        if "days" in step:
            fields["flex_days"][i] = reader.value(f"{where}.days", step["days"], _days) or 0
        if "overnight" in step:
            # runs on past midnight until the next step (docs/pump.md 11.3)
            if not isinstance(step["overnight"], bool):
                reader.problem(f"{where}.overnight", "expected true or false")
            elif step["overnight"]:
                fields["flex_days"][i] |= schema.FLEX_OVERNIGHT
    fields["flex_count"] = len(steps)


def _patient_bolus(reader: _Reader, fields: dict[str, Any], table: object, conc: int) -> None:
    if not isinstance(table, dict):
        reader.problem("patient_bolus", "expected a table with dose, lockout and max_per_day")
        return
    reader.keys(table, PB_KEYS, "patient_bolus.")
    for key in PB_KEYS:
        if key not in table:
            reader.problem(f"patient_bolus.{key}", "missing")
    if "dose" in table:
        dose = reader.value("patient_bolus.dose", table["dose"], lambda r: _bolus_nl(r, conc))
        fields["pb_dose_nl"] = dose or 0
    if "lockout" in table:
        lockout = _positive(units.duration_s, "the lockout")
        fields["pb_lockout_s"] = (
            reader.value("patient_bolus.lockout", table["lockout"], lockout) or 0
        )
    if "max_per_day" in table:
        count = reader.value("patient_bolus.max_per_day", table["max_per_day"], _count)
        fields["pb_max_per_day"] = count or 0


def _bolus_nl(raw: object, conc_ug_ml: int) -> int:
    kind, value = parse_amount(raw)
    volume = _whole(value, str(raw), "nL") if kind == "volume" else dose_to_nl(value, conc_ug_ml)
    if volume <= 0:
        raise ValueError(f"{raw!r} is no volume at all at this concentration")
    return volume


def _low_reservoir(raw: object) -> int:
    volume = units.volume_nl(raw)
    if not 0 < volume < RESERVOIR_CAPACITY_NL:
        raise ValueError(
            f"{raw!r} must be more than 0 and below the reservoir's "
            f"{format_volume(RESERVOIR_CAPACITY_NL)}"
        )
    return volume


def _bool(raw: object) -> bool:
    if not isinstance(raw, bool):
        raise ValueError(f"expected true or false, got {raw!r}")
    return raw


def _description(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected text, got {raw!r}")
    return raw


def _required(
    reader: _Reader, data: Mapping[str, Any], key: str, parse: Callable[[Any], T]
) -> T | None:
    """The parsed value, or None (with a problem) when missing or bad."""
    if key not in data:
        reader.problem(key, "missing")
        return None
    return reader.value(key, data[key], parse)


def _rate_key(reader: _Reader, fields: dict[str, Any], data: Mapping[str, Any], conc: int) -> None:
    """``rate``: required for continuous, optional for flex, refused otherwise."""
    mode = fields["mode"]
    if "rate" not in data:
        if mode == MODE_CONTINUOUS:
            reader.problem("rate", "missing; a continuous program needs a rate")
        return
    if mode in (MODE_STOPPED, MODE_MINIMUM_RATE):
        runs = "nothing" if mode == MODE_STOPPED else f"{format_rate(MIN_RATE_NL_DAY)} always"
        reader.problem("rate", f"a {MODES[mode]} program runs {runs}; remove rate")
        return
    rate = reader.value("rate", data["rate"], lambda r: _running_rate(r, conc))
    fields["basal_nl_day"] = rate or 0


def parse_program(data: Mapping[str, Any], file: str | Path = "<program>") -> dict[str, Any]:
    """PROGRAM fields from a program file's table; raises ProgramFileError with every problem."""
    reader = _Reader(str(file))
    reader.keys(data, TOP_KEYS, "")
    fields = empty_fields()
    if "description" in data:
        reader.value("description", data["description"], _description)
    drug = _required(reader, data, "drug", _drug)
    conc = _required(reader, data, "concentration", parse_concentration_ug_ml)
    mode = _required(reader, data, "mode", _mode)
    fields["drug_id"] = drug or 0
    fields["conc_ug_ml"] = conc or 0
    fields["mode"] = mode or 0
    if drug == DRUGS["none"] and conc:
        reader.problem("concentration", "drug 'none' (saline) has concentration 0 ug/mL")
    if drug is not None and drug != DRUGS["none"] and conc == 0:
        reader.problem("concentration", f"{data['drug']} needs a concentration above 0")
    reader.concentration_bad = conc is None
    conc = conc or 0
    if mode is not None:  # else which rates belong is unknown: mode's problem says so
        _rate_key(reader, fields, data, conc)
        if mode == MODE_FLEX:
            _flex(reader, fields, data.get("flex"), conc)
        elif "flex" in data:
            reader.problem("flex", f"flex steps need mode = 'flex' (this is {MODES[mode]})")
    if "patient_bolus" in data:
        _patient_bolus(reader, fields, data["patient_bolus"], conc)
    if "low_reservoir" in data:
        fields["low_reservoir_nl"] = (
            reader.value("low_reservoir", data["low_reservoir"], _low_reservoir) or 0
        )
    if "override_soft" in data:
        override = reader.value("override_soft", data["override_soft"], _bool)
        fields["override_soft"] = 1 if override else 0
    if reader.problems:
        raise ProgramFileError(reader.problems)
    return fields


def loads(text: str, file: str | Path = "<program>") -> dict[str, Any]:
    """PROGRAM fields from program-file text (TOML)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProgramFileError([f"{file}: (toml): {exc}"]) from None
    except ValueError as exc:  # tomllib's int() of a number thousands of digits long
        raise ProgramFileError(
            [f"{file}: (toml): {str(exc).split(';')[0]}: no program field holds such a number"]
        ) from None
    return parse_program(data, file)


def load_program(path: str | Path) -> dict[str, Any]:
    """PROGRAM fields from a program file; every problem names the file and key."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ProgramFileError([f"{path}: cannot read ({exc.strerror or exc})"]) from None
    except UnicodeDecodeError as exc:
        raise ProgramFileError([f"{path}: not UTF-8 text ({exc.reason})"]) from None
    return loads(text, path)


# --- fields back to a readable program -------------------------------------------


def days_names(mask: int) -> list[str]:
    return [day for bit, day in enumerate(DAYS) if mask & 1 << bit]


def describe(fields: Mapping[str, Any]) -> dict[str, Any]:
    """PROGRAM fields as a program-file table: parse_program(describe(f)) == f.

    Volumes and rates come back as exact volumes (mL, mL/day), never as
    doses, because a dose would round again on the way back in.
    """
    drug_id = fields["drug_id"]
    readable: dict[str, Any] = {
        "drug": DRUG_NAMES.get(drug_id, f"drug {drug_id}"),
        "concentration": format_concentration(fields["conc_ug_ml"]),
        "mode": MODES[fields["mode"]] if fields["mode"] < len(MODES) else f"mode {fields['mode']}",
    }
    if fields["basal_nl_day"]:
        readable["rate"] = format_rate(fields["basal_nl_day"])
    if fields["mode"] == MODE_FLEX:
        steps = []
        for i in range(fields["flex_count"]):
            step: dict[str, Any] = {
                "start": format_time_of_day(fields["flex_start_min"][i]),
                "rate": format_rate(fields["flex_rate_nl_day"][i]),
            }
            if fields["flex_days"][i] & ~schema.FLEX_OVERNIGHT:
                step["days"] = days_names(fields["flex_days"][i])
            if fields["flex_days"][i] & schema.FLEX_OVERNIGHT:
                step["overnight"] = True
            steps.append(step)
        readable["flex"] = steps
    if fields["pb_dose_nl"] or fields["pb_max_per_day"]:
        readable["patient_bolus"] = {
            "dose": format_volume(fields["pb_dose_nl"]),
            "lockout": format_duration(fields["pb_lockout_s"]),
            "max_per_day": fields["pb_max_per_day"],
        }
    if fields["low_reservoir_nl"]:
        readable["low_reservoir"] = format_volume(fields["low_reservoir_nl"])
    readable["override_soft"] = bool(fields["override_soft"])
    return readable


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def to_toml(readable: Mapping[str, Any]) -> str:
    """A program-file text for :func:`describe`'s table (saving what a pump runs)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in readable.items() if not isinstance(v, dict)]
    lines = [line for line in lines if not line.startswith("flex = ")]
    if "patient_bolus" in readable:
        lines += ["", "[patient_bolus]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in readable["patient_bolus"].items()]
    for step in readable.get("flex", []):
        lines += ["", "[[flex]]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in step.items()]
    return "\n".join(lines) + "\n"


def volume_text(volume_nl: int, conc_ug_ml: int) -> str:
    """ "0.05 mL (1.25 mg)": the volume, and the drug it holds when there is a drug."""
    text = format_volume(volume_nl)
    if conc_ug_ml and volume_nl:
        text += f" ({format_dose(dose_ng(volume_nl, conc_ug_ml))})"
    return text


def rate_text(rate_nl_day: int, conc_ug_ml: int) -> str:
    """ "0.4 mL/day (10 mg/day)"."""
    text = format_rate(rate_nl_day)
    if conc_ug_ml and rate_nl_day:
        text += f" ({format_dose(dose_ng(rate_nl_day, conc_ug_ml))}/day)"
    return text


def summary_rows(fields: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows for a person: volumes with the dose they hold.

    Labels are stable, so two programs can be shown side by side row by row.
    """
    conc = fields["conc_ug_ml"]
    mode = fields["mode"]
    readable = describe(fields)
    rows = [
        ("drug", readable["drug"]),
        ("concentration", readable["concentration"]),
        ("mode", readable["mode"]),
    ]
    if mode == MODE_MINIMUM_RATE:
        rows.append(("rate", f"{rate_text(MIN_RATE_NL_DAY, conc)}, the minimum"))
    else:
        label = "background rate" if mode == MODE_FLEX else "rate"
        rows.append((label, rate_text(fields["basal_nl_day"], conc)))
    if mode == MODE_FLEX:
        for i in range(fields["flex_count"]):
            mask = fields["flex_days"][i]
            days = ",".join(days_names(mask)) if mask & ~schema.FLEX_OVERNIGHT else "every day"
            start = format_time_of_day(fields["flex_start_min"][i])
            rate = rate_text(fields["flex_rate_nl_day"][i], conc)
            night = ", on past midnight" if mask & schema.FLEX_OVERNIGHT else ""
            rows.append((f"flex step {i + 1}", f"{start} {days}{night}: {rate}"))
    if fields["pb_dose_nl"]:
        rows += [
            ("patient bolus", volume_text(fields["pb_dose_nl"], conc)),
            ("pb lockout", format_duration(fields["pb_lockout_s"])),
            ("pb max per day", str(fields["pb_max_per_day"])),
        ]
    else:
        rows.append(("patient bolus", "off"))
    low = fields["low_reservoir_nl"]
    rows.append(("low reservoir", format_volume(low) if low else "pump default"))
    rows.append(("override soft", "yes" if fields["override_soft"] else "no"))
    return rows
