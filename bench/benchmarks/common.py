"""What the benchmarks share: a row of figures, percentiles, the table they print."""

from __future__ import annotations

from dataclasses import dataclass

from bench.board.sim import VirtualBoard

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
