"""The pump firmware on the emulated Pico: stock MicroPython v1.28.0 (RPI_PICO) on
rp2040js (pico/README.md), over its USB CDC pty, as a real board is reached.

What the host tests cannot show: the real rp2 modules (machine, rp2, PIO,
ADC, WDT, littlefs, USB CDC), 32-bit small ints and the real heap. Each board
boots once per module (about 10 s of wall time); the emulated clock runs in
fast mode (idle time skipped), so figures are asserted in emulated time and
pulse counts, never in wall time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.board import pico, pico_pump
from bench.board.paths import firmware_tree
from bench.link.pump import PumpClient
from protocol import schema
from tests.system import kit

pytestmark = [
    pytest.mark.timeout(300),
]

ROOT = Path(__file__).resolve().parents[2]
UF2_VERSION = "1.28.0"


def _config() -> dict[str, int]:
    """Integer constants of firmware/board_config.py (const(...) or plain)."""
    text = (ROOT / "firmware" / "board_config.py").read_text()
    values = {}
    for name, value in re.findall(r"^([A-Z_0-9]+) = (?:const\()?([\d_]+)\)?", text, re.M):
        values[name] = int(value.replace("_", ""))
    return values


CFG = _config()
# Saline at 12 mL/day: a stroke (8 steps, 200 nL) every 1.44 s of emulated
# time, so a few strokes cost seconds of wall time, not minutes.
FAST_PROGRAM = kit.program(drug_id=0, conc_ug_ml=0, basal_nl_day=12_000_000)
STROKE_INTERVAL_NS = 1_440_000_000
PRESSURE_AT_REST = 441  # the harness's 12-bit ADC0 value at power-on: 7.4 mmHg


def _wait(predicate, timeout_s: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"emulated Pico: {what} within {timeout_s:g} s of wall time")


@pytest.fixture(scope="module")
def board() -> Iterator[pico.PicoBoard]:
    with pico.PicoBoard() as b:
        pico_pump.wait_hello(b)
        yield b
        assert b.alive, b.stderr_text()


@pytest.fixture(scope="module")
def stock() -> Iterator[pico.PicoBoard]:
    with pico.PicoBoard(firmware=False) as b:
        yield b


@pytest.fixture
def pump(board: pico.PicoBoard) -> Iterator[PumpClient]:
    with PumpClient(board.pump_port, timeout_s=30.0) as client:
        client.hello()
        yield client


def test_the_pump_firmware_boots_to_hello_on_the_stock_uf2(pump: PumpClient) -> None:
    hello = pump.hello()
    assert hello["board"] == "pico"
    assert hello["firmware_version"] == firmware_tree().version()
    assert hello["schema_fingerprint"] == schema.FINGERPRINT
    # board_config.DEVICE_ID "": the flash chip's unique id, read over the SSI
    assert hello["device_id"] == "5050494D50000001"


def test_ctrl_c_bytes_on_the_port_while_the_pump_boots_do_not_stop_it(
    board: pico.PicoBoard,
) -> None:
    # MicroPython arms Ctrl-C for main.py and USB comes up just before it: a
    # 0x03 that arrived before main.py switched it off left the pump at the
    # REPL (one CI run in a few, while wait_hello's frames met the boot).
    with pico_pump.CtrlCNoise(board.pump_port):
        board.reset()
        hello = pico_pump.wait_hello(board, timeout_s=60.0)
    assert hello["board"] == "pico"


def test_a_confirmed_program_strokes_at_the_pins(board: pico.PicoBoard, pump: PumpClient) -> None:
    board.request("reset_pins")
    pico_pump.start_program(pump, FAST_PROGRAM)

    def two_strokes() -> dict | None:  # type: ignore[type-arg]
        s = board.status()
        n = s["step_rises_enabled"]
        return s if n >= 16 and n % 8 == 0 else None

    pins = _wait(two_strokes, 120.0, "no two whole strokes at the STEP pin")
    steps = pins["step_rises_enabled"]
    assert pins["step_rises"] == steps  # never a step with the driver disabled
    assert pins["encoder_edges"] == steps  # the rig echoes each step on channel A
    # The PIO program's period on the emulated clock: 2 * Y + 7 PIO cycles
    delay = (CFG["STEP_PIO_HZ"] // CFG["STEP_RATE_HZ"] - 7) // 2
    period_ns = (2 * delay + 7) * 1_000_000_000 // CFG["STEP_PIO_HZ"]
    within = [p for p in pins["step_periods_ns"] if p < 2 * period_ns]
    assert within and all(abs(p - period_ns) <= 1 for p in within), pins["step_periods_ns"]
    delivered = pump.status()["delivered_nl"]
    nl_per_step = CFG["PL_PER_STEP"] // 1000
    # the pump's count lags the pins by at most the stroke in flight
    assert abs(delivered - steps * nl_per_step) <= 8 * nl_per_step


def test_the_pump_sees_the_pressure_the_rig_sets_on_the_adc(
    board: pico.PicoBoard, pump: PumpClient
) -> None:
    # (after the strokes test: the pump samples pressure around its strokes)
    # Its first reading after the change is the new level, whole: a reading
    # has no memory of the ones before (a filter per reading once showed a
    # quarter of each step, and a held stroke as one that drained)
    before = pump.status()["pressure_x10"]
    expected = _pressure_x10(561)  # about 36 mmHg, 29 above the rest
    assert before != expected
    board.set_adc(pico.ADC_PRESSURE, 561)
    try:
        seen = _wait(
            lambda: (lambda p: p if p != before else None)(pump.status()["pressure_x10"]),
            60.0,
            "the pump's pressure did not follow the ADC",
        )
        assert seen == expected
    finally:
        board.set_adc(pico.ADC_PRESSURE, PRESSURE_AT_REST)


def _pressure_x10(raw12: int) -> int:
    """What hal/rp2.PressureSensor reports for a 12-bit ADC sample, by board_config."""
    u16 = (raw12 << 4) | (raw12 >> 8)  # the rp2 port's read_u16() of a 12-bit sample
    return (u16 - CFG["PRESSURE_OFFSET_RAW"]) * CFG["PRESSURE_GAIN"] >> 16


SENSOR_SCRIPT = """
import board_config
from hal.rp2 import PressureSensor, BatteryMonitor
print(PressureSensor(board_config).read_x10(), BatteryMonitor(board_config).read_mv())
"""


def test_pressure_and_battery_read_the_adc_through_the_calibration(
    board: pico.PicoBoard,
) -> None:
    pico_pump.maintenance(board)  # BOOTSEL within the window: the REPL is free
    for pressure_raw, battery_raw in ((561, 1241), (1200, 1000), (410, 4095)):
        board.set_adc(pico.ADC_PRESSURE, pressure_raw)
        board.set_adc(pico.ADC_BATTERY, battery_raw)
        out = pico.repl_exec(board.pump_port, SENSOR_SCRIPT).split()
        u16 = (battery_raw << 4) | (battery_raw >> 8)
        assert [int(v) for v in out] == [
            _pressure_x10(pressure_raw),
            u16 * CFG["BATTERY_MV_FULL_SCALE"] >> 16,
        ]
    board.set_adc(pico.ADC_PRESSURE, PRESSURE_AT_REST)
    board.set_adc(pico.ADC_BATTERY, 1241)


# The real heap of the RP2040 port is 245,888 bytes. With the pump's board and
# app built (what main.py holds before the loop runs) at least this much must
# stay free, for therapy, journal batches and fragmentation.
PICO_HEAP_FREE_MIN = 64 * 1024


def test_the_real_heap_of_the_32_bit_port_leaves_the_budget_free(board: pico.PicoBoard) -> None:
    pico_pump.maintenance(board)
    heap = pico_pump.measure_heap(board)
    assert heap["steps"] == 8
    assert heap["idle_free"] >= PICO_HEAP_FREE_MIN, heap
    assert heap["stroke_free"] >= PICO_HEAP_FREE_MIN, heap


# The .mpy install's own budget: its peak live heap while the pump works (a
# session with a few requests, a program, a clinician bolus) stays under
# this, so at least 64 KB of the 245,888 stay free (measured: firmware/README.md).
PICO_MPY_HEAP_BUDGET = 176 * 1024


def test_the_mpy_install_s_peak_heap_in_a_session_and_a_bolus_is_within_its_budget(
    board: pico.PicoBoard,
) -> None:
    from bench.board import pico_heap

    work = pico_heap.session_and_bolus(kit.program(basal_nl_day=1_000_000), 1_000)
    heap = pico_heap.measure(board, work)
    print(f".mpy install on the emulated Pico: {heap}")
    pico_pump.wait_hello(board)  # (reset into the pump: the next tests find it booted)
    assert heap["heap_total"] == 245_888  # the RP2040 port's heap
    # the probe saw the session and the bolus (non-zero: passes in each)
    assert heap["session_alloc"] > 0 and heap["bolus_alloc"] > 0, heap
    assert heap["peak_alloc"] <= PICO_MPY_HEAP_BUDGET, heap


def test_the_stock_uf2_is_the_expected_micropython(stock: pico.PicoBoard) -> None:
    out = pico.repl_exec(stock.pump_port, "import os; print(os.uname())")
    assert f"release='{UF2_VERSION}'" in out, out
    assert "Raspberry Pi Pico with RP2040" in out, out


WATCHDOG_SCRIPT = """
import machine, time
with open('/before.txt', 'w') as f:
    f.write('kept')
w = machine.WDT(timeout=300)
for i in range(20):
    time.sleep_ms(100)
    w.feed()
print('fed for 2 s')
"""


def test_the_watchdog_resets_an_unfed_board_and_not_a_fed_one(stock: pico.PicoBoard) -> None:
    before = stock.status()["resets"]["watchdog"]
    out = pico.repl_exec(stock.pump_port, WATCHDOG_SCRIPT)
    assert "fed for 2 s" in out  # 2 s of feeding at 100 ms: no reset
    # The script is over and nothing feeds the watchdog any more: it bites.
    _wait(lambda: stock.status()["resets"]["watchdog"] > before, 60.0, "no watchdog reset")
    out = pico.repl_exec(
        stock.pump_port,
        "import machine; print(machine.reset_cause() == machine.WDT_RESET, "
        "open('/before.txt').read())",
    )
    assert out.split() == ["True", "kept"], out


@pytest.mark.realtime
def test_a_power_cut_mid_stroke_on_real_littlefs_keeps_the_accounting_within_a_stroke() -> None:
    # Real time: the cut is armed between two strokes 17 s apart; fast mode
    # (idle time skipped) could run a whole stroke past it before it is armed.
    with pico.PicoBoard(mode="realtime") as b:
        pico_pump.wait_hello(b)
        with PumpClient(b.pump_port, timeout_s=30.0) as pump:
            pico_pump.start_program(pump, kit.program(basal_nl_day=1_000_000))
            done = _wait(
                lambda: (lambda n: n if n >= 8 and n % 8 == 0 else 0)(
                    b.status()["step_rises_enabled"]
                ),
                60.0,
                "no first stroke",
            )
            # halfway through the next stroke (17 s of device time away), at the STEP pin
            b.cut_at_step(done + 4)
            _wait(lambda: not b.status()["powered"], 60.0, "no power cut")
        moved = b.status()["step_rises_enabled"]
        assert moved == done + 4
        b.power(True)
        pico_pump.wait_hello(b)
        with PumpClient(b.pump_port, timeout_s=30.0) as pump:
            status = pump.status()
        nl_per_step = CFG["PL_PER_STEP"] // 1000
        actual = moved * nl_per_step  # the rig echoed every step on the encoder
        # never under-counted, over-counted by at most the stroke in flight
        assert actual <= status["delivered_nl"] <= actual + 8 * nl_per_step, status
        assert status["boot_count"] == 2
        files = b.files()
        assert any(name.startswith("/journal/") for name in files), sorted(files)


@pytest.mark.parametrize(
    ("encoder", "alarms"),
    [
        # No edge at all: a stall or a dead encoder. Which one the pump says
        # rests on the pressure witness, which needs the plant's line (the
        # harness holds the pressure ADC still): either stops delivery.
        ({"mode": "stall"}, ("MOTOR_STALL", "ENCODER_FAILURE")),
        ({"mode": "echo", "extra_per_step": 1}, ("RUNAWAY",)),  # two edges per step
    ],
)
def test_the_stroke_check_on_the_real_pio_encoder_raises_the_alarm(
    encoder: dict, alarms: tuple[str, ...]
) -> None:
    with pico.PicoBoard() as b:
        pico_pump.wait_hello(b)
        b.set_encoder(**encoder)
        with PumpClient(b.pump_port, timeout_s=30.0) as pump:
            pico_pump.start_program(pump, FAST_PROGRAM)
            _wait(
                lambda: any(kit.alarm_active(pump.status(), a) for a in alarms),
                90.0,
                f"none of {alarms} raised",
            )
            first = b.status()
            # delivery stops at the first bad stroke: no further strokes follow
            # in 4 stroke intervals of emulated time
            _wait(
                lambda: b.status()["now_ns"] >= first["now_ns"] + 4 * STROKE_INTERVAL_NS,
                120.0,
                "4 stroke intervals of emulated time",
            )
            assert b.status()["step_rises_enabled"] == first["step_rises_enabled"]


ABORT_SCRIPT = """
import time, board_config
from hal.rp2 import StepperMotor
m = StepperMotor(board_config)
m.set_rate(100)
m.start(20)
time.sleep_ms(55)
m.stop()
print(m.last_steps, m.aborts)
"""


def test_a_move_cut_short_reads_back_what_the_pio_issued(board: pico.PicoBoard) -> None:
    # What tests/modules/fakes/rp2.py models: stop() freezes the state
    # machine, exec()s a readback of X and counts at most one step over.
    pico_pump.maintenance(board)
    board.request("reset_pins")
    issued, aborts = (int(v) for v in pico.repl_exec(board.pump_port, ABORT_SCRIPT).split())
    at_pins = board.status()["step_rises_enabled"]
    assert aborts == 1
    assert 0 < at_pins < 20
    assert at_pins <= issued <= at_pins + 1


CLOCK_CHECK_SCRIPT = """
import machine, micropython, board_config
from hal.rp2 import Rp2Clock, RoscClockCheck, _FC0
c = RoscClockCheck(board_config.CHIP, Rp2Clock())
print(c.available, machine.mem32[_FC0[board_config.CHIP] + 24], c._clock.rate_pm)
# a sample on the real 32-bit port: the registers' addresses are big ints
c.available = True
c.boot_khz = 6500
now = c._clock.ticks_ms() + 2000
micropython.heap_lock()
try:
    c.poll(now)
    err = 0
except MemoryError:
    err = 1
micropython.heap_unlock()
print(err, c.fails)
"""


def test_the_emulator_has_no_frequency_counter_so_the_clock_check_is_unavailable(
    board: pico.PicoBoard,
) -> None:
    # What the emulator cannot show (docs/pump.md 14.8): rp2040js
    # 1.4.1 models the CLOCKS block's clock selection registers (0x00-0x7c)
    # but not FC0 (0x80-0x9c: writes dropped, reads 0xffffffff) and the ROSC
    # block not at all. So RoscClockCheck, run here on the real 32-bit port,
    # finds the counter's FAIL and DIED bits at boot and reports the check
    # unavailable, leaving the seconds on the crystal (rate 1000): the pump
    # runs, as before the check. The check itself is shown on the host fakes
    # (tests/modules/test_rp2_hal.py).
    # A sample (forced on here) allocates nothing on the 32-bit port, whose
    # register addresses are big integers: it reads the counter's FAIL bits
    # and counts one failed sample.
    pico_pump.maintenance(board)
    out = pico.repl_exec(board.pump_port, CLOCK_CHECK_SCRIPT).split()
    assert out == ["False", "-1", "1000", "0", "1"]  # mem32 is signed: 0xffffffff
