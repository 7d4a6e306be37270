# Wiring only: choose the HAL for this board, build the application, run it.
#
# On the virtual board (MicroPython unix port) the launcher (bench/sim.py)
# runs:  micropython main.py --pump-fd N --rig-fd M --journal DIR
#        [--device-id ID] [--seed S] [--speed F]
# with MICROPYPATH pointing at firmware/ and the project root.

import sys

RESET_CAUSE_POWER_ON = 0
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
    import micropython
    from hal import sim
    from hal.simfs import PowerCut
    from pump.app import PumpApp
    from rig.virtual import VirtualRig

    # 0x03 on a port is data, never Ctrl-C.
    micropython.kbd_intr(-1)
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
        try:
            cause = PumpApp(board, cause).run()
        except PowerCut:
            # Everything in RAM is gone; only the journal's files remain.
            board.power_off()
            cause = RESET_CAUSE_POWER_ON
        if cause < 0:
            cause = RESET_CAUSE_POWER_ON


def main():
    if sys.platform in ("rp2",):
        raise SystemExit("the rp2 HAL arrives with the board-port issue")
    run_virtual_board(sys.argv)


if __name__ == "__main__":
    main()
