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
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from bench.board import flash
from bench.board.paths import select_firmware
from bench.board.sim import DEFAULT_HEAP
from bench.cli import rig as rigcli
from bench.cli.board import cmd_keys_new, cmd_sim
from bench.cli.common import (
    DEFAULT_REPORT,
    EXIT_ERROR,
    EXIT_FAIL,
    EXIT_INTERRUPTED,
    PROG,
    SIM,
    PumpFailed,
    _add_board_choice,
    _add_firmware_option,
    _add_json_option,
    _device_time,
    _error,
    _heap,
    _jobs,
    _seed,
    _speed,
    _url,
    _version,
)
from bench.cli.query import cmd_hello, cmd_ping, cmd_status
from bench.cli.run import cmd_run
from bench.cli.therapy import (
    _add_therapy_commands,
    _check_bolus,
    cmd_cancel_bolus,
    cmd_patient_bolus,
    cmd_start,
    cmd_stop,
)
from bench.link import keys as keysmod
from bench.link.errors import BenchError, PumpRefused
from bench.scenario.load import ScenarioError
from protocol import codec


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line like every other error (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Host test bench for the intrathecal pump firmware. Not for clinical use.",
        epilog="Exit codes: 0 ok, 1 the pump failed or refused, 2 bench error.",
    )
    parser.add_argument("--version", action="version", version=_version())
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
    sim.add_argument(
        "--key-file",
        type=Path,
        metavar="FILE",
        help="provision these keys (made if FILE does not exist; default: fresh, temporary)",
    )
    sim.add_argument(
        "--board",
        choices=["virtual", "pico"],
        default="virtual",
        help="virtual: the unix-port board (default); pico: the emulated Pico, stock "
        "MicroPython on rp2040js (pico/README.md)",
    )
    sim.add_argument(
        "--pico-mode",
        choices=["realtime", "fast"],
        default="realtime",
        help="--board pico: emulated time kept to wall time (default; mpremote, a person) "
        "or idle time skipped",
    )
    sim.add_argument(
        "--pico-flash",
        type=Path,
        metavar="FILE",
        help="--board pico: the board's flash array, kept in FILE across runs",
    )
    sim.add_argument(
        "--stock",
        action="store_true",
        help="--board pico: stock MicroPython with an empty filesystem (for make flash)",
    )
    sim.add_argument(
        "--pico-rig",
        action="store_true",
        help="--board pico: also the rig around it on a pty of its own (the plant on the "
        "pins; lockstep: device time passes by the rig's ADVANCE)",
    )
    sim.add_argument(
        "--link",
        type=Path,
        metavar="PATH",
        help="make PATH a symlink to the pump port (and PATH-rig to the rig port) while "
        "the board runs: a stable name, where a stale /dev/pts/N may be another terminal",
    )
    sim.add_argument(
        "--rig-link", type=Path, metavar="PATH", help="the rig port's link (default: LINK-rig)"
    )
    _add_firmware_option(sim)
    sim.set_defaults(func=cmd_sim)

    keys = commands.add_parser("keys", help="make a key file for a pump's roles")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    new = keys_commands.add_parser("new", help="write fresh clinician and patient keys to FILE")
    new.add_argument("file", type=Path, metavar="FILE", help="the key file to create (mode 0600)")
    new.add_argument(
        "--role",
        choices=tuple(keysmod.ROLE_WORDS),
        help="keep only this role's key (e.g. a patient's copy of a file made before)",
    )
    new.add_argument("--from", dest="source", type=Path, metavar="FILE", help="with --role")
    new.set_defaults(func=cmd_keys_new)

    for name, func, text in (
        ("status", cmd_status, "state, therapy, reservoir, alarms, program, dose windows"),
        ("hello", cmd_hello, "firmware version, board, device id, schema"),
        ("ping", cmd_ping, "round trip on the pump port and link counters"),
        ("patient-bolus", cmd_patient_bolus, "press the patient's bolus button"),
        ("cancel-bolus", cmd_cancel_bolus, "stop the running bolus"),
        ("start", cmd_start, "start delivering the active program"),
        ("stop", cmd_stop, "stop delivery (and any bolus)"),
    ):
        sub = commands.add_parser(name, help=text)
        _add_board_choice(sub)
        if name == "ping":
            sub.add_argument("--count", type=int, default=1, metavar="N", help="pings to send")
        if name == "status":
            _add_json_option(sub)
        sub.set_defaults(func=func)
    _add_therapy_commands(commands)
    rigcli.add_parser(commands)

    run = commands.add_parser("run", help="run scenario files, write a report")
    run.add_argument("paths", nargs="+", metavar="PATH", help="scenario file or directory")
    run.add_argument(
        "--target",
        default=SIM,
        type=_url,
        metavar="sim|pico|URL",
        help="sim (default): a fresh virtual board per scenario; pico: a fresh emulated Pico "
        "and its rig per scenario (pico/README.md); or the pump port URL",
    )
    run.add_argument(
        "--rig", type=_url, metavar="URL", help="the rig port URL (hardware targets only)"
    )
    run.add_argument(
        "--uf2",
        type=Path,
        metavar="FILE",
        help="--target pico: boot this UF2 with the pump frozen in (make firmware) "
        "instead of stock MicroPython with the .mpy files",
    )
    _add_firmware_option(run)
    run.add_argument(
        "--report", default=DEFAULT_REPORT, metavar="DIR", help=f"default {DEFAULT_REPORT}"
    )
    run.add_argument("--seed", type=_seed, help="run every scenario with this seed")
    run.add_argument(
        "--jobs",
        type=_jobs,
        default=1,
        metavar="N|auto",
        help="scenarios at once, each on its own virtual board (default 1; auto: one per core)",
    )
    run.add_argument(
        "--heap",
        type=_heap,
        help=f"MicroPython heap of the virtual boards (default {DEFAULT_HEAP})",
    )
    run.add_argument(
        "--strict-xfail",
        action="store_true",
        help="an xfail scenario that passes (XPASS) fails the run: enable what has landed",
    )
    run.add_argument(
        "--max-device-time",
        type=_device_time,
        metavar="TIME",
        help="skip scenarios planning more device time, e.g. 3h (a physical rig runs in real time)",
    )
    run.add_argument("--no-plots", action="store_true", help="skip the PNG plots (faster)")
    run.add_argument(
        "--json",
        action="store_true",
        help="the run's summary as one JSON object on stdout (no result lines)",
    )
    run.add_argument(
        "--speed",
        type=_speed,
        default=0,
        help="with --target sim: 0 lockstep (default); N: free-running boards at N x wall time",
    )
    run.add_argument(
        "--key-file",
        type=Path,
        metavar="FILE",
        help=f"the pump's keys (hardware targets; default ${keysmod.ENV_FILE})",
    )
    run.set_defaults(func=cmd_run)
    flash.add_parser(commands)
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.command == "run" and args.target in (SIM, "pico") and args.rig:
        parser.error("--rig goes with a hardware --target; the virtual board brings its own rig")
    if args.command == "run" and args.target != SIM and args.heap:
        parser.error("--heap goes with --target sim; a hardware board has the heap it has")
    if args.command == "run" and args.heap is None:
        args.heap = DEFAULT_HEAP
    if args.command == "run" and args.target in (SIM, "pico") and args.key_file:
        parser.error("--key-file goes with a hardware --target; virtual boards bring their own")
    if args.command == "keys" and bool(args.role) != bool(args.source):
        parser.error("keys new: --role and --from go together")
    if args.command == "run" and args.target not in (SIM, "pico") and args.jobs > 1:
        parser.error("--jobs runs several virtual boards; a board at a URL runs one at a time")
    if args.command == "sim" and args.rig_link and not args.link:
        parser.error("--rig-link goes with --link")
    if args.command == "sim" and args.link and args.board == "pico":
        parser.error("--link: the emulated Pico (--board pico) prints its ports; no links yet")
    if args.command == "ping" and args.count < 1:
        parser.error("--count must be at least 1")
    if args.command == "bolus":
        _check_bolus(parser, args)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script. Returns the exit code (0, 1, 2; 130 on Ctrl-C)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    select_firmware(getattr(args, "firmware", None))
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
    except (PumpRefused, PumpFailed) as exc:
        _error(str(exc))
        return EXIT_FAIL
    except codec.CodecError as exc:  # a value that does not fit its field: ours
        _error(str(exc))
        return EXIT_ERROR
    except argparse.ArgumentTypeError as exc:  # an argument a command checks itself
        _error(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _reader_gone()


EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a writer SIGPIPE ended


def _reader_gone() -> int:
    """``pumpbench log | head``: the reader left. Nothing to say, and no traceback at exit.

    stdout is pointed at /dev/null so that the interpreter's last flush
    cannot fail again; the exit code is the shell's for a writer ended by SIGPIPE.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
