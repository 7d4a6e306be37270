"""Run records: the bottom of bench/report/, importing no other bench module.

The runner fills plain dataclasses; one writer per file turns one run into
what a person or a CI server reads: ``results.json`` (everything, one record
per run, for tools and for the design history file: :meth:`RunRecord.to_json`,
written by files.py), ``junit.xml`` (junit.py, what CI servers display),
``summary.txt`` (summary.py, what a person reads first) and ``report.html``
with its PNG plots (html.py, plots.py); files.py writes the folder. Writing
is kept apart from running so that a report can never change an outcome.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from importlib import metadata
from typing import Any

from protocol import schema

RESULTS_FORMAT = "pumpbench-results/1"


class Outcome(StrEnum):
    """How a scenario ended. ERROR (the bench) is never merged into FAIL (the pump).

    XFAIL and XPASS belong to scenarios marked ``xfail`` (written before the
    capability they need has landed): XFAIL, it failed as expected; XPASS,
    it passed, so the capability is there and the mark should go.
    """

    PASS = "PASS"
    SKIP = "SKIP"  # not applicable on this target (e.g. needs a rig, none given)
    XFAIL = "XFAIL"  # failed, as its xfail mark expects
    XPASS = "XPASS"  # passed despite its xfail mark: enable it
    FAIL = "FAIL"  # the pump did not do what the scenario expects
    ERROR = "ERROR"  # the bench could not run it: port, link, timeout, board died

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {
    Outcome.PASS: 0,
    Outcome.SKIP: 1,
    Outcome.XFAIL: 1,
    Outcome.XPASS: 1,
    Outcome.FAIL: 2,
    Outcome.ERROR: 3,
}


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
    """One measurement: its value in ``unit`` and, as read, in ``wire_unit``."""

    name: str
    source: str  # step.field or the quantity it was read from
    unit: str
    min: int | float | None
    max: int | float | None
    line: int
    value: int | float | None = None
    outcome: MeasurementOutcome = MeasurementOutcome.NOT_RUN
    wire_value: int | float | None = None
    wire_unit: str = ""
    since: str | None = None  # the mark a difference was taken from

    def limits_text(self) -> str:
        low = "-inf" if self.min is None else f"{self.min}"
        high = "+inf" if self.max is None else f"{self.max}"
        return f"[{low}, {high}] {self.unit}".rstrip()


@dataclass
class Sample:
    """One look at the board during a scenario: the rig's truth and the pump's STATUS.

    Volumes are cumulative as the devices count them (the plot subtracts the
    first sample). None where a port could not be asked (no rig, pump off).
    """

    t_ms: int
    tip_nl: int | None = None
    tip_ng: int | None = None  # rig TRUTH: drug dose out of the tip
    pumped_nl: int | None = None
    reservoir_nl: int | None = None
    pump_nl: int | None = None  # STATUS delivered_nl
    pump_reservoir_nl: int | None = None
    programmed_nl: float | None = None  # bench/program/programmed.py, from the scenario's start
    pressure_x10: int | None = None


@dataclass
class Annotation:
    """Something to mark on a time axis: an alarm, a fault, a power event."""

    t_ms: int
    kind: str  # alarm, alarm_cleared, fault, fault_cleared, power_off, boot, bolus, mark
    label: str


@dataclass
class FlowRecord:
    """The IEC 60601-2-24 result of one flow_accuracy step (bench/scenario/flow.py)."""

    line: int
    rate_nl_day: int
    scale: int
    sample_ms: int
    analysis_from_ms: int
    times_ms: list[int]
    flows_nl_day: list[float]
    errors_pct: list[float]
    windows_ms: list[int]  # scaled
    ep_max_pct: list[float]
    ep_min_pct: list[float]
    mean_error_pct: float
    startup_error_pct: float


@dataclass
class TraceRecord:
    """The rig's pressure trace (TRACE, safety issue), or why there is none."""

    times_ms: list[int] = field(default_factory=list)
    pressure_x10: list[int] = field(default_factory=list)
    sensor_x10: list[int] = field(default_factory=list)
    note: str = ""


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
    xfail: str | None = None
    device_time_start_ms: int | None = None
    samples: list[Sample] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    flows: list[FlowRecord] = field(default_factory=list)
    trace: TraceRecord | None = None
    plots: dict[str, str] = field(default_factory=dict)  # plot kind -> file, set by the writer
    notes: list[str] = field(default_factory=list)  # what a plot or a value is missing, and why
    line: int = 0  # of the scenario in its file (0: unknown)

    @property
    def device_time_ms(self) -> int | None:
        """Device time the scenario ran, start to end."""
        if self.device_time_start_ms is None or self.device_time_end_ms is None:
            return None
        return self.device_time_end_ms - self.device_time_start_ms

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
            "line": self.line,
            "requirements": self.requirements,
            "seed": self.seed,
            "outcome": str(self.outcome),
            "error": self.error,
            "problems": self.problems,
            "xfail": self.xfail,
            "wall_s": round(self.wall_s, 3),
            "device_time_start_ms": self.device_time_start_ms,
            "device_time_end_ms": self.device_time_end_ms,
            "device_time_ms": self.device_time_ms,
            "device": self.device.to_json() if self.device else None,
            "measurements": [{**asdict(m), "outcome": str(m.outcome)} for m in self.measurements],
            "samples": [asdict(sample) for sample in self.samples],
            "annotations": [asdict(a) for a in self.annotations],
            "flow_accuracy": [asdict(f) for f in self.flows],
            "trace": asdict(self.trace) if self.trace is not None else None,
            "plots": self.plots,
            "notes": self.notes,
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
    jobs: int = 1
    strict_xfail: bool = False  # XPASS counts as a failure (CI: enable what landed)

    @property
    def device(self) -> DeviceInfo | None:
        """The pump of the run: the first that answered HELLO."""
        return next((s.device for s in self.scenarios if s.device is not None), None)

    @property
    def outcome(self) -> Outcome:
        """ERROR, FAIL or PASS for the run as a whole.

        Not applicable (SKIP) and expected failures (XFAIL) leave a run
        passed; an unexpected pass (XPASS) fails it only with strict xfail.
        """
        outcomes = {s.outcome for s in self.scenarios}
        if Outcome.ERROR in outcomes:
            return Outcome.ERROR
        if Outcome.FAIL in outcomes or (self.strict_xfail and Outcome.XPASS in outcomes):
            return Outcome.FAIL
        return Outcome.PASS

    def counts(self) -> dict[str, int]:
        return {str(o): sum(s.outcome is o for s in self.scenarios) for o in Outcome}

    def exit_code(self) -> int:
        """0 all passed (or not applicable, or failed as expected), 1 a scenario failed
        (or, with strict xfail, passed unexpectedly), 2 the bench errored."""
        return {Outcome.PASS: 0, Outcome.FAIL: 1, Outcome.ERROR: 2}[self.outcome]

    @property
    def device_time_ms(self) -> int:
        """Device time run by all scenarios together."""
        return sum(s.device_time_ms or 0 for s in self.scenarios)

    def to_json(self) -> dict[str, Any]:
        device = self.device
        return {
            "format": RESULTS_FORMAT,
            "outcome": str(self.outcome),
            "exit_code": self.exit_code(),
            "counts": self.counts(),
            "firmware_version": device.firmware_version if device else None,
            "schema_fingerprint": fingerprint_hex(device.schema_fingerprint) if device else None,
            "bench_version": self.bench,
            "bench_schema_fingerprint": fingerprint_hex(schema.FINGERPRINT),
            "protocol_version": schema.PROTOCOL_VERSION,
            "host": platform.node(),
            "python": platform.python_version(),
            "target": self.target,
            "rig": self.rig,
            "seed_override": self.seed_override,
            "seeds": {s.id: s.seed for s in self.scenarios},
            "jobs": self.jobs,
            "strict_xfail": self.strict_xfail,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "wall_s": round(self.wall_s, 3),
            "device_time_ms": self.device_time_ms,
            "device": device.to_json() if device else None,
            "scenarios": [s.to_json() for s in self.scenarios],
        }


def format_span(ms: int | None) -> str:
    """A span of device time in its two largest units: ``12d 04h``, ``3h 05min``, ``42s``."""
    if ms is None:
        return "-"
    days, rest = divmod(ms // 1000, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}min"
    return f"{minutes}min {seconds:02d}s" if minutes else f"{seconds}s"
