"""Run records and the report files written from them.

The runner fills plain dataclasses; this module turns one run into the three
files a person or a CI server reads: ``results.json`` (everything, one
record per run, for tools and for the design history file), ``junit.xml``
(what CI servers display) and ``summary.txt`` (what a person reads first).
Writing is kept apart from running so that a report can never change an
outcome.
"""

from __future__ import annotations

import json
import platform
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from importlib import metadata
from pathlib import Path
from typing import Any

from protocol import schema

RESULTS_FORMAT = "pumpbench-results/1"


class Outcome(StrEnum):
    """How a scenario ended. ERROR (the bench) is never merged into FAIL (the pump)."""

    PASS = "PASS"
    SKIP = "SKIP"  # not applicable on this target (e.g. needs a rig, none given)
    FAIL = "FAIL"  # the pump did not do what the scenario expects
    ERROR = "ERROR"  # the bench could not run it: port, link, timeout, board died

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Outcome.PASS: 0, Outcome.SKIP: 1, Outcome.FAIL: 2, Outcome.ERROR: 3}


def worst(*outcomes: Outcome) -> Outcome:
    return max(outcomes, key=lambda o: o.rank)


class MeasurementOutcome(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    NOT_RUN = "NOT_RUN"  # the scenario stopped before this measurement


def bench_version() -> str:
    try:
        return metadata.version("pumpbench")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def fingerprint_hex(value: int) -> str:
    return f"0x{value:08x}"


def format_ms(ms: int | None) -> str:
    """Device time as ``30d 00h 00m 00.000s``: days of therapy read at a glance."""
    if ms is None:
        return "-"
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    days, rest = divmod(ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{sign}{days}d {hours:02d}h {minutes:02d}m {seconds:02d}.{millis:03d}s"


@dataclass
class DeviceInfo:
    """What the pump said about itself at HELLO."""

    firmware_version: str
    board: str
    device_id: str
    protocol_version: int
    schema_fingerprint: int

    @classmethod
    def from_hello(cls, reply: dict[str, Any]) -> DeviceInfo:
        return cls(
            firmware_version=reply["firmware_version"],
            board=reply["board"],
            device_id=reply["device_id"],
            protocol_version=reply["protocol_version"],
            schema_fingerprint=reply["schema_fingerprint"],
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["schema_fingerprint"] = fingerprint_hex(self.schema_fingerprint)
        return data


@dataclass
class MeasurementRecord:
    name: str
    source: str  # step.field it was read from
    unit: str
    min: int | float | None
    max: int | float | None
    line: int
    value: int | float | None = None
    outcome: MeasurementOutcome = MeasurementOutcome.NOT_RUN

    def limits_text(self) -> str:
        low = "-inf" if self.min is None else f"{self.min}"
        high = "+inf" if self.max is None else f"{self.max}"
        return f"[{low}, {high}] {self.unit}".rstrip()


@dataclass
class ScenarioRecord:
    id: str
    title: str
    file: str
    requirements: list[str]
    seed: int | None
    outcome: Outcome = Outcome.PASS
    problems: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    device_time_end_ms: int | None = None
    device: DeviceInfo | None = None
    measurements: list[MeasurementRecord] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    firmware_stderr: str = ""

    @property
    def error(self) -> str | None:
        return "; ".join(self.problems) if self.problems else None

    def settle(self, outcome: Outcome, problem: str) -> None:
        """Records a problem; the outcome only ever gets worse."""
        self.outcome = worst(self.outcome, outcome)
        self.problems.append(problem)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "file": self.file,
            "requirements": self.requirements,
            "seed": self.seed,
            "outcome": str(self.outcome),
            "error": self.error,
            "problems": self.problems,
            "wall_s": round(self.wall_s, 3),
            "device_time_end_ms": self.device_time_end_ms,
            "device": self.device.to_json() if self.device else None,
            "measurements": [{**asdict(m), "outcome": str(m.outcome)} for m in self.measurements],
            "log": self.log,
            "firmware_stderr": self.firmware_stderr or None,
        }


@dataclass
class RunRecord:
    target: str
    rig: str | None
    started_at: str  # ISO 8601, UTC
    seed_override: int | None = None
    finished_at: str = ""
    wall_s: float = 0.0
    scenarios: list[ScenarioRecord] = field(default_factory=list)
    bench: str = field(default_factory=bench_version)

    @property
    def device(self) -> DeviceInfo | None:
        """The pump of the run: the first that answered HELLO."""
        return next((s.device for s in self.scenarios if s.device is not None), None)

    @property
    def outcome(self) -> Outcome:
        return worst(Outcome.PASS, *(s.outcome for s in self.scenarios))

    def counts(self) -> dict[str, int]:
        return {str(o): sum(s.outcome is o for s in self.scenarios) for o in Outcome}

    def exit_code(self) -> int:
        """0 all passed (or not applicable), 1 a scenario failed, 2 the bench errored."""
        return {Outcome.PASS: 0, Outcome.SKIP: 0, Outcome.FAIL: 1, Outcome.ERROR: 2}[self.outcome]

    def to_json(self) -> dict[str, Any]:
        device = self.device
        return {
            "format": RESULTS_FORMAT,
            "outcome": str(self.outcome),
            "counts": self.counts(),
            "bench_version": self.bench,
            "bench_schema_fingerprint": fingerprint_hex(schema.FINGERPRINT),
            "protocol_version": schema.PROTOCOL_VERSION,
            "host": platform.node(),
            "python": platform.python_version(),
            "target": self.target,
            "rig": self.rig,
            "seed_override": self.seed_override,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "wall_s": round(self.wall_s, 3),
            "device": device.to_json() if device else None,
            "scenarios": [s.to_json() for s in self.scenarios],
        }


# --- text ----------------------------------------------------------------------


def result_line(record: ScenarioRecord) -> str:
    """The line printed as a scenario finishes."""
    line = f"{record.outcome!s:<5} {record.id}  ({record.wall_s:.2f} s)"
    if record.problems:
        line += f"  {record.problems[0]}"
        if len(record.problems) > 1:
            line += f" (+{len(record.problems) - 1} more)"
    return line


def summary_lines(run: RunRecord) -> list[str]:
    """The summary table: printed by the CLI and written to summary.txt."""
    width = max([len("scenario"), *(len(s.id) for s in run.scenarios)])
    lines = [f"{'outcome':<7}  {'scenario':<{width}}  {'wall s':>7}  device time at end"]
    for s in run.scenarios:
        lines.append(
            f"{s.outcome!s:<7}  {s.id:<{width}}  {s.wall_s:7.2f}  {format_ms(s.device_time_end_ms)}"
        )
    counts = run.counts()
    total = len(run.scenarios)
    lines.append(
        f"{total} scenario{'' if total == 1 else 's'}: {counts['PASS']} passed, "
        f"{counts['FAIL']} failed, {counts['ERROR']} errors, "
        f"{counts['SKIP']} not applicable ({run.wall_s:.1f} s)"
    )
    return lines


def summary_text(run: RunRecord) -> str:
    device = run.device
    head = [
        f"pumpbench {run.bench}: {run.outcome}",
        f"started {run.started_at}, target {run.target}" + (f", rig {run.rig}" if run.rig else ""),
    ]
    if device is not None:
        head.append(
            f"firmware {device.firmware_version} on {device.board} {device.device_id}, "
            f"schema {fingerprint_hex(device.schema_fingerprint)}"
        )
    body = summary_lines(run)
    problems = [f"  {s.id}: {p}" for s in run.scenarios for p in s.problems]
    tail = ["", "problems:", *problems] if problems else []
    return "\n".join([*head, "", *body, *tail]) + "\n"


# --- JUnit XML -------------------------------------------------------------------


def _properties(parent: ET.Element, values: dict[str, str]) -> None:
    props = ET.SubElement(parent, "properties")
    for name, value in values.items():
        ET.SubElement(props, "property", name=name, value=value)


def junit_tree(run: RunRecord) -> ET.ElementTree:
    counts = run.counts()
    attrs = {
        "name": "pumpbench",
        "tests": str(len(run.scenarios)),
        "failures": str(counts["FAIL"]),
        "errors": str(counts["ERROR"]),
        "skipped": str(counts["SKIP"]),
        "time": f"{run.wall_s:.3f}",
    }
    suites = ET.Element("testsuites", attrs)
    suite = ET.SubElement(suites, "testsuite", {**attrs, "timestamp": run.started_at})
    device = run.device
    props = {
        "bench_version": run.bench,
        "bench_schema_fingerprint": fingerprint_hex(schema.FINGERPRINT),
        "target": run.target,
    }
    if device is not None:
        props |= {
            "firmware_version": device.firmware_version,
            "board": device.board,
            "device_id": device.device_id,
            "schema_fingerprint": fingerprint_hex(device.schema_fingerprint),
        }
    _properties(suite, props)
    for s in run.scenarios:
        case = ET.SubElement(
            suite,
            "testcase",
            classname="pumpbench." + Path(s.file).stem,
            name=s.id,
            file=s.file,
            time=f"{s.wall_s:.3f}",
        )
        _properties(
            case,
            {
                "title": s.title,
                "requirements": " ".join(s.requirements),
                "seed": "" if s.seed is None else str(s.seed),
            },
        )
        detail = "\n".join(s.problems)
        if s.outcome is Outcome.FAIL:
            ET.SubElement(case, "failure", message=s.problems[0], type="FAIL").text = detail
        elif s.outcome is Outcome.ERROR:
            ET.SubElement(case, "error", message=s.problems[0], type="ERROR").text = detail
        elif s.outcome is Outcome.SKIP:
            ET.SubElement(case, "skipped", message=s.problems[0] if s.problems else "")
        out = list(s.log)
        if s.firmware_stderr:
            out += ["firmware stderr:", s.firmware_stderr]
        if out:
            ET.SubElement(case, "system-out").text = "\n".join(out)
    ET.indent(suites)
    return ET.ElementTree(suites)


# --- files -----------------------------------------------------------------------

RESULTS_JSON = "results.json"
JUNIT_XML = "junit.xml"
SUMMARY_TXT = "summary.txt"


def write_reports(run: RunRecord, directory: Path) -> Path:
    """Writes results.json, junit.xml and summary.txt; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / RESULTS_JSON).write_text(
        json.dumps(run.to_json(), indent=2) + "\n", encoding="utf-8"
    )
    junit_tree(run).write(directory / JUNIT_XML, encoding="utf-8", xml_declaration=True)
    (directory / SUMMARY_TXT).write_text(summary_text(run), encoding="utf-8")
    return directory
