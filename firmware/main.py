# Wiring only: choose the HAL for this board, build the application, run it.
#
# On a Raspberry Pi Pico (sys.platform "rp2") MicroPython runs this file at
# boot: hal/rp2.py builds the board from board_config.py, the pump port is
# USB CDC (or a UART), and no rig runs inside the pump (a physical rig is a
# separate fixture).
#
# On the virtual board (MicroPython unix port) the launcher (bench/board/sim.py)
# runs:  micropython main.py --pump-fd N --rig-fd M --journal DIR
#        [--device-id ID] [--seed S] [--speed F]
# with MICROPYPATH pointing at firmware/ and the project root.

import micropython

# The first statement, before any import that takes time: from here on 0x03 on
# the pump port is data, never Ctrl-C. MicroPython runs main.py with Ctrl-C
# armed, and USB CDC comes up just before it, so a host already talking to the
# board (a bench retrying HELLO, a programmer) would otherwise stop the pump
# at boot and leave it at the REPL: no therapy until someone resets it.
micropython.kbd_intr(-1)

import sys  # noqa: E402

from protocol.table import RESET_CAUSE_POWER_ON  # noqa: E402

_OPTIONS = ("--pump-fd", "--rig-fd", "--journal", "--device-id", "--seed", "--speed")


def _options(argv):
    options = {"--device-id": "SIM-0001", "--seed": "0", "--speed": "0"}
    i = 1
    while i < len(argv):
        key = argv[i]
        if key not in _OPTIONS or i + 1 >= len(argv):
            raise SystemExit(
                "usage: main.py --pump-fd N --rig-fd M --journal DIR "
                "[--device-id ID] [--seed S] [--speed F]  (bad argument %r)" % key
            )
        options[key] = argv[i + 1]
        i += 2
    for required in ("--pump-fd", "--rig-fd", "--journal"):
        if required not in options:
            raise SystemExit("main.py: %s is required" % required)
    return options


def run_virtual_board(argv):
    import gc

    from pump.app import PumpApp
    from virtual import board as sim
    from virtual.fs import PowerCut
    from virtual.rig import VirtualRig

    options = _options(argv)
    speed = int(options["--speed"])
    board = sim.SimBoard(
        int(options["--pump-fd"]),
        int(options["--rig-fd"]),
        options["--device-id"],
        options["--journal"],
        int(options["--seed"]),
        sim.FREE_RUNNING if speed > 0 else sim.LOCKSTEP,
        speed if speed > 0 else 1,
    )
    board.rig = VirtualRig(board, int(options["--seed"]))
    drain = bytearray(64)
    cause = RESET_CAUSE_POWER_ON
    while not board.orphaned:
        if not board.powered:
            board.wait_for_power(drain)
            cause = RESET_CAUSE_POWER_ON
            continue
        # The last boot's application is garbage now: collect it before the
        # new one allocates, so that what lasts is not laid out between the
        # holes it leaves (a long sweep of reboots fragmented the heap).
        gc.collect()
        try:
            cause = PumpApp(board, cause).run()
        except PowerCut:
            # Everything in RAM is gone; only the journal's files remain.
            board.power_off()
            cause = RESET_CAUSE_POWER_ON
        if cause < 0:
            cause = RESET_CAUSE_POWER_ON


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
    if sys.platform == "rp2":
        frozen_first(sys.path)
        run_rp2_board()
        return
    run_virtual_board(sys.argv)


if __name__ == "__main__":
    main()
