# Runs under MicroPython with tests/modules/fakes on MICROPYPATH: main.py's
# rp2 wiring with the real PumpApp on the Pico HAL (fake machine/rp2, real
# littlefs on a RAM flash). argv: case [hex of a request frame].
import gc
import json
import sys

import machine
import rp2
import rp2kit

# The firmware's own heap: its modules (imported here, after the fakes and
# the kit) and what it allocates up to its first idle (the RAM flash of the
# test is left out).
gc.collect()
_HEAP_START = gc.mem_alloc()
import main  # noqa: E402
from hal.rp2 import BoardFault, Rp2Board  # noqa: E402
from pump.app import PumpApp  # noqa: E402

gc.collect()
_HEAP_IMPORTS = gc.mem_alloc() - _HEAP_START


class Stop(Exception):
    pass


def _hello(request):
    # Boots the pump on the rp2 board, feeds one request into USB CDC and
    # runs the loop until the reply (and the BOOT event) are out.
    events = []
    stdin = rp2kit.FakeStream()
    stdout = rp2kit.FakeStream()
    poller = rp2kit.FakePoll(stdin)
    heap = {}

    class Board(Rp2Board):
        passes = 0

        def idle(self, wait_ms):
            Board.passes += 1
            if Board.passes == 1:
                gc.collect()
                heap["after_boot"] = gc.mem_alloc()
                stdin.feed(request)
            if Board.passes > 20:
                raise Stop()
            super().idle(wait_ms)

    class App(PumpApp):
        def __init__(self, board, cause):
            events.append(("app", cause))
            super().__init__(board, cause)

    def make_board(cfg):
        events.append(("board",))
        return Board(cfg, stdin=stdin, stdout=stdout, poller=poller, ticks=machine.ticks)

    machine.reset_fakes()
    machine.RESET_CAUSE[0] = machine.WDT_RESET
    rp2.reset_fakes()
    rp2kit.mount()
    gc.collect()
    heap["before"] = gc.mem_alloc()  # the RAM flash and littlefs mounted
    try:
        main.run_rp2_board(
            rp2kit.config(),
            make_board=make_board,
            app_class=App,
        )
    except Stop:
        pass
    en = machine.PINS[rp2kit.config().ENABLE_PIN]
    return {
        "events": events,
        "out": bytes(stdout.written).hex(),
        "driver_off_after": en.level == 1,
        "heap_imports": _HEAP_IMPORTS,
        "heap_boot": heap["after_boot"] - heap["before"],
        "journal_files": sorted(__import__("os").listdir(rp2kit.LFS_MOUNT + "/journal")),
    }


def _fault():
    machine.reset_fakes()
    rp2.reset_fakes()
    rp2kit.mount()
    machine.FAIL["ADC"] = OSError(19)
    events = []
    try:
        main.run_rp2_board(
            rp2kit.config(),
            make_board=rp2kit.rebuild,
            app_class=lambda _board, _cause: events.append("app"),
        )
        raised = None
    except BoardFault as e:
        raised = str(e)
    return {
        "raised": raised,
        "events": events,
        "sim_imported": "hal.sim" in sys.modules or "rig.virtual" in sys.modules,
    }


def _maintenance():
    machine.reset_fakes()
    rp2.reset_fakes()
    rp2kit.mount()
    rp2.BOOTSEL[0] = 1
    events = []
    main.run_rp2_board(
        rp2kit.config(MAINTENANCE_WINDOW_MS=100),
        make_board=rp2kit.rebuild,
        app_class=lambda _board, _cause: events.append("app"),
    )
    return {"events": events}


def _clock(crystal_pm, mode):
    # The pump app on the Pico HAL, idle after its first boot; from the
    # first idle on, the crystal runs crystal_pm per mille (the timer that
    # much fast) and FC0 works as `mode` says. Runs 12 minutes of true time
    # -> the alarms raised and the minute of true time CLOCK_FAULT came.
    machine.reset_fakes()
    rp2.reset_fakes()
    rp2kit.mount()
    apps = []
    seen = {}

    class Board(Rp2Board):
        passes = 0

        def idle(self, wait_ms):
            Board.passes += 1
            if Board.passes == 1:
                machine.CRYSTAL_PM[0] = crystal_pm
                machine.FC_MODE[0] = mode
                seen["t0"] = machine.ticks()
            true_ms = (machine.ticks() - seen["t0"]) * 1000 // crystal_pm
            app = apps[0]
            if "fault_min" not in seen and app.alarms.active & (1 << 19):
                seen["fault_min"] = true_ms // 60_000
            if true_ms >= 12 * 60_000:
                raise Stop()
            super().idle(wait_ms)

    class App(PumpApp):
        def __init__(self, board, cause):
            apps.append(self)
            super().__init__(board, cause)

    def make_board(cfg):
        stdin = rp2kit.FakeStream()
        return Board(
            cfg,
            stdin=stdin,
            stdout=rp2kit.FakeStream(),
            poller=rp2kit.FakePoll(stdin),
            ticks=machine.ticks,
        )

    try:
        main.run_rp2_board(rp2kit.config(), make_board=make_board, app_class=App)
    except Stop:
        pass
    active = apps[0].alarms.active
    return {
        "alarms": [code for code in range(1, 32) if active & (1 << (code - 1))],
        "fault_min": seen.get("fault_min", -1),
    }


case = sys.argv[1]
if case == "clock":
    result = _clock(int(sys.argv[2]), sys.argv[3])
elif case == "hello":
    result = _hello(bytes.fromhex(sys.argv[2]))
elif case == "fault":
    result = _fault()
else:
    result = _maintenance()
print(json.dumps(result))
