"""The fakes of tests/firmware/fakes (machine, rp2) checked against the emulated Pico.

The host tests of the rp2 HAL (tests/firmware/test_rp2_hal.py) run it on fake
``machine`` and ``rp2`` modules that emulate the PIO programs cycle by cycle.
Here the same HAL calls run on the emulated RP2040's real MicroPython and PIO,
and the results the host tests rest on must be the same: steps per move and
the read-back count, the step period at each rate, a move cut short, the
encoder's count, and ADC scaling.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.board import pico
from tests.firmware import test_rp2_hal as host

pytestmark = [
    pytest.mark.timeout(300),
]


@pytest.fixture(scope="module")
def board() -> Iterator[pico.PicoBoard]:
    with pico.PicoBoard() as b:
        pico.wait_hello(b)
        pico.maintenance(b)  # BOOTSEL in the window: the REPL is free
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
