"""pumpbench commands that change therapy: program, bolus, patient-bolus, cancel-bolus, catheter,
refill, start, stop, clear-alarm. Each opens a session on first need and closes it before it exits.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bench.cli.common import (
    EXIT_OK,
    PumpFailed,
    _add_board_choice,
    _add_json_option,
    _alarm,
    _concentration,
    _count,
    _date,
    _dose,
    _duration,
    _length,
    _nl_per_cm,
    _pump_url,
    _session,
    _table,
    _volume,
)
from bench.cli.query import _ack, _tip_text, cmd_alarms, cmd_log
from bench.link.client import BOLUS_KINDS, PROGRAM_FIELD_NAMES, program_crc, soft_limit_names
from bench.link.errors import BenchError, PumpRefused
from bench.link.pump import PumpClient
from bench.program import file as pf
from protocol import schema


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
    # the pump checked their dose at the tip (docs/pump.md 22.3)
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


def cmd_clear_alarm(args: argparse.Namespace) -> int:
    with _pump_url(args) as url, _session(args, url) as pump:
        pump.clear_alarm(args.alarm)
        status = pump.status()
    print(f"{url}: cleared {schema.alarm_name(args.alarm)}")
    print(f"alarms:      {', '.join(status['alarm_names']) or 'none'}")
    print(f"state:       {status['state_name']}")
    return EXIT_OK


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
