"""Runs the steps of one scenario on open clients and fills its record.

Each step kind has one handler here (bench/scenario/model.py is the model). A handler
talks to the pump and the rig only through :class:`PumpClient` and
:class:`RigClient`, returns a one-line summary for the log, and says how it
went by what it raises:

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

import itertools
import queue
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from bench import units, vocab
from bench.link.client import PumpClient, RigClient, program_crc
from bench.link.errors import BenchError, PumpRefused
from bench.program.programmed import ProgrammedLine
from bench.report.records import (
    Annotation,
    DeviceInfo,
    FlowRecord,
    MeasurementOutcome,
    Outcome,
    Sample,
    ScenarioRecord,
    TraceRecord,
    fingerprint_hex,
)
from bench.scenario import flow
from bench.scenario.load import Scenario
from bench.scenario.model import (
    WINDOW_QUANTITIES,
    AdvanceStep,
    BolusStep,
    CancelBolusStep,
    CancelProgramStep,
    ClearAlarmStep,
    ClearFaultStep,
    CommandStep,
    ConfirmStep,
    ExpectAlarmStep,
    ExpectLogStep,
    ExpectNoAlarmStep,
    ExpectStateStep,
    FlowAccuracyStep,
    HelloStep,
    InjectFaultStep,
    MarkStep,
    MeasureStep,
    NewCatheterStep,
    PatientBolusStep,
    PingStep,
    PowerCutStep,
    PowerCycleStep,
    PowerOffStep,
    PowerOnStep,
    ProgramStep,
    RefillStep,
    RepeatStep,
    ResetStep,
    RigHelloStep,
    SetClockStep,
    StartStep,
    StatusStep,
    Step,
    StopStep,
)
from protocol import codec, schema
from protocol.table import RESET_CAUSE_POWER_ON, RESET_CAUSE_RIG_RESET

# How long a rebooting pump may take to announce itself (wall time). A
# virtual board boots in milliseconds; a Pico in well under a second.
BOOT_TIMEOUT_S = 10.0

RESET_CAUSE_NAMES: dict[int, str] = dict(schema.RESET_CAUSES)
_ALARM_ACTIONS = {name: code for code, name in schema.ALARM_ACTIONS}
ACTION_RAISED = _ALARM_ACTIONS["RAISED"]  # ALARM event actions
ACTION_CLEARED = _ALARM_ACTIONS["CLEARED"]
TRACE_PAGE = 12

T = TypeVar("T")


class StepFailed(Exception):
    """The pump answered, but not as the scenario expects: a FAIL."""


class CapabilityMissing(StepFailed):
    """The firmware, rig or schema lacks what the step needs: FAIL (XFAIL if marked)."""


class Interrupted(BenchError):
    """The run was stopped (Ctrl-C): the scenario ends as an ERROR, never as a verdict."""


@dataclass
class Snapshot:
    """A mark: the instant, and what the rig and the pump said then."""

    t_ms: int
    truth: dict[str, Any] | None
    status: dict[str, Any] | None
    log_total: int | None
    access_total: int | None = None  # the access log's (SPEC 15)


def _where(step: Step) -> str:
    return f"line {step.line}: {step.KIND}"


def _show(name: str, value: Any) -> str:
    return schema.state_name(value) if name == "state" else str(value)


def _alarm_action(fields: dict[str, Any]) -> int:
    """Raised (1) or cleared (0) from an ALARM event of either schema generation."""
    return int(fields["action"] if "action" in fields else fields["raised"])


def _alarm_bits(mask: int) -> set[int]:
    return {bit + 1 for bit in range(32) if mask >> bit & 1}


def _ms(ms: int) -> str:
    """Device time for a log line: whole units when exact (30d, 90min, 250ms)."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


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
        self._handlers: dict[type[Step], Callable[[Any], str]] = {
            HelloStep: self._hello,
            RigHelloStep: self._rig_hello,
            PingStep: self._ping,
            StatusStep: self._status,
            AdvanceStep: self._advance,
            ResetStep: self._reset,
            PowerOffStep: self._power_off,
            PowerOnStep: self._power_on,
            PowerCutStep: self._power_cut,
            PowerCycleStep: self._power_cycle,
            ProgramStep: self._program,
            ConfirmStep: self._confirm,
            CancelProgramStep: self._cancel_program,
            StartStep: self._start,
            StopStep: self._stop_delivery,
            BolusStep: self._bolus,
            PatientBolusStep: self._patient_bolus,
            CancelBolusStep: self._cancel_bolus,
            RefillStep: self._refill,
            ClearAlarmStep: self._clear_alarm,
            SetClockStep: self._set_clock,
            NewCatheterStep: self._new_catheter,
            InjectFaultStep: self._inject_fault,
            ClearFaultStep: self._clear_fault,
            ExpectAlarmStep: self._expect_alarm,
            ExpectNoAlarmStep: self._expect_no_alarm,
            ExpectStateStep: self._expect_state,
            ExpectLogStep: self._expect_log,
            MarkStep: self._mark,
            FlowAccuracyStep: self._flow_accuracy,
            MeasureStep: self._measure,
            RepeatStep: self._repeat,
        }

    def log(self, text: str) -> None:
        self.record.log.append(text)

    # --- phases ------------------------------------------------------------------------
    def preamble(self, seed: int, sets_seed: bool) -> None:
        """HELLO on both ports (who the device is, the seed really in use), then the start mark."""
        hello = self.pump.hello()
        self._drain()  # the board's own first BOOT, kept but not marked on a plot
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
                self._start_trace(self.scenario.trace_ms)
        self.origin = self._snapshot()
        self._drain()
        self.first_event = len(self.events)
        self.marks["start"] = self.origin
        self.record.device_time_start_ms = self.origin.t_ms
        self._sample()

    def run(self, steps: Sequence[Step], phase: str = "") -> bool:
        """Runs steps until one fails or errors; True when all ran."""
        prefix = f"{phase}: " if phase else ""
        for step in steps:
            try:
                summary = self._run_step(step)
            except PumpRefused as exc:
                # the pump's refusal is its verdict; the rig refusing is the bench's problem
                outcome = Outcome.ERROR if self._from_rig(exc) else Outcome.FAIL
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

    def _from_rig(self, exc: PumpRefused) -> bool:
        return self.rig is not None and exc.port == self.rig.url

    def _run_step(self, step: Step) -> str:
        if self.cancel.is_set():
            raise Interrupted("interrupted")
        if step.unavailable and not isinstance(step, RepeatStep):
            raise CapabilityMissing(step.unavailable)
        try:
            return self._handlers[type(step)](step)
        finally:
            self._drain()

    def _stop(self, step: Step, prefix: str, outcome: Outcome, reason: str) -> None:
        """Ends the phase at ``step`` with ``outcome`` (the steps after it do not run)."""
        self.log(f"{prefix}{step.line}: {step.describe()}: {outcome}: {reason}")
        self.record.settle(outcome, f"{prefix}{_where(step)}: {reason}")

    def finish(self) -> None:
        """Device time at the end and the last sample; losing the link here is an ERROR.

        Then the bench-wide check: a reset no step asked for, or an alarm the
        scenario does not name, fails the scenario whatever its steps said.
        """
        try:
            self._refresh_now()
            self.record.device_time_end_ms = self.now_ms
            self._sample()
            self._fetch_trace()
        except (BenchError, PumpRefused) as exc:
            if self.record.outcome is Outcome.PASS:
                self.record.settle(Outcome.ERROR, f"at the end: {exc}")
        self._drain()
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
                and _alarm_action(fields) == ACTION_RAISED
                and fields["alarm"] not in allowed
            ):
                name = vocab.alarm_name(fields["alarm"])
                found.append(f"alarm {name} raised at {fields['device_time_ms']} ms")
        return found

    # --- plumbing ---------------------------------------------------------------------
    def _need_rig(self) -> RigClient:
        if self.rig is None:  # validation and Target.missing() prevent this
            raise BenchError("this step needs a rig port and none is open")
        return self.rig

    def _need_pump(self) -> PumpClient:
        if not self.powered:
            raise StepFailed("the pump is powered off (power_on first)")
        return self.pump

    def _drain(self) -> None:
        """Keeps every event the pump sent; alarms go on the plot's time axis."""
        while True:
            try:
                frame = self.pump.transport.events.get_nowait()
            except queue.Empty:
                return
            self._keep(frame)

    def _keep(self, frame: codec.Frame) -> None:
        self.events.append(frame)
        fields = frame.fields
        if frame.name == "ALARM":
            action = _alarm_action(fields)
            name = vocab.alarm_name(fields["alarm"])
            if action in (ACTION_RAISED, ACTION_CLEARED):
                kind = "alarm" if action == ACTION_RAISED else "alarm_cleared"
                self._annotate(fields["device_time_ms"], kind, name)
        elif frame.name == "BOOT" and self.origin is not None:  # not the board's first boot
            cause = RESET_CAUSE_NAMES.get(fields["reset_cause"], str(fields["reset_cause"]))
            self._annotate(fields["device_time_ms"], "boot", f"BOOT {cause}")

    def _annotate(self, t_ms: int, kind: str, label: str) -> None:
        self.record.annotations.append(Annotation(t_ms, kind, label))

    def _wait_event(self, name: str, after: int, timeout_s: float) -> codec.Frame:
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
                self._keep(self.pump.transport.events.get(timeout=min(left, 0.1)))
            except queue.Empty:
                continue

    def _refresh_now(self) -> int:
        """Reads device time: from the rig (ADVANCE 0) if there is one, else STATUS."""
        if self.rig is not None:
            self.now_ms = self.rig.advance(0)
        else:
            self.now_ms = self._need_pump().status()["device_time_ms"]
        return self.now_ms

    def _status(self, step: StatusStep) -> str:
        reply = self._need_pump().status()
        self.now_ms = reply["device_time_ms"]
        self.replies["status"] = reply
        wrong = [
            f"{name} is {_show(name, reply[name])}, expected {_show(name, want)}"
            for name, want in step.expect.items()
            if reply[name] != want
        ]
        if wrong:
            raise StepFailed("; ".join(wrong))
        return (
            f"{reply['state_name']}, device time {reply['device_time_ms']} ms, "
            f"uptime {reply['uptime_ms']} ms, boot {reply['boot_count']}"
        )

    def _truth(self) -> dict[str, Any] | None:
        if self.rig is None:
            return None
        truth = self.rig.truth()
        self.powered = bool(truth["powered"])
        return truth

    def _snapshot(self) -> Snapshot:
        truth = self._truth()
        t_ms = self._refresh_now() if self.rig is not None or self.powered else self.now_ms
        status = self.pump.status() if self.powered else None
        log_total = access_total = None
        if status is not None:
            log_total = self.pump.request("GET_LOG", {"start": 0, "count": 0})["total"]
            access_total = self.pump.request("GET_ACCESS_LOG", {"start": 0, "count": 0})["total"]
        return Snapshot(t_ms, truth, status, log_total, access_total)

    def _sample(self) -> None:
        """One point of the delivered-volume plot (truth, STATUS, the prescription)."""
        truth = self._truth()
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

    def _advance_by(self, duration_ms: int, slice_ms: int = 0, sample: bool = True) -> int:
        """ADVANCE in slices (at most a year each), sampling after each; returns the end time."""
        rig = self._need_rig()
        left = duration_ms
        step = min(slice_ms or duration_ms, schema.MAX_ADVANCE_MS) or 0
        while True:
            if self.cancel.is_set():
                raise Interrupted("interrupted")
            chunk = min(left, step)
            self.now_ms = rig.advance(chunk, timeout_s=self.advance_timeout(chunk))
            left -= chunk
            self.advanced_ms += chunk
            if self.on_progress is not None:
                self.on_progress(self.advanced_ms)
            if sample and (slice_ms or left <= 0):
                self._sample()
            self._drain()
            if left <= 0:
                return self.now_ms

    def _command(self, step: CommandStep, call: Callable[[], T]) -> T | None:
        """Runs a pump command; None when it was refused as the step expects."""
        try:
            if step.role is None:
                result = call()
            else:
                result = self._as_role(step.role, call)
        except PumpRefused as exc:
            if step.refused is None:
                raise
            self._check_refusal(step, exc)
            return None
        if step.refused is not None:
            raise StepFailed(
                f"{step.KIND} was accepted; expected refusal {step.refused.describe()}"
            )
        return result

    def _as_role(self, role: int, call: Callable[[], T]) -> T:
        # The command goes in a session of ``role`` (READ_ONLY: plain), as a
        # patient's programmer or a stranger on the link would send it. The
        # pump holds one session at a time: the client's own reopens next.
        pump = self._need_pump()
        own = pump.role
        pump.role, pump.session = role, None
        try:
            return call()
        finally:
            pump.role, pump.session = own, None

    def _check_refusal(self, step: CommandStep, exc: PumpRefused) -> None:
        want = step.refused
        assert want is not None
        self.replies[step.KIND] = {"refused": exc.code_name, "detail": exc.detail}
        if exc.code == schema.LOCKOUT:
            self.replies[step.KIND]["lockout_left_s"] = exc.detail
        if exc.code != want.code or (want.limit is not None and exc.detail != want.limit):
            raise StepFailed(f"{exc}; expected refusal {want.describe()}")

    # --- link --------------------------------------------------------------------------
    def _hello(self, _step: HelloStep) -> str:
        reply = self._need_pump().hello()
        self.replies["hello"] = reply
        return f"firmware {reply['firmware_version']}, schema ok"

    def _rig_hello(self, _step: RigHelloStep) -> str:
        reply = self._need_rig().hello()
        self.replies["rig_hello"] = reply
        return f"rig {reply['rig_kind']}, schema ok"

    def _ping(self, step: PingStep) -> str:
        client = self._need_rig() if step.port == schema.PORT_RIG else self._need_pump()
        start = time.perf_counter()
        token = client.ping()
        round_trip_ms = round((time.perf_counter() - start) * 1000, 3)
        self.replies["ping"] = {"token": token, "round_trip_ms": round_trip_ms}
        return f"{round_trip_ms} ms"

    # --- time, resets, power -----------------------------------------------------------
    def _advance(self, step: AdvanceStep) -> str:
        before = self._refresh_now()
        end = self._advance_by(step.duration_ms, step.sample_ms)
        self.replies["advance"] = {"device_time_ms": end, "advanced_ms": end - before}
        return f"device time {before} -> {end} ms"

    def _boot(
        self, kind: str, cause: int, trigger: Callable[[], object], before: dict[str, Any]
    ) -> str:
        """Triggers a restart, waits for BOOT with ``cause``, says HELLO again (SPEC 8)."""
        self._drain()
        mark = len(self.events)
        trigger()
        boot_frame = self._wait_event("BOOT", mark, BOOT_TIMEOUT_S)
        self.expected_boots.add(id(boot_frame))
        boot = boot_frame.fields
        self.powered = True
        self.now_ms = boot["device_time_ms"]
        got = RESET_CAUSE_NAMES.get(boot["reset_cause"], f"code {boot['reset_cause']}")
        self.replies[kind] = {
            **boot,
            "boot_count_before": before["boot_count"],
            "boot_count_increase": boot["boot_count"] - before["boot_count"],
            "clock_jump_ms": boot["device_time_ms"] - before["device_time_ms"],
        }
        if boot["reset_cause"] != cause:
            raise StepFailed(
                f"the pump booted with reset cause {got}, expected {RESET_CAUSE_NAMES[cause]}"
            )
        self.pump.hello()
        self._sample()
        return f"BOOT {got}, boot count {before['boot_count']} -> {boot['boot_count']}"

    def _reset(self, _step: ResetStep) -> str:
        rig = self._need_rig()
        before = self._need_pump().status()
        return self._boot("reset", RESET_CAUSE_RIG_RESET, rig.reset, before)

    def _power_off(self, _step: PowerOffStep) -> str:
        rig = self._need_rig()
        if self.powered:
            self.last_status = self.pump.status()
        rig.power_off()
        self.powered = False
        self._refresh_now()
        self._annotate(self.now_ms, "power_off", "power off")
        self._sample()
        return f"powered off at {self.now_ms} ms"

    def _power_on(self, _step: PowerOnStep) -> str:
        rig = self._need_rig()
        before = dict(self.last_status or {"boot_count": 0})
        before["device_time_ms"] = self._refresh_now()
        return self._boot("power_on", RESET_CAUSE_POWER_ON, rig.power_on, before)

    def _power_cut(self, step: PowerCutStep) -> str:
        rig = self._need_rig()
        self.last_status = self._need_pump().status()
        if step.after_bytes is not None:
            rig.cut_after_bytes(step.after_bytes)
            return f"cut armed: after {step.after_bytes} journal bytes"
        rig.cut_in_ms(step.after_ms or 0)
        self._annotate(self.now_ms + (step.after_ms or 0), "power_off", "power cut")
        return f"cut armed: in {_ms(step.after_ms or 0)} of device time"

    def _power_cycle(self, step: PowerCycleStep) -> str:
        rig = self._need_rig()
        before = self._need_pump().status()
        self.last_status = before
        rig.power_off()
        self.powered = False
        self._refresh_now()
        self._annotate(self.now_ms, "power_off", "power off")
        self._sample()
        if step.off_ms:
            self._advance_by(step.off_ms)
        self.replies["power_cycle"] = {}
        summary = self._boot("power_cycle", RESET_CAUSE_POWER_ON, rig.power_on, before)
        return f"off for {_ms(step.off_ms)}; {summary}"

    # --- therapy -----------------------------------------------------------------------
    def _program(self, step: ProgramStep) -> str:
        pump = self._need_pump()
        reply = self._command(step, lambda: pump.program(step.fields))
        if reply is None:
            return f"refused as expected: {self.replies['program']['refused']}"
        expected = program_crc(step.fields)
        if reply["crc"] != expected:
            raise StepFailed(f"PROGRAM answered CRC 0x{reply['crc']:08x}, sent 0x{expected:08x}")
        readback = pump.get_program(pending=True)
        differ = [name for name in step.fields if readback[name] != step.fields[name]]
        if differ:
            raise StepFailed(f"the pending program reads back differently: {', '.join(differ)}")
        self.pending = (dict(step.fields), expected)
        self.replies["program"] = reply
        text = f"pending, CRC 0x{expected:08x}, worst day {reply['max_daily_nl']} nL"
        if step.confirm:
            text += "; " + self._confirm_pending()
        return text

    def _confirm_pending(self) -> str:
        if self.pending is None:
            raise StepFailed("no program is pending (the last program step was refused)")
        fields, crc = self.pending
        got = self.pump.confirm(crc)
        if got != crc:
            raise StepFailed(f"CONFIRM made CRC 0x{got:08x} active, expected 0x{crc:08x}")
        self.pending = None
        self._refresh_now()
        self.line.confirm(self.now_ms, fields)
        return f"confirmed 0x{crc:08x}"

    def _confirm(self, step: ConfirmStep) -> str:
        self._need_pump()
        if step.refused is not None:
            crc = self.pending[1] if self.pending else 0
            self._command(step, lambda: self.pump.confirm(crc))
            return "refused as expected"
        return self._confirm_pending()

    def _cancel_program(self, _step: CancelProgramStep) -> str:
        self._need_pump().cancel_program()
        self.pending = None
        return "cancelled"

    def _start(self, step: StartStep) -> str:
        pump = self._need_pump()
        state = self._command(step, pump.start)
        if state is None:
            return f"refused as expected: {self.replies['start']['refused']}"
        self.line.start(self._refresh_now())
        return f"state {schema.state_name(state)}"

    def _stop_delivery(self, _step: StopStep) -> str:
        state = self._need_pump().stop()
        self.line.stop(self._refresh_now())
        return f"state {schema.state_name(state)}"

    def _bolus(self, step: BolusStep) -> str:
        pump = self._need_pump()
        reply = self._command(
            step,
            lambda: pump.bolus(
                step.kind,
                volume_nl=step.volume_nl,
                dose_ng=step.dose_ng,
                duration_s=step.duration_s,
                catheter_mm=step.catheter_mm,
                nl_per_cm=step.nl_per_cm,
                override_soft=step.override_soft,
            ),
        )
        if reply is None:
            return f"refused as expected: {self.replies['bolus']['refused']}"
        self.replies["bolus"] = reply
        self.line.bolus(self._refresh_now(), reply["volume_nl"], step.duration_s * 1000)
        self._annotate(self.now_ms, "bolus", f"{step.kind} bolus {reply['volume_nl']} nL")
        return f"bolus {reply['bolus_id']}: {reply['volume_nl']} nL"

    def _patient_bolus(self, step: PatientBolusStep) -> str:
        pump = self._need_pump()
        reply = self._command(step, pump.patient_bolus)
        if reply is None:
            refused = self.replies["patient_bolus"]
            return f"refused as expected: {refused['refused']} (detail {refused['detail']})"
        self.replies["patient_bolus"] = reply
        self.line.bolus(self._refresh_now(), reply["volume_nl"])
        self._annotate(self.now_ms, "bolus", f"patient bolus {reply['volume_nl']} nL")
        return f"bolus {reply['bolus_id']}: {reply['volume_nl']} nL"

    def _cancel_bolus(self, _step: CancelBolusStep) -> str:
        delivered = self._need_pump().cancel_bolus()
        self.replies["cancel_bolus"] = {"delivered_nl": delivered}
        return f"delivered {delivered} nL before the cancel"

    def _refill(self, step: RefillStep) -> str:
        pump = self._need_pump()
        fields = pump.refill_fields(0, step.volume_nl, step.drug_id, step.conc_ug_ml)
        if step.with_program:
            fields["program_crc"] = pump.get_program(pending=True)["crc"]
        left = self._need_rig().fill(step.volume_nl, fields["conc_ug_ml"])
        withdrawn = left if step.withdrawn_nl is None else step.withdrawn_nl
        fields["withdrawn_nl"] = withdrawn
        reply = self._command(step, lambda: pump.request("REFILL", fields))
        if reply is None:
            return f"refused as expected: {self.replies['refill']['refused']}"
        self.replies["refill"] = {**reply, "withdrawn_nl": withdrawn, "added_nl": step.volume_nl}
        text = (
            f"withdrew {withdrawn} nL (expected {reply['expected_nl']}), "
            f"discrepancy {reply['discrepancy_nl']} nL, added {step.volume_nl} nL"
        )
        if step.flagged is not None and bool(reply["flagged"]) != step.flagged:
            want = "flagged" if step.flagged else "not flagged"
            raise StepFailed(f"{text}: expected the discrepancy {want}")
        return text + (", flagged" if reply["flagged"] else "")

    def _clear_alarm(self, step: ClearAlarmStep) -> str:
        pump = self._need_pump()
        mask = self._command(step, lambda: pump.clear_alarm(step.alarm))
        if mask is None:
            return f"refused as expected: {self.replies['clear_alarm']['refused']}"
        names = [vocab.alarm_name(a) for a in sorted(_alarm_bits(mask))]
        return f"active now: {', '.join(names) or 'none'}"

    def _set_clock(self, step: SetClockStep) -> str:
        self._need_pump().set_clock(step.offset_s)
        self.line.set_clock(self._refresh_now(), step.offset_s)
        return f"local time = device time + {step.offset_s} s"

    def _new_catheter(self, step: NewCatheterStep) -> str:
        rig = self._need_rig()
        left = rig.truth()["reservoir_nl"]
        rig.plant(catheter_nl=step.volume_nl, catheter_empty_nl=step.volume_nl, reservoir_nl=left)
        self._annotate(self._refresh_now(), "mark", "new catheter")
        return f"the rig fitted an empty catheter of {step.volume_nl} nL"

    # --- faults ------------------------------------------------------------------------
    def _inject_fault(self, step: InjectFaultStep) -> str:
        rig = self._need_rig()
        assert step.fault is not None  # unavailable steps never get here
        values = {"fault": step.fault, "param": step.param}
        if step.onset_ms:
            values["onset_ms"] = step.onset_ms
        try:
            rig.request("INJECT_FAULT", vocab.request_fields("INJECT_FAULT", **values))
        except PumpRefused as exc:
            raise CapabilityMissing(f"the rig refuses fault {step.fault_name}: {exc}") from None
        self._refresh_now()
        onset = self.now_ms + step.onset_ms
        self.marks["fault"] = Snapshot(onset, None, None, None)
        if not step.onset_ms:
            self.marks["fault"] = self._snapshot()
        self._annotate(onset, "fault", f"fault {step.fault_name}")
        return f"{step.fault_name} (param {step.param}) from {onset} ms"

    def _clear_fault(self, step: ClearFaultStep) -> str:
        self._need_rig().clear_fault(step.fault)
        self.marks["fault_cleared"] = self._snapshot()
        self._annotate(self.now_ms, "fault_cleared", "fault cleared")
        return f"cleared at {self.now_ms} ms"

    # --- expectations ------------------------------------------------------------------
    def _raised(self, after: int, wanted: Callable[[int], bool]) -> list[codec.Frame]:
        return [
            f
            for f in self.events[after:]
            if f.name == "ALARM"
            and _alarm_action(f.fields) == ACTION_RAISED
            and wanted(f.fields["alarm"])
        ]

    def _expect_alarm(self, step: ExpectAlarmStep) -> str:
        assert step.alarm is not None
        alarm = step.alarm
        start = self._refresh_now()
        origin = self.marks[step.since].t_ms if step.since else start
        after = len(self.events)
        found_at: int | None = None
        if self.powered and alarm in _alarm_bits(self.pump.status()["alarms"]):
            earlier = self._raised(0, lambda a: a == alarm)
            found_at = earlier[-1].fields["device_time_ms"] if earlier else start
        elapsed = 0
        while found_at is None and elapsed < step.within_ms:
            chunk = min(step.slice_ms, step.within_ms - elapsed)
            self._advance_by(chunk)
            elapsed += chunk
            raised = self._raised(after, lambda a: a == alarm)
            if raised:
                found_at = raised[0].fields["device_time_ms"]
            elif self.powered and alarm in _alarm_bits(self.pump.status()["alarms"]):
                found_at = self.now_ms  # raised, its event not (yet) seen: an upper bound
        if found_at is None:
            raise StepFailed(f"{step.alarm_name} not raised within {_ms(step.within_ms)}")
        reply: dict[str, Any] = {
            "time_to_alarm_ms": found_at - origin,
            "device_time_ms": found_at,
        }
        if self.powered:
            status = self.pump.status()
            if "pressure_x10" in status:
                reply["pressure_at_alarm"] = status["pressure_x10"]
        self.replies["expect_alarm"] = reply
        since = f" after {step.since}" if step.since else ""
        return f"{step.alarm_name} raised at {found_at} ms, {_ms(found_at - origin)}{since}"

    def _expect_no_alarm(self, step: ExpectNoAlarmStep) -> str:
        def wanted(alarm: int) -> bool:
            if step.alarms:
                return alarm in step.alarms
            return alarm not in step.ignore

        after = len(self.events)
        if step.for_ms:
            self._advance_by(step.for_ms, step.slice_ms)
        raised = self._raised(after, wanted)
        active = {a for a in _alarm_bits(self._need_pump().status()["alarms"]) if wanted(a)}
        problems = [
            f"{vocab.alarm_name(f.fields['alarm'])} raised at {f.fields['device_time_ms']} ms"
            for f in raised
        ]
        problems += [f"{vocab.alarm_name(a)} active" for a in sorted(active)]
        if problems:
            raise StepFailed("; ".join(dict.fromkeys(problems)))
        return f"no alarm over {_ms(step.for_ms)}" if step.for_ms else "no alarm active"

    def _expect_state(self, step: ExpectStateStep) -> str:
        start = self._refresh_now() if step.within_ms else self.now_ms
        origin = self.marks[step.since].t_ms if step.since else start
        status = self._need_pump().status()
        elapsed = 0
        while self._state_wrong(step, status) and elapsed < step.within_ms:
            chunk = min(step.slice_ms, step.within_ms - elapsed)
            self._advance_by(chunk)
            elapsed += chunk
            status = self._need_pump().status()
        self.replies["status"] = status
        self.replies["expect_state"] = {
            "time_to_state_ms": status["device_time_ms"] - origin,
            "device_time_ms": status["device_time_ms"],
        }
        wrong = self._state_wrong(step, status)
        if wrong:
            within = f" within {_ms(step.within_ms)}" if step.within_ms else ""
            raise StepFailed("; ".join(wrong) + within)
        alarms = ", ".join(status["alarm_names"]) or "no alarm"
        if step.within_ms:
            return f"{status['state_name']}, {alarms} at {status['device_time_ms']} ms"
        return f"{status['state_name']}, {alarms}"

    def _state_wrong(self, step: ExpectStateStep, status: dict[str, Any]) -> list[str]:
        """What differs from the expectation (empty: it holds)."""
        wrong = []
        if step.state is not None and status["state"] != step.state:
            wrong.append(
                f"state is {status['state_name']}, expected {schema.state_name(step.state)}"
            )
        if step.alarms is not None:
            active = _alarm_bits(status["alarms"])
            if active != set(step.alarms):
                want = ", ".join(vocab.alarm_name(a) for a in sorted(step.alarms)) or "none"
                wrong.append(
                    f"alarms are {', '.join(status['alarm_names']) or 'none'}, expected {want}"
                )
        if step.mode is not None and status["mode"] != step.mode:
            wrong.append(f"mode is {status['mode_name']}")
        if step.bolus is not None and status["bolus_kind"] != step.bolus:
            wrong.append(f"bolus is {status['bolus_kind_name']}")
        return wrong

    def _expect_log(self, step: ExpectLogStep) -> str:
        pump = self._need_pump()
        mark = self.marks[step.since] if step.since else None
        # sessions and refusals are in the access log (SPEC 15)
        access = schema.log_name(step.event) in schema.ACCESS_LOG_CODES
        total = None if mark is None else mark.access_total if access else mark.log_total
        entries = pump.log(total or 0, access=access)
        if mark is not None and total is None:  # marked while off: go by time
            entries = [e for e in entries if e["time_s"] * 1000 >= mark.t_ms - 999]
        # (a PB_REFUSED or AUTH_REFUSED with a = 0 carries a tally, not a refusal)
        found = [e for e in entries if e["code"] == step.event and (e["a"] or not access)]
        self.replies["expect_log"] = {"count": len(found)}
        where = f" since {step.since}" if step.since else ""
        if step.count is not None and len(found) != step.count:
            raise StepFailed(
                f"{step.event_name} logged {len(found)} times{where}, expected {step.count}"
            )
        if step.count is None and len(found) < step.min_count:
            raise StepFailed(
                f"{step.event_name} logged {len(found)} times{where}, "
                f"expected at least {step.min_count}"
            )
        details = "; ".join(f"a={e['a']} b={e['b']}" for e in found[-3:])
        return f"{step.event_name} x{len(found)}{where}" + (f" (last: {details})" if found else "")

    def _mark(self, step: MarkStep) -> str:
        self.marks[step.name] = self._snapshot()
        self._annotate(self.now_ms, "mark", step.name)
        return f"at {self.now_ms} ms"

    # --- measurement -------------------------------------------------------------------
    def _quantity(self, name: str, snap: Snapshot | None = None) -> int:
        """A quantity now (or as ``snap`` recorded it), in its wire unit."""
        if snap is None:
            snap = (
                self._snapshot()
                if name != "device_time"
                else Snapshot(self._refresh_now(), None, None, None)
            )
        if name == "device_time":
            return snap.t_ms
        truth_key = {
            "tip_dose": "tip_ng",
            "tip_volume": "tip_nl",
            "pumped_volume": "pumped_nl",
            "reservoir_volume": "reservoir_nl",
        }
        if name in truth_key:
            if snap.truth is None:
                raise StepFailed(f"no rig truth for {name} at that instant")
            return int(snap.truth[truth_key[name]])
        status_key = {
            "pump_volume": "delivered_nl",
            "pump_reservoir": "reservoir_nl",
            "pressure": "pressure_x10",
        }
        if snap.status is None:
            raise StepFailed(f"no STATUS for {name} at that instant (the pump was off)")
        if status_key[name] not in snap.status:
            raise CapabilityMissing(f"STATUS has no {status_key[name]} in this schema")
        return int(snap.status[status_key[name]])

    def _window_quantity(self, name: str, since_ms: int) -> int:
        """tip_dose_max_1h / _24h (ng) or tip_dose_gap (ms) over the samples since."""
        self._sample()
        points = [
            (s.t_ms, s.tip_ng)
            for s in self.record.samples
            if s.t_ms >= since_ms and s.tip_ng is not None
        ]
        if len(points) < 2:
            raise StepFailed(f"{name}: fewer than two samples since the mark (sample: on advance)")
        if name == "tip_dose_gap":
            longest = run = 0
            for (t0, d0), (t1, d1) in itertools.pairwise(points):
                run = run + (t1 - t0) if d1 == d0 else 0
                longest = max(longest, run)
            return longest
        window = 3_600_000 if name == "tip_dose_max_1h" else 86_400_000
        worst = 0
        first = 0
        for t, dose in points:
            while t - points[first][0] > window:
                first += 1
            worst = max(worst, dose - points[first][1])
        return worst

    def _measure(self, step: MeasureStep) -> str:
        if step.source:
            reply = self.replies.get(step.source)
            if reply is None or step.source_field not in reply:
                raise StepFailed(f"no {step.source_path} value to measure (no {step.source} reply)")
            wire = reply[step.source_field]
        elif step.source_field in WINDOW_QUANTITIES and step.since:  # since: checked at parse
            wire = self._window_quantity(step.source_field, self.marks[step.since].t_ms)
        else:
            wire = self._quantity(step.source_field)
            if step.since:
                wire -= self._quantity(step.source_field, self.marks[step.since])
        value = units.convert(wire, step.source_unit, step.unit)
        if isinstance(value, float):
            value = round(value, 6)
        record = self.measurements[id(step)]
        record.value = value
        record.wire_value = wire
        record.wire_unit = step.source_unit
        record.since = step.since
        low_ok = step.min is None or value >= step.min
        high_ok = step.max is None or value <= step.max
        record.outcome = MeasurementOutcome.PASS if low_ok and high_ok else MeasurementOutcome.FAIL
        text = f"{step.name} = {value} {step.unit}, limits {record.limits_text()}"
        if record.outcome is MeasurementOutcome.FAIL:
            # A measurement out of limits fails the scenario but does not stop
            # it: the next measurements are still worth having in the report.
            self.record.settle(Outcome.FAIL, f"{_where(step)}: {text}: out of limits")
        return f"{text}: {record.outcome}"

    # --- IEC 60601-2-24 ---------------------------------------------------------------
    def _flow_accuracy(self, step: FlowAccuracyStep) -> str:
        status = self._need_pump().status()
        rate = status["rate_nl_day"]
        if rate <= 0 or status["state_name"] != "RUNNING":
            raise StepFailed(
                f"the pump is not delivering ({status['state_name']}, rate {rate} nL/day)"
            )
        scale = step.scale or flow.auto_scale(rate, min(step.windows_ms), step.strokes_per_window)
        sample_ms = step.sample_ms * scale
        samples = step.period_ms // step.sample_ms
        rig = self._need_rig()
        truth = self._truth()
        assert truth is not None
        volumes = [int(truth["tip_nl"])]
        times = [rig.advance(0)]
        for _ in range(samples):
            self._advance_by(sample_ms, sample=False)
            truth = self._truth()
            assert truth is not None
            volumes.append(int(truth["tip_nl"]))
            # when the truth was read: in lockstep the end of the ADVANCE;
            # in real time (a rig, a free-running board) a little later
            times.append(rig.advance(0))
            if len(volumes) % 8 == 0:
                self._sample()
        self._sample()
        volumes = flow.on_grid(times, volumes, sample_ms)
        analysis = flow.analyse(
            volumes,
            sample_ms=sample_ms,
            rate_nl_day=rate,
            analysis_from_ms=step.analysis_from_ms * scale,
            windows_ms=[w * scale for w in step.windows_ms],
            scale=scale,
        )
        self.replies["flow_accuracy"] = analysis.fields()
        self.record.flows.append(
            FlowRecord(
                line=step.line,
                rate_nl_day=rate,
                scale=scale,
                sample_ms=sample_ms,
                analysis_from_ms=analysis.analysis_from_ms,
                times_ms=analysis.times_ms,
                flows_nl_day=[round(q, 1) for q in analysis.flows_nl_day],
                errors_pct=[round(e, 4) for e in analysis.errors_pct],
                windows_ms=[t.window_ms for t in analysis.trumpets],
                ep_max_pct=[round(t.ep_max_pct, 4) for t in analysis.trumpets],
                ep_min_pct=[round(t.ep_min_pct, 4) for t in analysis.trumpets],
                mean_error_pct=round(analysis.mean_error_pct, 4),
                startup_error_pct=round(analysis.startup_error_pct, 4),
            )
        )
        return (
            f"rate {rate} nL/day, scale x{scale} (sample {_ms(sample_ms)}, "
            f"{samples} samples), mean error {analysis.mean_error_pct:+.2f} %"
        )

    # --- structure --------------------------------------------------------------------
    def _repeat(self, step: RepeatStep) -> str:
        for i in range(step.times):
            for inner in step.steps:
                where = f"pass {i + 1}, line {inner.line}: {inner.KIND}"
                try:
                    summary = self._run_step(inner)
                except PumpRefused as exc:
                    if self._from_rig(exc):
                        raise BenchError(f"{where}: {exc}") from None
                    raise StepFailed(f"{where}: {exc}") from None
                except StepFailed as exc:
                    raise StepFailed(f"{where}: {exc}") from None
                except BenchError as exc:
                    raise BenchError(f"{where}: {exc}") from None
                self.log(f"  [{i + 1}/{step.times}] {inner.line}: {inner.describe()}: {summary}")
        return f"{step.times} passes"

    # --- pressure trace (safety issue) --------------------------------------------------
    def _start_trace(self, period_ms: int) -> None:
        if not vocab.has_message("TRACE_CONFIG"):
            self.record.trace = TraceRecord(
                note="pressure trace: this schema has no TRACE message yet"
            )
            return
        try:
            self._need_rig().request("TRACE_CONFIG", {"period_ms": period_ms})
        except PumpRefused as exc:
            self.record.trace = TraceRecord(
                note=f"pressure trace: the rig refuses TRACE_CONFIG ({exc})"
            )
            return
        self.record.trace = TraceRecord()

    def _fetch_trace(self) -> None:
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
