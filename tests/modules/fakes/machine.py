# ruff: noqa: ARG001, ARG002  (fakes keep the real signatures)
# Fake `machine` for host tests of hal/rp2.py under the MicroPython unix port.
#
# `machine` is an extensible built-in: this file, found first on MICROPYPATH,
# replaces it. It records what the HAL configures (LOG: one tuple per
# constructor or init call) and keeps the last state of every pin, PWM,
# ADC, WDT, timer and UART, so that a check script can assert on them.
#
# Methods an interrupt handler may call (Pin.value/on/off, PWM.duty_u16)
# allocate nothing: they update preallocated fields and a bytearray history,
# so a handler run under micropython.heap_lock() fails only for its own
# allocations.
#
# Time: NOW[0] is a deterministic millisecond clock (ticks() wraps at 2**30);
# lightsleep(ms) advances it. Hand ticks to Rp2Board(..., ticks=machine.ticks).
#
# Failure injection: FAIL["ADC"] = OSError(19) makes the next ADC() raise.
#
# mem32: only the frequency counter FC0 of the CLOCKS block (RP2040 and
# RP2350 addresses), counting the ring oscillator: ROSC_KHZ[0] as the
# crystal sees it, i.e. ROSC_KHZ * 1000 // CRYSTAL_PM (a crystal running
# CRYSTAL_PM per mille makes ticks() that much fast: the test advances NOW
# accordingly). FC_MODE[0]: "ok", "unimplemented" (every read 0xffffffff,
# as on rp2040js 1.4.1, which mem32 returns as -1) or "failed" (DONE with
# FAIL set).

LOG = []
NOW = [0]
FAIL = {}
PINS = {}  # pin id -> the last Pin object made for it
PWMS = {}  # pin id -> PWM
ADCS = {}  # pin id -> ADC
TIMERS = []
UARTS = {}
WDTS = []
SLEEPS = []  # lightsleep(ms) calls
IDLE = [0]
RESET_CAUSE = [1]
UNIQUE_ID = b"\xe6\x60\x58\x38\x8b\x3a\x5a\x2c"
HISTORY = 256  # pin/PWM level changes kept (bytearray ring, no allocation)

PWRON_RESET = 1
WDT_RESET = 3
SOFT_RESET = 5
WATCHDOG_MAX_MS = [8388]  # RP2040; the RP2350 allows 16777


ROSC_KHZ = [6_500]
CRYSTAL_PM = [1_000]
FC_MODE = ["ok"]
FC_COUNTS = [0]  # counts started (writes of a source to FC0_SRC)
# FC0_SRC address on each chip; STATUS and RESULT follow it (+4, +8)
_FC0_SRC = (0x40008094, 0x400100A0)


class _Mem32:
    def __init__(self):
        self.regs = {}

    def __setitem__(self, addr, value):
        self.regs[addr] = value
        if addr in _FC0_SRC and value:
            FC_COUNTS[0] += 1

    def __getitem__(self, addr):
        mode = FC_MODE[0]
        if mode == "unimplemented":
            return -1  # 0xffffffff: mem32 reads are signed on the rp2 port
        for src in _FC0_SRC:
            if addr == src + 4:  # STATUS: DONE (and PASS, or FAIL)
                return 0x10010 if mode == "failed" else 0x11
            if addr == src + 8:  # RESULT: kHz << 5
                return (ROSC_KHZ[0] * 1000 // CRYSTAL_PM[0]) << 5
        return self.regs.get(addr, 0)


mem32 = _Mem32()


def _check_fail(name):
    error = FAIL.pop(name, None)
    if error is not None:
        raise error


def reset_fakes():
    LOG.clear()
    NOW[0] = 0
    FAIL.clear()
    PINS.clear()
    PWMS.clear()
    ADCS.clear()
    TIMERS.clear()
    UARTS.clear()
    WDTS.clear()
    SLEEPS.clear()
    IDLE[0] = 0
    RESET_CAUSE[0] = PWRON_RESET
    ROSC_KHZ[0] = 6_500
    CRYSTAL_PM[0] = 1_000
    FC_MODE[0] = "ok"
    FC_COUNTS[0] = 0
    mem32.regs.clear()


def ticks():
    return NOW[0] & 0x3FFFFFFF


def advance(ms):
    NOW[0] += ms


def _pin_id(pin):
    return pin.id if isinstance(pin, Pin) else pin


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    ALT = 3
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 4
    IRQ_RISING = 8

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, alt=None):
        _check_fail("Pin")
        self.id = id
        self.mode = mode
        self.pull = pull
        self.level = 0 if value is None else (1 if value else 0)
        self.history = bytearray(HISTORY)  # levels written, oldest first
        self.writes = 0
        self.handler = None
        self.trigger = 0
        self.hard = None
        self.pio = False  # set by a state machine that drives the pin
        old = PINS.get(id)
        if old is not None and value is None:
            self.level = old.level
        PINS[id] = self
        LOG.append(("Pin", id, mode, pull, value))
        if value is not None:
            self._record(self.level)

    def _record(self, level):
        if self.writes < HISTORY:
            self.history[self.writes] = level
        self.writes += 1

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = 1 if v else 0
        self._record(self.level)
        return None

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def high(self):
        self.value(1)

    def low(self):
        self.value(0)

    def toggle(self):
        self.value(1 - self.level)

    def init(self, mode=-1, pull=-1, *, value=None):
        self.mode = mode
        self.pull = pull
        LOG.append(("Pin.init", self.id, mode, pull, value))
        if value is not None:
            self.value(value)

    def irq(self, handler=None, trigger=IRQ_FALLING | IRQ_RISING, *, hard=False, **_kw):
        self.handler = handler
        self.trigger = trigger
        self.hard = hard
        LOG.append(("Pin.irq", self.id, trigger, hard))

    def levels(self):
        # The levels written so far (up to HISTORY).
        return list(self.history[: min(self.writes, HISTORY)])


class PWM:
    def __init__(self, dest, *, freq=None, duty_u16=None, **_kw):
        _check_fail("PWM")
        self.pin = _pin_id(dest)
        self._freq = freq
        self.duty = 0 if duty_u16 is None else duty_u16
        self.changes = 0
        self.sounding = bytearray(HISTORY)  # 1 per duty change to non-zero
        PWMS[self.pin] = self
        LOG.append(("PWM", self.pin, freq, duty_u16))

    def freq(self, value=None):
        if value is None:
            return self._freq
        self._freq = value
        LOG.append(("PWM.freq", self.pin, value))
        return None

    def duty_u16(self, value=None):
        if value is None:
            return self.duty
        self.duty = value
        if self.changes < HISTORY:
            self.sounding[self.changes] = 1 if value else 0
        self.changes += 1
        return None

    def deinit(self):
        self.duty = 0
        LOG.append(("PWM.deinit", self.pin))


class ADC:
    CORE_TEMP = 4

    def __init__(self, source, **_kw):
        _check_fail("ADC")
        self.pin = _pin_id(source)
        self.samples = [32768]  # read_u16() cycles through these
        self._next = 0
        self.reads = 0
        ADCS[self.pin] = self
        LOG.append(("ADC", self.pin))

    def read_u16(self):
        samples = self.samples
        v = samples[self._next]
        self._next = (self._next + 1) % len(samples)
        self.reads += 1
        return v


class WDT:
    def __init__(self, *, id=0, timeout=5000):
        _check_fail("WDT")
        if timeout > WATCHDOG_MAX_MS[0] or timeout < 1:
            raise ValueError("timeout out of range")
        self.timeout = timeout
        self.feeds = 0
        self.last_feed = ticks()
        WDTS.append(self)
        LOG.append(("WDT", timeout))

    def feed(self):
        self.feeds += 1
        self.last_feed = ticks()


class Timer:
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=-1, **kw):
        _check_fail("Timer")
        self.id = id
        self.callback = None
        self.hard = None
        self.period = None
        self.mode = None
        self.running = False
        self.inits = 0
        TIMERS.append(self)
        LOG.append(("Timer", id))
        if kw:
            self.init(**kw)

    def init(self, *, mode=PERIODIC, period=None, freq=None, callback=None, hard=None):
        self.mode = mode
        self.period = period if period is not None else 1000 // freq
        self.callback = callback
        self.hard = hard
        self.running = True
        self.inits += 1
        LOG.append(("Timer.init", self.id, mode, self.period, hard))

    def deinit(self):
        self.running = False
        LOG.append(("Timer.deinit", self.id))

    def fire(self):
        # One expiry, as the hardware would call it.
        if self.running and self.callback is not None:
            self.callback(self)


class UART:
    def __init__(self, id, baudrate=9600, bits=8, parity=None, stop=1, **kw):
        _check_fail("UART")
        self.id = id
        self.baudrate = baudrate
        self.kw = kw
        self.rx = bytearray()  # bytes waiting to be read
        self.tx = bytearray()  # bytes written
        self.tx_room = 1 << 20  # write() takes at most this much
        UARTS[id] = self
        LOG.append(("UART", id, baudrate, _pin_id(kw.get("tx")), _pin_id(kw.get("rx"))))

    def any(self):
        return len(self.rx)

    def readinto(self, buf, nbytes=None):
        n = len(buf) if nbytes is None else nbytes
        n = min(n, len(self.rx))
        if n == 0:
            return None
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n

    def write(self, data):
        n = min(len(data), self.tx_room)
        self.tx += bytes(data[:n])
        return n


def lightsleep(ms=None):
    SLEEPS.append(ms)
    if ms:
        NOW[0] += ms


def idle():
    IDLE[0] += 1


def reset_cause():
    return RESET_CAUSE[0]


def unique_id():
    return UNIQUE_ID


def freq(hz=None):
    return 125_000_000


def reset():
    raise SystemExit("machine.reset()")


def soft_reset():
    raise SystemExit("machine.soft_reset()")
