# The virtual board's entry point (never flashed; virtual/README.md).
#
# The launcher (bench/board/sim.py) runs, in the compiled image's folder:
#   micropython -m virtual.main --pump-fd N --rig-fd M --journal DIR
#               [--device-id ID] [--seed S] [--speed F]
# with MICROPYPATH pointing at the image. It builds the virtual board
# (virtual/board.py) and the rig around it (virtual/rig.py), then runs the
# same PumpApp loop as a Pico (main.py): reboot the app on a reset, wait
# while the power is off.

import sys

from protocol.table import RESET_CAUSE_POWER_ON

_OPTIONS = ("--pump-fd", "--rig-fd", "--journal", "--device-id", "--seed", "--speed")


def _options(argv):
    options = {"--device-id": "SIM-0001", "--seed": "0", "--speed": "0"}
    i = 1
    while i < len(argv):
        key = argv[i]
        if key not in _OPTIONS or i + 1 >= len(argv):
            raise SystemExit(
                "usage: virtual.main --pump-fd N --rig-fd M --journal DIR "
                "[--device-id ID] [--seed S] [--speed F]  (bad argument %r)" % key
            )
        options[key] = argv[i + 1]
        i += 2
    for required in ("--pump-fd", "--rig-fd", "--journal"):
        if required not in options:
            raise SystemExit("virtual.main: %s is required" % required)
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


if __name__ == "__main__":
    run_virtual_board(sys.argv)
