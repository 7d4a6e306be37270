"""Benchmarks that print figures (``make bench``); nothing here asserts a time.

Figures, all against the real firmware on virtual boards (bench.sim):

- STATUS round trips over the pty: rate, median and p95 latency;
- sessions: the time to open one, and a signed STATUS beside a plain one
  (the MAC check on MicroPython);
- wall time of one ADVANCE over 30 idle days (median of fresh boards);
- bytes of framing overhead per frame, from the schema constants, checked by
  encoding with the host codec;
- total size of the compiled .mpy image (bench.image.compile_all);
- occlusion: onset to alarm at 0.048, 0.5 and 24 mL/day for the firmware's
  per-stroke monitor beside a plain 517 mmHg threshold on the same plant, and
  the volume stored in the line when each fires (released at relief);
- false alarms per simulated year: nominal 90-day runs on two seeds;
- sensing campaign (issue 14): each line fault on random lines across the
  plant's documented range at the four rates, with detection rate, onset to
  alarm and volume (tip migration included: the daily pulsation bursts,
  basal rates; a break at mid-length; sensor noise), and
  false alarms per patient-year of daily life (bursts on); its seed is drawn
  at run time and printed;
- 90 days of a flex schedule at 1 mL/day with a daily patient bolus: wall
  time, pump accounting against rig truth, and the peak live heap sampled by
  the virtual board (rig HEAP);
- delivered against expected at 24 mL/day while the pump port is flooded with
  keyless PING frames, on a free-running board (60 x real time);
- dose at the tip across a baclofen concentration change at 600 ug/day, 500
  to 2000 and 2000 to 500 ug/mL: the most in any 1 h and 24 h over the 48 h
  after it and the longest gap without drug (rig truth, 1-minute samples);
- the days of history the event log keeps at 4 patient boluses a day;
- the emulated Pico (bench.pico, stock MicroPython on rp2040js): boot to HELLO
  in emulated and wall time, the real 32-bit free heap at idle and during a
  stroke (beside the 64-bit host's figure above), strokes per wall second in
  fast mode. Skipped, with the reason, where Node or the UF2 is missing;
- the frozen firmware (make firmware): a clean build's time, firmware.bin and
  the pump's frozen bytecode, and the heap the frozen image uses on the
  emulated Pico beside the .mpy install (MICROPYTHON_SRC and the Arm
  toolchain, else skipped);
- the clock check: device time from a timer 1.1, 3 and 10 times fast
  (TIMER_FAST) to CLOCK_FAULT at 0.048, 0.5, 4 and 24 mL/day.

Usage: ``python -m bench.benchmarks [--requests N] [--boards N] [--days N]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.client import PumpClient, RigClient, alarm_names
from bench.errors import PumpRefused
from bench.image import compile_all, ensure_compiled
from bench.programfile import load_program
from bench.robustness import program_fields
from bench.sim import BoardOptions, VirtualBoard, micropython_command
from protocol import auth, codec, schema
from protocol.table import DRUG_BACLOFEN

STATUS_REQUESTS = 2000
ADVANCE_BOARDS = 3
ADVANCE_DAYS = 30
THERAPY_DAYS = 90
DAY_MS = 86_400_000


@dataclass
class Row:
    figure: str
    value: str
    unit: str
    note: str = ""


def _percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``samples`` (fraction in 0..1)."""
    ordered = sorted(samples)
    rank = max(1, round(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _check_alive(board: VirtualBoard) -> None:
    if not board.alive:
        raise SystemExit(f"virtual board died:\n{board.stderr_text()}")


# --- (a) STATUS round trips ---------------------------------------------------
def status_round_trips(requests: int) -> list[Row]:
    with VirtualBoard(BoardOptions()) as board, PumpClient(board.pump_port) as pump:
        pump.hello()  # the board is up and speaks our schema
        for _ in range(20):  # warm up (first reads, page faults)
            pump.status()
        latencies: list[float] = []
        start = time.perf_counter()
        for _ in range(requests):
            sent = time.perf_counter()
            pump.status()
            latencies.append(time.perf_counter() - sent)
        elapsed = time.perf_counter() - start
        retransmissions = pump.retransmissions
        _check_alive(board)
    note = f"{requests} requests, one in flight"
    if retransmissions:
        note += f", {retransmissions} retransmitted"
    return [
        Row("STATUS round trips", f"{requests / elapsed:,.0f}", "req/s", note),
        Row("STATUS latency, median", f"{statistics.median(latencies) * 1e3:.3f}", "ms"),
        Row("STATUS latency, p95", f"{_percentile(latencies, 0.95) * 1e3:.3f}", "ms"),
    ]


# --- (a') what the sessions cost (protocol/SPEC.md section 21) -------------------
def session_costs(requests: int, opens: int = 50) -> list[Row]:
    """Opening a session, and a signed request beside a plain one (MAC on MicroPython)."""
    with VirtualBoard(BoardOptions()) as board, PumpClient(board.pump_port) as pump:
        pump.hello()
        open_times: list[float] = []
        for _ in range(opens):
            start = time.perf_counter()
            session = pump.open_session()  # AUTH_CHALLENGE, AUTH_OPEN, STATUS
            open_times.append(time.perf_counter() - start)
        rates = {}
        for label, signer in (("plain", None), ("signed", session.sign)):
            start = time.perf_counter()
            for _ in range(requests):
                pump.request("STATUS", signer=signer)
            rates[label] = requests / (time.perf_counter() - start)
        _check_alive(board)
    cost_ms = (1 / rates["signed"] - 1 / rates["plain"]) * 1e3
    return [
        Row(
            "session open, median",
            f"{statistics.median(open_times) * 1e3:.2f}",
            "ms",
            f"{opens} opens: challenge, proof, the pump's proof",
        ),
        Row("STATUS round trips, signed", f"{rates['signed']:,.0f}", "req/s"),
        Row(
            "request + reply MACs per signed frame",
            f"{cost_ms:.3f}",
            "ms",
            f"both ends, against {rates['plain']:,.0f} plain req/s; "
            f"{schema.AUTH_TRAILER_SIZE} + {schema.REPLY_MAC_SIZE} B on the wire",
        ),
    ]


# --- (a'') what exactly-once costs (protocol/SPEC.md section 23) ------------------
def exactly_once_costs(requests: int) -> list[Row]:
    """A therapy request under a new request id (intent, done, flush) and a copy of one
    answered from the outcome journal, beside a signed request that journals nothing."""
    with (
        VirtualBoard(BoardOptions()) as board,
        PumpClient(board.pump_port) as pump,
        RigClient(board.rig_port) as rig,
    ):
        pump.hello()
        session = pump.open_session()
        start = time.perf_counter()
        for _ in range(requests):
            pump.request("STATUS", signer=session.sign)
        signed = (time.perf_counter() - start) / requests
        # ACK_ALARM with no alarm active changes nothing but is journalled
        written = rig.truth()["journal_bytes"]
        start = time.perf_counter()
        for _ in range(requests):
            request_id = auth.new_request_id()
            pump.request_once("ACK_ALARM", {"alarm": 0}, request_id)
        journalled = (time.perf_counter() - start) / requests
        per_request = (rig.truth()["journal_bytes"] - written) / requests
        start = time.perf_counter()
        for _ in range(requests):
            pump.request_once("ACK_ALARM", {"alarm": 0}, request_id)
        answered = (time.perf_counter() - start) / requests
        _check_alive(board)
    return [
        Row(
            "therapy request under a new id",
            f"{journalled * 1e3:.3f}",
            "ms",
            f"ACK_ALARM round trip: look-up, {per_request:.0f} B journalled (intent + reply), "
            f"flush; a signed STATUS (no journal) {signed * 1e3:.3f} ms",
        ),
        Row(
            "copy answered from the outcome journal",
            f"{answered * 1e3:.3f}",
            "ms",
            f"the same ACK_ALARM again: scan of up to {4 * schema.OUTCOMES_KEPT} records",
        ),
    ]


def reply_mac_cost() -> list[Row]:
    """The pump's cost of signing one reply (SPEC 21.6): the firmware's HMAC over a
    STATUS reply on the MicroPython unix port (bench/upy/reply_mac_cost.py)."""
    image = ensure_compiled()
    result = subprocess.run(
        [micropython_command(), "-X", "heapsize=256k", str(REPLY_MAC_SCRIPT)],
        capture_output=True,
        text=True,
        env=dict(os.environ, MICROPYPATH=str(image)),
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"reply MAC timing failed:\n{result.stdout}{result.stderr}")
    us = json.loads(result.stdout.strip().splitlines()[-1])["us_per_mac"]
    return [
        Row(
            "reply MAC per signed reply (pump)",
            f"{us / 1000:.3f}",
            "ms",
            f"HMAC-SHA256 over a STATUS reply, MicroPython unix port; "
            f"+{schema.REPLY_MAC_SIZE} B on the wire",
        )
    ]


REPLY_MAC_SCRIPT = Path(__file__).with_name("upy") / "reply_mac_cost.py"


def _firmware_constant(module: str, name: str) -> int:
    """An integer constant of firmware/pump/<module>, read from its source."""
    text = (Path(__file__).parents[1] / "firmware" / "pump" / module).read_text()
    found = re.search(rf"^{name} = ([\d_]+)", text, flags=re.MULTILINE)
    if found is None:
        raise SystemExit(f"{name} not found in firmware/pump/{module}")
    return int(found.group(1).replace("_", ""))


def log_retention_days(days: int = 10) -> list[Row]:
    """Days of therapy history the event log keeps for a busy patient (issue 12
    item 6): ``days`` on a virtual board with 4 patient boluses a day, each
    from a patient session, and a refill with a new program on day 0; the
    event log keeps at least EVENTS_PER_FILE entries, sessions and refusals
    go to the access log."""
    events_per_file = _firmware_constant("journal.py", "EVENTS_PER_FILE")
    with (
        VirtualBoard(BoardOptions()) as board,
        PumpClient(board.pump_port) as pump,
        RigClient(board.rig_port) as rig,
    ):
        fields = program_fields(pb_dose_nl=2_000, pb_lockout_s=3 * 3600, pb_max_per_day=4)
        rig.fill(20_000_000)
        pump.refill(0, 20_000_000)
        pump.confirm(pump.program(fields)["crc"])
        start = pump.request("GET_LOG", {"start": 0, "count": 0})["total"]
        clinician = pump.keys
        assert clinician is not None
        pump.keys, pump.role, pump.session = clinician.only(schema.ROLE_PATIENT), 1, None
        for _ in range(days * 4):
            pump.patient_bolus()
            try:
                pump.patient_bolus()  # refused: the lockout
            except PumpRefused:
                pass
            pump.close_session()
            rig.advance(6 * 3600 * 1000)
        entries = pump.request("GET_LOG", {"start": 0, "count": 0})["total"] - start
        _check_alive(board)
    per_day = entries / days + 3 / 30  # and a refill, a program and its pending a month
    return [
        Row(
            "therapy history kept at 4 patient boluses a day",
            f"{events_per_file / per_day:,.0f}",
            "days",
            f"at least; {per_day:.1f} event-log entries a day measured over {days} days "
            f"(sessions, refusals in the access log), {events_per_file} kept",
        )
    ]


# --- (b) ADVANCE over idle days -------------------------------------------------
def advance_wall_time(boards: int, days: int) -> list[Row]:
    duration_ms = days * DAY_MS
    walls: list[float] = []
    for _ in range(boards):
        with VirtualBoard(BoardOptions()) as board, RigClient(board.rig_port) as rig:
            rig.hello()
            start = time.perf_counter()
            reached = rig.advance(duration_ms)
            walls.append(time.perf_counter() - start)
            _check_alive(board)
        if reached != duration_ms:
            raise SystemExit(f"ADVANCE of {duration_ms} ms from 0 ended at {reached} ms")
    spread = ", ".join(f"{wall:.3f}" for wall in walls)
    return [
        Row(
            f"ADVANCE {days} idle days, wall time",
            f"{statistics.median(walls):.3f}",
            "s",
            f"median of {boards} fresh boards ({spread} s)",
        )
    ]


# --- (c) framing overhead -------------------------------------------------------
def expected_wire_size(payload_size: int) -> int:
    """Wire bytes of a frame with ``payload_size`` payload bytes, from the schema."""
    body = schema.HEADER_SIZE + payload_size + schema.CRC_SIZE
    encoded = body + 1 + body // 254  # COBS: one code byte per started 254-byte block
    return encoded + 2  # the 0x00 delimiters before and after


def framing_overhead() -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    problems: list[str] = []
    ping_id = codec.MESSAGE_TYPES["PING"].msg_id
    for label, size in (("empty", 0), ("max-size", schema.MAX_PAYLOAD)):
        expected = expected_wire_size(size) - size
        # all-zero and all-nonzero payloads: COBS overhead must not depend on content
        for fill in (0x00, 0x55):
            wire = codec.encode_raw(ping_id, 0x1234, 0, bytes([fill]) * size)
            if len(wire) - size != expected:
                problems.append(
                    f"{label} payload filled with {fill:#04x}: {len(wire) - size} bytes of "
                    f"overhead encoded, {expected} from the schema"
                )
        rows.append(
            Row(
                f"frame overhead, {label} payload ({size} B)",
                str(expected),
                "B",
                f"wire {expected_wire_size(size)} B; checked with protocol.codec",
            )
        )
    return rows, problems


# --- (d) image size ----------------------------------------------------------------
def image_size() -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="mpy-") as out:
        built = compile_all(Path(out))
        total = sum(path.stat().st_size for path in built)
    return [Row("compiled image (.mpy)", f"{total:,}", "B", f"{len(built)} files, mpy-cross")]


# --- (e) 90 days of therapy ------------------------------------------------------
THERAPY_PROGRAM = Path(__file__).with_name("programs") / "benchmark-flex-1ml.toml"
RESERVOIR_NL = 40_000_000


def therapy_soak(days: int) -> list[Row]:
    """A flex schedule averaging 1 mL/day with a daily patient bolus, for
    ``days`` of device time (refilled every 30 days): wall time, and the
    live heap the rig sampled along the way."""
    fields = load_program(THERAPY_PROGRAM)
    with (
        VirtualBoard(BoardOptions()) as board,
        PumpClient(board.pump_port) as pump,
        RigClient(board.rig_port) as rig,
    ):
        rig.fill(RESERVOIR_NL)
        pump.refill(0, RESERVOIR_NL)
        pump.confirm(pump.program(fields)["crc"])
        started = time.perf_counter()
        for day in range(days):
            rig.advance(DAY_MS // 2)
            pump.patient_bolus()
            rig.advance(DAY_MS // 2)
            if day % 30 == 29:
                pump.refill(rig.fill(RESERVOIR_NL), RESERVOIR_NL)
        wall = time.perf_counter() - started
        _check_alive(board)
        status = pump.status()
        real = rig.truth()
        heap = rig.request("HEAP")
    accounting = status["delivered_nl"] - real["pumped_nl"]
    return [
        Row(
            f"{days} days of flex therapy, wall time",
            f"{wall:.1f}",
            "s",
            f"1 mL/day + daily patient bolus; {real['pumped_nl'] / 1e6:.2f} mL delivered",
        ),
        Row("  pump accounting vs rig truth", f"{accounting:+d}", "nL", "within one stroke"),
        Row(
            "  peak live heap (sampled)",
            f"{heap['peak_alloc']:,}",
            "B",
            f"of {heap['total']:,} B given; {heap['samples']:,} samples",
        ),
    ]


# --- (g) dose at the tip across a concentration change (issue 12) ----------------
BACLOFEN_UG_DAY = 600


def _baclofen(conc: int) -> dict[str, object]:
    fields: dict[str, object] = {}
    fields.update(
        drug_id=DRUG_BACLOFEN,
        conc_ug_ml=conc,
        mode=1,
        basal_nl_day=BACLOFEN_UG_DAY * 1_000_000 // conc,
        flex_count=0,
        flex_start_min=[0] * 24,
        flex_rate_nl_day=[0] * 24,
        flex_days=[0] * 24,
        pb_dose_nl=0,
        pb_lockout_s=0,
        pb_max_per_day=0,
        low_reservoir_nl=2_000_000,
        override_soft=0,
    )
    return fields


def _windows(series: list[tuple[int, int]], window_ms: int) -> int:
    worst = 0
    first = 0
    for t, dose in series:
        while t - series[first][0] > window_ms:
            first += 1
        worst = max(worst, dose - series[first][1])
    return worst


def concentration_change(old: int, new: int, hours: int = 48) -> list[Row]:
    """Baclofen 600 ug/day refilled from ``old`` to ``new`` ug/mL with its
    program (SPEC 22.2): over the ``hours`` after the change, from the rig's
    truth of the dose at the tip sampled every minute, the most in any 1 h
    and any 24 h, and the longest time without drug at the tip."""
    with (
        VirtualBoard(BoardOptions()) as board,
        PumpClient(board.pump_port) as pump,
        RigClient(board.rig_port) as rig,
    ):
        rig.fill(10_000_000, old)
        pump.refill(0, 10_000_000, DRUG_BACLOFEN, old)
        pump.confirm(pump.program(_baclofen(old))["crc"])
        rig.advance(DAY_MS)
        crc = pump.program(_baclofen(new))["crc"]
        pump.refill(rig.fill(10_000_000, new), 10_000_000, DRUG_BACLOFEN, new, crc)
        series = [(0, rig.truth()["tip_ng"])]
        for minute in range(1, hours * 60 + 1):
            rig.advance(60_000)
            series.append((minute * 60_000, rig.truth()["tip_ng"]))
        alarms = pump.status()["alarm_names"]
        _check_alive(board)
    gap = run = 0
    for (t0, d0), (t1, d1) in itertools.pairwise(series):
        run = run + (t1 - t0) if d1 == d0 else 0
        gap = max(gap, run)
    label = f"baclofen {old} -> {new} ug/mL at {BACLOFEN_UG_DAY} ug/day"
    note = f"{hours} h after the change, rig truth at the tip; alarms: {alarms or 'none'}"
    return [
        Row(f"{label}: most in any 1 h", f"{_windows(series, 3_600_000) / 1000:.1f}", "ug", note),
        Row("  most in any 24 h", f"{_windows(series, DAY_MS) / 1000:.1f}", "ug", "600 prescribed"),
        Row("  longest gap without drug", f"{gap / 60_000:.0f}", "min", "1-minute samples"),
    ]


def log_history(days: int = 40, presses: int = 4) -> list[Row]:
    """Days of history the event log keeps for a busy patient: ``presses``
    patient boluses a day (each in its own patient session, as a handset
    would), a refill every 30 days; and whether the last REFILL and
    PROGRAM_ACTIVE entries are still in the log at the end."""
    fields = load_program(THERAPY_PROGRAM)
    fields.update(pb_dose_nl=10_000, pb_lockout_s=3_600, pb_max_per_day=presses)
    with (
        VirtualBoard(BoardOptions()) as board,
        PumpClient(board.pump_port) as pump,
        RigClient(board.rig_port) as rig,
    ):
        rig.fill(RESERVOIR_NL)
        pump.refill(0, RESERVOIR_NL)
        pump.confirm(pump.program(fields)["crc"])
        for day in range(days):
            for _ in range(presses):
                rig.advance(DAY_MS // presses // 2)
                pump.patient_bolus()
                pump.close_session()
                rig.advance(DAY_MS // presses // 2)
            if day % 30 == 29:
                pump.refill(rig.fill(RESERVOIR_NL), RESERVOIR_NL)
        entries = pump.log()
        total = pump.request("GET_LOG", {"start": 0, "count": 0})["total"]
        _check_alive(board)
    span_days = (entries[-1]["time_s"] - entries[0]["time_s"]) / 86_400
    names = {e["name"] for e in entries}
    kept = ", ".join(n for n in ("REFILL", "PROGRAM_ACTIVE") if n in names) or "neither"
    return [
        Row(
            f"event log history at {presses} patient boluses a day",
            f"{span_days:.1f}",
            "days",
            f"{len(entries)} entries held of {total} logged in {days} days; kept: {kept}",
        )
    ]


# --- (f) occlusion: the firmware's monitor beside a plain threshold --------------
RACE_SCRIPT = Path(__file__).with_name("upy") / "occlusion_race.py"
RACE_RATES_NL_DAY = (48_000, 500_000, 24_000_000)  # 0.048, 0.5 and 24 mL/day


def occlusion_race(seed: int = 1, compliance_x10: int = 50) -> list[Row]:
    """Time from a full occlusion's onset to the alarm, per rate, for the
    firmware's per-stroke monitor and a plain 517 mmHg threshold, both fed
    the same samples of the same plant (bench/upy/occlusion_race.py under
    MicroPython); and the volume stored in the line when each fires, which
    is what a relief would release."""
    image = ensure_compiled()
    rows = []
    for rate in RACE_RATES_NL_DAY:
        result = subprocess.run(
            [
                micropython_command(),
                "-X",
                "heapsize=1024k",
                str(RACE_SCRIPT),
                str(rate),
                str(seed),
                str(compliance_x10),
            ],
            capture_output=True,
            text=True,
            env=dict(os.environ, MICROPYPATH=str(image)),
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"occlusion race failed:\n{result.stdout}{result.stderr}")
        race = json.loads(result.stdout.strip().splitlines()[-1])
        monitor_s = race["monitor_ms"] / 1000
        plain_s = race["threshold_ms"] / 1000
        ratio = f"{plain_s / monitor_s:.1f}x slower" if monitor_s > 0 and plain_s > 0 else "n/a"
        rows.append(
            Row(
                f"occlusion to alarm at {rate / 1e6:g} mL/day",
                f"{monitor_s:,.0f}",
                "s",
                f"{race['monitor_strokes']} strokes; threshold {plain_s:,.0f} s "
                f"({race['threshold_strokes']} strokes, {ratio})",
            )
        )
        rows.append(
            Row(
                "  released at relief (stored in the line)",
                f"{race['monitor_stored_nl']:,}",
                "nL",
                f"threshold detector: {race['threshold_stored_nl']:,} nL",
            )
        )
    return rows


# --- (h) delivery under a keyless flood of the pump port ------------------------
FLOOD_SPEED = 60
FLOOD_RATE_NL_DAY = 24_000_000
FLOOD_DEVICE_MS = 10 * 60_000


def flood_delivery(speed: int = FLOOD_SPEED, span_ms: int = FLOOD_DEVICE_MS) -> list[Row]:
    """A free-running board (``speed`` x wall time) at 24 mL/day while a
    shell loop writes keyless PING frames to its pump port as fast as the
    firmware drains them: delivered against the programme over the flood
    (the pump's own STATUS before and after), frames served, resets, alarms."""
    frames = b"".join(codec.encode("PING", 40_000 + i, {"token": i}) for i in range(256))
    with (
        tempfile.TemporaryDirectory() as tmp,
        VirtualBoard(BoardOptions(speed=speed)) as board,
        PumpClient(board.pump_port) as pump,
        RigClient(board.rig_port) as rig,
    ):
        blob = Path(tmp) / "flood.bin"
        blob.write_bytes(frames * 16)
        rig.fill(RESERVOIR_NL)
        pump.refill(0, RESERVOIR_NL)
        no_drug = program_fields(drug_id=0, conc_ug_ml=0, basal_nl_day=FLOOD_RATE_NL_DAY)
        pump.confirm(pump.program(no_drug)["crc"])
        rig.advance(60_000, timeout_s=30)
        served = pump.request("LINK_STATS")["frames_ok"]
        writer = subprocess.Popen(
            ["sh", "-c", f'while :; do cat "{blob}"; done > "{board.pump_port}"'],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            # each STATUS says what was delivered at the instant it was
            # answered (queued behind the flood, it may take a while)
            before = pump.request("STATUS", timeout_s=15)
            rig.advance(span_ms, timeout_s=30 + 3 * span_ms / 1000 / speed)
            after = pump.request("STATUS", timeout_s=15)
        finally:
            os.killpg(writer.pid, 15)
            writer.wait(5)
        served = pump.request("LINK_STATS")["frames_ok"] - served
        _check_alive(board)
    elapsed = after["device_time_ms"] - before["device_time_ms"]
    due = FLOOD_RATE_NL_DAY * elapsed // DAY_MS
    delivered = after["delivered_nl"] - before["delivered_nl"]
    resets = after["boot_count"] - before["boot_count"]
    alarms = ", ".join(alarm_names(after["alarms"])) or "none"
    return [
        Row(
            f"pump-port flood, {FLOOD_RATE_NL_DAY / 1e6:g} mL/day, {speed}x real time",
            f"{delivered:,} / {due:,}",
            "nL delivered/expected",
            f"{elapsed / 60_000:.1f} min of device time, {served:,} frames served, "
            f"{resets} resets, alarms: {alarms}",
        )
    ]


# --- (i) the clock check: detection time of a fast timer ---------------------------
CLOCK_RATES_NL_DAY = (0, 500_000, 4_000_000, 24_000_000)  # 0: the minimum-rate mode
CLOCK_FACTORS = (1_100, 3_000, 10_000)  # TIMER_FAST, per mille
CLOCK_SLICE_MS = 5_000


def clock_detection() -> list[Row]:
    """Device time from TIMER_FAST (x1.1, x3, x10) to CLOCK_FAULT at each
    standard rate, on lockstep boards, in 5 s slices; and what else stopped
    the pump first, if anything."""
    rows = []
    for rate in CLOCK_RATES_NL_DAY:
        found = []
        for factor in CLOCK_FACTORS:
            with (
                VirtualBoard(BoardOptions()) as board,
                PumpClient(board.pump_port) as pump,
                RigClient(board.rig_port) as rig,
            ):
                rig.fill(RESERVOIR_NL)
                pump.refill(0, RESERVOIR_NL)
                fields = program_fields(drug_id=0, conc_ug_ml=0, basal_nl_day=rate)
                if rate == 0:
                    fields["mode"] = 3
                pump.confirm(pump.program(fields)["crc"])
                rig.advance(7 * 60_000)
                rig.inject_fault("TIMER_FAST", factor)
                waited = 0
                first = ""
                while waited < 3_600_000:
                    status = pump.status()
                    names = alarm_names(status["alarms"])
                    if not first and names:
                        first = names[0]
                    if "CLOCK_FAULT" in names:
                        break
                    rig.advance(CLOCK_SLICE_MS)
                    waited += CLOCK_SLICE_MS
                _check_alive(board)
            other = f" ({first} first)" if first and first != "CLOCK_FAULT" else ""
            found.append(f"x{factor / 1000:g} {waited / 60_000:.1f}{other}")
        label = f"{rate / 1e6:g} mL/day" if rate else "0.048 mL/day (minimum)"
        rows.append(Row(f"clock check at {label}", "; ".join(found), "min to CLOCK_FAULT"))
    return rows


# --- (g) false alarms over long nominal runs --------------------------------------
SOAK_SEEDS = (21, 22)
SOAK_DAYS = 90


def _nominal_alarms(seed: int, days: int) -> int:
    fields = load_program(THERAPY_PROGRAM)
    with (
        VirtualBoard(BoardOptions(seed=seed)) as board,
        PumpClient(board.pump_port) as pump,
        RigClient(board.rig_port) as rig,
    ):
        rig.fill(RESERVOIR_NL)
        pump.refill(0, RESERVOIR_NL)
        pump.confirm(pump.program(fields)["crc"])
        for day in range(days):
            rig.advance(DAY_MS, timeout_s=600)
            if day % 30 == 29:
                pump.refill(rig.fill(RESERVOIR_NL), RESERVOIR_NL)
        _check_alive(board)
        raised = [e for e in pump.log() if e["name"] == "ALARM_RAISED"]
    # a refill that finds a discrepancy is not a false alarm of a detector
    return len([e for e in raised if schema.alarm_name(e["a"]) != "REFILL_DISCREPANCY"])


def false_alarms(seeds: tuple[int, ...], days: int) -> list[Row]:
    """Nominal therapy with the plant's noise, coughs, posture and drift, one
    board per seed in parallel: every alarm raised is a false alarm."""
    with ThreadPoolExecutor(max_workers=len(seeds)) as pool:
        counts = list(pool.map(lambda seed: _nominal_alarms(seed, days), seeds))
    years = len(seeds) * days / 365
    return [
        Row(
            "false alarms per simulated year",
            f"{sum(counts) / years:.2f}",
            "/yr",
            f"{sum(counts)} in {len(seeds)} seeds x {days} days, 1 mL/day flex",
        )
    ]


# --- the emulated Pico ------------------------------------------------------------
PICO_STROKE_WALL_S = 20.0
# Strokes per wall second in fast mode: at the pump's maximum rate (a stroke
# every 0.72 s), so that the figure is the emulated board's stroke throughput
# and not the idle time between a slow program's strokes. No drug: the drug
# library's limits do not apply.
PICO_STROKES_NL_DAY = 24_000_000


def emulated_pico() -> list[Row]:
    """Boot, heap and stroke figures of the firmware on the emulated Pico."""
    from bench import pico

    lack = pico.missing()
    if lack:
        return [Row("emulated Pico", "skipped", "", lack)]
    pico.staged_image()
    rows = []
    started = time.perf_counter()
    with pico.PicoBoard() as board:
        pico.wait_hello(board)
        wall = time.perf_counter() - started
        emulated = board.status()["first_tx_ns"] / 1e9
        rows.append(
            Row("pico: boot to HELLO, emulated", f"{emulated:.2f}", "s", "reset to the reply")
        )
        rows.append(Row("pico: boot to HELLO, wall", f"{wall:.1f}", "s", "incl. Node start"))
        with PumpClient(board.pump_port, timeout_s=30.0) as pump:
            pico.start_program(
                pump, program_fields(drug_id=0, conc_ug_ml=0, basal_nl_day=PICO_STROKES_NL_DAY)
            )
            first = board.status()
            t0 = time.perf_counter()
            time.sleep(PICO_STROKE_WALL_S)
            last = board.status()
            spent = time.perf_counter() - t0
        strokes = (last["step_rises_enabled"] - first["step_rises_enabled"]) / 8
        ratio = (last["now_ns"] - first["now_ns"]) / 1e9 / spent
        rows.append(
            Row(
                "pico: strokes per wall second",
                f"{strokes / spent:.2f}",
                "1/s",
                f"24 mL/day, fast mode: emulated {ratio:.1f} x wall time",
            )
        )
        pico.maintenance(board)
        heap = pico.measure_heap(board)
        rows.append(
            Row("pico: free heap at idle", f"{heap['idle_free']:,}", "B", "gc.mem_free(), 32-bit")
        )
        rows.append(
            Row(
                "pico: free heap in a stroke",
                f"{heap['stroke_free']:,}",
                "B",
                f"{heap['stroke_alloc']:,} B allocated (board and app built)",
            )
        )
    rows += pico_scenarios()
    return rows


# Scenarios planning more device time than this are not run on the emulated
# Pico: a device hour costs about 20 s of wall time plus 0.1-0.5 s a stroke
# on two cores (most of it the emulated CPU: the pump's loop, its strokes and
# journal writes), so the 90-day soak would take a day and the multi-day dose
# scenarios an hour or more each.
PICO_SCENARIO_MAX_MS = 8 * 3_600_000
# ... except these, which plan days but end at their alarm: `leak` (a day of
# flow, then LEAK) and `occlusion-minimum-rate` (12 h, OCCLUSION, 2 h after),
# 5-20 minutes of wall time each.
PICO_LONG_SCENARIOS = ("leak", "occlusion-minimum-rate")
# ... and these are not physically possible there: not run (the rig refuses
# what a fixture cannot do to a chip from outside, firmware/rig/pico.py).
PICO_NOT_POSSIBLE = {
    "clock-fast-1.1x": "TIMER_FAST: the crystal is the chip's own",
    "clock-fast-3x": "TIMER_FAST: the crystal is the chip's own",
    "clock-fast-10x": "TIMER_FAST: the crystal is the chip's own",
    # a fixture resets a Pico by its RUN pin: machine.reset_cause() says
    # PWRON_RESET (there is no RIG_RESET cause), and a boot takes device time
    "reset": "a RUN-pin reset reads as POWER_ON on the rp2 port, not RIG_RESET",
}


def pico_scenarios(
    max_device_ms: int = PICO_SCENARIO_MAX_MS, only: tuple[str, ...] = ()
) -> list[Row]:
    """The standard scenarios (bench/scenarios) on the emulated Pico and its rig:
    which pass, and which are not physically possible there (or too long).
    ``only``: these scenario ids alone."""
    from bench import pico
    from bench.report import Outcome
    from bench.runner import run_scenario
    from bench.scenario import load_scenario

    lack = pico.missing()
    if lack:
        return [Row("pico: standard scenarios", "skipped", "", lack)]
    target = pico.pico_target()
    target.preflight()
    folder = Path(__file__).resolve().parent / "scenarios"
    rows: list[Row] = []
    passed: list[str] = []
    counted = 0
    for path in sorted(folder.glob("*.yaml")):
        scenario = load_scenario(path)
        if only and scenario.id not in only:
            continue
        if scenario.id in PICO_NOT_POSSIBLE:
            rows.append(
                Row(f"pico: {scenario.id}", "not possible", "", PICO_NOT_POSSIBLE[scenario.id])
            )
            continue
        started = time.perf_counter()
        limit = None if scenario.id in PICO_LONG_SCENARIOS else max_device_ms
        record = run_scenario(scenario, target, max_device_ms=limit)
        wall = time.perf_counter() - started
        why = record.problems[0] if record.problems else ""
        if record.outcome is Outcome.SKIP:
            rows.append(Row(f"pico: {scenario.id}", "not run", "", why[:70]))
            continue
        counted += 1
        if record.outcome is Outcome.PASS:
            passed.append(scenario.id)
        rows.append(
            Row(f"pico: {scenario.id}", record.outcome.name, "", f"{wall:.0f} s wall {why[:50]}")
        )
    rows.append(
        Row(
            "pico: standard scenarios passing",
            f"{len(passed)}/{counted}",
            "",
            "run on the emulated Pico and its rig (the rest: not run or not possible, above)",
        )
    )
    return rows


def frozen_firmware() -> list[Row]:
    """make firmware: a clean build's time, the image's sizes, and the real heap of the
    frozen image beside the .mpy install on the emulated Pico (board and app built)."""
    from bench import firmware, pico

    if shutil.which("arm-none-eabi-gcc") is None or not os.environ.get(firmware.ENV_SOURCES):
        return [
            Row("frozen firmware", "skipped", "", "needs the Arm toolchain and MICROPYTHON_SRC")
        ]
    with tempfile.TemporaryDirectory(prefix="firmware-") as scratch:
        started = time.perf_counter()
        firmware.build(out=Path(scratch))  # a clean build, as on a fresh clone
        clean_s = time.perf_counter() - started
    uf2 = firmware.build()  # the project's own build/firmware (reused by tests)
    record = json.loads((uf2.parent / "manifest.json").read_text())
    rows = [
        Row("frozen: clean build", f"{clean_s:.0f}", "s", "MicroPython rp2 port + the pump"),
        Row("frozen: firmware.bin", f"{record['firmware_bin']['size']:,}", "B", uf2.name),
        Row(
            "frozen: pump bytecode",
            f"{record['frozen_bytecode_bytes']:,}",
            "B",
            f"{len(record['frozen_modules'])} modules in flash",
        ),
    ]
    lack = pico.missing()
    if lack:
        return [*rows, Row("frozen: heap", "skipped", "", lack)]
    for label, options in (
        ("frozen image", {"firmware": False, "keys": None, "uf2": uf2}),
        (".mpy on stock MicroPython", {}),
    ):
        with pico.PicoBoard(**options) as board:  # type: ignore[arg-type]
            pico.wait_hello(board)
            pico.maintenance(board)
            heap = pico.measure_heap(board)
        rows.append(
            Row(
                f"heap used, {label}",
                f"{heap['stroke_alloc']:,}",
                "B",
                f"gc.mem_alloc() in a stroke, 32-bit, of 245,888 (free {heap['stroke_free']:,})",
            )
        )
    rows.append(
        Row("heap used, 64-bit host", "see above", "", "the virtual board's peak live heap (soak)")
    )
    return rows


CAMPAIGN_PATIENTS = 10
CAMPAIGN_DAYS = 9  # 90 for the full figure (about 10 minutes)
CAMPAIGN_LINES = 6


def _fmt_ms(ms: float) -> str:
    if ms >= 3_600_000:
        return f"{ms / 3_600_000:.1f} h"
    if ms >= 60_000:
        return f"{ms / 60_000:.1f} min"
    return f"{ms / 1000:.1f} s"


def sensing_campaign(patients: int, days: int, lines: int, seed: int | None = None) -> list[Row]:
    """The line monitors on the rig's plant (bench/sensing.py, issue 14): each
    fault on random lines across the documented range at the four rates
    (detection rate, onset to alarm, volume pumped meanwhile), and false
    alarms per patient-year of nominal therapy with daily-life CSF. The seed
    is chosen at run time and printed: rerun with --campaign-seed."""
    from bench import sensing

    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    print(f"sensing campaign seed {seed} (--campaign-seed {seed} repeats it)")
    rows, nominal = sensing.campaign(patients, days, lines, seed)
    out = []
    for row in rows:
        note = f"{row.found}/{row.cases} cases"
        if row.times_ms:
            ordered = sorted(row.times_ms)
            note += (
                f"; onset to alarm median {_fmt_ms(statistics.median(ordered))}, "
                f"worst {_fmt_ms(ordered[-1])}; volume median "
                f"{statistics.median(row.volumes_nl) / 1000:.1f} uL, worst "
                f"{max(row.volumes_nl) / 1000:.1f} uL"
            )
        if row.wrong:
            note += f"; {row.wrong} stopped as another fault"
        out.append(Row(f"sensing: {row.fault}", f"{100 * row.found / row.cases:.0f}", "%", note))
    false = nominal["false"]
    years = nominal["patient_years"]
    out.append(
        Row(
            "sensing: false alarms per patient-year",
            f"{sum(false.values()) / years:.2f}",
            "/yr",
            f"{patients} patients x {days} days, 1 mL/day, daily-life CSF; "
            + (", ".join(f"{k} {v}" for k, v in sorted(false.items())) or "none"),
        )
    )
    return out


def print_table(rows: list[Row]) -> None:
    headers = Row("figure", "value", "unit", "note")
    widths = [
        max(len(getattr(row, name)) for row in [headers, *rows])
        for name in ("figure", "value", "unit")
    ]

    def line(row: Row) -> str:
        return (
            f"{row.figure:<{widths[0]}}  {row.value:>{widths[1]}}  "
            f"{row.unit:<{widths[2]}}  {row.note}"
        ).rstrip()

    print(line(headers))
    print("-" * len(line(headers)))
    for row in rows:
        print(line(row))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=STATUS_REQUESTS)
    parser.add_argument("--boards", type=int, default=ADVANCE_BOARDS)
    parser.add_argument("--days", type=int, default=THERAPY_DAYS, help="therapy soak length")
    parser.add_argument("--campaign-patients", type=int, default=CAMPAIGN_PATIENTS)
    parser.add_argument("--campaign-days", type=int, default=CAMPAIGN_DAYS)
    parser.add_argument("--campaign-lines", type=int, default=CAMPAIGN_LINES)
    parser.add_argument("--campaign-seed", type=int, default=None)
    parser.add_argument(
        "--only-campaign", action="store_true", help="print the sensing campaign alone"
    )
    args = parser.parse_args(argv)
    if args.only_campaign:
        print_table(
            sensing_campaign(
                args.campaign_patients, args.campaign_days, args.campaign_lines, args.campaign_seed
            )
        )
        return 0

    started = time.perf_counter()
    rows: list[Row] = []
    rows += status_round_trips(args.requests)
    rows += session_costs(args.requests)
    rows += exactly_once_costs(args.requests)
    rows += reply_mac_cost()
    rows += log_retention_days()
    rows += advance_wall_time(args.boards, ADVANCE_DAYS)
    overhead_rows, problems = framing_overhead()
    rows += overhead_rows
    rows += image_size()
    rows += therapy_soak(args.days)
    rows += occlusion_race()
    rows += false_alarms(SOAK_SEEDS, args.days)
    rows += flood_delivery()
    rows += concentration_change(500, 2_000)
    rows += concentration_change(2_000, 500)
    rows += log_history()
    rows += emulated_pico()
    rows += frozen_firmware()
    rows += sensing_campaign(
        args.campaign_patients, args.campaign_days, args.campaign_lines, args.campaign_seed
    )
    rows += clock_detection()

    print(
        f"pumpbench benchmarks (protocol v{schema.PROTOCOL_VERSION}, "
        f"schema {schema.FINGERPRINT:#010x}, virtual board, lockstep)"
    )
    print_table(rows)
    print(f"({time.perf_counter() - started:.1f} s)")
    for problem in problems:
        print(f"MISMATCH: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
