"""Runs the steps of one scenario on open clients and fills its record.

Each step kind's runner lives with its parser in bench/scenario/steps/ (the
model is bench/scenario/model.py); the executor finds it in the one table of
step kinds and gives it itself: the clients, the marks, the events, and the
helpers below. A runner talks to the pump and the rig only through
:class:`PumpClient` and :class:`RigClient`, returns a one-line summary for the
log, and says how it went by what it raises (bench/scenario/context.py):

- :class:`StepFailed` or a pump refusal nobody expected: FAIL, the pump did
  not do what the scenario expects (never retried); a refusal from the rig
  (a request the fixture cannot carry out) is the bench's: ERROR;
- :class:`CapabilityMissing`: FAIL too, naming what the firmware, rig or
  schema lacks (an ``xfail`` scenario turns that into XFAIL);
- :class:`~bench.link.errors.BenchError`: ERROR, the bench could not run it.

While it runs, the executor samples the rig's truth and the pump's STATUS
after every advance (the delivered-volume plot), keeps every event the pump
sends (alarms and boots, marked on the plot's time axis) and remembers named
instants (*marks*) that measurements and alarms count from.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from bench import vocab
from bench.link.errors import BenchError, PumpRefused
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from bench.program.programmed import ProgrammedLine
from bench.report.records import (
    Annotation,
    DeviceInfo,
    Outcome,
    Sample,
    ScenarioRecord,
    TraceRecord,
    fingerprint_hex,
)
from bench.scenario.context import (
    ACTION_CLEARED,
    ACTION_RAISED,
    RESET_CAUSE_NAMES,
    TRACE_PAGE,
    CapabilityMissing,
    Interrupted,
    Snapshot,
    StepFailed,
    T,
    alarm_action,
    step_where,
)
from bench.scenario.load import Scenario
from bench.scenario.model import (
    CommandStep,
    RepeatStep,
    Step,
)
from bench.scenario.steps import RUNNERS
from protocol import codec, schema


class Executor:
    """Runs one scenario's phases on open clients, filling ``record``."""

    def __init__(
        self,
        scenario: Scenario,
        record: ScenarioRecord,
        pump: PumpClient,
        rig: RigClient | None,
        *,
        advance_timeout: Callable[[int], float | None] = lambda _ms: None,
        cancel: threading.Event | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.scenario = scenario
        self.record = record
        self.pump = pump
        self.rig = rig
        self.advance_timeout = advance_timeout
        self.cancel = cancel or threading.Event()
        self.on_progress = on_progress
        self.replies: dict[str, dict[str, Any]] = {}
        self.measurements = {
            id(m): r for m, r in zip(scenario.measurements, record.measurements, strict=True)
        }
        self.marks: dict[str, Snapshot] = {}
        self.events: list[codec.Frame] = []
        self.powered = True
        self.now_ms = 0
        self.advanced_ms = 0  # device time granted so far (progress)
        self.pending: tuple[dict[str, Any], int] | None = None  # fields and CRC
        self.line = ProgrammedLine()
        self.origin: Snapshot | None = None
        self.last_status: dict[str, Any] | None = None  # STATUS before the power went
        self.expected_boots: set[int] = set()  # id() of the BOOT events a step waited for
        self.first_event = 0  # events before this index came before the scenario began

    def log(self, text: str) -> None:
        self.record.log.append(text)

    # --- phases ------------------------------------------------------------------------
    def preamble(self, seed: int, sets_seed: bool) -> None:
        """HELLO on both ports (who the device is, the seed really in use), then the start mark."""
        hello = self.pump.hello()
        self.drain()  # the board's own first BOOT, kept but not marked on a plot
        self.record.device = DeviceInfo.from_hello(hello)
        self.log(
            f"pump {self.pump.url}: firmware {hello['firmware_version']}, board "
            f"{hello['board']}, device {hello['device_id']}, "
            f"schema {fingerprint_hex(hello['schema_fingerprint'])}"
        )
        if self.rig is not None:
            rig_hello = self.rig.hello()
            self.record.seed = rig_hello["seed"]
            self.log(f"rig {self.rig.url}: {rig_hello['rig_kind']}, seed {rig_hello['seed']}")
            if sets_seed and rig_hello["seed"] != seed:
                raise BenchError(
                    f"{self.rig.url}: the rig runs seed {rig_hello['seed']}, "
                    f"the board was started with seed {seed}"
                )
            if not sets_seed and rig_hello["seed"] != seed:
                self.log(f"note: the scenario asks for seed {seed}; this rig sets its own")
            if self.scenario.trace_ms is not None:
                self.start_trace(self.scenario.trace_ms)
        self.origin = self.snapshot()
        self.drain()
        self.first_event = len(self.events)
        self.marks["start"] = self.origin
        self.record.device_time_start_ms = self.origin.t_ms
        self.sample()

    def run(self, steps: Sequence[Step], phase: str = "") -> bool:
        """Runs steps until one fails or errors; True when all ran."""
        prefix = f"{phase}: " if phase else ""
        for step in steps:
            try:
                summary = self.run_step(step)
            except PumpRefused as exc:
                # the pump's refusal is its verdict; the rig refusing is the bench's problem
                outcome = Outcome.ERROR if self.from_rig(exc) else Outcome.FAIL
                self._stop(step, prefix, outcome, str(exc))
                return False
            except StepFailed as exc:
                self._stop(step, prefix, Outcome.FAIL, str(exc))
                return False
            except BenchError as exc:
                self._stop(step, prefix, Outcome.ERROR, str(exc))
                return False
            except Exception as exc:  # a bug in the bench: ERROR, with the trace
                self.log(traceback.format_exc().rstrip())
                self._stop(step, prefix, Outcome.ERROR, f"bench bug: {type(exc).__name__}: {exc}")
                return False
            self.log(f"{prefix}{step.line}: {step.describe()}: {summary}")
        return True

    def from_rig(self, exc: PumpRefused) -> bool:
        return self.rig is not None and exc.port == self.rig.url

    def run_step(self, step: Step) -> str:
        if self.cancel.is_set():
            raise Interrupted("interrupted")
        if step.unavailable and not isinstance(step, RepeatStep):
            raise CapabilityMissing(step.unavailable)
        try:
            return RUNNERS[type(step)](self, step)
        finally:
            self.drain()

    def _stop(self, step: Step, prefix: str, outcome: Outcome, reason: str) -> None:
        """Ends the phase at ``step`` with ``outcome`` (the steps after it do not run)."""
        self.log(f"{prefix}{step.line}: {step.describe()}: {outcome}: {reason}")
        self.record.settle(outcome, f"{prefix}{step_where(step)}: {reason}")

    def finish(self) -> None:
        """Device time at the end and the last sample; losing the link here is an ERROR.

        Then the bench-wide check: a reset no step asked for, or an alarm the
        scenario does not name, fails the scenario whatever its steps said.
        """
        try:
            self.refresh_now()
            self.record.device_time_end_ms = self.now_ms
            self.sample()
            self.fetch_trace()
        except (BenchError, PumpRefused) as exc:
            if self.record.outcome is Outcome.PASS:
                self.record.settle(Outcome.ERROR, f"at the end: {exc}")
        self.drain()
        surprises = self.unexpected()
        if surprises:
            self.log("unexpected: " + "; ".join(surprises))
            self.record.settle(Outcome.FAIL, "unexpected: " + "; ".join(surprises))

    def unexpected(self) -> list[str]:
        """Resets no step caused and alarms the scenario does not expect, in order."""
        allowed = self.scenario.expected_alarms
        found: list[str] = []
        for frame in self.events[self.first_event :]:
            fields = frame.fields
            if frame.name == "BOOT" and id(frame) not in self.expected_boots:
                cause = RESET_CAUSE_NAMES.get(fields["reset_cause"], str(fields["reset_cause"]))
                found.append(f"reset (BOOT {cause}) at {fields['device_time_ms']} ms")
            elif (
                frame.name == "ALARM"
                and alarm_action(fields) == ACTION_RAISED
                and fields["alarm"] not in allowed
            ):
                name = vocab.alarm_name(fields["alarm"])
                found.append(f"alarm {name} raised at {fields['device_time_ms']} ms")
        return found

    # --- plumbing ---------------------------------------------------------------------
    def need_rig(self) -> RigClient:
        if self.rig is None:  # validation and Target.missing() prevent this
            raise BenchError("this step needs a rig port and none is open")
        return self.rig

    def need_pump(self) -> PumpClient:
        if not self.powered:
            raise StepFailed("the pump is powered off (power_on first)")
        return self.pump

    def drain(self) -> None:
        """Keeps every event the pump sent; alarms go on the plot's time axis."""
        while True:
            try:
                frame = self.pump.transport.events.get_nowait()
            except queue.Empty:
                return
            self.keep(frame)

    def keep(self, frame: codec.Frame) -> None:
        self.events.append(frame)
        fields = frame.fields
        if frame.name == "ALARM":
            action = alarm_action(fields)
            name = vocab.alarm_name(fields["alarm"])
            if action in (ACTION_RAISED, ACTION_CLEARED):
                kind = "alarm" if action == ACTION_RAISED else "alarm_cleared"
                self.annotate(fields["device_time_ms"], kind, name)
        elif frame.name == "BOOT" and self.origin is not None:  # not the board's first boot
            cause = RESET_CAUSE_NAMES.get(fields["reset_cause"], str(fields["reset_cause"]))
            self.annotate(fields["device_time_ms"], "boot", f"BOOT {cause}")

    def annotate(self, t_ms: int, kind: str, label: str) -> None:
        self.record.annotations.append(Annotation(t_ms, kind, label))

    def wait_event(self, name: str, after: int, timeout_s: float) -> codec.Frame:
        """The first ``name`` event kept at index ``after`` or later, waiting if need be."""
        deadline = time.monotonic() + timeout_s
        while True:
            for frame in self.events[after:]:
                if frame.name == name:
                    return frame
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.pump.url}: no {name} event within {timeout_s:g} s")
            try:
                self.keep(self.pump.transport.events.get(timeout=min(left, 0.1)))
            except queue.Empty:
                continue

    def refresh_now(self) -> int:
        """Reads device time: from the rig (ADVANCE 0) if there is one, else STATUS."""
        if self.rig is not None:
            self.now_ms = self.rig.advance(0)
        else:
            self.now_ms = self.need_pump().status()["device_time_ms"]
        return self.now_ms

    def truth(self) -> dict[str, Any] | None:
        if self.rig is None:
            return None
        truth = self.rig.truth()
        self.powered = bool(truth["powered"])
        return truth

    def snapshot(self) -> Snapshot:
        truth = self.truth()
        t_ms = self.refresh_now() if self.rig is not None or self.powered else self.now_ms
        status = self.pump.status() if self.powered else None
        log_total = access_total = None
        if status is not None:
            log_total = self.pump.request("GET_LOG", {"start": 0, "count": 0})["total"]
            access_total = self.pump.request("GET_ACCESS_LOG", {"start": 0, "count": 0})["total"]
        return Snapshot(t_ms, truth, status, log_total, access_total)

    def sample(self) -> None:
        """One point of the delivered-volume plot (truth, STATUS, the prescription)."""
        truth = self.truth()
        status = self.pump.status() if self.powered else None
        sample = Sample(t_ms=self.now_ms, programmed_nl=self.line.volume_at(self.now_ms))
        if truth is not None:
            sample.tip_nl = truth["tip_nl"]
            sample.tip_ng = truth["tip_ng"]
            sample.pumped_nl = truth["pumped_nl"]
            sample.reservoir_nl = truth["reservoir_nl"]
        if status is not None:
            sample.pump_nl = status["delivered_nl"]
            sample.pump_reservoir_nl = status["reservoir_nl"]
            sample.pressure_x10 = status.get("pressure_x10")
        samples = self.record.samples
        if samples and samples[-1].t_ms == sample.t_ms:
            samples[-1] = sample
        else:
            samples.append(sample)

    def advance_by(self, duration_ms: int, slice_ms: int = 0, sample: bool = True) -> int:
        """ADVANCE in slices (at most a year each), sampling after each; returns the end time."""
        rig = self.need_rig()
        left = duration_ms
        step = min(slice_ms or duration_ms, schema.MAX_ADVANCE_MS) or 0
        end_ms = None
        while True:
            if self.cancel.is_set():
                raise Interrupted("interrupted")
            chunk = min(left, step)
            self.now_ms = rig.advance(chunk, timeout_s=self.advance_timeout(chunk))
            self.advanced_ms += chunk
            # The slices aim at one end, counted from where the first began:
            # on a clock that runs by itself (a rig, a free-running board)
            # the samples between slices take device time, and counting each
            # slice from its own start added it (a 3-minute advance sampled
            # every 10 s ran 6 s long at 600x). In lockstep both are the same.
            if end_ms is None:
                end_ms = self.now_ms - chunk + duration_ms
            left = end_ms - self.now_ms
            if self.on_progress is not None:
                self.on_progress(self.advanced_ms)
            if sample and (slice_ms or left <= 0):
                self.sample()
            self.drain()
            if left <= 0:
                return self.now_ms

    def command(self, step: CommandStep, call: Callable[[], T]) -> T | None:
        """Runs a pump command; None when it was refused as the step expects."""
        try:
            if step.role is None:
                result = call()
            else:
                result = self.as_role(step.role, call)
        except PumpRefused as exc:
            if step.refused is None:
                raise
            self.check_refusal(step, exc)
            return None
        if step.refused is not None:
            raise StepFailed(
                f"{step.KIND} was accepted; expected refusal {step.refused.describe()}"
            )
        return result

    def as_role(self, role: int, call: Callable[[], T]) -> T:
        # The command goes in a session of ``role`` (READ_ONLY: plain), as a
        # patient's programmer or a stranger on the link would send it. The
        # pump holds one session at a time: the client's own reopens next.
        pump = self.need_pump()
        own = pump.role
        pump.role, pump.session = role, None
        try:
            return call()
        finally:
            pump.role, pump.session = own, None

    def check_refusal(self, step: CommandStep, exc: PumpRefused) -> None:
        want = step.refused
        assert want is not None
        self.replies[step.KIND] = {"refused": exc.code_name, "detail": exc.detail}
        if exc.code == schema.LOCKOUT:
            self.replies[step.KIND]["lockout_left_s"] = exc.detail
        if exc.code != want.code or (want.limit is not None and exc.detail != want.limit):
            raise StepFailed(f"{exc}; expected refusal {want.describe()}")

    # --- link --------------------------------------------------------------------------

    # --- time, resets, power -----------------------------------------------------------

    # --- therapy -----------------------------------------------------------------------

    # --- faults ------------------------------------------------------------------------

    # --- expectations ------------------------------------------------------------------

    # --- measurement -------------------------------------------------------------------

    # --- IEC 60601-2-24 ---------------------------------------------------------------

    # --- structure --------------------------------------------------------------------

    # --- pressure trace (safety issue) --------------------------------------------------
    def start_trace(self, period_ms: int) -> None:
        if not vocab.has_message("TRACE_CONFIG"):
            self.record.trace = TraceRecord(
                note="pressure trace: this schema has no TRACE message yet"
            )
            return
        try:
            self.need_rig().request("TRACE_CONFIG", {"period_ms": period_ms})
        except PumpRefused as exc:
            self.record.trace = TraceRecord(
                note=f"pressure trace: the rig refuses TRACE_CONFIG ({exc})"
            )
            return
        self.record.trace = TraceRecord()

    def fetch_trace(self) -> None:
        trace = self.record.trace
        if trace is None or trace.note or self.rig is None:
            return
        start = 0
        base = self.record.device_time_start_ms or 0
        while True:
            page = self.rig.request("TRACE", {"start": start, "count": TRACE_PAGE})
            for i in range(page["count"]):
                low = page["time_ms"][i]
                # time_ms holds the low 32 bits: unwrap near the scenario's start
                t = (base & ~0xFFFF_FFFF) | low
                if t < base - 0x8000_0000:
                    t += 1 << 32
                trace.times_ms.append(t)
                trace.pressure_x10.append(page["pressure_x10"][i])
                trace.sensor_x10.append(page["sensor_x10"][i])
            if page["count"] == 0 or page["first"] + page["count"] >= page["total"]:
                break
            start = page["first"] + page["count"]
