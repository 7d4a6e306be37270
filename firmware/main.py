# Wiring only: choose the HAL for this board, build the application, run it.
#
# On a Raspberry Pi Pico (sys.platform "rp2") MicroPython runs this file at
# boot: hal/rp2.py builds the board from board_config.py, the pump port is
# USB CDC (or a UART), and no rig runs inside the pump (a physical rig is a
# separate fixture).
#
# The virtual board (MicroPython unix port) does not start here: its
# launcher (bench/board/sim.py) runs virtual/main.py, which is never flashed
# (virtual/README.md). Nothing shipped to a Pico imports from virtual/.

import micropython

# The first statement, before any import that takes time: from here on 0x03 on
# the pump port is data, never Ctrl-C. MicroPython runs main.py with Ctrl-C
# armed, and USB CDC comes up just before it, so a host already talking to the
# board (a bench retrying HELLO, a programmer) would otherwise stop the pump
# at boot and leave it at the REPL: no therapy until someone resets it.
micropython.kbd_intr(-1)

import sys  # noqa: E402

from protocol.table import RESET_CAUSE_POWER_ON  # noqa: E402


def run_rp2_board(config=None, make_board=None, app_class=None):
    # The Pico: the board from board_config and the same PumpApp loop. A
    # part that fails to start raises hal.rp2.BoardFault out of here (the
    # driver is left disabled and the traceback reaches the REPL console):
    # the pump does not run, and nothing falls back to the simulator.
    # The arguments replace board_config, Rp2Board and PumpApp in host tests.
    # Room for a traceback raised inside a hard IRQ (PIO, encoder, timer);
    # the unix port of the host tests has no such buffer.
    emergency = getattr(micropython, "alloc_emergency_exception_buf", None)
    if emergency is not None:
        emergency(100)
    if config is None:
        import board_config as config
    if make_board is None:
        from hal.rp2 import Rp2Board as make_board
    board = make_board(config)  # the motor driver is disabled first thing
    # BOOTSEL pressed within the maintenance window after reset: the pump
    # application does not start and the REPL is free for mpremote (make
    # flash; MicroPython arms Ctrl-C again for whatever the REPL runs). A
    # person at the board, never a byte on a port.
    if board.maintenance_requested(config.MAINTENANCE_WINDOW_MS):
        return board
    if app_class is None:
        from pump.app import PumpApp as app_class
    cause = board.reset_cause
    try:
        while True:
            cause = app_class(board, cause).run()
            if cause < 0:
                cause = RESET_CAUSE_POWER_ON
    finally:
        # Whatever ends the loop (a crash: the watchdog resets the board if
        # the supervisor armed it), the driver is off.
        board.motor.stop()


def frozen_first(path):
    # A frozen image (make firmware) must run its own modules: MicroPython
    # searches the filesystem ("") before ".frozen", so .mpy files left by an
    # earlier `make flash` would shadow the frozen pump. With a stock
    # interpreter ".frozen" holds no pump module, and this changes nothing.
    if ".frozen" in path:
        path.remove(".frozen")
        path.insert(0, ".frozen")


def main():
    if sys.platform != "rp2":
        raise SystemExit(
            "main.py runs on a Pico; the virtual board runs `micropython -m virtual.main`"
        )
    frozen_first(sys.path)
    run_rp2_board()


if __name__ == "__main__":
    main()
