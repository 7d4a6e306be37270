"""The link-fault campaign: one therapy scenario over a clean and a damaging link (fault://),
the same outcome, no command executed twice (docs/robustness.md).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.board.sim import BoardOptions, VirtualBoard
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from bench.robustness.common import (
    AUTH_LOG_CODES,
    HOUR_MS,
    LOG,
    MINUTE_MS,
    bolus_fields,
    program_fields,
    refill_request,
)
from protocol import schema


# ==================================================================================
# 6. Link faults: the same scenario through fault:// and on a clean link
# ==================================================================================
@dataclass
class ScenarioResult:
    url_options: str
    seconds: float = 0.0
    requests: int = 0
    retransmissions: int = 0
    link: dict[str, int] = field(default_factory=dict)  # the pump port's LINK_STATS
    faults: dict[str, dict[str, float]] = field(default_factory=dict)  # fault:// tallies
    mismatches: list[str] = field(default_factory=list)
    log: list[tuple[int, int, int, int]] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)


# What the scenario commands, each once: the log must show each once (a
# CONFIRM that starts delivery logs PROGRAM_ACTIVE, not START: docs/pump.md 15).
SCENARIO_ONCE = {
    "PROGRAM_PENDING": 2,
    "PROGRAM_ACTIVE": 2,
    "BOLUS_START": 3,
    "BOLUS_CANCELLED": 1,
    "REFILL": 1,
    "STOP": 1,
    "START": 1,
    "CLOCK_SET": 1,
}


# STATUS fields that describe the link or the moment, not the therapy.
_NOT_THERAPY = ("uptime_ms",)


def therapy_scenario(pump: PumpClient, rig: RigClient) -> int:
    """Program, confirm, boluses, time, status: the outcome must not depend on the link.

    Returns the number of pump requests made.
    """
    requests = 0

    def ask(name: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
        nonlocal requests
        requests += 1
        return pump.request(name, fields)

    ask(
        "HELLO",
        {"protocol_version": schema.PROTOCOL_VERSION, "schema_fingerprint": schema.FINGERPRINT},
    )
    withdrawn = rig.fill(20_000_000)
    ask("REFILL", refill_request(withdrawn, 20_000_000, drug_id=0, conc_ug_ml=0))
    ask("SET_CLOCK", {"local_offset_s": 8 * 3600})
    program = program_fields(pb_dose_nl=20_000, pb_lockout_s=3_600, pb_max_per_day=4)
    crc = ask("PROGRAM", program)["crc"]
    ask("GET_PROGRAM", {"which": 1})
    ask("CONFIRM", {"crc": crc})
    rig.advance(10 * MINUTE_MS)
    ask("PATIENT_BOLUS")
    rig.advance(30 * MINUTE_MS)
    ask("STATUS")
    ask("BOLUS", bolus_fields(volume_nl=5_000, duration_s=600))
    rig.advance(2 * MINUTE_MS)
    ask("CANCEL_BOLUS")
    rig.advance(HOUR_MS)
    ask("PATIENT_BOLUS")
    rig.advance(2 * HOUR_MS)
    flex = program_fields(
        mode=2,
        basal_nl_day=500_000,
        flex_count=2,
        flex_start_min=[8 * 60, 20 * 60] + [0] * 22,
        flex_rate_nl_day=[1_500_000, 800_000] + [0] * 22,
    )
    crc = ask("PROGRAM", flex)["crc"]
    ask("CONFIRM", {"crc": crc})
    rig.advance(HOUR_MS)
    ask("STOP")
    ask("START")
    rig.advance(HOUR_MS)
    ask("STATUS")
    ask("GET_LOG", {"start": 0, "count": 12})
    return requests


def link_fault_scenario(url_options: str, seed: int = 0, *, retries: int = 25) -> ScenarioResult:
    """The therapy scenario through ``fault://<pump port>?<url_options>`` (rig clean).

    The result's ``log`` and ``status`` are read afterwards over a clean
    connection; compare them with :func:`clean_scenario`'s.
    """
    register_fault_handler()
    result = ScenarioResult(url_options)
    with VirtualBoard(BoardOptions(seed=seed)) as board:
        url = f"fault://{board.pump_port}?{url_options}" if url_options else board.pump_port
        started = time.perf_counter()
        with (
            PumpClient(url, timeout_s=0.1, retries=retries) as pump,
            RigClient(board.rig_port) as rig,
        ):
            result.requests = therapy_scenario(pump, rig)
            result.retransmissions = pump.retransmissions
            stats = getattr(pump.transport.serial, "fault_stats", None)
            if stats is not None:
                result.faults = stats()
        result.seconds = time.perf_counter() - started
        with PumpClient(board.pump_port) as pump:
            result.link = pump.link_stats()
            result.status = {k: v for k, v in pump.status().items() if k not in _NOT_THERAPY}
            # the session rules' own entries (a session reopened after a lost
            # reply, say) are not therapy: the rest must match the clean run
            result.log = [
                (e["time_s"], e["code"], e["a"], e["b"])
                for e in pump.log()
                if e["code"] not in AUTH_LOG_CODES
            ]
        if not board.alive:
            result.mismatches.append(f"the board died:\n{board.stderr_text()}")
    counts = Counter(code for _t, code, _a, _b in result.log)
    for name, once in SCENARIO_ONCE.items():
        if counts[LOG[name]] != once:
            result.mismatches.append(f"{name} logged {counts[LOG[name]]} times, commanded {once}")
    return result


def register_fault_handler() -> None:
    """Makes ``fault://`` URLs work (importing bench.link.transports registers it)."""
    from bench.link import transports

    transports.register()


def clean_scenario(seed: int = 0) -> ScenarioResult:
    return link_fault_scenario("", seed)


def compare_outcomes(clean: ScenarioResult, faulty: ScenarioResult) -> list[str]:
    """Where the faulty run's outcome differs from the clean run's."""
    problems = list(faulty.mismatches)
    if faulty.log != clean.log:
        for i, (a, b) in enumerate(zip(clean.log, faulty.log, strict=False)):
            if a != b:
                problems.append(f"log entry {i}: clean {_entry(a)}, through faults {_entry(b)}")
                break
        if len(clean.log) != len(faulty.log):
            problems.append(f"log length: clean {len(clean.log)}, through faults {len(faulty.log)}")
    for name, value in clean.status.items():
        if faulty.status.get(name) != value:
            problems.append(
                f"STATUS {name}: clean {value}, through faults {faulty.status.get(name)}"
            )
    return problems


def _entry(entry: tuple[int, int, int, int]) -> str:
    time_s, code, a, b = entry
    return f"{schema.log_name(code)}(a={a}, b={b}) at {time_s} s"
