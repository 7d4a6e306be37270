"""The pump's peak heap on the emulated Pico while it works: in a session, in a bolus.

:func:`bench.board.pico_pump.measure_heap` reads the heap once, with the board and the
app built and a stroke moving. This module watches the whole pump instead:
on a board in maintenance (BOOTSEL held at boot, the REPL free) the raw REPL
runs ``main.run_rp2_board`` exactly as ``main.py`` does at boot (the frozen
``main`` on a frozen image), with one change: the board's ``service()`` hook,
called once per pass of the application's loop and empty on a Pico, collects
garbage and records ``gc.mem_alloc()``. The host then talks to that pump over
the same port (HELLO, a session, a bolus), and pressing BOOTSEL ends the loop;
the script prints the peaks and the board is reset into the pump.

The figure is the live heap at the loop's passes (what stays allocated
between two passes, garbage collected), the same figure as the virtual
board's rig HEAP. Allocations that live inside one pass are not in it. The
probe itself (the script, two small classes) is counted against the pump:
about a kilobyte.

Nothing of this is in the board image: a Pico's ``service()`` stays empty.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from bench.board import pico, pico_pump
from bench.link.errors import BenchError
from bench.link.pump import PumpClient

# Run in the raw REPL of a board in maintenance. Peaks are kept per slot:
# 0 every pass, 1 passes with a session open and no bolus, 2 passes during a
# bolus. BOOTSEL ends the loop (nothing else on the board reads it once the
# pump runs).
PROBE_SCRIPT = """
import gc, sys, rp2, micropython
import main
main.frozen_first(sys.path)
from hal.rp2 import Rp2Board
from pump.app import PumpApp
class Done(Exception):
    pass
peak = [0, 0, 0, 0]
class Probe(Rp2Board):
    def __init__(self, cfg):
        self.app = None
        Rp2Board.__init__(self, cfg)
    def service(self):
        gc.collect()
        a = gc.mem_alloc()
        peak[3] += 1
        if a > peak[0]:
            peak[0] = a
        app = self.app
        if app is not None:
            if app.therapy.bolus_kind:
                if a > peak[2]:
                    peak[2] = a
            elif app.sessions._mac is not None:
                if a > peak[1]:
                    peak[1] = a
        if rp2.bootsel_button():
            raise Done()
class App(PumpApp):
    def __init__(self, board, cause):
        PumpApp.__init__(self, board, cause)
        board.app = self
try:
    main.run_rp2_board(make_board=Probe, app_class=App)
except Done:
    pass
micropython.kbd_intr(3)
print('HEAPPEAK', peak[0], peak[1], peak[2], peak[3], gc.mem_alloc() + gc.mem_free(), 'END')
"""

PRESSURE_AT_REST = 441  # the harness's 12-bit pressure ADC value at power-on: 7.4 mmHg
_RESULT = re.compile(rb"HEAPPEAK (\d+) (\d+) (\d+) (\d+) (\d+) END")


def _start(port: str, code: str, timeout_s: float = 120.0) -> None:
    """Starts ``code`` in the raw REPL on ``port`` and returns once it runs."""
    import serial

    with serial.Serial(port, 115200, timeout=0.1) as ser:
        pico.start_in_raw_repl(ser, port, code, timeout_s)


def _result(port: str, timeout_s: float) -> dict[str, int]:
    import serial

    with serial.Serial(port, 115200, timeout=0.1) as ser:
        data = b""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            data += ser.read(4096)
            if b"Traceback" in data and data.endswith(b"\x04>"):
                break  # the probed pump stopped on an error, not on BOOTSEL
            found = _RESULT.search(data)
            if found:
                peak, session, bolus, samples, total = (int(v) for v in found.groups())
                return {
                    "peak_alloc": peak,
                    "session_alloc": session,
                    "bolus_alloc": bolus,
                    "samples": samples,
                    "heap_total": total,
                }
    raise BenchError(f"emulated Pico: no heap figures from the probe (got {data[-300:]!r})")


def measure(
    board: pico.PicoBoard,
    work: Callable[[PumpClient], Any],
    keys: Any = None,
    timeout_s: float = 300.0,
) -> dict[str, int]:
    """The pump's peak live heap while ``work(pump)`` talks to it; the board is
    reset into the pump afterwards. ``keys``: the client's (None: the port's).

    -> peak_alloc (every pass), session_alloc (a session open, no bolus),
    bolus_alloc (a bolus running), samples (passes), heap_total.
    """
    # Real time while this runs: maintenance() presses BOOTSEL inside the 2 s
    # window after a reset, which fast mode (idle time skipped) can leap over
    # on a loaded machine (seen: the pump booted, no REPL).
    mode = board.status()["mode"]
    board.set_mode("realtime")
    pico_pump.maintenance(board)
    # a sensor's noise on the pressure: a reading that never moves is a stuck
    # sensor to the pump (SENSOR_FAULT stops delivery); +-2 counts is 0.5 mmHg
    board.set_adc(pico.ADC_PRESSURE, PRESSURE_AT_REST, noise=2)
    try:
        _start(board.pump_port, PROBE_SCRIPT)
        pico_pump.wait_hello(board)  # the probed pump, past its maintenance window
        with PumpClient(board.pump_port, keys=keys, timeout_s=30.0) as pump:
            pump.hello()
            work(pump)
        board.bootsel(True)
        figures = _result(board.pump_port, timeout_s)
    finally:
        board.bootsel(False)
        board.set_adc(pico.ADC_PRESSURE, PRESSURE_AT_REST)
        board.set_mode(mode)
    board.reset()
    return figures


def session_and_bolus(program: dict[str, Any], bolus_nl: int) -> Callable[[PumpClient], None]:
    """The work :func:`measure` watches: a session with a few reads, then a
    program started and a clinician bolus of ``bolus_nl`` run to its end."""

    def work(pump: PumpClient) -> None:
        pump.open_session()
        pump.status()
        pump.log(0, 8)
        pump.log(0, 8, access=True)
        pico_pump.start_program(pump, program, reservoir_nl=2_000_000)
        pump.bolus("clinician", volume_nl=bolus_nl)
        deadline = time.monotonic() + 120.0
        while pump.status()["bolus_kind"]:
            if time.monotonic() > deadline:
                raise BenchError("emulated Pico: the bolus did not end within 120 s of wall time")
            time.sleep(0.2)
        pump.close_session()

    return work
