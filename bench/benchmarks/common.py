"""What the benchmarks share: a row of figures, percentiles, the table they print."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench.board.sim import BoardOptions, VirtualBoard
from bench.link.pump import PumpClient
from bench.link.rig import RigClient

DAY_MS = 86_400_000
RESERVOIR_NL = 40_000_000


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


@contextmanager
def filled_board(
    fields: dict[str, Any] | None = None, options: BoardOptions | None = None
) -> Iterator[tuple[VirtualBoard, PumpClient, RigClient]]:
    """A virtual board with its reservoir filled (RESERVOIR_NL, and the pump
    told), running ``fields`` if given: where most benchmarks start."""
    with (
        VirtualBoard(options or BoardOptions()) as board,
        PumpClient(board.pump_port) as pump,
        RigClient(board.rig_port) as rig,
    ):
        rig.fill(RESERVOIR_NL)
        pump.refill(0, RESERVOIR_NL)
        if fields is not None:
            pump.confirm(pump.program(fields)["crc"])
        yield board, pump, rig
        _check_alive(board)


def refill_monthly(day: int, pump: PumpClient, rig: RigClient) -> None:
    """Refills on the last day of every 30 (what was left goes back out)."""
    if day % 30 == 29:
        pump.refill(rig.fill(RESERVOIR_NL), RESERVOIR_NL)
