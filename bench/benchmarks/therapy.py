"""Benchmarks of therapy over device time: ADVANCE wall time, log retention, a 90-day soak,
a concentration change, the log's history.
"""

from __future__ import annotations

import itertools
import re
import statistics
import time
from pathlib import Path

from bench.benchmarks.common import (
    DAY_MS,
    Row,
    _check_alive,
    filled_board,
    refill_monthly,
)
from bench.board.sim import BoardOptions, VirtualBoard
from bench.link.errors import PumpRefused
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from bench.program.file import load_program
from bench.robustness.common import program_fields
from protocol import schema
from protocol.table import DRUG_BACLOFEN

ADVANCE_BOARDS = 3


ADVANCE_DAYS = 30


THERAPY_DAYS = 90


def _firmware_constant(module: str, name: str) -> int:
    """An integer constant of firmware/pump/<module>, read from its source."""
    text = (Path(__file__).parents[2] / "firmware" / "pump" / module).read_text()
    found = re.search(rf"^{name} = (?:const\()?([\d_]+)", text, flags=re.MULTILINE)
    if found is None:
        raise SystemExit(f"{name} not found in firmware/pump/{module}")
    return int(found.group(1).replace("_", ""))


def log_retention_days(days: int = 10) -> list[Row]:
    """Days of therapy history the event log keeps for a busy patient:
    ``days`` on a virtual board with 4 patient boluses a day, each
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


# --- (e) 90 days of therapy ------------------------------------------------------
THERAPY_PROGRAM = Path(__file__).parents[1] / "programs" / "benchmark-flex-1ml.toml"


def therapy_soak(days: int) -> list[Row]:
    """A flex schedule averaging 1 mL/day with a daily patient bolus, for
    ``days`` of device time (refilled every 30 days): wall time, and the
    live heap the rig sampled along the way."""
    fields = load_program(THERAPY_PROGRAM)
    with filled_board(fields) as (board, pump, rig):
        started = time.perf_counter()
        for day in range(days):
            rig.advance(DAY_MS // 2)
            pump.patient_bolus()
            rig.advance(DAY_MS // 2)
            refill_monthly(day, pump, rig)
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


# --- (g) dose at the tip across a concentration change ---------------------------
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
    program (docs/pump.md 22.2): over the ``hours`` after the change, from the rig's
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
    with filled_board(fields) as (board, pump, rig):
        for day in range(days):
            for _ in range(presses):
                rig.advance(DAY_MS // presses // 2)
                pump.patient_bolus()
                pump.close_session()
                rig.advance(DAY_MS // presses // 2)
            refill_monthly(day, pump, rig)
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
