"""Benchmarks that print figures (``make bench``); nothing here asserts a time.

Figures, all against the real firmware on virtual boards (bench.board.sim);
the link's are in link.py, therapy over device time in therapy.py, the rest
and ``main`` (which prints them all) here:

- STATUS round trips over the pty: rate, median and p95 latency;
- sessions: the time to open one, and a signed STATUS beside a plain one
  (the MAC check on MicroPython);
- wall time of one ADVANCE over 30 idle days (median of fresh boards);
- bytes of framing overhead per frame, from the schema constants, checked by
  encoding with the host codec;
- the shipped image's size in .mpy bytes (firmware/manifest.py: what a Pico
  gets) beside the virtual board's extra (firmware/virtual/, not flashed)
  and the total (bench.board.image.image_sizes);
- occlusion: onset to alarm at 0.048, 0.5 and 24 mL/day for the firmware's
  per-stroke monitor beside a plain 517 mmHg threshold on the same plant, and
  the volume stored in the line when each fires (released at relief);
- false alarms per simulated year: nominal 90-day runs on two seeds;
- sensing campaign: each line fault on random lines across the
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
- the emulated Pico (bench.board.pico, stock MicroPython on rp2040js): boot to HELLO
  in emulated and wall time, the real 32-bit free heap at idle and during a
  stroke (beside the 64-bit host's figure above), strokes per wall second in
  fast mode. Skipped, with the reason, where Node or the UF2 is missing;
- the frozen firmware (make firmware): a clean build's time, firmware.bin and
  the pump's frozen bytecode, the Pico 2 (RP2350) image built and checked,
  and the heap on the emulated Pico, frozen image beside the .mpy install
  beside the 64-bit host: in a stroke, and the peak live heap while the pump
  holds a session and runs a bolus (bench/board/pico_heap.py) (MICROPYTHON_SRC and
  the Arm toolchain, else skipped);
- the clock check: device time from a timer 1.1, 3 and 10 times fast
  (TIMER_FAST) to CLOCK_FAULT at 0.048, 0.5, 4 and 24 mL/day.

Usage: ``python -m bench.benchmarks [--requests N] [--boards N] [--days N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.benchmarks.common import (
    DAY_MS,
    Row,
    _check_alive,
    filled_board,
    print_table,
    refill_monthly,
)
from bench.benchmarks.link import (
    STATUS_REQUESTS,
    exactly_once_costs,
    framing_overhead,
    reply_mac_cost,
    session_costs,
    status_round_trips,
)
from bench.benchmarks.pico import emulated_pico, frozen_firmware
from bench.benchmarks.therapy import (
    ADVANCE_BOARDS,
    ADVANCE_DAYS,
    THERAPY_DAYS,
    THERAPY_PROGRAM,
    advance_wall_time,
    concentration_change,
    log_history,
    log_retention_days,
    therapy_soak,
)
from bench.board.image import ensure_compiled, image_sizes
from bench.board.sim import BoardOptions, micropython_command
from bench.link.client import alarm_names
from bench.program.file import load_program
from bench.robustness.common import program_fields
from protocol import codec, schema


# --- (d) image size ----------------------------------------------------------------
def image_size() -> list[Row]:
    """What a Pico gets (firmware/manifest.py) beside what only the virtual
    board runs (firmware/virtual/), in .mpy bytes for the RP2040 (armv6m)."""
    sizes = image_sizes("armv6m")
    print(sizes.line())
    total = sizes.shipped_bytes + sizes.virtual_bytes
    return [
        Row(
            "shipped image (.mpy)",
            f"{sizes.shipped_bytes:,}",
            "B",
            f"{sizes.shipped_files} files of firmware/manifest.py: what a Pico gets",
        ),
        Row(
            "virtual board's extra (.mpy)",
            f"{sizes.virtual_bytes:,}",
            "B",
            f"{sizes.virtual_files} files under firmware/virtual/, not flashed",
        ),
        Row("compiled image (.mpy)", f"{total:,}", "B", "everything under firmware/"),
    ]


# --- (f) occlusion: the firmware's monitor beside a plain threshold --------------
RACE_SCRIPT = Path(__file__).with_name("upy") / "occlusion_race.py"


RACE_RATES_NL_DAY = (48_000, 500_000, 24_000_000)  # 0.048, 0.5 and 24 mL/day


def occlusion_race(seed: int = 1, compliance_x10: int = 50) -> list[Row]:
    """Time from a full occlusion's onset to the alarm, per rate, for the
    firmware's per-stroke monitor and a plain 517 mmHg threshold, both fed
    the same samples of the same plant (bench/benchmarks/upy/occlusion_race.py under
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
    no_drug = program_fields(drug_id=0, conc_ug_ml=0, basal_nl_day=FLOOD_RATE_NL_DAY)
    with (
        tempfile.TemporaryDirectory() as tmp,
        filled_board(no_drug, BoardOptions(speed=speed)) as (board, pump, rig),
    ):
        blob = Path(tmp) / "flood.bin"
        blob.write_bytes(frames * 16)
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
            fields = program_fields(drug_id=0, conc_ug_ml=0, basal_nl_day=rate)
            if rate == 0:
                fields["mode"] = 3
            with filled_board(fields) as (board, pump, rig):
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
    with filled_board(fields, BoardOptions(seed=seed)) as (board, pump, rig):
        for day in range(days):
            rig.advance(DAY_MS, timeout_s=600)
            refill_monthly(day, pump, rig)
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


CAMPAIGN_PATIENTS = 10
CAMPAIGN_DAYS = 90  # the figure: 10 patients x 90 days
CAMPAIGN_LINES = 6
# --quick-campaign: 10 patients x 9 days, 3 lines per fault (the full form's
# cost on a 2-core machine: README of firmware/pump/monitors/, "Figures")
QUICK_DAYS = 9
QUICK_LINES = 3


def _fmt_ms(ms: float) -> str:
    if ms >= 3_600_000:
        return f"{ms / 3_600_000:.1f} h"
    if ms >= 60_000:
        return f"{ms / 60_000:.1f} min"
    return f"{ms / 1000:.1f} s"


def sensing_campaign(patients: int, days: int, lines: int, seed: int | None = None) -> list[Row]:
    """The line monitors on the rig's plant (bench/board/sensing.py): each
    fault on random lines across the documented range at the four rates
    (detection rate, onset to alarm, volume pumped meanwhile), and false
    alarms per patient-year of nominal therapy with daily-life CSF. The seed
    is chosen at run time and printed: rerun with --campaign-seed."""
    from bench.board import sensing

    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    print(f"sensing campaign seed {seed} (--campaign-seed {seed} repeats it)")
    started = time.perf_counter()
    rows, nominal = sensing.campaign(patients, days, lines, seed)
    wall_s = time.perf_counter() - started
    out = []
    for row in rows:
        note = f"{row.found}/{row.cases} cases"
        if row.limited:
            note += f" ({row.limited} more on lines that said SENSING_LIMITED)"
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
            + (", ".join(f"{k} {v}" for k, v in sorted(false.items())) or "none")
            + f" (campaign wall time {wall_s:.0f} s, seed {seed})",
        )
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--requests", type=int, default=STATUS_REQUESTS)
    parser.add_argument("--boards", type=int, default=ADVANCE_BOARDS)
    parser.add_argument("--days", type=int, default=THERAPY_DAYS, help="therapy soak length")
    parser.add_argument("--campaign-patients", type=int, default=CAMPAIGN_PATIENTS)
    parser.add_argument("--campaign-days", type=int, default=CAMPAIGN_DAYS)
    parser.add_argument("--campaign-lines", type=int, default=CAMPAIGN_LINES)
    parser.add_argument("--campaign-seed", type=int, default=None)
    parser.add_argument(
        "--quick-campaign",
        action="store_true",
        help=f"the sensing campaign short: {QUICK_DAYS} days, {QUICK_LINES} lines per fault",
    )
    parser.add_argument(
        "--only-campaign", action="store_true", help="print the sensing campaign alone"
    )
    args = parser.parse_args(argv)
    if args.quick_campaign:
        args.campaign_days = min(args.campaign_days, QUICK_DAYS)
        args.campaign_lines = min(args.campaign_lines, QUICK_LINES)
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
