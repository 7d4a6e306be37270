"""The pump on the emulated Pico (bench/board/pico.py), as tests, benchmarks
and the CLI use it: HELLO once it has booted, maintenance (BOOTSEL at boot:
the REPL free), its heap, a program started; ``pumpbench sim --board pico``
and the runner's target (``--target pico``, ``--pump-target pico``).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.board.pico import PicoBoard, missing, repl_exec, staged_image
from bench.link import keys as keysmod
from bench.link.errors import BenchError

# --- what tests and benchmarks ask of a board -------------------------------------------------


def wait_hello(board: PicoBoard, timeout_s: float = 120.0) -> dict[str, Any]:
    """HELLO from the pump firmware once it has booted; -> the reply."""
    from bench.link.pump import PumpClient

    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with PumpClient(board.pump_port, timeout_s=1.0, retries=1) as client:
                return client.hello()
        except (BenchError, KeyError) as exc:
            # KeyError: while the board boots, a late answer to an earlier
            # attempt can meet this one; the next attempt starts clean
            last = str(exc) or repr(exc)
        if not board.alive:
            break
    raise BenchError(
        f"emulated Pico: no HELLO within {timeout_s:g} s ({last})\n{board.stderr_text()}"
    )


class CtrlCNoise:
    """A thread writing one 0x03 (Ctrl-C) byte to a port every 5 ms while in the
    ``with``: a host talking to a board while it boots. Between frames the
    pump takes them as noise; they must never stop it at the REPL.
    """

    def __init__(self, port: str) -> None:
        self._fd = os.open(port, os.O_WRONLY | os.O_NOCTTY)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            os.write(self._fd, b"\x03")

    def __enter__(self) -> CtrlCNoise:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        os.close(self._fd)


def maintenance(board: PicoBoard) -> None:
    """Resets the board, then holds BOOTSEL (as a person does within the maintenance
    window): the pump app does not start and the REPL is free. Held from the reset
    on, the bootrom would start its USB bootloader instead, as on a real Pico."""
    board.bootsel(False)
    board.reset()
    deadline = time.monotonic() + 60.0
    while board.status()["now_ns"] < 100e6:  # past the bootrom and boot2
        if time.monotonic() > deadline:
            raise BenchError("emulated Pico: no progress after a reset")
        time.sleep(0.01)
    board.bootsel(True)
    try:
        repl_exec(board.pump_port, "print('repl')", timeout_s=120.0)
    finally:
        board.bootsel(False)


# Run in the REPL of a board in maintenance: the board and the app built as
# main.py builds them, the heap after a collection at idle and while a
# stroke's PIO move runs.
HEAP_SCRIPT = """
import gc, board_config
from hal.rp2 import Rp2Board
from pump.app import PumpApp
gc.collect()
b = Rp2Board(board_config)
app = PumpApp(b, 0)
gc.collect()
print('idle', gc.mem_free(), gc.mem_alloc())
b.motor.start(8)
m = b.motor.moving()
gc.collect()
print('stroke', gc.mem_free(), gc.mem_alloc(), m)
while b.motor.moving():
    pass
b.motor.stop()
print('steps', b.motor.last_steps)
"""


def measure_heap(board: PicoBoard) -> dict[str, int]:
    """gc.mem_free()/mem_alloc() of the 32-bit port with the pump's board and app built."""
    out = repl_exec(board.pump_port, HEAP_SCRIPT, timeout_s=300.0)
    figures: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] in ("idle", "stroke"):
            figures[f"{parts[0]}_free"] = int(parts[1])
            figures[f"{parts[0]}_alloc"] = int(parts[2])
        if parts and parts[0] == "steps":
            figures["steps"] = int(parts[1])
    if "stroke_free" not in figures:
        raise BenchError(f"emulated Pico: unexpected heap output {out!r}")
    return figures


# --- pumpbench sim --board pico ------------------------------------------------------------


class _Stop(Exception):
    pass


def _raise_stop(_signum: int, _frame: Any) -> None:
    raise _Stop


def run_sim(args: Any, keys: keysmod.DeviceKeys, key_file: Path) -> int:
    """``pumpbench sim --board pico``: an emulated Pico until Ctrl-C or SIGTERM."""
    import signal

    lack = missing()
    if lack:
        print(f"pumpbench: error: emulated Pico: {lack}", file=sys.stderr)
        return 2
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with PicoBoard(
            firmware=not args.stock,
            keys=None if args.stock else keys,
            flash_file=args.pico_flash,
            mode=args.pico_mode,
            rig=args.pico_rig,
            seed=args.seed,
        ) as board:
            try:
                print(f"pump port: {board.pump_port}", flush=True)
                if board.rig_port:
                    print(f"rig port: {board.rig_port}", flush=True)
                if not args.stock:
                    print(f"key file: {key_file}", flush=True)
                print(f"flash: {board.flash_file}", flush=True)
                while board.alive:
                    time.sleep(0.2)
            except _Stop:
                return 0
            print(f"pumpbench: error: the emulated Pico stopped:\n{board.stderr_text()}")
            return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- a target for the runner and the pytest plugin (--pump-target pico) ------------------------

PICO_TARGET = "pico"


def pico_target(uf2: Path | None = None) -> Any:
    """A runner Target: a fresh emulated Pico (pump firmware, fresh keys) per session,
    with the rig around it (firmware/virtual/pico_rig.py: the plant seeded as the scenario
    says, device time in lockstep as on the virtual board).

    uf2: a UF2 with the pump frozen in (``make firmware``) booted instead of stock
    MicroPython with the .mpy files; its filesystem holds only the key store
    (a board just flashed and provisioned). Everything else is the same path."""
    from contextlib import contextmanager

    from bench.board import image
    from bench.board.targets import Ports, Target
    from bench.scenario.model import NEED_RIG

    frozen = Path(uf2) if uf2 is not None else None

    class PicoTarget(Target):
        label = PICO_TARGET if frozen is None else f"{PICO_TARGET} ({frozen.name})"
        parallel = True
        provides = frozenset({NEED_RIG})
        sets_seed = True

        def preflight(self) -> None:
            lack = missing()
            if lack:
                raise BenchError(f"emulated Pico: {lack}")
            if frozen is None:
                staged_image()  # once, before any board starts
            elif not frozen.is_file():
                raise BenchError(f"emulated Pico: no UF2 at {frozen} (make firmware builds one)")
            image.ensure_compiled()  # the plant process's image

        @contextmanager
        def session(self, seed: int) -> Iterator[Ports]:
            options: dict[str, Any] = {}
            if frozen is not None:
                options = {"firmware": False, "uf2": frozen, "keys": keysmod.generate()}
            with PicoBoard(rig=True, seed=seed, **options) as board:
                wait_hello(board)  # (a request lets lockstep time run: it boots)
                yield Ports(board.pump_port, board.rig_port)

        def advance_timeout_s(self, duration_ms: int) -> float | None:
            # Busy Python runs at 0.2-0.4x real time; a board stroking at its
            # maximum rate is busy about a third of the time.
            return 60.0 + duration_ms / 1000

    return PicoTarget()


def start_program(client: Any, fields: dict[str, Any], reservoir_nl: int = 20_000_000) -> int:
    """REFILL with the program's drug, then PROGRAM and CONFIRM; -> the program's CRC.

    The emulated Pico has no rig reservoir: the refill only tells the pump."""
    refill = client.refill_fields(0, reservoir_nl, fields["drug_id"], fields["conc_ug_ml"], 0)
    client.request("REFILL", refill)
    crc = client.request("PROGRAM", fields)["crc"]
    client.request("CONFIRM", {"crc": crc})
    return int(crc)
