"""Runs validated scenarios on a target and records what happened.

A *target* (bench/board/targets.py) is where the pump (and maybe the rig) is
reached: a fresh virtual board per scenario (``SimTarget``), or ports given by
URL (``PortTarget``: a Pico on /dev/ttyACM0, a board behind RFC 2217, or a
``pumpbench sim`` started elsewhere). The runner speaks to either only
through :class:`PumpClient` and :class:`RigClient` (bench/scenario/executor.py runs
the steps).

Outcomes are kept apart on purpose (bench/link/errors.py):

- the pump did not do what the scenario expects (a check, a limit, a NACK):
  FAIL, the device's verdict, never retried;
- the bench could not run the scenario (port, link, timeout, the virtual
  board died, a bug in the bench): ERROR, never turned into a PASS and
  never retried;
- a scenario marked ``xfail`` that fails is XFAIL, one that passes is XPASS
  (what it waited for has landed). An ERROR stays an ERROR even there.

``run_all(jobs=N)`` runs N scenarios at once, each on its own virtual board
(threads: the boards are processes, the bench mostly waits on their ports).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from datetime import UTC, datetime
from functools import partial

from bench.board.sim import VirtualBoard
from bench.board.targets import Ports, Target
from bench.link.errors import BenchError
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from bench.report.records import MeasurementRecord, Outcome, RunRecord, ScenarioRecord, format_span
from bench.scenario.context import Interrupted
from bench.scenario.executor import Executor
from bench.scenario.load import Scenario


def _new_record(scenario: Scenario, seed: int, target: Target) -> ScenarioRecord:
    record = ScenarioRecord(
        id=scenario.id,
        title=scenario.title,
        file=str(scenario.file),
        line=scenario.line,
        requirements=list(scenario.requirements),
        seed=seed if target.sets_seed else None,
        xfail=scenario.xfail,
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


def _judge_xfail(record: ScenarioRecord) -> None:
    """FAIL becomes XFAIL and PASS becomes XPASS for a scenario marked xfail."""
    if record.xfail is None:
        return
    if record.outcome is Outcome.FAIL:
        record.outcome = Outcome.XFAIL
    elif record.outcome is Outcome.PASS:
        record.outcome = Outcome.XPASS
        record.problems.append(f"passed although marked xfail ({record.xfail}): remove the mark")


def run_scenario(
    scenario: Scenario,
    target: Target,
    seed_override: int | None = None,
    *,
    cancel: threading.Event | None = None,
    on_progress: Callable[[int], None] | None = None,
    max_device_ms: int | None = None,
) -> ScenarioRecord:
    """Runs one scenario (setup, steps, then teardown, which always runs).

    ``max_device_ms``: a scenario planning more device time is not
    applicable (a physical rig runs device time in real time).
    """
    seed = scenario.seed if seed_override is None else seed_override
    record = _new_record(scenario, seed, target)
    started = time.monotonic()
    try:
        reason = target.missing(scenario.needs)
        if reason is None and max_device_ms is not None and scenario.planned_ms > max_device_ms:
            reason = (
                f"not applicable: plans {format_span(scenario.planned_ms)} of device time, "
                f"more than the {format_span(max_device_ms)} allowed (--max-device-time)"
            )
        if reason is not None:
            record.outcome = Outcome.SKIP
            record.problems.append(reason)
            return record
        with target.session(seed) as ports:
            failed: BenchError | None = None
            try:
                _run_on(ports, scenario, record, target, seed, cancel, on_progress)
            except BenchError as exc:
                failed = exc
            if failed is not None:
                record.settle(Outcome.ERROR, str(failed))
            # A dying board closes its ports before it can be seen to exit:
            # after an ERROR give it a moment, so the cause is named first.
            grace = 1.0 if record.outcome is Outcome.ERROR else 0.0
            if ports.board is not None and ports.board.has_exited(grace):
                _board_died(ports.board, record)
    except BenchError as exc:
        record.settle(Outcome.ERROR, str(exc))
    finally:
        record.wall_s = time.monotonic() - started
    _judge_xfail(record)
    return record


def _run_on(
    ports: Ports,
    scenario: Scenario,
    record: ScenarioRecord,
    target: Target,
    seed: int,
    cancel: threading.Event | None,
    on_progress: Callable[[int], None] | None,
) -> None:
    with ExitStack() as stack:
        pump = stack.enter_context(PumpClient(ports.pump))
        rig = stack.enter_context(RigClient(ports.rig)) if ports.rig else None
        executor = Executor(
            scenario,
            record,
            pump,
            rig,
            advance_timeout=target.advance_timeout_s,
            cancel=cancel,
            on_progress=on_progress,
        )
        executor.preamble(seed, target.sets_seed)
        if executor.run(scenario.setup, "setup"):
            executor.run(scenario.steps)
        if scenario.teardown:
            if ports.board is not None and not ports.board.alive:
                executor.log("teardown skipped: the virtual board died")
            else:
                executor.run(scenario.teardown, "teardown")
        if ports.board is None or ports.board.alive:
            executor.finish()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def schedule(scenarios: Sequence[Scenario]) -> list[int]:
    """The order to start scenarios in: longest planned device time first.

    With several boards the run ends when the last board finishes, so the
    long ones (a 90-day soak) go first and the short ones fill the gaps.
    """
    return sorted(range(len(scenarios)), key=lambda i: -scenarios[i].planned_ms)


ProgressCallback = Callable[[str, int], None]


def run_all(
    scenarios: Sequence[Scenario],
    target: Target,
    *,
    seed_override: int | None = None,
    jobs: int = 1,
    strict_xfail: bool = False,
    on_start: Callable[[Scenario], None] | None = None,
    on_progress: ProgressCallback | None = None,
    on_result: Callable[[ScenarioRecord], None] | None = None,
    cancel: threading.Event | None = None,
    max_device_ms: int | None = None,
) -> RunRecord:
    """Runs every scenario; one scenario's ERROR does not stop the rest.

    ``jobs`` > 1 needs a target whose sessions are boards of their own.
    The record lists scenarios in the order given, whatever order they ran in.
    """
    if jobs > 1 and not target.parallel:
        raise BenchError(f"{target.label}: one board runs one scenario at a time (--jobs 1)")
    run = RunRecord(
        target=target.label,
        rig=target.rig_label,
        started_at=now_iso(),
        seed_override=seed_override,
        jobs=jobs,
        strict_xfail=strict_xfail,
    )
    cancel = cancel or threading.Event()
    started = time.monotonic()
    results: dict[int, ScenarioRecord] = {}

    def one(index: int) -> ScenarioRecord:
        scenario = scenarios[index]
        if on_start is not None:
            on_start(scenario)
        progress = partial(on_progress, scenario.id) if on_progress is not None else None
        if cancel.is_set():
            record = _new_record(scenario, scenario.seed, target)
            record.settle(Outcome.ERROR, str(Interrupted("interrupted before it started")))
            return record
        try:
            return run_scenario(
                scenario,
                target,
                seed_override,
                cancel=cancel,
                on_progress=progress,
                max_device_ms=max_device_ms,
            )
        except Exception as exc:  # a bug in the bench: this scenario's ERROR, not the run's end
            record = _new_record(scenario, scenario.seed, target)
            record.settle(Outcome.ERROR, f"bench bug: {type(exc).__name__}: {exc}")
            record.log.append(traceback.format_exc().rstrip())
            return record

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="board") as pool:
        futures: dict[Future[ScenarioRecord], int] = {
            pool.submit(one, index): index for index in schedule(scenarios)
        }
        try:
            pending = set(futures)
            while pending:
                # A timeout, so that Ctrl-C reaches this thread between waits.
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    record = future.result()
                    results[futures[future]] = record
                    if on_result is not None:
                        on_result(record)
        except BaseException:
            cancel.set()  # running scenarios stop at their next step, as ERROR
            raise
    run.scenarios = [results[i] for i in range(len(scenarios))]
    run.wall_s = time.monotonic() - started
    run.finished_at = now_iso()
    return run
