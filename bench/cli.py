"""``pumpbench``: the bench's command line.

Every command reaches a board through a pyserial URL, or through a virtual
board it starts itself when told ``--target sim``. The target is always
explicit: nothing falls back to the simulator when hardware is missing.

Exit codes: 0 success, 1 the pump failed or refused (FAIL), 2 the bench
could not do its job (ERROR: port, link, bad scenario file, board died).
A bench error is one line on stderr, ``pumpbench: error: <where>: <what>``,
never a traceback.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import NoReturn

from bench.client import PumpClient
from bench.errors import BenchError, PumpRefused
from bench.report import (
    fingerprint_hex,
    format_ms,
    result_line,
    summary_lines,
    write_reports,
)
from bench.runner import PortTarget, SimTarget, Target, run_all
from bench.scenario import MAX_SEED, ScenarioError, load_scenarios
from bench.sim import DEFAULT_HEAP, BoardOptions, VirtualBoard

PROG = "pumpbench"
SIM = "sim"
DEFAULT_REPORT = "reports/latest"

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def _error(message: str) -> None:
    for line in message.splitlines() or [""]:
        print(f"{PROG}: error: {line}", file=sys.stderr, flush=True)


# --- argument types -------------------------------------------------------------


def _seed(text: str) -> int:
    try:
        value = int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{value} is out of range 0..{MAX_SEED}")
    return value


def _heap(text: str) -> str:
    if not re.fullmatch(r"[1-9]\d*[kKmM]?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a heap size (e.g. 64k, 1m)")
    return text


def _speed(text: str) -> int:
    # The firmware's free-running clock takes an integer factor.
    if not text.isdigit():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a speed: 0 (lockstep) or an integer factor of wall time"
        )
    return int(text)


# --- boards -----------------------------------------------------------------------


class _Stop(Exception):
    """SIGINT or SIGTERM, turned into an exception so that the board is closed."""


def _raise_stop(_signum: int, _frame: FrameType | None) -> NoReturn:
    raise _Stop


def _died(board: VirtualBoard) -> tuple[str, str]:
    """One error line naming the exit code and last words, and the whole stderr."""
    code = board.process.returncode if board.process is not None else None
    stderr = board.stderr_text().rstrip()
    last = stderr.splitlines()[-1] if stderr else "no output on stderr"
    return f"virtual board died (exit code {code}): {last}", stderr


@contextmanager
def _pump_url(args: argparse.Namespace) -> Iterator[str]:
    """The pump port of --port URL, or of a private virtual board for --target sim."""
    url = args.port or args.target
    if url != SIM:
        yield url
        return
    with VirtualBoard(BoardOptions()) as board:
        try:
            yield board.pump_port
        except BenchError:
            if not board.alive:
                raise BenchError(_died(board)[0]) from None
            raise


# --- commands --------------------------------------------------------------------


def cmd_sim(args: argparse.Namespace) -> int:
    """Starts a virtual board for a person and keeps it until Ctrl-C or SIGTERM."""
    options = BoardOptions(heap=args.heap, seed=args.seed, speed=args.speed)
    # Both signals stop the board the same way; SIGINT explicitly too, since a
    # shell starts background jobs with SIGINT ignored.
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with VirtualBoard(options) as board:
            print(f"pump port: {board.pump_port}", flush=True)
            print(f"rig port: {board.rig_port}", flush=True)
            assert board.process is not None
            try:
                board.process.wait()
            except _Stop:
                return EXIT_OK
            line, stderr = _died(board)
            _error(line)
            if stderr:
                print(stderr, file=sys.stderr, flush=True)
            return EXIT_ERROR
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_status(args: argparse.Namespace) -> int:
    with _pump_url(args) as url, PumpClient(url) as pump:
        status = pump.status()
    print(f"port:        {url}")
    print(f"device time: {status['device_time_ms']} ms ({format_ms(status['device_time_ms'])})")
    print(f"uptime:      {status['uptime_ms']} ms ({format_ms(status['uptime_ms'])})")
    print(f"state:       {status['state_name']}")
    print(f"boot count:  {status['boot_count']}")
    return EXIT_OK


def cmd_hello(args: argparse.Namespace) -> int:
    with _pump_url(args) as url, PumpClient(url) as pump:
        hello = pump.hello()  # refuses a protocol or schema mismatch loudly
    print(f"port:        {url}")
    print(f"firmware:    {hello['firmware_version']}")
    print(f"board:       {hello['board']}")
    print(f"device id:   {hello['device_id']}")
    print(f"protocol:    v{hello['protocol_version']}")
    print(f"schema:      {fingerprint_hex(hello['schema_fingerprint'])} (matches this bench)")
    return EXIT_OK


def cmd_ping(args: argparse.Namespace) -> int:
    times: list[float] = []
    with _pump_url(args) as url, PumpClient(url) as pump:
        for _ in range(args.count):
            start = time.perf_counter()
            token = pump.ping()
            times.append((time.perf_counter() - start) * 1000)
            print(f"ping {url}: token {token:#010x} echoed in {times[-1]:.2f} ms", flush=True)
        stats = pump.link_stats()
    if len(times) > 1:
        print(
            f"{len(times)} pings: min {min(times):.2f} ms, "
            f"avg {sum(times) / len(times):.2f} ms, max {max(times):.2f} ms"
        )
    print(
        f"pump link: {stats['frames_ok']} frames ok, {stats['bad_crc']} bad CRC, "
        f"{stats['garbage']} garbage, {stats['duplicates']} duplicates"
    )
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    scenarios = load_scenarios(args.paths)  # every file validated before any board
    target: Target = (
        SimTarget(heap=args.heap) if args.target == SIM else PortTarget(args.target, args.rig)
    )
    target.preflight()
    run = run_all(
        scenarios,
        target,
        seed_override=args.seed,
        on_result=lambda record: print(result_line(record), flush=True),
    )
    print()
    for line in summary_lines(run):
        print(line)
    directory = Path(args.report)
    try:
        write_reports(run, directory)
    except OSError as exc:
        raise BenchError(f"{directory}: cannot write the report ({exc})") from None
    print(directory, flush=True)
    return run.exit_code()


# --- parser ------------------------------------------------------------------------


def _add_board_choice(parser: argparse.ArgumentParser) -> None:
    choice = parser.add_mutually_exclusive_group(required=True)
    choice.add_argument("--port", metavar="URL", help="the pump port: any pyserial URL")
    choice.add_argument(
        "--target",
        metavar="sim|URL",
        help="sim: a private virtual board for this command; or a pyserial URL",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Host test bench for the intrathecal pump firmware. Not for clinical use.",
        epilog="Exit codes: 0 ok, 1 the pump failed or refused, 2 bench error.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sim = commands.add_parser("sim", help="start a virtual board and print its ports")
    sim.add_argument("--heap", type=_heap, default=DEFAULT_HEAP, help="MicroPython heap")
    sim.add_argument("--seed", type=_seed, default=0, help="plant noise seed")
    sim.add_argument(
        "--speed",
        type=_speed,
        default=0,
        help="0: lockstep, time moves only by rig ADVANCE (default); N: N x wall time",
    )
    sim.set_defaults(func=cmd_sim)

    for name, func, text in (
        ("status", cmd_status, "device time, uptime, state, boot count"),
        ("hello", cmd_hello, "firmware version, board, device id, schema"),
        ("ping", cmd_ping, "round trip on the pump port and link counters"),
    ):
        sub = commands.add_parser(name, help=text)
        _add_board_choice(sub)
        if name == "ping":
            sub.add_argument("--count", type=int, default=1, metavar="N", help="pings to send")
        sub.set_defaults(func=func)

    run = commands.add_parser("run", help="run scenario files, write a report")
    run.add_argument("paths", nargs="+", metavar="PATH", help="scenario file or directory")
    run.add_argument(
        "--target",
        default=SIM,
        metavar="sim|URL",
        help="sim (default): a fresh virtual board per scenario; or the pump port URL",
    )
    run.add_argument("--rig", metavar="URL", help="the rig port URL (hardware targets only)")
    run.add_argument(
        "--report", default=DEFAULT_REPORT, metavar="DIR", help=f"default {DEFAULT_REPORT}"
    )
    run.add_argument("--seed", type=_seed, help="run every scenario with this seed")
    run.add_argument(
        "--heap",
        type=_heap,
        help=f"MicroPython heap of the virtual boards (default {DEFAULT_HEAP})",
    )
    run.set_defaults(func=cmd_run)
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.command == "run" and args.target == SIM and args.rig:
        parser.error("--rig goes with a hardware --target; the virtual board brings its own rig")
    if args.command == "run" and args.target != SIM and args.heap:
        parser.error("--heap goes with --target sim; a hardware board has the heap it has")
    if args.command == "run" and args.heap is None:
        args.heap = DEFAULT_HEAP
    if args.command == "ping" and args.count < 1:
        parser.error("--count must be at least 1")


def main(argv: Sequence[str] | None = None) -> int:
    """The console script. Returns the exit code (0, 1, 2; 130 on Ctrl-C)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ScenarioError as exc:
        for problem in exc.problems:
            _error(problem)
        return EXIT_ERROR
    except BenchError as exc:
        _error(str(exc))
        return EXIT_ERROR
    except PumpRefused as exc:
        _error(str(exc))
        return EXIT_FAIL
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
