"""What the pumpbench commands share: exit codes, argument types, output helpers, opening a
pump port (a private virtual board for --target sim) and a session only when a change needs one.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TypeVar

from bench import units
from bench.board import image
from bench.board.paths import ENV_FIRMWARE
from bench.board.sim import BoardOptions, VirtualBoard
from bench.link import keys as keysmod
from bench.link.client import NEVER_U32, alarm_id
from bench.link.errors import BenchError, PumpRefused
from bench.link.pump import PumpClient
from bench.program import file as pf
from bench.report.records import bench_version, fingerprint_hex
from bench.scenario.load import MAX_SEED
from protocol import schema

PROG = "pumpbench"


SIM = "sim"


DEFAULT_REPORT = "reports/latest"


EXIT_OK = 0


EXIT_FAIL = 1


EXIT_ERROR = 2


EXIT_INTERRUPTED = 130


def _note(message: str) -> None:
    """A line for the person waiting (progress), on stderr beside the errors."""
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def _error(message: str) -> None:
    for line in message.splitlines() or [""]:
        print(f"{PROG}: error: {line}", file=sys.stderr, flush=True)


class PumpFailed(Exception):
    """The pump answered, but not what it must (a program read back differently): FAIL."""


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


T = TypeVar("T")


def _typed(parse: Callable[[str], T], what: str) -> Callable[[str], T]:
    """An argparse type from a bench.program.file parser: one grammar for files and flags."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = what  # argparse names the type in its messages
    return convert


U16_MAX = 0xFFFF  # BOLUS catheter_mm and nl_per_cm


def _catheter_mm(text: str) -> int:
    """A catheter length ("60cm", "625 mm"; a bare number is cm: "62.5") in whole mm."""
    if re.fullmatch(r"\s*(\d+(\.\d*)?|\.\d+)\s*", text):
        text = f"{text.strip()} cm"
    return units.length_mm(text)


U32_MAX = 0xFFFF_FFFF


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    if len(text) > 10 or int(text) > U32_MAX:
        raise argparse.ArgumentTypeError(
            f"{text[:12]}{'...' if len(text) > 12 else ''} is too large"
        )
    return int(text)


def _nl_per_cm(text: str) -> int:
    value = _count(text)
    if value > U16_MAX:
        raise argparse.ArgumentTypeError(f"{value} nL/cm is too large: at most {U16_MAX}")
    return value


_volume = _typed(units.volume_nl, "volume")


_dose = _typed(units.dose_ng, "dose")


_concentration = _typed(pf.parse_concentration_ug_ml, "concentration")


_duration = _typed(units.duration_s, "duration")


_alarm = _typed(alarm_id, "alarm")


_length = _typed(_catheter_mm, "length")


def _dhm(seconds: int) -> str:
    """Device seconds as ``37d 09:36``: far-off dates read at a glance."""
    days, rest = divmod(seconds, 86_400)
    return f"{days}d {rest // 3600:02d}:{rest % 3600 // 60:02d}"


def _dhms(seconds: int) -> str:
    days, rest = divmod(seconds, 86_400)
    return f"{days}d {rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"


def _date(seconds: int) -> str:
    return "never" if seconds == NEVER_U32 else f"{_dhm(seconds)} (device time)"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def _print_json(data: Any) -> None:
    """One JSON object on stdout (``--json``): for scripts, the same facts as the text."""
    print(json.dumps(data, sort_keys=True, default=str))


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
    keys = keysmod.load(args.key_file) if args.key_file else None
    image.ensure_compiled(say=_note)
    with VirtualBoard(BoardOptions(keys=keys)) as board:
        try:
            yield board.pump_port
        except BenchError:
            if board.has_exited():
                raise BenchError(_died(board)[0]) from None
            raise


def _pump(args: argparse.Namespace, url: str, *, changes: bool = True) -> PumpClient:
    """The pump client of a command: --key-file's keys (else found), --role's role.

    A command that only reads (``changes=False``) takes no key at all: it opens
    no session, and a missing or stale key file cannot stop it.
    """
    if not changes:
        return PumpClient(url, keys=keysmod.DeviceKeys(), role=schema.ROLE_READ_ONLY)
    keys = keysmod.load(args.key_file) if args.key_file else None
    role = keysmod.ROLE_WORDS[args.role] if args.role else None
    return PumpClient(url, keys=keys, role=role)


@contextmanager
def _session(args: argparse.Namespace, url: str, *, changes: bool = True) -> Iterator[PumpClient]:
    """The pump client of one command; a session it opened is closed before it exits.

    Only a command that changes something opens a session (on first need);
    whatever happens, AUTH_CLOSE ends it on the way out rather than leaving it
    to idle out on the pump.
    """
    pump = _pump(args, url, changes=changes)
    try:
        yield pump
    except BaseException:
        pump.retries = 0  # the command failed: one try at AUTH_CLOSE, not four timeouts
        raise
    finally:
        try:
            pump.close_session()
        except (BenchError, PumpRefused):
            pass  # the pump ends an idle session itself; the command's own outcome stands
        finally:
            pump.close()


def _jobs(text: str) -> int:
    """``--jobs N`` or ``auto`` (0: one virtual board per CPU core)."""
    if text == "auto":
        return 0
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a job count: 1, 2, ... or auto")
    return int(text)


def _device_time(text: str) -> int:
    """A scenario-file duration (``3h``, ``1d 12h``) in ms."""
    try:
        return units.duration_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key-file",
        type=Path,
        metavar="FILE",
        help=f"the pump's role keys (default: ${keysmod.ENV_FILE}; a --target sim board's own)",
    )
    parser.add_argument(
        "--role",
        choices=tuple(keysmod.ROLE_WORDS),
        help="the session role for changes (default: the highest the keys allow)",
    )


def _add_firmware_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--firmware",
        metavar="DIR",
        help=f"the firmware tree virtual boards run (default: ${ENV_FIRMWARE}, else the "
        "checkout's or the installed package's)",
    )


def _url(text: str) -> str:
    """A port name or URL: never empty (an unset shell variable, ``--port "$PORT"``)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "an empty port: give the port's device or URL, e.g. /dev/ttyACM0 "
            "or the pump port `pumpbench sim` printed"
        )
    return text


def _add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="one JSON object on stdout instead of the text"
    )


def _version() -> str:
    return (
        f"{PROG} {bench_version()} (protocol v{schema.PROTOCOL_VERSION}, "
        f"schema {fingerprint_hex(schema.FINGERPRINT)})"
    )


def _add_board_choice(parser: argparse.ArgumentParser) -> None:
    _add_key_options(parser)
    _add_firmware_option(parser)
    choice = parser.add_mutually_exclusive_group(required=True)
    choice.add_argument("--port", type=_url, metavar="URL", help="the pump port: any pyserial URL")
    choice.add_argument(
        "--target",
        type=_url,
        metavar="sim|URL",
        help="sim: a private virtual board for this command; or a pyserial URL",
    )
