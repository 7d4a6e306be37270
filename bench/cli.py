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
import io
import json
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TypeVar

from bench import alarmview, flash, image, logview, rigcli, units
from bench import keys as keysmod
from bench import programfile as pf
from bench.client import (
    BOLUS_KINDS,
    NEVER_U32,
    PROGRAM_FIELD_NAMES,
    PumpClient,
    alarm_id,
    program_crc,
    soft_limit_names,
)
from bench.errors import BenchError, PumpRefused
from bench.paths import ENV_FIRMWARE, select_firmware
from bench.progress import Progress
from bench.report import (
    bench_version,
    fingerprint_hex,
    format_ms,
    summary_lines,
    write_reports,
)
from bench.runner import PortTarget, SimTarget, Target, run_all
from bench.scenario import MAX_SEED, ScenarioError, load_scenarios
from bench.sim import DEFAULT_HEAP, BoardOptions, VirtualBoard
from protocol import codec, schema

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


T = TypeVar("T")


def _typed(parse: Callable[[str], T], what: str) -> Callable[[str], T]:
    """An argparse type from a bench.programfile parser: one grammar for files and flags."""

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


# --- device time and quantities for a person ------------------------------------


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


def _interactive() -> bool:
    """Whether a person can be asked: stdin is a terminal (not a pipe, a file, CI)."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _ask(question: str) -> bool:
    """A yes/no question on the terminal; anything but y/yes, or no answer, is no."""
    try:
        answer = input(question)
    except (EOFError, OSError):
        print()
        return False
    return answer.strip().lower() in ("y", "yes")


def _print_json(data: Any) -> None:
    """One JSON object on stdout (``--json``): for scripts, the same facts as the text."""
    print(json.dumps(data, sort_keys=True, default=str))


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


# --- commands --------------------------------------------------------------------


def _sim_keys(path: Path | None, scratch: Path) -> tuple[keysmod.DeviceKeys, Path]:
    """The keys a person's virtual board is provisioned with, and their key file."""
    if path is None:
        path = scratch / "sim.keys"
    elif path.exists():
        return keysmod.load(path), path
    keys = keysmod.generate()
    keysmod.write(path, keys, "keys of a pumpbench virtual board")
    return keys, path


def cmd_sim(args: argparse.Namespace) -> int:
    """Starts a virtual board for a person and keeps it until Ctrl-C or SIGTERM."""
    with tempfile.TemporaryDirectory(prefix="pumpbench-sim-") as scratch:
        keys, key_file = _sim_keys(args.key_file, Path(scratch))
        if args.board == "pico":
            from bench import pico

            return pico.run_sim(args, keys, key_file)
        return _run_sim(args, keys, key_file)


def _run_sim(args: argparse.Namespace, keys: keysmod.DeviceKeys, key_file: Path) -> int:
    options = BoardOptions(heap=args.heap, seed=args.seed, speed=args.speed, keys=keys)
    image.ensure_compiled(say=_note)
    # Both signals stop the board the same way; SIGINT explicitly too, since a
    # shell starts background jobs with SIGINT ignored.
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with VirtualBoard(options) as board, _links(args, board.pump_port, board.rig_port):
            assert board.process is not None
            # The ports are printed inside the try: whoever read them may send
            # the signal at once, even before the last print returns.
            try:
                print(f"pump port: {board.pump_port}", flush=True)
                print(f"rig port: {board.rig_port}", flush=True)
                print(f"key file: {key_file}", flush=True)
                if args.link:
                    print(f"pump link: {args.link}", flush=True)
                    print(f"rig link: {_rig_link(args)}", flush=True)
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


def _rig_link(args: argparse.Namespace) -> Path:
    return args.rig_link or Path(f"{args.link}-rig")


def _make_link(path: Path, port: str) -> None:
    """``path`` -> ``port``, replacing a symlink left by an earlier board, never a file."""
    if path.is_symlink():
        path.unlink()  # a dead board's: its /dev/pts/N may be someone's terminal now
    elif path.exists():
        raise BenchError(f"{path}: exists and is not a symlink; --link never replaces a file")
    try:
        path.symlink_to(port)
    except OSError as exc:
        raise BenchError(f"{path}: cannot make the link ({exc.strerror})") from None


@contextmanager
def _links(args: argparse.Namespace, pump_port: str, rig_port: str) -> Iterator[None]:
    """``sim --link PATH``: stable names for the board's ptys, removed when it stops."""
    if not args.link:
        yield
        return
    made: list[tuple[Path, str]] = []
    try:
        for path, port in ((args.link, pump_port), (_rig_link(args), rig_port)):
            _make_link(path, port)
            made.append((path, port))
        yield
    finally:
        for path, port in made:
            try:
                if path.is_symlink() and os.readlink(path) == port:
                    path.unlink()  # only our own: another board may own the name now
            except OSError:
                pass


def cmd_status(args: argparse.Namespace) -> int:
    with _pump_url(args) as url, _session(args, url, changes=False) as pump:
        hello = pump.hello()
        status = pump.status()
        conc = pump.get_program()["conc_ug_ml"]
    if args.json:
        _print_json(
            {
                "port": url,
                "device_id": hello["device_id"],
                "firmware_version": hello["firmware_version"],
                "board": hello["board"],
                "conc_ug_ml": conc,
                **status,
            }
        )
        return EXIT_OK
    print(f"port:        {url}")
    print(f"device id:   {hello['device_id']} ({hello['board']})")
    print(f"firmware:    {hello['firmware_version']}")
    print(f"device time: {status['device_time_ms']} ms ({format_ms(status['device_time_ms'])})")
    print(f"uptime:      {status['uptime_ms']} ms ({format_ms(status['uptime_ms'])})")
    print(f"state:       {status['state_name']}")
    print(f"boot count:  {status['boot_count']}")
    for label, value in _therapy_lines(status, conc):
        print(f"{label + ':':<13}{value}")
    return EXIT_OK


def _therapy_lines(status: dict[str, Any], conc: int) -> list[tuple[str, str]]:
    """Therapy, reservoir, alarms, program and governor windows, as (label, value)."""
    if status["bolus_kind"]:
        left = pf.volume_text(status["bolus_remaining_nl"], conc)
        bolus = f"{status['bolus_kind_name']}, {left} to go"
    else:
        bolus = "none"
    empty_s = status["time_to_empty_s"]
    empty = "never at the current rate" if empty_s < 0 else f"in {_dhm(empty_s)}"
    pending = "pending: a program waits for CONFIRM" if status["pending"] else "no program pending"
    return [
        ("mode", status["mode_name"]),
        ("rate", pf.rate_text(status["rate_nl_day"], conc)),
        ("bolus", bolus),
        ("reservoir", f"{pf.format_volume(status['reservoir_nl'])} left"),
        ("empty", empty),
        ("refill by", _date(status["refill_date_s"])),
        ("alarms", alarmview.alarm_list(status["alarms"], alarmview.colour_wanted())),
        ("program", f"CRC 0x{status['program_crc']:08x}, {pending}"),
        ("delivered", f"{pf.volume_text(status['delivered_nl'], conc)} in all"),
        ("pt boluses", f"{status['pb_last_day']} in the last 24 h"),
        ("1 h window", pf.format_dose(status["window_1h_ng"])),
        ("24 h window", pf.format_dose(status["window_24h_ng"])),
        ("at the tip", _tip_text(status)),
    ]


def _tip_text(status: dict[str, Any]) -> str:
    """The drug now leaving the catheter tip and when the reservoir's reaches it."""
    drug = pf.DRUG_NAMES.get(status["tip_drug_id"], f"drug {status['tip_drug_id']}")
    conc = status["tip_conc_ug_ml"]
    text = f"{drug} {pf.format_concentration(conc)}" if conc else "saline or an empty catheter"
    wait = status["new_drug_at_tip_s"]
    if wait == NEVER_U32:
        return text + "; the reservoir's drug follows once delivery runs"
    if wait:
        return text + f"; the reservoir's drug reaches it in {_dhm(wait)}"
    return text


def cmd_hello(args: argparse.Namespace) -> int:
    with _pump_url(args) as url, _session(args, url, changes=False) as pump:
        hello = pump.hello()  # refuses a protocol or schema mismatch loudly
    print(f"port:        {url}")
    print(f"firmware:    {hello['firmware_version']}")
    print(f"micropython: {hello['micropython_version']}")
    print(f"board:       {hello['board']}")
    print(f"device id:   {hello['device_id']}")
    print(f"protocol:    v{hello['protocol_version']}")
    print(f"schema:      {fingerprint_hex(hello['schema_fingerprint'])} (matches this bench)")
    return EXIT_OK


def cmd_ping(args: argparse.Namespace) -> int:
    times: list[float] = []
    with _pump_url(args) as url, _session(args, url, changes=False) as pump:
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


# --- therapy commands ---------------------------------------------------------------

_ROW_ORDER = (
    "crc",
    "drug",
    "concentration",
    "mode",
    "rate",
    "background rate",
    *(f"flex step {i + 1}" for i in range(pf.FLEX_STEPS)),
    "patient bolus",
    "pb lockout",
    "pb max per day",
    "low reservoir",
    "override soft",
)


def _comparison(active: dict[str, Any], new: dict[str, Any], new_crc: int) -> list[str]:
    """Active and new program side by side; ``*`` marks the rows that change."""
    left = dict(pf.summary_rows(active), crc=f"0x{active['crc']:08x}")
    right = dict(pf.summary_rows(new), crc=f"0x{new_crc:08x}")
    labels = sorted(set(left) | set(right), key=_ROW_ORDER.index)
    rows = []
    for label in labels:
        old, value = left.get(label, "-"), right.get(label, "-")
        rows.append(("*" if old != value else "", label, old, value))
    return _table(("", "field", "active", "new"), rows)


def _verify_pending(pump: PumpClient, fields: dict[str, Any], reply: dict[str, Any]) -> None:
    """The pending program must be exactly what was sent, under the CRC the bench computes."""
    expected = program_crc(fields)
    if reply["crc"] != expected:
        raise PumpFailed(
            f"{pump.url}: PROGRAM answered CRC 0x{reply['crc']:08x}; "
            f"the program sent has CRC 0x{expected:08x}"
        )
    readback = pump.get_program(pending=True)
    differ = [name for name in PROGRAM_FIELD_NAMES if readback[name] != fields[name]]
    if readback["crc"] != expected or differ:
        raise PumpFailed(
            f"{pump.url}: the pending program reads back differently "
            f"(CRC 0x{readback['crc']:08x}, fields {', '.join(differ) or 'none'})"
        )


def _worst_case_lines(reply: dict[str, Any], conc: int) -> list[str]:
    overridden = soft_limit_names(reply["soft_override_mask"])
    return [
        f"soft limits overridden: {', '.join(overridden) or 'none'}",
        f"worst case, any 24 h:   {pf.volume_text(reply['max_daily_nl'], conc)}",
        f"worst case, any hour:   {pf.volume_text(reply['max_hourly_nl'], conc)}",
        "(the pump's windows, 24 h 15 min and 61 min, basal and every allowed bolus)",
    ]


def _cancel_quietly(pump: PumpClient) -> None:
    """Best-effort CANCEL_PROGRAM on the way out of an error, which must not be masked.

    If even this fails, the pump drops the pending program itself after its
    timeout; the old program runs on either way.
    """
    try:
        pump.cancel_program()
    except (BenchError, PumpRefused):
        pass


def cmd_program(args: argparse.Namespace) -> int:
    fields = pf.load_program(args.file)  # a bad file stops here, before any board
    with _pump_url(args) as url, _session(args, url) as pump:
        active = pump.get_program()
        reply = pump.program(fields)  # pending only; a refusal names its limit
        settled = False
        try:
            _verify_pending(pump, fields, reply)
            print(f"program {args.file} on {url}: sent, read back, not yet active")
            for line in _comparison(active, fields, reply["crc"]):
                print(line)
            for line in _worst_case_lines(reply, fields["conc_ug_ml"]):
                print(line)
            if not args.yes and not _interactive():
                # nobody to ask (a pipe, a script, CI): not confirmed, and says so
                pump.cancel_program()
                settled = True
                print(f"cancelled: the active program (CRC 0x{active['crc']:08x}) keeps running")
                raise BenchError(
                    f"{args.file}: not confirmed: stdin is not a terminal to ask on; "
                    "give --yes to confirm without asking"
                )
            if not (args.yes or _ask("Confirm? [y/N] ")):
                pump.cancel_program()
                settled = True
                print(f"cancelled: the active program (CRC 0x{active['crc']:08x}) keeps running")
                return EXIT_OK
            crc = pump.confirm(reply["crc"])
            settled = True
        finally:
            if not settled:  # a failed check, Ctrl-C at the question: leave nothing pending
                _cancel_quietly(pump)
        status = pump.status()
    alarms = ", ".join(status["alarm_names"])
    print(f"confirmed: program CRC 0x{crc:08x} is active; state {status['state_name']}")
    if alarms:
        print(f"alarms: {alarms}")
    return EXIT_OK


def cmd_bolus(args: argparse.Namespace) -> int:
    with _pump_url(args) as url, _session(args, url) as pump:
        conc = pump.get_program()["conc_ug_ml"]
        reply = pump.bolus(
            args.kind,
            volume_nl=args.volume or 0,
            dose_ng=args.dose or 0,
            duration_s=args.duration,
            catheter_mm=args.catheter_cm or 0,
            nl_per_cm=args.nl_per_cm or 0,
            override_soft=args.override_soft,
        )
    over = f" over {pf.format_duration(args.duration)}" if args.duration else ""
    # priming and bridge push what the path holds, not the program's drug:
    # the pump checked their dose at the tip (SPEC 22.3)
    shown = pf.volume_text(reply["volume_nl"], conc if args.kind == "clinician" else 0)
    print(f"{url}: {args.kind} bolus {reply['bolus_id']} started: {shown}{over}")
    return EXIT_OK


def cmd_patient_bolus(args: argparse.Namespace) -> int:
    with _pump_url(args) as url, _session(args, url) as pump:
        conc = pump.get_program()["conc_ug_ml"]
        reply = pump.patient_bolus()
    volume = pf.volume_text(reply["volume_nl"], conc)
    print(f"{url}: patient bolus {reply['bolus_id']} started: {volume}")
    return EXIT_OK


def cmd_cancel_bolus(args: argparse.Namespace) -> int:
    with _pump_url(args) as url, _session(args, url) as pump:
        running = pump.status()["bolus_kind"]
        delivered = pump.cancel_bolus()
    if running:
        print(f"{url}: bolus cancelled after {pf.format_volume(delivered)}")
    else:
        print(f"{url}: no bolus was running")
    return EXIT_OK


def cmd_catheter(args: argparse.Namespace) -> int:
    with _pump_url(args) as url, _session(args, url) as pump:
        path_nl = pump.catheter(args.length, args.nl_per_cm, args.new)
        status = pump.status()
    what = "a new, empty catheter" if args.new else "the catheter"
    print(f"{url}: {what} of {args.length / 10:g} cm at {args.nl_per_cm} nL/cm recorded")
    print(f"drug path:   {pf.format_volume(path_nl)} (pump internal volume + catheter)")
    print(f"at the tip:  {_tip_text(status)}")
    return EXIT_OK


def cmd_refill(args: argparse.Namespace) -> int:
    with _pump_url(args) as url, _session(args, url) as pump:
        drug = None if args.drug is None else pf.DRUGS[args.drug]
        crc = pump.get_program(pending=True)["crc"] if args.with_program else 0
        reply = pump.refill(args.withdrawn, args.added, drug, args.concentration, crc)
    discrepancy = reply["discrepancy_nl"]
    meaning = ""
    if discrepancy < 0:
        meaning = " (less left than expected: over-infusion or a leak)"
    elif discrepancy > 0:
        meaning = " (more left than expected: under-infusion, occlusion or a stall)"
    flagged = "YES: beyond tolerance, REFILL_DISCREPANCY raised" if reply["flagged"] else "no"
    print(f"port:        {url}")
    print(
        f"expected:    {pf.format_volume(reply['expected_nl'])} (what the pump believed was left)"
    )
    print(f"withdrawn:   {pf.format_volume(args.withdrawn)}")
    print(f"discrepancy: {pf.format_volume(discrepancy)}{meaning}")
    print(f"flagged:     {flagged}")
    print(f"added:       {pf.format_volume(args.added)}")
    print(f"refill by:   {_date(reply['refill_date_s'])}")
    return EXIT_OK


# Log codes whose a is a program CRC (sent in a signed field: shown as hex).
_CRC_CODES = {"PROGRAM_PENDING", "PROGRAM_ACTIVE", "PROGRAM_ABANDONED"}


def _log_total(pump: PumpClient, access: bool) -> int:
    """Entries the pump's log (or access log) has held: the next index it will write."""
    request = "GET_ACCESS_LOG" if access else "GET_LOG"
    total: int = pump.request(request, {"start": 0, "count": 0})["total"]
    return total


def cmd_log(args: argparse.Namespace) -> int:
    with _pump_url(args) as url, _session(args, url, changes=False) as pump:
        total = _log_total(pump, args.access)
        if args.start and args.start >= total:
            raise BenchError(
                f"--start {args.start} is past the end of the "
                f"{'access log' if args.access else 'log'}: "
                + (f"its entries are 0..{total - 1}" if total else "it is empty")
            )
        entries = pump.log(args.start, args.count, access=args.access)
    for entry in entries:
        entry["what"] = logview.describe(entry)
    if args.json:
        _print_json({"port": url, "access": args.access, "total": total, "entries": entries})
        return EXIT_OK
    rows = [
        (
            str(e["index"]),
            _dhms(e["time_s"]),
            e["name"],
            f"0x{e['a'] & 0xFFFF_FFFF:08x}" if e["name"] in _CRC_CODES else str(e["a"]),
            str(e["b"]),
            e["what"],
        )
        for e in entries
    ]
    which = "access-log" if args.access else "log"
    print(f"{url}: {len(entries)} {which} entries")
    for line in _table(("index", "device time", "event", "a", "b", "what"), rows):
        print(line)
    return EXIT_OK


def cmd_start(args: argparse.Namespace) -> int:
    with _pump_url(args) as url, _session(args, url) as pump:
        pump.start()
        state = pump.status()["state_name"]
    print(f"{url}: started; state {state}")
    return EXIT_OK


def cmd_stop(args: argparse.Namespace) -> int:
    with _pump_url(args) as url, _session(args, url) as pump:
        pump.stop()
        state = pump.status()["state_name"]
    print(f"{url}: stopped; state {state}")
    return EXIT_OK


def cmd_alarms(args: argparse.Namespace) -> int:
    """Active alarms by priority, acknowledge them (--ack), and their history."""
    colour = alarmview.colour_wanted()
    with _pump_url(args) as url, _session(args, url, changes=args.ack is not None) as pump:
        if args.ack is not None:
            pump.request("ACK_ALARM", {"alarm": args.ack})
        status = pump.status()
        history = pump.log() if args.history else []
    if args.json:
        _print_json(_alarms_data(url, status, history, args.history))
        return EXIT_OK
    print(f"port:        {url}")
    print(f"state:       {status['state_name']}")
    rows = alarmview.alarm_rows(status, colour)
    print(f"active:      {len(rows) or 'none'}")
    for row in rows:
        print(f"  {row}")
    if args.history:
        print("history:")
        for row in alarmview.history_rows(history, colour)[-args.history :]:
            print(f"  {row}")
    return EXIT_OK


def _alarms_data(
    url: str, status: dict[str, Any], history: list[dict[str, Any]], keep: int
) -> dict[str, Any]:
    """``alarms --json``: the active alarms by priority and the last ``keep`` alarm events."""
    active = [
        {
            "id": alarm,
            "name": schema.alarm_name(alarm),
            "priority": schema.priority_name(schema.alarm_priority(alarm)),
            "acknowledged": bool(status["acknowledged"] >> (alarm - 1) & 1),
        }
        for alarm in alarmview.alarm_ids(status["alarms"])
    ]
    events = [
        {
            "index": e["index"],
            "time_s": e["time_s"],
            "event": e["name"],
            "alarm": schema.alarm_name(e["a"]),
        }
        for e in history
        if e["name"] in ("ALARM_RAISED", "ALARM_CLEARED", "ALARM_ACKNOWLEDGED")
    ]
    return {
        "port": url,
        "state": status["state_name"],
        "active": active,
        "history": events[-keep:] if keep else [],
    }


def _ack(text: str) -> int:
    return 0 if text.lower() == "all" else _alarm(text)


def cmd_clear_alarm(args: argparse.Namespace) -> int:
    with _pump_url(args) as url, _session(args, url) as pump:
        pump.clear_alarm(args.alarm)
        status = pump.status()
    print(f"{url}: cleared {schema.alarm_name(args.alarm)}")
    print(f"alarms:      {', '.join(status['alarm_names']) or 'none'}")
    print(f"state:       {status['state_name']}")
    return EXIT_OK


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


def cmd_keys_new(args: argparse.Namespace) -> int:
    """Writes a key file: fresh keys, or one role's key of an existing file."""
    if args.source:
        keys = keysmod.load(args.source).only(keysmod.ROLE_WORDS[args.role])
        if keys.highest_role == schema.ROLE_READ_ONLY:
            raise BenchError(f"{args.source}: holds no {args.role} key")
        comment = f"{args.role} key of {args.source}"
    else:
        keys = keysmod.generate()
        comment = f"pump keys, made by {PROG} keys new {time.strftime('%Y-%m-%d')}"
    keysmod.write(args.file, keys, comment)
    roles = [word for word, role in keysmod.ROLE_WORDS.items() if keys.for_role(role)]
    print(f"{args.file}: {' and '.join(roles)} key{'s' if len(roles) > 1 else ''} (mode 600)")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    scenarios = load_scenarios(args.paths)  # every file validated before any board
    if args.key_file:
        keysmod.use_key_file(args.key_file)
    target: Target
    if args.target == SIM:
        target = SimTarget(heap=args.heap, say=_note, speed=args.speed)
    elif args.target == "pico":
        from bench.pico import pico_target

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


# --- parser ------------------------------------------------------------------------


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


def _add_therapy_commands(commands: Any) -> None:
    program = commands.add_parser(
        "program", help="send a program file, show it beside the active one, confirm"
    )
    program.add_argument("file", metavar="FILE", help="program file (TOML, bench/README.md)")
    program.add_argument("--yes", action="store_true", help="confirm without asking")
    _add_board_choice(program)
    program.set_defaults(func=cmd_program)

    bolus = commands.add_parser("bolus", help="clinician, priming or bridge bolus")
    amount = bolus.add_mutually_exclusive_group()
    amount.add_argument("--volume", type=_volume, metavar="VOL", help="e.g. 0.1mL, 50uL")
    amount.add_argument(
        "--dose", type=_dose, metavar="DOSE", help="e.g. 100ug: a volume at the concentration"
    )
    bolus.add_argument(
        "--duration", type=_duration, default=0, metavar="TIME", help="e.g. 10min (default: fast)"
    )
    bolus.add_argument("--kind", choices=tuple(BOLUS_KINDS), default="clinician")
    bolus.add_argument(
        "--catheter-cm", type=_length, metavar="CM", help="priming/bridge: catheter length"
    )
    bolus.add_argument(
        "--nl-per-cm", type=_nl_per_cm, metavar="NL", help="priming/bridge: catheter volume per cm"
    )
    bolus.add_argument(
        "--override-soft", action="store_true", help="accept a bolus above the soft limit"
    )
    _add_board_choice(bolus)
    bolus.set_defaults(func=cmd_bolus)

    catheter = commands.add_parser(
        "catheter", help="tell the pump which catheter is fitted (its drug path)"
    )
    catheter.add_argument("--length", type=_length, required=True, metavar="CM")
    catheter.add_argument("--nl-per-cm", type=_nl_per_cm, default=2_600, metavar="NL")
    catheter.add_argument(
        "--new", action="store_true", help="a new catheter: empty, prime it with a priming bolus"
    )
    _add_board_choice(catheter)
    catheter.set_defaults(func=cmd_catheter)

    refill = commands.add_parser("refill", help="record a refill: reconciliation, refill date")
    refill.add_argument("--withdrawn", type=_volume, required=True, metavar="VOL")
    refill.add_argument("--added", type=_volume, required=True, metavar="VOL")
    refill.add_argument(
        "--drug", choices=sorted(pf.DRUGS), help="the drug put in (default: the program's)"
    )
    refill.add_argument(
        "--concentration",
        type=_concentration,
        metavar="CONC",
        help="its concentration, e.g. 2mg/mL (default: the program's)",
    )
    refill.add_argument(
        "--with-program",
        action="store_true",
        help="commit the pending program (sent for the new drug) together with the refill",
    )
    _add_board_choice(refill)
    refill.set_defaults(func=cmd_refill)

    log = commands.add_parser("log", help="the pump's event log")
    log.add_argument("--start", type=_count, default=0, metavar="N", help="first index")
    log.add_argument("--count", type=_count, metavar="N", help="entries (default: all)")
    log.add_argument(
        "--access",
        action="store_true",
        help="the access log (sessions, refusals and their tallies) instead of the therapy history",
    )
    _add_json_option(log)
    _add_board_choice(log)
    log.set_defaults(func=cmd_log)

    alarms = commands.add_parser("alarms", help="active alarms by priority; --ack; history")
    alarms.add_argument(
        "--ack", type=_ack, metavar="NAME|ID|all", help="acknowledge (silence for 2 min)"
    )
    alarms.add_argument(
        "--history", type=_count, default=20, metavar="N", help="last N alarm events (0: none)"
    )
    _add_json_option(alarms)
    _add_board_choice(alarms)
    alarms.set_defaults(func=cmd_alarms)

    clear = commands.add_parser("clear-alarm", help="clear a latched alarm")
    clear.add_argument("alarm", type=_alarm, metavar="NAME|ID", help="e.g. REFILL_DISCREPANCY")
    _add_board_choice(clear)
    clear.set_defaults(func=cmd_clear_alarm)


def _check_bolus(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    catheter = args.catheter_cm is not None or args.nl_per_cm is not None
    if args.kind == "clinician":
        if args.volume is None and args.dose is None:
            parser.error("a clinician bolus needs --volume or --dose")
        if catheter:
            parser.error("--catheter-cm and --nl-per-cm go with --kind priming or bridge")
    else:
        if args.volume is not None or args.dose is not None:
            parser.error(
                f"the pump works out a {args.kind} bolus from its drug path: "
                "give no --volume or --dose"
            )
        if (args.catheter_cm is None) != (args.nl_per_cm is None):
            parser.error("--catheter-cm and --nl-per-cm go together (the catheter fitted)")


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
