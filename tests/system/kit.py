"""Helpers for therapy tests on a virtual board: programs, refills, time."""

from __future__ import annotations

import subprocess
from typing import Any

from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from bench.robustness.common import program_fields
from protocol import codec, schema

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
STROKE_NL = 200  # nominal stroke of the firmware's drive (8 steps x 25 nL)

MORPHINE = 1
ZICONOTIDE = 3
BACLOFEN = 4

STOPPED, CONTINUOUS, FLEX, MINIMUM_RATE = 0, 1, 2, 3
CLINICIAN, PRIMING, BRIDGE, PATIENT = 1, 2, 3, 4

ALARM_BITS = {name: code for code, name, _priority in schema.ALARMS}


def program(**fields: Any) -> dict[str, Any]:
    """PROGRAM fields: morphine 10 mg/mL, continuous 1 mL/day, unless overridden."""
    return program_fields(**fields)


def flex(steps: list[tuple[int, int, int]], basal_nl_day: int, **fields: Any) -> dict[str, Any]:
    """A flex program from (start minute, rate nL/day, days mask) steps."""
    starts = [s for s, _r, _d in steps] + [0] * (24 - len(steps))
    rates = [r for _s, r, _d in steps] + [0] * (24 - len(steps))
    days = [d for _s, _r, d in steps] + [0] * (24 - len(steps))
    return program(
        mode=FLEX,
        basal_nl_day=basal_nl_day,
        flex_count=len(steps),
        flex_start_min=starts,
        flex_rate_nl_day=rates,
        flex_days=days,
        **fields,
    )


def plant(rig: RigClient, **fields: Any) -> None:
    """PLANT with the nominal physics unless overridden (docs/plant.md)."""
    base: dict[str, Any] = {
        "calibration_ppm": 0,
        "catheter_nl": 156_000,  # 60 cm at 2.6 uL/cm
        "catheter_empty_nl": 0,
        "reservoir_nl": 0,
        "compliance_x10": 50,  # 5 nL/mmHg
        "resistance_pct": 100,
        "noise_x10": 5,  # 0.5 mmHg
        "csf_x10": 74,  # 7.4 mmHg, lying
    }
    base.update(fields)
    rig.request("PLANT", base)


def refill(
    pump: PumpClient,
    rig: RigClient,
    volume_nl: int,
    drug_id: int | None = None,
    conc_ug_ml: int | None = None,
    program_crc: int = 0,
) -> dict[str, Any]:
    """Fills the real reservoir and tells the pump (withdrawn = what was left).

    The drug is the active program's unless given; the rig's reservoir gets
    the same concentration (its dose truth)."""
    fields = pump.refill_fields(0, volume_nl, drug_id, conc_ug_ml, program_crc)
    withdrawn = rig.fill(volume_nl, fields["conc_ug_ml"])
    fields["withdrawn_nl"] = withdrawn
    return pump.request("REFILL", fields)


def activate(pump: PumpClient, fields: dict[str, Any]) -> int:
    """PROGRAM then CONFIRM; returns the active program's CRC."""
    crc = pump.request("PROGRAM", fields)["crc"]
    assert pump.request("CONFIRM", {"crc": crc})["crc"] == crc
    return int(crc)


def start_therapy(
    pump: PumpClient, rig: RigClient, fields: dict[str, Any], reservoir_nl: int = 20_000_000
) -> int:
    refill(pump, rig, reservoir_nl, fields["drug_id"], fields["conc_ug_ml"])
    return activate(pump, fields)


def truth(rig: RigClient) -> dict[str, Any]:
    return rig.request("TRUTH")


def alarm_active(status: dict[str, Any], name: str) -> bool:
    return bool(status["alarms"] & (1 << (ALARM_BITS[name] - 1)))


def log_entries(pump: PumpClient) -> list[tuple[int, int, int, int]]:
    """Every event-log entry as (time_s, code, a, b)."""
    entries: list[tuple[int, int, int, int]] = []
    start = 0
    while True:
        page = pump.request("GET_LOG", {"start": start, "count": 12})
        for i in range(page["count"]):
            entries.append((page["time_s"][i], page["code"][i], page["a"][i], page["b"][i]))
        if page["count"] == 0:
            return entries
        start = page["index"][page["count"] - 1] + 1
        if start >= page["total"]:
            return entries


def events(pump: PumpClient, name: str) -> list[codec.Frame]:
    """Every queued event called ``name`` (others are dropped)."""
    found = []
    while not pump.transport.events.empty():
        frame = pump.transport.events.get_nowait()
        if frame.name == name:
            found.append(frame)
    return found


def reap(process: subprocess.Popen[str]) -> None:
    """Ends a CLI process a test started (killed if still running) and closes its pipes."""
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()
