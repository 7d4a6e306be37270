"""What ``pumpbench run`` shows while it works.

Results are printed on stdout, one line per scenario as it finishes, in
both modes (a log file or CI gets exactly those lines). On a terminal a bar
on stderr also shows how far the run has got, counted in device time: each
scenario weighs the same, and a running scenario counts by the share of its
planned device time already advanced (a 90-day soak moves the bar while it
runs). The bar is redrawn in place with a carriage return and erased before
a result line is printed, so the two never interleave on the screen.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Sequence
from typing import TextIO

from bench.report.records import ScenarioRecord, format_span
from bench.report.summary import result_line
from bench.scenario.load import Scenario

BAR_WIDTH = 24
REDRAW_S = 0.1  # at most ten redraws a second


class Progress:
    """Result lines on ``out``; a live bar on ``err`` when ``bar`` is true."""

    def __init__(
        self,
        scenarios: Sequence[Scenario],
        *,
        out: TextIO | None = None,
        err: TextIO | None = None,
        bar: bool | None = None,
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.bar = self.err.isatty() if bar is None else bar
        self.planned = {s.id: max(1, s.planned_ms) for s in scenarios}
        self.total = len(scenarios)
        self.done: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.device_ms: dict[str, int] = {}
        self._lock = threading.Lock()
        self._drawn = False
        self._last_draw = 0.0
        self._started = time.monotonic()

    # --- callbacks from the runner (any thread) ---
    def start(self, scenario: Scenario) -> None:
        with self._lock:
            self.running[scenario.id] = 0.0
            self._draw(force=True)

    def advance(self, scenario_id: str, done_ms: int) -> None:
        with self._lock:
            if scenario_id in self.running:
                # alarms can end a scenario early; it is finished only when it says so
                self.running[scenario_id] = min(0.99, done_ms / self.planned[scenario_id])
                self.device_ms[scenario_id] = done_ms
                self._draw()

    def result(self, record: ScenarioRecord) -> None:
        with self._lock:
            self.running.pop(record.id, None)
            self.done[record.id] = 1.0
            self._erase()
            print(result_line(record), file=self.out, flush=True)
            self._draw(force=True)

    def close(self) -> None:
        with self._lock:
            self._erase()

    # --- drawing ---
    def fraction(self) -> float:
        if not self.total:
            return 1.0
        return (len(self.done) + sum(self.running.values())) / self.total

    def line(self) -> str:
        """The bar: ``[#######.........] 5/12  41 %  1m 03s  running: soak-90d (12d 04h)``."""
        fraction = self.fraction()
        filled = int(fraction * BAR_WIDTH)  # down: full only when all is done
        wall = time.monotonic() - self._started
        text = (
            f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {len(self.done)}/{self.total}"
            f"  {int(fraction * 100):3d} %  {int(wall // 60)}m {int(wall % 60):02d}s"
        )
        if self.running:
            names = [
                f"{sid} ({format_span(self.device_ms.get(sid, 0))})" for sid in sorted(self.running)
            ]
            text += "  running: " + ", ".join(names)
        return text

    def _draw(self, force: bool = False) -> None:
        if not self.bar:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < REDRAW_S:
            return
        self._last_draw = now
        width = shutil.get_terminal_size().columns - 1  # never wrap: \r must reach its start
        self.err.write("\r\x1b[2K" + self.line()[:width])
        self.err.flush()
        self._drawn = True

    def _erase(self) -> None:
        if self.bar and self._drawn:
            self.err.write("\r\x1b[2K")
            self.err.flush()
            self._drawn = False
