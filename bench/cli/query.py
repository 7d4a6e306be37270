"""pumpbench commands that only read a pump: status, hello, ping, log, alarms (and alarms --ack)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.cli import alarmview, logview
from bench.cli.common import (
    EXIT_OK,
    _alarm,
    _date,
    _dhm,
    _dhms,
    _print_json,
    _pump_url,
    _session,
    _table,
)
from bench.link.client import NEVER_U32
from bench.link.errors import BenchError
from bench.link.pump import PumpClient
from bench.program import file as pf
from bench.report.records import fingerprint_hex, format_ms
from protocol import schema


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
