"""The fakes of tests/modules/fakes (machine, rp2) checked against the emulated Pico.

The host tests of the rp2 HAL (tests/modules/test_rp2_hal.py) run it on fake
``machine`` and ``rp2`` modules that emulate the PIO programs cycle by cycle.
Here the same HAL calls run on the emulated RP2040's real MicroPython and PIO,
and the results the host tests rest on must be the same: steps per move and
the read-back count, the step period at each rate, a move cut short, the
encoder's count, ADC scaling, machine.lightsleep's time, the USB CDC poll and
write, and the journal adapter on littlefs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.board import pico, pico_pump
from tests.modules import test_rp2_hal as host
from tests.modules import upy

pytestmark = [
    pytest.mark.timeout(300),
]


@pytest.fixture(scope="module")
def board() -> Iterator[pico.PicoBoard]:
    with pico.PicoBoard() as b:
        pico_pump.wait_hello(b)
        pico_pump.maintenance(b)  # BOOTSEL in the window: the REPL is free
        yield b
        assert b.alive, b.stderr_text()


MOVES = """
import time, board_config as c
from hal.rp2 import StepperMotor
m = StepperMotor(c)
for steps in (1, 8, c.MAX_MOVE_STEPS):
    m.start(steps)
    while m.moving():
        time.sleep_ms(1)
    print('move', steps, m.last_steps if m.stop() is None else -1)
"""


def test_moves_issue_what_the_fake_pio_issues(board: pico.PicoBoard) -> None:
    fake = host.hal("steps_bounded")
    board.request("reset_pins")
    out = pico.repl_exec(board.pump_port, MOVES, timeout_s=240.0)
    moves = board.status()["moves"]
    seen = {}
    for line in out.splitlines():
        _tag, steps, issued = line.split()
        seen[int(steps)] = int(issued)
    for steps, issued in seen.items():
        assert issued == fake[f"issued_{steps}"] == steps
        assert fake[f"edges_{steps}"] == steps
    assert moves[-3:] == sorted(seen)  # rising STEP edges per move at the pins


RATES = """
import time, board_config as c
from hal.rp2 import StepperMotor
m = StepperMotor(c)
for rate in (c.STEP_RATE_HZ, c.MAX_STEP_RATE_HZ):
    m.set_rate(rate)
    m.start(4)
    while m.moving():
        time.sleep_ms(1)
    m.stop()
    print('rate', rate, m.period_us())
"""


def test_the_step_period_at_each_rate_is_the_fake_s(board: pico.PicoBoard) -> None:
    fake = host.hal("step_rate_and_period")
    cfg = host.board_config()
    pio_hz = cfg["STEP_PIO_HZ"]
    for rate in (cfg["STEP_RATE_HZ"], cfg["MAX_STEP_RATE_HZ"]):
        board.request("reset_pins")
        script = RATES.replace("(c.STEP_RATE_HZ, c.MAX_STEP_RATE_HZ)", f"({rate},)")
        out = pico.repl_exec(board.pump_port, script, timeout_s=120.0).split()
        assert out[0] == "rate" and int(out[2]) == fake[str(rate)]["us"]
        periods = board.status()["step_periods_ns"]
        assert len(periods) == 3  # 4 steps
        fake_gap_ns = fake[str(rate)]["gaps"][0] * 1_000_000_000 // pio_hz
        assert all(abs(p - fake_gap_ns) <= 1 for p in periods), (periods, fake_gap_ns)


ENCODER = """
import time, board_config as c
from hal.rp2 import StepperMotor, make_encoder
m = StepperMotor(c)
e = make_encoder(c, m)
start = e.count()
m.start(8)
while m.moving():
    time.sleep_ms(1)
m.stop()
time.sleep_ms(5)
print('enc', start, e.count() - start)
"""


def test_the_pio_encoder_counts_as_the_fake_counts(board: pico.PicoBoard) -> None:
    fake = host.hal("encoder_pio_counts")
    board.set_encoder("echo")  # the rig echoes each step on channel A
    out = pico.repl_exec(board.pump_port, ENCODER, timeout_s=120.0).split()
    assert [int(v) for v in out[1:]] == [fake["start"], fake["after8"]]


# --- lightsleep, USB CDC and littlefs: the fakes the board tests rest on --------------
def _fake(code: str) -> dict:  # type: ignore[type-arg]
    """Runs ``code`` under MicroPython on the fakes; -> the JSON it printed last."""
    return upy.run("", code=code, path=host.FAKES)


SLEEPS_MS = (60, 300, 500)  # LIGHTSLEEP_MIN_MS .. LIGHTSLEEP_MAX_MS and between

LIGHTSLEEP = f"""
import machine, time
out = []
for ms in {SLEEPS_MS}:
    t = time.ticks_ms()
    machine.lightsleep(ms)
    out.append(time.ticks_diff(time.ticks_ms(), t))
print('slept', *out)
"""


def test_lightsleep_lasts_what_the_fake_advances(board: pico.PicoBoard) -> None:
    # machine.lightsleep(ms) in the fake moves the clock on by exactly ms and
    # returns (hal/rp2.Rp2Board.idle rests on it: the watchdog and journal
    # deadlines it computed still hold after the sleep)
    fake = _fake(
        "import json, machine\nout = []\n"
        f"for ms in {SLEEPS_MS}:\n"
        "    t = machine.ticks()\n    machine.lightsleep(ms)\n"
        "    out.append(machine.ticks() - t)\n"
        "print(json.dumps({'slept': out, 'calls': machine.SLEEPS}))"
    )
    assert fake == {"slept": list(SLEEPS_MS), "calls": list(SLEEPS_MS)}
    out = pico.repl_exec(board.pump_port, LIGHTSLEEP, timeout_s=120.0).split()
    slept = [int(v) for v in out[1:]]
    # the board's ticks also count the call itself (a ms at most)
    assert all(f <= b <= f + 1 for f, b in zip(fake["slept"], slept, strict=True)), slept


USB = """
import select, sys, time
rx = sys.stdin.buffer
p = select.poll()
p.register(rx, select.POLLIN)
t = time.ticks_ms()
events = len(list(p.ipoll(200)))
waited = time.ticks_diff(time.ticks_ms(), t)
now = len(list(p.ipoll(0)))
written = sys.stdout.buffer.write(b'xyz')
print()
print('usb', events, waited, now, written)
"""


def test_usb_cdc_polls_and_writes_as_the_fake_stream(board: pico.PicoBoard) -> None:
    # hal/rp2.CdcPort's calls on sys.stdin.buffer / sys.stdout.buffer: a poll
    # with nothing waiting lasts its whole timeout and finds nothing, a poll
    # of 0 returns at once, a write takes every byte. (Bytes in: every HELLO
    # and session of tests/pico goes through CdcPort on the real stdin.)
    fake = _fake(
        "import json, machine, rp2kit\n"
        "rx = rp2kit.FakeStream()\np = rp2kit.FakePoll(rx)\np.register(rx, 1)\n"
        "t = machine.ticks()\nevents = len(list(p.ipoll(200)))\n"
        "waited = machine.ticks() - t\nnow = len(list(p.ipoll(0)))\n"
        "written = rp2kit.FakeStream().write(b'xyz')\n"
        "print(json.dumps([events, waited, now, written]))"
    )
    assert fake == [0, 200, 0, 3]
    out = pico.repl_exec(board.pump_port, USB, timeout_s=120.0).splitlines()[-1].split()
    assert out[0] == "usb", out
    events, waited, now, written = (int(v) for v in out[1:])
    assert [events, now, written] == [fake[0], fake[2], fake[3]]
    assert fake[1] <= waited <= fake[1] + 1


def _fs_case(name: str) -> str:
    """The source of one case of tests/modules/upy/check_rp2_fs.py."""
    text = (Path(upy.SCRIPTS) / "check_rp2_fs.py").read_text()
    start = text.index(f"\ndef {name}(")
    end = text.index("\ndef ", start + 1)
    return text[start:end]


def test_the_journal_adapter_on_the_board_s_littlefs_matches_the_ram_flash(
    board: pico.PicoBoard,
) -> None:
    # hal/rp2fs.LfsFs: the host tests run it on vfs.VfsLfs2 over a RAM flash
    # (rp2kit.RamFlash, progsize 256, 32 blocks); here the same case runs on
    # the board's own littlefs in its QSPI flash: the same batches, commits,
    # flushes and file contents.
    fake = host.fs("batches_in_order")
    script = (
        "import json, os, struct\n"
        "from hal.rp2fs import LfsFs\n"
        "DIR = '/xcheck'\n"
        "def _rm():\n"
        "    try:\n"
        "        for n in os.listdir(DIR):\n"
        "            os.remove(DIR + '/' + n)\n"
        "        os.rmdir(DIR)\n"
        "    except OSError:\n"
        "        pass\n"
        "_rm()\n"
        "class rp2kit:\n"
        "    @staticmethod\n"
        "    def mount():\n"
        "        pass\n"
        "class Clock:\n"
        "    def __init__(self):\n"
        "        self.now = 0\n"
        "    def ticks_ms(self):\n"
        "        return self.now\n"
        + _fs_case("_files")
        + _fs_case("batches_in_order")
        + "\nr = batches_in_order()\n_rm()\nprint(json.dumps(r))\n"
    )
    out = pico.repl_exec(board.pump_port, script, timeout_s=240.0)
    assert json.loads(out.strip().splitlines()[-1]) == fake
