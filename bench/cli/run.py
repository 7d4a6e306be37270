"""pumpbench run: scenario files on targets, the report, the summary."""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path
from typing import Any

from bench.board.targets import PortTarget, SimTarget, Target
from bench.cli.common import SIM, _note, _print_json
from bench.cli.progress import Progress
from bench.link import keys as keysmod
from bench.link.errors import BenchError
from bench.report.files import write_reports
from bench.report.summary import summary_lines
from bench.scenario.load import load_scenarios
from bench.scenario.runner import run_all


def cmd_run(args: argparse.Namespace) -> int:
    scenarios = load_scenarios(args.paths)  # every file validated before any board
    if args.key_file:
        keysmod.use_key_file(args.key_file)
    target: Target
    if args.target == SIM:
        target = SimTarget(heap=args.heap, say=_note, speed=args.speed)
    elif args.target == "pico":
        from bench.board.pico_pump import pico_target

        target = pico_target(args.uf2)  # an emulated Pico and its rig per scenario
    elif args.uf2 is not None:
        raise BenchError("--uf2 needs --target pico (a board's own image is what it runs)")
    else:
        target = PortTarget(args.target, args.rig)
    jobs = args.jobs or (min(os.cpu_count() or 1, max(1, len(scenarios))) if target.parallel else 1)
    target.preflight()
    progress = Progress(scenarios, out=io.StringIO() if args.json else None)
    try:
        run = run_all(
            scenarios,
            target,
            seed_override=args.seed,
            jobs=jobs,
            strict_xfail=args.strict_xfail,
            max_device_ms=args.max_device_time,
            on_start=progress.start,
            on_progress=progress.advance,
            on_result=progress.result,
        )
    finally:
        progress.close()
    if not args.json:
        print()
        for line in summary_lines(run):
            print(line)
    directory = Path(args.report)
    try:
        page = write_reports(run, directory, plots=not args.no_plots)
    except OSError as exc:
        raise BenchError(f"{directory}: cannot write the report ({exc})") from None
    if args.json:
        _print_json(_run_summary(run, page))
    else:
        print(f"report: {page}", flush=True)
    return run.exit_code()


def _run_summary(run: Any, page: Path) -> dict[str, Any]:
    """``run --json``: the summary table as data (results.json in the report has it all)."""
    return {
        "outcome": str(run.outcome),
        "exit_code": run.exit_code(),
        "counts": run.counts(),
        "wall_s": round(run.wall_s, 3),
        "jobs": run.jobs,
        "target": run.target,
        "report": str(page),
        "scenarios": [
            {
                "id": s.id,
                "outcome": str(s.outcome),
                "wall_s": round(s.wall_s, 3),
                "device_time_ms": s.device_time_ms,
                "problems": s.problems,
                "file": s.file,
                "line": s.line,
            }
            for s in run.scenarios
        ],
    }
