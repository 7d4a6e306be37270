"""Runs validated scenarios on a target and records what happened.

A *target* is where the pump (and maybe the rig) is reached: a fresh virtual
board per scenario (:class:`SimTarget`), or ports given by URL
(:class:`PortTarget`: a Pico on /dev/ttyACM0, a board behind RFC 2217, or a
``pumpbench sim`` started elsewhere). The runner speaks to either only
through :class:`PumpClient` and :class:`RigClient`.

Outcomes are kept apart on purpose (bench/errors.py):

- the pump did not do what the scenario expects (a check, a limit, a NACK):
  FAIL, the device's verdict, never retried;
- the bench could not run the scenario (port, link, timeout, the virtual
  board died, a bug in the bench): ERROR, never turned into a PASS.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench.client import Client, PumpClient, RigClient
from bench.errors import BenchError, PumpRefused
from bench.report import (
    DeviceInfo,
    MeasurementOutcome,
    MeasurementRecord,
    Outcome,
    RunRecord,
    ScenarioRecord,
    fingerprint_hex,
)
from bench.scenario import (
    NEED_RIG,
    AdvanceStep,
    HelloStep,
    MeasureStep,
    PingStep,
    ResetStep,
    RigHelloStep,
    Scenario,
    StatusStep,
    Step,
)
from bench.sim import DEFAULT_HEAP, BoardOptions, VirtualBoard, micropython_command
from protocol import schema

# How long a rebooting pump may take to announce itself (wall time). A
# virtual board boots in milliseconds; a Pico in well under a second.
BOOT_TIMEOUT_S = 10.0

RESET_CAUSE_NAMES: dict[int, str] = dict(schema.RESET_CAUSES)
RESET_CAUSE_RIG = next(code for code, name in RESET_CAUSE_NAMES.items() if name == "RIG_RESET")


class StepFailed(Exception):
    """The pump answered, but not as the scenario expects: a FAIL."""


# --- targets --------------------------------------------------------------------


@dataclass
class Ports:
    """The URLs of one session; ``board`` when the bench started it itself."""

    pump: str
    rig: str | None
    board: VirtualBoard | None = None


class Target:
    """Where scenarios run. Chosen explicitly; never a silent simulator."""

    label: str
    rig_label: str | None = None
    provides: frozenset[str] = frozenset()
    sets_seed = False  # True when the bench starts the board with the seed

    def preflight(self) -> None:
        """Fails fast with one BenchError when nothing could possibly run."""

    def session(self, seed: int) -> AbstractContextManager[Ports]:
        """A context manager yielding the :class:`Ports` of one scenario."""
        raise NotImplementedError

    def advance_timeout_s(self, duration_ms: int) -> float | None:  # noqa: ARG002
        """The wall-time deadline of one ADVANCE; None: the client's default."""
        return None

    def missing(self, needs: frozenset[str]) -> str | None:
        """Why a scenario with these needs is not applicable here, or None."""
        lacking = needs - self.provides
        if not lacking:
            return None
        if lacking == {NEED_RIG}:
            return "not applicable: needs a rig port (give --rig URL)"
        return f"not applicable: needs {', '.join(sorted(lacking))}"


class SimTarget(Target):
    """One fresh virtual board (pump and rig ports) per scenario."""

    label = "sim"
    provides = frozenset({NEED_RIG})
    sets_seed = True

    def __init__(self, heap: str = DEFAULT_HEAP) -> None:
        self.heap = heap

    def preflight(self) -> None:
        micropython_command()  # raises BenchError when the interpreter is missing

    @contextmanager
    def session(self, seed: int) -> Iterator[Ports]:
        with VirtualBoard(BoardOptions(heap=self.heap, seed=seed)) as board:
            yield Ports(board.pump_port, board.rig_port, board)


class PortTarget(Target):
    """A board (and maybe a rig) reached by pyserial URL; shared by all scenarios."""

    def __init__(self, pump_url: str, rig_url: str | None = None) -> None:
        self.label = pump_url
        self.rig_label = rig_url
        self.provides = frozenset({NEED_RIG}) if rig_url else frozenset()

    def preflight(self) -> None:
        with PumpClient(self.label) as pump:
            pump.hello()
        if self.rig_label:
            with RigClient(self.rig_label) as rig:
                rig.hello()

    @contextmanager
    def session(self, seed: int) -> Iterator[Ports]:  # noqa: ARG002 (a board's own seed)
        yield Ports(self.label, self.rig_label)

    def advance_timeout_s(self, duration_ms: int) -> float | None:
        # A physical rig waits in real time; a lockstep board behind a URL is
        # faster, so the longer deadline serves both.
        return 10.0 + duration_ms / 1000 * 1.05


# --- one scenario -------------------------------------------------------------------


def _where(step: Step) -> str:
    return f"line {step.line}: {step.KIND}"


def _show(name: str, value: Any) -> str:
    return schema.state_name(value) if name == "state" else str(value)


class _Executor:
    """Runs the steps of one scenario on open clients, filling its record."""

    def __init__(
        self,
        scenario: Scenario,
        record: ScenarioRecord,
        target: Target,
        pump: PumpClient,
        rig: RigClient | None,
    ) -> None:
        self.scenario = scenario
        self.record = record
        self.target = target
        self.pump = pump
        self.rig = rig
        self.replies: dict[str, dict[str, Any]] = {}
        self.measurements = {
            id(m): r for m, r in zip(scenario.measurements, record.measurements, strict=True)
        }
        self._handlers: dict[type[Step], Callable[[Any], str]] = {
            HelloStep: self._hello,
            RigHelloStep: self._rig_hello,
            PingStep: self._ping,
            StatusStep: self._status,
            AdvanceStep: self._advance,
            ResetStep: self._reset,
            MeasureStep: self._measure,
        }

    def log(self, text: str) -> None:
        self.record.log.append(text)

    # --- phases ---
    def preamble(self, seed: int) -> None:
        """HELLO on both ports: who the device is, and the seed really in use."""
        hello = self.pump.hello()
        self.record.device = DeviceInfo.from_hello(hello)
        self.log(
            f"pump {self.pump.url}: firmware {hello['firmware_version']}, board "
            f"{hello['board']}, device {hello['device_id']}, "
            f"schema {fingerprint_hex(hello['schema_fingerprint'])}"
        )
        if self.rig is None:
            return
        rig_hello = self.rig.hello()
        self.record.seed = rig_hello["seed"]
        self.log(f"rig {self.rig.url}: {rig_hello['rig_kind']}, seed {rig_hello['seed']}")
        if self.target.sets_seed and rig_hello["seed"] != seed:
            raise BenchError(
                f"{self.rig.url}: the rig runs seed {rig_hello['seed']}, "
                f"the board was started with seed {seed}"
            )
        if not self.target.sets_seed and rig_hello["seed"] != seed:
            self.log(f"note: the scenario asks for seed {seed}; this rig sets its own")

    def run(self, steps: Sequence[Step], phase: str = "") -> bool:
        """Runs steps until one fails or errors; True when all ran."""
        prefix = f"{phase}: " if phase else ""
        for step in steps:
            try:
                summary = self._handlers[type(step)](step)
            except (StepFailed, PumpRefused) as exc:
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

    def _stop(self, step: Step, prefix: str, outcome: Outcome, reason: str) -> None:
        self.log(f"{prefix}{step.line}: {step.describe()}: {outcome}: {reason}")
        self.record.settle(outcome, f"{prefix}{_where(step)}: {reason}")

    def final_status(self) -> None:
        """Device time at the end, for the report; losing the link here is an ERROR."""
        try:
            self.record.device_time_end_ms = self.pump.status()["device_time_ms"]
        except (BenchError, PumpRefused) as exc:
            if self.record.outcome is Outcome.PASS:
                self.record.settle(Outcome.ERROR, f"final STATUS: {exc}")

    # --- steps: each returns a one-line summary for the log ---
    def _need_rig(self) -> RigClient:
        if self.rig is None:  # validation and Target.missing() prevent this
            raise BenchError("this step needs a rig port and none is open")
        return self.rig

    def _hello(self, _step: HelloStep) -> str:
        reply = self.pump.hello()
        self.replies["hello"] = reply
        return f"firmware {reply['firmware_version']}, schema ok"

    def _rig_hello(self, _step: RigHelloStep) -> str:
        reply = self._need_rig().hello()
        self.replies["rig_hello"] = reply
        return f"rig {reply['rig_kind']}, schema ok"

    def _ping(self, step: PingStep) -> str:
        client: Client = self._need_rig() if step.port == schema.PORT_RIG else self.pump
        start = time.perf_counter()
        token = client.ping()
        round_trip_ms = round((time.perf_counter() - start) * 1000, 3)
        self.replies["ping"] = {"token": token, "round_trip_ms": round_trip_ms}
        return f"{round_trip_ms} ms"

    def _status(self, step: StatusStep) -> str:
        reply = self.pump.status()
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

    def _advance(self, step: AdvanceStep) -> str:
        rig = self._need_rig()
        before = self.pump.status()["device_time_ms"]
        left = step.duration_ms
        end = before
        while True:  # one year per ADVANCE at most; longer ones go in slices
            chunk = min(left, schema.MAX_ADVANCE_MS)
            end = rig.advance(chunk, timeout_s=self.target.advance_timeout_s(chunk))
            left -= chunk
            if left <= 0:
                break
        self.replies["advance"] = {"device_time_ms": end, "advanced_ms": end - before}
        return f"device time {before} -> {end} ms"

    def _reset(self, _step: ResetStep) -> str:
        rig = self._need_rig()
        before = self.pump.status()
        # Events queued before the RESET are from an earlier boot, not ours.
        self.pump.clear_events()
        rig.reset()
        boot = self.pump.wait_event("BOOT", BOOT_TIMEOUT_S).fields
        cause = RESET_CAUSE_NAMES.get(boot["reset_cause"], f"code {boot['reset_cause']}")
        self.replies["reset"] = {
            **boot,
            "boot_count_before": before["boot_count"],
            "boot_count_increase": boot["boot_count"] - before["boot_count"],
            "clock_jump_ms": boot["device_time_ms"] - before["device_time_ms"],
        }
        if boot["reset_cause"] != RESET_CAUSE_RIG:
            raise StepFailed(f"the pump booted with reset cause {cause}, expected RIG_RESET")
        return f"BOOT {cause}, boot count {before['boot_count']} -> {boot['boot_count']}"

    def _measure(self, step: MeasureStep) -> str:
        reply = self.replies.get(step.source)
        if reply is None or step.source_field not in reply:
            raise BenchError(f"no {step.source_path} value to measure (no {step.source} reply)")
        value = reply[step.source_field]
        record = self.measurements[id(step)]
        record.value = value
        low_ok = step.min is None or value >= step.min
        high_ok = step.max is None or value <= step.max
        record.outcome = MeasurementOutcome.PASS if low_ok and high_ok else MeasurementOutcome.FAIL
        text = f"{step.name} = {value} {step.unit}, limits {record.limits_text()}"
        if record.outcome is MeasurementOutcome.FAIL:
            # A measurement out of limits fails the scenario but does not stop
            # it: the next measurements are still worth having in the report.
            self.record.settle(Outcome.FAIL, f"{_where(step)}: {text}: out of limits")
        return f"{text}: {record.outcome}"


def _new_record(scenario: Scenario, seed: int, target: Target) -> ScenarioRecord:
    record = ScenarioRecord(
        id=scenario.id,
        title=scenario.title,
        file=str(scenario.file),
        requirements=list(scenario.requirements),
        seed=seed if target.sets_seed else None,
    )
    record.measurements = [
        MeasurementRecord(m.name, m.source_path, m.unit, m.min, m.max, m.line)
        for m in scenario.measurements
    ]
    return record


def _board_died(board: VirtualBoard, record: ScenarioRecord) -> None:
    stderr = board.stderr_text()
    code = board.process.returncode if board.process is not None else None
    last = stderr.strip().splitlines()[-1] if stderr.strip() else "no output on stderr"
    record.firmware_stderr = stderr
    record.outcome = Outcome.ERROR
    # First, so the one-line result names the cause rather than a timeout.
    record.problems.insert(0, f"virtual board died (exit code {code}): {last}")


def run_scenario(
    scenario: Scenario, target: Target, seed_override: int | None = None
) -> ScenarioRecord:
    """Runs one scenario (steps, then teardown, which always runs)."""
    seed = scenario.seed if seed_override is None else seed_override
    record = _new_record(scenario, seed, target)
    started = time.monotonic()
    try:
        reason = target.missing(scenario.needs)
        if reason is not None:
            record.outcome = Outcome.SKIP
            record.problems.append(reason)
            return record
        with target.session(seed) as ports:
            try:
                _run_on(ports, scenario, record, target, seed)
            finally:
                if ports.board is not None and ports.board.has_exited():
                    _board_died(ports.board, record)
    except BenchError as exc:
        record.settle(Outcome.ERROR, str(exc))
    finally:
        record.wall_s = time.monotonic() - started
    return record


def _run_on(
    ports: Ports, scenario: Scenario, record: ScenarioRecord, target: Target, seed: int
) -> None:
    with ExitStack() as stack:
        pump = stack.enter_context(PumpClient(ports.pump))
        rig = stack.enter_context(RigClient(ports.rig)) if ports.rig else None
        executor = _Executor(scenario, record, target, pump, rig)
        executor.preamble(seed)
        executor.run(scenario.steps)
        if scenario.teardown:
            if ports.board is not None and not ports.board.alive:
                executor.log("teardown skipped: the virtual board died")
            else:
                executor.run(scenario.teardown, "teardown")
        if ports.board is None or ports.board.alive:
            executor.final_status()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def run_all(
    scenarios: Sequence[Scenario],
    target: Target,
    *,
    seed_override: int | None = None,
    on_result: Callable[[ScenarioRecord], None] | None = None,
) -> RunRecord:
    """Runs every scenario in order; one scenario's ERROR does not stop the rest."""
    run = RunRecord(
        target=target.label,
        rig=target.rig_label,
        started_at=now_iso(),
        seed_override=seed_override,
    )
    started = time.monotonic()
    for scenario in scenarios:
        record = run_scenario(scenario, target, seed_override)
        run.scenarios.append(record)
        if on_result is not None:
            on_result(record)
    run.wall_s = time.monotonic() - started
    run.finished_at = now_iso()
    return run
