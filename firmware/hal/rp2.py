# The Raspberry Pi Pico board (RP2040; Pico 2 / RP2350 alike) under stock
# MicroPython: the same HAL interface as virtual/board.py, on real peripherals.
#
#   clock        time.ticks_ms (wraps at 2**30), device time, device seconds
#                kept across resets through a small file; the seconds follow
#                the ring oscillator when the crystal strays (RoscClockCheck)
#   motor        StepperMotor: STEP by a PIO state machine (bounded moves,
#                completion and step count read back), DIR and EN pins,
#                driver disabled between moves
#   encoder      PioEncoder / IrqEncoder / StallEncoder (board_config.ENCODER)
#   pressure     PressureSensor: ADC (oversampled), calibration (offset,
#                gain), integer math; read_x10() in 0.1 mmHg, no filter
#   battery      BatteryMonitor: ADC, millivolts
#   annunciator  Annunciator: buzzer(priority) on PWM, led(priority)
#   pump_port    CdcPort (USB CDC) or UartPort; rig_port: UartPort or NullPort
#   fs           hal/rp2fs.LfsFs: the journal on littlefs, batched appends
#   watchdog     Watchdog: machine.WDT, armed and fed only by feed_watchdog()
#   idle()       wait for I/O or a deadline: lightsleep only when allowed
#
# Everything is built from board_config by Rp2Board(config) (main.py does it
# once at boot). Importing this module touches no hardware. A part that fails
# to start raises BoardFault: the board never falls back to anything.
#
# Interrupt handlers (PIO move completion, encoder edges, DIAG stall, alarm
# pattern timer) are hard IRQs: they allocate nothing. They are bound methods
# stored once at construction (binding allocates), and touch only small ints
# and preallocated arrays.

import binascii
import select
import struct
import sys
import time
from array import array

import machine
import rp2
from micropython import const
from pump.ticks import TICKS_MAX, ticks_diff

from hal import rp2pio
from hal.rp2fs import LfsFs
from protocol.table import RESET_CAUSE_POWER_ON, RESET_CAUSE_SOFT, RESET_CAUSE_WATCHDOG

_MASK = const(0x3FFFFFFF)  # counters wrap at 2**30, like ticks


# Longest watchdog timeout per chip (ms).
WATCHDOG_MAX_MS = {"rp2040": 8388, "rp2350": 16777}

# Alarm priorities the annunciator plays (pump/alarms.py, IEC 60601-1-8).
QUIET = const(0)
LOW = const(1)
MEDIUM = const(2)
HIGH = const(3)

_CLOCK_FILE = "clock"


class BoardFault(Exception):
    """A part of the board failed to start or is misconfigured: no delivery."""


# --- clock ---------------------------------------------------------------------
def _ticks_ms():
    # time.ticks_ms() as a plain int (the stubs make tick values opaque);
    # the same number on the board, where ticks already wrap at 2**30.
    return time.ticks_diff(time.ticks_ms(), 0) & TICKS_MAX


class Rp2Clock:
    """ticks_ms() wrapping at 2**30, device time since power-on, device seconds.

    seconds() = the seconds saved before the last reset (set_base) + the
    seconds since power-on: monotonic across resets as long as a save came
    before the reset (the board saves every CLOCK_SAVE_S). After a reset it
    may repeat up to CLOCK_SAVE_S seconds (plus the time the board was off,
    which nothing on a Pico can measure); it never runs ahead.
    """

    def __init__(self, source=None):
        self._source = source if source is not None else _ticks_ms
        self._last = self._source() & TICKS_MAX
        self._s = 0  # whole seconds since power-on (small int for 34 years)
        self._ms = 0  # and milliseconds, 0-999
        self._base_s = 0
        # seconds() counts the timer's ms at rate_pm per mille (RoscClockCheck
        # sets it: 1000 while the crystal and the ring oscillator agree)
        self.rate_pm = 1000
        self._true_s = 0
        self._acc = 0  # ms x rate_pm below one second

    def ticks_ms(self):
        # Also advances device time: called at least once per loop pass and
        # idle() never waits 2**29 ms, so no wrap is ever missed.
        now = self._source() & TICKS_MAX
        elapsed = (now - self._last) & TICKS_MAX
        ms = self._ms + elapsed
        self._last = now
        if ms >= 1000:
            self._s += ms // 1000
            ms %= 1000
        self._ms = ms
        acc = self._acc + elapsed * self.rate_pm
        if acc >= 1_000_000:
            self._true_s += acc // 1_000_000
            acc %= 1_000_000
        self._acc = acc
        return now

    def time_ms(self):
        # Device time since power-on in ms (a big int after 12 days on the
        # RP2040: for reports only, never in the dose path).
        self.ticks_ms()
        return self._s * 1000 + self._ms

    def seconds(self):
        self.ticks_ms()
        return self._base_s + self._true_s

    def set_base(self, seconds):
        self._base_s = seconds


# --- the clock check's second source: the ring oscillator ------------------------
# The pump's clock check (docs/pump.md 14.8) compares the ms timer with seconds()
# over 5-minute windows. On the Pico both would come from the 12 MHz crystal:
# time.ticks_ms counts the TIMER's 1 us ticks, which the watchdog tick
# generator makes from clk_ref = XOSC; the RP2040's RTC runs on clk_rtc =
# PLL_USB / 1024 (46 875 Hz, as the pico-sdk's clocks_init that MicroPython
# runs sets it), and PLL_USB multiplies the same crystal: not independent.
# The ring oscillator (ROSC) is: an on-chip RC ring, no crystal, ~6.5 MHz,
# its frequency set by process, voltage and temperature. The frequency
# counter FC0 in the CLOCKS block counts a chosen source over 2**INTERVAL
# us of clk_ref and reports kHz as if clk_ref ran at FC0_REF_KHZ: a crystal
# k times fast makes the ROSC read k times slow. So every ROSC_SAMPLE_MS the
# ROSC is counted (about 1 ms, waited for in idle() before it may sleep: a
# lightsleep turns the ROSC off) and compared with its reading at boot;
# while they agree within ROSC_DEADBAND_PM the seconds follow the crystal
# exactly (the ROSC's own drift never reaches the pump's time), beyond it
# they follow the ROSC:
# seconds() then runs at the ROSC's true rate while ticks_ms does not, and
# the monitor's check raises CLOCK_FAULT. A counter that fails
# ROSC_FAILS samples in a row stops seconds() (rate 0): CLOCK_FAULT, stop.
# A counter that never works from boot (the emulated Pico: rp2040js 1.4.1
# leaves FC0 unimplemented, reads 0xffffffff) leaves the check unavailable
# (available False) and seconds() on the crystal alone.
_FC0 = {"rp2040": 0x40008080, "rp2350": 0x4001008C}  # CLOCKS_BASE + FC0_REF_KHZ
_FC_REF = const(0)  # FC0 register offsets from FC0_REF_KHZ
_FC_MIN = const(4)
_FC_MAX = const(8)
_FC_INTERVAL = const(16)
_FC_SRC = const(20)
_FC_STATUS = const(24)
_FC_RESULT = const(28)
_FC_SRC_ROSC = const(3)  # rosc_clksrc, on both chips
_FC_DONE = const(0x10)
_FC_BAD = const(0x10010000)  # DIED | FAIL
_FC_INTERVAL_LOG2 = const(10)  # a ~1 ms count: 1 kHz of ~6 500 kHz
_FC_WAIT_US = const(5_000)  # a count not done by then has failed
_XOSC_KHZ = const(12_000)  # clk_ref on the Pico and the Pico 2
ROSC_MIN_KHZ = 100  # a ROSC reading outside this range is a failed sample
ROSC_MAX_KHZ = 100_000
ROSC_DEADBAND_PM = 20  # below 2 % apart the seconds follow the crystal
ROSC_SAMPLE_MS = 1_000
ROSC_FAILS = 3


class RoscClockCheck:
    """Sets clock.rate_pm from the ring oscillator counted against the crystal.

    mem: machine.mem32, or a stand-in (host tests). poll(now) from idle().
    """

    def __init__(self, chip, clock, mem=None):
        self._clock = clock
        self._mem = mem if mem is not None else machine.mem32
        # the register addresses, computed once: above 2**30 they are big
        # integers on the board, and a sum would allocate at every sample
        fc = _FC0[chip]
        self._ref = fc + _FC_REF
        self._min = fc + _FC_MIN
        self._max = fc + _FC_MAX
        self._interval = fc + _FC_INTERVAL
        self._src = fc + _FC_SRC
        self._status = fc + _FC_STATUS
        self._result = fc + _FC_RESULT
        self.boot_khz = 0
        self.khz = 0  # the last good reading
        self.fails = 0
        self._at = clock.ticks_ms()
        khz = self._count()
        self.available = khz > 0
        if self.available:
            self.boot_khz = self.khz = khz

    def _count(self):
        # One count of the ROSC over ~1 ms of clk_ref, waited for here: a
        # count left running could span a lightsleep, which stops the ROSC
        # (MicroPython's lightsleep turns it off). -> kHz, or 0 for a failed,
        # implausible or unfinished count. mem32 reads are signed on the
        # board (0xffffffff is -1); nothing here allocates.
        mem = self._mem
        mem[self._ref] = _XOSC_KHZ
        mem[self._interval] = _FC_INTERVAL_LOG2
        mem[self._min] = 0
        mem[self._max] = 0x1FFFFFF
        mem[self._src] = _FC_SRC_ROSC  # starts the count
        started = time.ticks_us()
        status = mem[self._status]
        while not status & _FC_DONE:
            if time.ticks_diff(time.ticks_us(), started) > _FC_WAIT_US:
                return 0  # a counter that never finishes
            status = mem[self._status]
        if status & _FC_BAD:
            return 0
        khz = (mem[self._result] >> 5) & 0x1FFFFFF
        return khz if ROSC_MIN_KHZ <= khz <= ROSC_MAX_KHZ else 0

    def poll(self, now):
        # From idle(), before it may sleep: one count a ROSC_SAMPLE_MS.
        if not self.available or ticks_diff(now, self._at) < ROSC_SAMPLE_MS:
            return
        self._at = now
        khz = self._count()
        if khz == 0:
            self.fails += 1
            if self.fails >= ROSC_FAILS:
                self._clock.rate_pm = 0  # no second source: seconds stop
            return
        self.fails = 0
        self.khz = khz
        rate = khz * 1000 // self.boot_khz
        if -ROSC_DEADBAND_PM <= rate - 1000 <= ROSC_DEADBAND_PM:
            rate = 1000
        self._clock.rate_pm = rate


# --- motor: PIO step generation ----------------------------------------------------
class StepperMotor:
    """STEP/DIR/EN stepper driver; steps generated by a PIO state machine.

    start(steps) begins a bounded move (1..MAX_MOVE_STEPS steps at the set
    rate) and returns at once; the PIO raises a hard IRQ at the end, which
    disables the driver. stop() disables the driver first, then reads back
    how many steps were issued (exact for a finished move; for a move cut
    short, from the PIO's X register, at most one step over).
    """

    def __init__(self, cfg):
        self._en_off = 1 if cfg.ENABLE_ACTIVE_LOW else 0
        self._en_on = 1 - self._en_off
        # The driver is disabled before anything else is configured.
        self._en = machine.Pin(cfg.ENABLE_PIN, machine.Pin.OUT, value=self._en_off)
        self._forward = cfg.DIR_FORWARD
        self._dir = machine.Pin(cfg.DIR_PIN, machine.Pin.OUT, value=self._forward)
        self._step = machine.Pin(cfg.STEP_PIN, machine.Pin.OUT, value=0)
        self._pio_hz = cfg.STEP_PIO_HZ
        self._settle_us = cfg.DRIVER_SETTLE_US
        self.max_steps = cfg.MAX_MOVE_STEPS
        self.min_rate = cfg.MIN_STEP_RATE_HZ
        self.max_rate = cfg.MAX_STEP_RATE_HZ
        self.rate = 0
        self._delay = 0  # Y: PIO cycles per delay loop
        self.set_rate(cfg.STEP_RATE_HZ)
        # Encoded once: exec() of an int allocates nothing (usable in an IRQ).
        self._read_x = rp2.asm_pio_encode(rp2pio.READ_X, 0)
        self._push = rp2.asm_pio_encode(rp2pio.PUSH, 0)
        self._step_low = rp2.asm_pio_encode(rp2pio.STEP_LOW, 0)
        # [0]: completion IRQ seen for the current move; [1]: halted by IRQ
        self._flags = array("i", [0, 0])
        self._done_cb = self._on_done  # bound once: a hard IRQ must not allocate
        self._sm = rp2.StateMachine(cfg.STEP_SM)
        self._configure()
        self.before_move = None  # called before every move (the board: fs.flush)
        self._moving = False
        self._steps = 0  # steps of the current move
        self.last_steps = 0  # steps issued by the last move
        self.issued = 0  # all steps issued since boot, wraps at 2**30
        self.moves = 0
        self.aborts = 0

    def _configure(self):
        # (Re)starts the state machine at the program start, waiting for a move.
        sm = self._sm
        sm.init(rp2pio.stepper, freq=self._pio_hz, set_base=self._step)
        sm.irq(self._done_cb, hard=True)
        sm.active(1)

    def set_rate(self, steps_per_s):
        # A step lasts 2 * Y + STEP_OVERHEAD PIO cycles.
        if steps_per_s < self.min_rate or steps_per_s > self.max_rate:
            raise ValueError("step rate out of range")
        delay = (self._pio_hz // steps_per_s - rp2pio.STEP_OVERHEAD) // 2
        self._delay = delay if delay > 0 else 0
        self.rate = steps_per_s

    def period_us(self):
        # Actual step period at the set rate, in microseconds.
        return (2 * self._delay + rp2pio.STEP_OVERHEAD) * 1_000_000 // self._pio_hz

    def start(self, steps):
        if steps < 1 or steps > self.max_steps:
            raise ValueError("move out of bounds")
        if self._moving:
            raise RuntimeError("motor busy: stop() first")
        if self.before_move is not None:
            self.before_move()
        self._dir.value(self._forward)
        self._en.value(self._en_on)
        time.sleep_us(self._settle_us)
        flags = self._flags
        flags[0] = 0
        flags[1] = 0
        self._steps = steps
        self._moving = True
        self.moves += 1
        sm = self._sm
        sm.put(steps - 1)
        sm.put(self._delay)

    def stop(self):
        # De-energise first, whatever else happens next.
        self._en.value(self._en_off)
        if not self._moving:
            return
        self._moving = False
        steps = self._steps
        if self._drain() == rp2pio.MOVE_DONE or self._flags[0]:
            issued = steps
        else:
            sm = self._sm
            sm.active(0)  # freeze the move, then read X (steps left - 1)
            sm.exec(self._read_x)
            sm.exec(self._push)
            left = self._drain()
            if 0 <= left < steps:
                issued = steps - left
            else:
                issued = steps  # it finished meanwhile (or X unreadable: count all)
            sm.exec(self._step_low)
            self._configure()
            self.aborts += 1
        self.last_steps = issued
        self.issued = (self.issued + issued) & _MASK

    def moving(self):
        # True while the PIO may still issue steps of the current move.
        if not self._moving or self._flags[0] or self._flags[1]:
            return False
        if self._drain() == rp2pio.MOVE_DONE:
            self._flags[0] = 1
            return False
        return True

    def enabled(self):
        # True while the driver is energised.
        return self._en.value() == self._en_on

    def halt(self):
        # From a hard IRQ (stall): freeze the PIO and disable the driver.
        # stop() then reads back what was issued.
        self._sm.active(0)
        self._en.value(self._en_off)
        self._flags[1] = 1

    def _on_done(self, _sm):
        # Hard IRQ at the end of a move: driver off between moves.
        self._en.value(self._en_off)
        self._flags[0] = 1

    def _drain(self):
        # Empties the RX FIFO: -> MOVE_DONE if it held the completion word,
        # else the last word read, or -1 if it was empty.
        sm = self._sm
        last = -1
        while sm.rx_fifo():
            word = sm.get() & _MASK  # ISR bits shifted out of a stale word
            if word == rp2pio.MOVE_DONE:
                last = word
                while sm.rx_fifo():
                    sm.get()
                break
            last = word
        return last


# --- motor feedback --------------------------------------------------------------------
class _EdgeScale:
    # Encoder edges -> motor steps (steps = edges * num / den, remainder
    # carried), wrapping at 2**30. count() must be called at least once per
    # 2**30 edges (the drive reads it twice a stroke).
    def __init__(self, num, den):
        if num < 1 or den < 1:
            raise ValueError("encoder scale")
        self._num = num
        self._den = den
        self._last = 0
        self._rem = 0
        self._steps = 0

    def steps(self, edges):
        delta = (edges - self._last) & _MASK
        self._last = edges
        acc = self._rem + delta * self._num
        self._steps = (self._steps + acc // self._den) & _MASK
        self._rem = acc % self._den
        return self._steps


def _input_pin(number, pull_up):
    if pull_up:
        return machine.Pin(number, machine.Pin.IN, machine.Pin.PULL_UP)
    return machine.Pin(number, machine.Pin.IN)


class PioEncoder:
    """Encoder channel A counted by a PIO state machine (through flash writes)."""

    def __init__(self, cfg):
        self._pin = _input_pin(cfg.ENCODER_PIN, cfg.ENCODER_PULL_UP)
        self._read_x = rp2.asm_pio_encode(rp2pio.READ_X, 0)
        self._push = rp2.asm_pio_encode(rp2pio.PUSH, 0)
        sm = rp2.StateMachine(cfg.ENCODER_SM)
        sm.init(rp2pio.edge_counter, freq=cfg.ENCODER_PIO_HZ, in_base=self._pin)
        sm.exec(rp2.asm_pio_encode(rp2pio.CLEAR_X, 0))
        sm.active(1)
        self._sm = sm
        self._scale = _EdgeScale(cfg.ENCODER_STEPS_NUM, cfg.ENCODER_EDGES_DEN)

    def edges(self):
        # X counts down from 0 on every rising edge: edges = -X (mod 2**30).
        sm = self._sm
        while sm.rx_fifo():
            sm.get()
        sm.exec(self._read_x)
        sm.exec(self._push)
        return -sm.get() & _MASK

    def count(self):
        return self._scale.steps(self.edges())


class IrqEncoder:
    """Encoder channel A counted by a hard GPIO interrupt."""

    def __init__(self, cfg):
        self._n = array("i", [0])  # rising edges, wraps at 2**30
        self._edge_cb = self._on_edge
        self._pin = _input_pin(cfg.ENCODER_PIN, cfg.ENCODER_PULL_UP)
        self._pin.irq(self._edge_cb, machine.Pin.IRQ_RISING, hard=True)
        self._scale = _EdgeScale(cfg.ENCODER_STEPS_NUM, cfg.ENCODER_EDGES_DEN)

    def _on_edge(self, _pin):
        n = self._n
        n[0] = (n[0] + 1) & _MASK

    def edges(self):
        return self._n[0]

    def count(self):
        return self._scale.steps(self._n[0])


class StallEncoder:
    """No encoder: the steps the PIO issued, cut short by the driver's DIAG pin.

    A rising DIAG (TMC2209 stall) halts the move at once from a hard IRQ, so
    the count is the steps issued before the stall: an upper bound of what
    moved (never an under-count), and short of the stroke, so the drive sees
    the mismatch.
    """

    def __init__(self, cfg, motor):
        self._motor = motor
        self._n = array("i", [0])  # stalls seen
        self._stall_cb = self._on_stall
        # DIAG is a push-pull output of the driver: no pull (and none of the
        # RP2350's pull-down erratum E9).
        self._pin = machine.Pin(cfg.DIAG_PIN, machine.Pin.IN)
        self._pin.irq(self._stall_cb, machine.Pin.IRQ_RISING, hard=True)

    def _on_stall(self, _pin):
        self._motor.halt()
        n = self._n
        n[0] = (n[0] + 1) & _MASK

    def stalls(self):
        return self._n[0]

    def count(self):
        return self._motor.issued


def make_encoder(cfg, motor):
    kind = cfg.ENCODER
    if kind == "pio":
        return PioEncoder(cfg)
    if kind == "irq":
        return IrqEncoder(cfg)
    if kind == "diag":
        return StallEncoder(cfg, motor)
    raise ValueError("ENCODER must be pio, irq or diag")


# --- sensors -----------------------------------------------------------------------------
def _burst(adc, count):
    # Mean of count read_u16() samples without the lowest and the highest
    # (count >= 3): one spike moves nothing. Integer math, no allocation.
    total = 0
    low = 65535
    high = 0
    i = 0
    while i < count:
        v = adc.read_u16()
        total += v
        if v < low:
            low = v
        if v > high:
            high = v
        i += 1
    if count >= 3:
        return (total - low - high) // (count - 2)
    return total // count


class PressureSensor:
    """Pressure on an ADC input, in 0.1 mmHg, integer math throughout.

    mmHg x 10 = (raw - offset_raw) * gain >> 16, with raw the mean of one
    burst of PRESSURE_OVERSAMPLE read_u16() counts (lowest and highest
    dropped). gain is 0.1 mmHg per 65536 counts (at most 16383, so that the
    product stays a small int).

    Every reading is the sensor now, with no memory of earlier readings, as
    the virtual board's sensor is: the monitors compare readings taken 20 ms,
    200 ms and minutes apart (pump/safety.py) and take each as the pressure
    at that instant. A filter updated per reading has no time constant at
    such uneven spacing: it showed a held stroke as one that drained (no
    OCCLUSION on a blocked line, the emulated Pico found it).
    """

    def __init__(self, cfg):
        self._adc = machine.ADC(machine.Pin(cfg.PRESSURE_ADC_PIN))
        self._count = cfg.PRESSURE_OVERSAMPLE
        self.offset_raw = 0
        self.gain = 0
        self.calibrate(cfg.PRESSURE_OFFSET_RAW, cfg.PRESSURE_GAIN)

    def calibrate(self, offset_raw, gain):
        if not 0 <= offset_raw <= 65535 or not 0 < gain <= 16383:
            raise ValueError("pressure calibration")
        self.offset_raw = offset_raw
        self.gain = gain

    def read_raw(self):
        # One oversampled reading (counts 0-65535).
        return _burst(self._adc, self._count)

    def read_x10(self):
        # The pressure now, in 0.1 mmHg (gauge).
        return self.to_x10(_burst(self._adc, self._count))

    def to_x10(self, raw):
        return ((raw - self.offset_raw) * self.gain) >> 16

    def stroke_end_x10(self):
        # The reading for the end of a stroke: the app asks at the stroke's
        # deadline, which the Pico's loop meets within a pass (the link's
        # work per pass is bounded); not yet a conversion started by the
        # move-done interrupt as on the virtual board.
        return self.read_x10()


class BatteryMonitor:
    """Supply voltage on an ADC input, in millivolts (integer math)."""

    def __init__(self, cfg):
        self._adc = machine.ADC(machine.Pin(cfg.BATTERY_ADC_PIN))
        self.full_scale_mv = cfg.BATTERY_MV_FULL_SCALE  # at most 16383

    def read_mv(self):
        return (_burst(self._adc, 4) * self.full_scale_mv) >> 16


# --- annunciator -------------------------------------------------------------------
# Buzzer patterns in timer ticks (ALARM_TICK_MS, 25 ms by default): pairs of
# (sounding, silent), repeated; a silent time of 0 ends the pattern. After
# IEC 60601-1-8 (not verified against it): high = bursts of 10 pulses of
# 150 ms, medium = 3 pulses of 200 ms every ~10 s, low = 2 pulses, once.
_HIGH_PULSES = (6, 4, 6, 4, 6, 14, 6, 4, 6, 40, 6, 4, 6, 4, 6, 14, 6, 4, 6, 200)
_MEDIUM_PULSES = (8, 6, 8, 6, 8, 400)
_LOW_PULSES = (8, 6, 8, 0)
_PULSES = ((0,), _LOW_PULSES, _MEDIUM_PULSES, _HIGH_PULSES)
# LED: ticks between toggles (high ~2 Hz, medium ~0.5 Hz); 0 = steady on.
_LED_TOGGLE = (0, 0, 40, 10)

# Annunciator state shared with the timer IRQ (indexes of one array).
_BUZZER = const(0)  # priority the buzzer plays (0: silent)
_POS = const(1)  # index in its pulse table
_LEFT = const(2)  # ticks left in the current pulse or gap; 0: pattern over
_LED = const(3)  # priority the LED shows (0: off)
_LED_LEFT = const(4)  # ticks to the next toggle
_LED_ON = const(5)


class Annunciator:
    """Buzzer (PWM) and alarm LED, each playing the pattern of a priority.

    buzzer(priority) and led(priority): 0 off, 1 low, 2 medium, 3 high (the
    alarm manager says which, when it changes; the patterns play on their
    own). A periodic hard-IRQ timer steps them, and runs only while a pulse
    pattern or a blinking LED needs it; a steady LED is just a pin level.
    lightsleep stops PWM and timers: the board does not sleep unless quiet().
    """

    def __init__(self, cfg):
        self._duty = cfg.BUZZER_DUTY_U16
        self._tick_ms = cfg.ALARM_TICK_MS
        self._pwm = machine.PWM(machine.Pin(cfg.BUZZER_PIN), freq=cfg.BUZZER_HZ, duty_u16=0)
        self._lit = 1 if cfg.LED_ACTIVE_HIGH else 0
        self._led = machine.Pin(cfg.LED_PIN, machine.Pin.OUT, value=1 - self._lit)
        self._s = array("i", [0, 0, 0, 0, 0, 0])
        self._timer = machine.Timer(-1)
        self._running = False
        self._tick_cb = self._on_tick  # bound once: a hard IRQ must not allocate
        # A hard timer needs MicroPython 1.26 or later: find out now, at
        # start-up (a BoardFault), not when the first alarm sounds.
        self._timer.init(
            mode=machine.Timer.ONE_SHOT, period=self._tick_ms, callback=self._tick_cb, hard=True
        )
        self._timer.deinit()

    def buzzer(self, priority):
        s = self._s
        if not 0 <= priority <= HIGH:
            raise ValueError("priority")
        s[_BUZZER] = priority
        s[_POS] = 0
        s[_LEFT] = _PULSES[priority][0]
        self._pwm.duty_u16(self._duty if priority else 0)
        self._update_timer()

    def led(self, priority):
        s = self._s
        if not 0 <= priority <= HIGH:
            raise ValueError("priority")
        s[_LED] = priority
        s[_LED_LEFT] = _LED_TOGGLE[priority]
        s[_LED_ON] = 1 if priority else 0
        self._led.value(self._lit if priority else 1 - self._lit)
        self._update_timer()

    def off(self):
        self.buzzer(QUIET)
        self.led(QUIET)

    def sounding(self):
        # The buzzer's priority while its pattern still plays (0 after a
        # one-shot pattern ended).
        s = self._s
        return s[_BUZZER] if s[_LEFT] else 0

    def quiet(self):
        # No timer running and no tone: nothing would stop if the board slept.
        return not self._running

    def service(self):
        # From the main loop: stops the timer once a one-shot pattern is over.
        self._update_timer()

    def _update_timer(self):
        s = self._s
        needed = (s[_BUZZER] and s[_LEFT]) or _LED_TOGGLE[s[_LED]]
        if needed and not self._running:
            self._running = True
            self._timer.init(
                mode=machine.Timer.PERIODIC,
                period=self._tick_ms,
                callback=self._tick_cb,
                hard=True,
            )
        elif not needed and self._running:
            self._timer.deinit()
            self._running = False

    def _on_tick(self, _timer):
        # Hard IRQ: small ints and the state array only.
        s = self._s
        left = s[_LEFT]
        if s[_BUZZER] and left:
            left -= 1
            if left == 0:
                pulses = _PULSES[s[_BUZZER]]
                pos = s[_POS] + 1
                if pos == len(pulses):
                    pos = 0
                left = pulses[pos]
                s[_POS] = pos
                # even positions sound; odd ones (and the end, 0) are gaps
                self._pwm.duty_u16(0 if pos & 1 or left == 0 else self._duty)
            s[_LEFT] = left
        toggle = _LED_TOGGLE[s[_LED]]
        if toggle:
            led_left = s[_LED_LEFT] - 1
            if led_left <= 0:
                led_left = toggle
                on = s[_LED_ON] ^ 1
                s[_LED_ON] = on
                self._led.value(self._lit if on else 1 - self._lit)
            s[_LED_LEFT] = led_left


# --- ports -----------------------------------------------------------------------------
class CdcPort:
    """The pump port on USB CDC: raw bytes on sys.stdin.buffer / sys.stdout.buffer.

    The caller has switched Ctrl-C off (micropython.kbd_intr(-1)): USB CDC
    would otherwise turn a 0x03 byte into KeyboardInterrupt. readinto() takes
    the bytes waiting (a 512-byte ring on the board) one by one into a
    preallocated byte, as a read of more than is waiting would block. write()
    may block up to the USB CDC TX timeout while a host is attached but not
    reading (the port's only stall).
    """

    def __init__(self, rx, tx, poller):
        self._rx = rx
        self._tx = tx
        self._poll = poller
        self._one = bytearray(1)
        self.rx_bytes = 0  # received, wraps at 2**30

    def readinto(self, buf):
        n = 0
        size = len(buf)
        one = self._one
        while n < size and self._waiting():
            if not self._rx.readinto(one):
                break
            buf[n] = one[0]
            n += 1
        self.rx_bytes = (self.rx_bytes + n) & _MASK
        return n

    def _waiting(self):
        for _event in self._poll.ipoll(0):
            return True
        return False

    def write(self, data):
        try:
            written = self._tx.write(data)
        except OSError:
            return False
        return written == len(data)


class UartPort:
    """A port on a machine.UART (timeout 0: reads and writes never wait)."""

    def __init__(self, uart):
        self.uart = uart
        self.rx_bytes = 0

    def readinto(self, buf):
        uart = self.uart
        n = uart.any()
        if n <= 0:
            return 0
        if n > len(buf):
            n = len(buf)
        got = uart.readinto(buf, n)
        got = got if got else 0
        self.rx_bytes = (self.rx_bytes + got) & _MASK
        return got

    def write(self, data):
        written = self.uart.write(data)
        return written == len(data)


class NullPort:
    """No port: reads nothing, writes go nowhere."""

    rx_bytes = 0

    def readinto(self, _buf):
        return 0

    def write(self, _data):
        return False


def _uart(uart_id, baud, tx, rx, rxbuf):
    return machine.UART(
        uart_id, baud, tx=machine.Pin(tx), rx=machine.Pin(rx), timeout=0, rxbuf=rxbuf
    )


# --- watchdog -----------------------------------------------------------------------------
class Watchdog:
    """machine.WDT, armed by the supervisor's first feed and fed only there.

    Nothing else in the firmware feeds it: not idle(), not an interrupt.
    Once armed it cannot be stopped; a reset it causes is reported at boot
    (RESET_CAUSE_WATCHDOG).
    """

    def __init__(self, timeout_ms, enabled, clock):
        self.timeout_ms = timeout_ms
        self.enabled = enabled
        self._clock = clock
        self._wdt = None
        self._last_feed = 0
        self.feeds = 0

    def feed(self):
        if not self.enabled:
            return
        if self._wdt is None:
            self._wdt = machine.WDT(timeout=self.timeout_ms)
        self._wdt.feed()
        self._last_feed = self._clock.ticks_ms()
        self.feeds += 1

    def armed(self):
        return self._wdt is not None

    def left_ms(self, now_ticks):
        # Time until the watchdog bites; -1 when it is not armed.
        if self._wdt is None:
            return -1
        left = self.timeout_ms - ticks_diff(now_ticks, self._last_feed)
        return left if left > 0 else 0


# --- the board -------------------------------------------------------------------------------
def reset_cause():
    # The BOOT event's reset cause, from the chip's reset reason.
    cause = machine.reset_cause()
    if cause == machine.WDT_RESET:
        return RESET_CAUSE_WATCHDOG
    if cause == machine.PWRON_RESET:
        return RESET_CAUSE_POWER_ON
    return RESET_CAUSE_SOFT


def device_id(cfg):
    if cfg.DEVICE_ID:
        return cfg.DEVICE_ID
    return binascii.hexlify(machine.unique_id()).decode().upper()[:16]


class Rp2Board:
    """The Pico, built from board_config.

    stdin, stdout, poller, ticks and mem32 replace sys.stdin.buffer,
    sys.stdout.buffer, select.poll(), time.ticks_ms and machine.mem32
    (host tests).
    """

    def __init__(self, cfg, stdin=None, stdout=None, poller=None, ticks=None, mem32=None):
        self.name = cfg.BOARD_NAME
        self.powered = True  # if the power goes, so does the CPU
        self.orphaned = False  # a USB cable pulled out never stops the pump
        self.boot_count = 0
        self.sleeps = 0  # lightsleep calls, for tests and bench figures
        self._reset_request = -1
        part = "config"
        try:
            max_wdt = WATCHDOG_MAX_MS.get(cfg.CHIP)
            if max_wdt is None:
                raise ValueError("CHIP must be rp2040 or rp2350")
            if not 0 < cfg.WATCHDOG_MS <= max_wdt:
                raise ValueError("WATCHDOG_MS must be 1-%d on the %s" % (max_wdt, cfg.CHIP))
            self.clock = Rp2Clock(ticks)
            part = "motor driver"
            self.motor = StepperMotor(cfg)
            part = "clock check"
            self.clock_check = RoscClockCheck(cfg.CHIP, self.clock, mem32)
            part = "motor feedback (%s)" % cfg.ENCODER
            self.encoder = make_encoder(cfg, self.motor)
            part = "pressure sensor"
            self.pressure = PressureSensor(cfg)
            part = "battery monitor"
            self.battery = BatteryMonitor(cfg)
            part = "annunciator"
            self.annunciator = Annunciator(cfg)
            part = "pump port (%s)" % cfg.PUMP_PORT
            self._poll = poller if poller is not None else select.poll()
            self.pump_port = self._pump_port(cfg, stdin, stdout)
            part = "rig port"
            self.rig_port = self._rig_port(cfg)
            part = "journal filesystem"
            self.fs = LfsFs(
                cfg.JOURNAL_DIR, cfg.JOURNAL_BATCH_BYTES, cfg.JOURNAL_FLUSH_MS, self.clock
            )
            # The "before stroke" record must be on flash before anything moves.
            self.motor.before_move = self.fs.flush
            self._seconds_buf = bytearray(8)
            self._restore_seconds()
            part = "watchdog"
            self.watchdog = Watchdog(cfg.WATCHDOG_MS, cfg.WATCHDOG, self.clock)
            self.watchdog_ms = cfg.WATCHDOG_MS  # the supervisor feeds twice per period
            self.pl_per_step = cfg.PL_PER_STEP  # calibration of the head (for the drive)
            part = "identity"
            self.device_id = device_id(cfg)
            self.reset_cause = reset_cause()
        except Exception as e:
            self._disable_driver(cfg)
            # (no "from e": MicroPython prints a warning for exception chaining)
            raise BoardFault("%s: %s" % (part, repr(e)))  # noqa: B904
        self._saved_s = self.clock.seconds()
        self._save_every_s = cfg.CLOCK_SAVE_S
        self._wdt_margin = cfg.WATCHDOG_MARGIN_MS
        self._sleep = cfg.LIGHTSLEEP
        self._sleep_min = cfg.LIGHTSLEEP_MIN_MS
        self._sleep_max = cfg.LIGHTSLEEP_MAX_MS
        self._quiet_ms = cfg.PORT_QUIET_MS
        self._rx_seen = 0
        self._rx_at = self.clock.ticks_ms()

    def _disable_driver(self, cfg):
        # Start-up failed: whatever else is broken, the driver stays off.
        try:
            motor = getattr(self, "motor", None)
            if motor is not None:
                motor.stop()
            else:
                off = 1 if cfg.ENABLE_ACTIVE_LOW else 0
                machine.Pin(cfg.ENABLE_PIN, machine.Pin.OUT, value=off)
        except Exception:
            pass  # nothing more can be done here

    def _pump_port(self, cfg, stdin, stdout):
        if cfg.PUMP_PORT == "usb":
            rx = stdin if stdin is not None else sys.stdin.buffer
            tx = stdout if stdout is not None else sys.stdout.buffer
            self._poll.register(rx, select.POLLIN)
            return CdcPort(rx, tx, self._poll)
        if cfg.PUMP_PORT == "uart":
            uart = _uart(
                cfg.PUMP_UART_ID,
                cfg.PUMP_UART_BAUD,
                cfg.PUMP_UART_TX,
                cfg.PUMP_UART_RX,
                cfg.UART_RXBUF,
            )
            self._poll.register(uart, select.POLLIN)
            return UartPort(uart)
        raise ValueError("PUMP_PORT must be usb or uart")

    def _rig_port(self, cfg):
        if cfg.RIG_UART_ID < 0:
            return NullPort()
        uart = _uart(
            cfg.RIG_UART_ID, cfg.RIG_UART_BAUD, cfg.RIG_UART_TX, cfg.RIG_UART_RX, cfg.UART_RXBUF
        )
        return UartPort(uart)

    # --- the supervisor's hook ------------------------------------------------
    def watchdog_deadline_ms(self):
        # Device time (time_ms) the watchdog bites at; -1 while not armed.
        left = self.watchdog.left_ms(self.clock.ticks_ms())
        return self.clock.time_ms() + left if left >= 0 else -1

    def feed_watchdog(self):
        # Call only when every monitor ran on time (the safety supervisor):
        # arms the watchdog on the first call, feeds it on every call.
        self.watchdog.feed()

    # --- resets -----------------------------------------------------------------
    def request_reset(self, cause):
        self._reset_request = cause

    def take_reset_request(self):
        cause = self._reset_request
        self._reset_request = -1
        return cause

    def service(self):
        # No rig lives in the pump firmware: a physical rig is its own fixture.
        pass

    def maintenance_requested(self, window_ms):
        # At boot, before the application starts: BOOTSEL pressed within the
        # window keeps the pump application from starting (main.py then
        # leaves the REPL to mpremote). Polled every 20 ms.
        checks = window_ms // 20 + 1
        while checks > 0:
            if rp2.bootsel_button():
                return True
            checks -= 1
            if checks:
                time.sleep_ms(20)
        return False

    # --- idle -----------------------------------------------------------------------
    def idle(self, wait_ms):
        # Returns after wait_ms or when the pump port has bytes, whichever
        # comes first; sooner when the watchdog or a journal flush is due.
        # The CPU sleeps in the poll (WFE, like machine.idle()), or in
        # machine.lightsleep when it may (see may_lightsleep).
        now = self.clock.ticks_ms()
        self.clock_check.poll(now)
        port = self.pump_port
        if port.rx_bytes != self._rx_seen:
            self._rx_seen = port.rx_bytes
            self._rx_at = now
        stopped = not self.motor.moving()
        if stopped:
            # Flash writes only between moves (a PIO encoder would not mind,
            # an IRQ encoder would lose edges while interrupts are held off).
            if self.fs.due(now):
                self.fs.flush()
            if self.clock.seconds() - self._saved_s >= self._save_every_s:
                self._save_seconds()
            self.annunciator.service()
        wait = wait_ms if wait_ms > 0 else 0
        left = self.watchdog.left_ms(now)
        if left >= 0:
            budget = left - self._wdt_margin
            if budget < wait:
                wait = budget if budget > 0 else 0
        if stopped:
            due = self.fs.due_in_ms(now)
            if 0 <= due < wait:
                wait = due
        if self.may_lightsleep(now, wait, stopped):
            self.sleeps += 1
            machine.lightsleep(wait if wait < self._sleep_max else self._sleep_max)
            return
        for _event in self._poll.ipoll(wait):
            break

    def may_lightsleep(self, now, wait, stopped):
        # lightsleep stops PIO, PWM, the ADC clock and timers: only with the
        # motor stopped and disabled, the annunciator quiet, the pump port
        # quiet for PORT_QUIET_MS (a request would wait out the sleep), and
        # a wait long enough to be worth it. wait is already capped by the
        # watchdog and the journal.
        return (
            self._sleep
            and stopped
            and wait >= self._sleep_min
            and not self.motor.enabled()
            and self.annunciator.quiet()
            and ticks_diff(now, self._rx_at) >= self._quiet_ms
        )

    # --- device seconds across resets -------------------------------------------------
    def _restore_seconds(self):
        buf = self._seconds_buf
        if self.fs.read_into(_CLOCK_FILE, 0, buf) == 8:
            seconds, crc = struct.unpack("<II", buf)
            if binascii.crc32(memoryview(buf)[:4]) == crc:
                self.clock.set_base(seconds)

    def _save_seconds(self):
        seconds = self.clock.seconds()
        buf = self._seconds_buf
        struct.pack_into("<I", buf, 0, seconds)
        struct.pack_into("<I", buf, 4, binascii.crc32(memoryview(buf)[:4]))
        self.fs.write(_CLOCK_FILE, buf)
        self._saved_s = seconds
