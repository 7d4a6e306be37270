# Virtual board: the HAL of the MicroPython unix port.
#
# - VirtualClock: device time in ms. In lockstep mode it only moves when the
#   rig grants time (ADVANCE) and then jumps from deadline to deadline; in
#   free-running mode it follows the host clock times a speed factor.
# - FdPort: a serial port on a file descriptor handed over by the launcher
#   (the master side of a pty; the bench opens the slave with pyserial).
# - SimBoard: the ports, the clock and the wait-for-deadline-or-I/O loop.
# - On the plant (rig/plant.py): the motor and encoder, the pressure sensor
#   (board.pressure.read_x10()), the battery (board.battery.read_mv()).
# - SimAnnunciator: buzzer and LED, recorded with device time for the rig's
#   ANNUNCIATION.
# - The watchdog: off until the firmware first calls feed_watchdog(); then
#   WATCHDOG_MS of device time without a feed resets the board (cause 2).
#
# Only this file and hal/rp2 know what hardware they run on.

import gc
import select
import struct
import sys
import time
from array import array

from micropython import const
from pump.journal import SLOT_FILES
from pump.ticks import TICKS_MAX
from rig.plant import Plant

from hal.simfs import PowerCut, SimFs
from protocol.table import RESET_CAUSE_POWER_ON, RESET_CAUSE_WATCHDOG

BOARD_NAME = "sim"

LOCKSTEP = 0
FREE_RUNNING = 1

_POLL_ERRORS = select.POLLHUP | select.POLLERR
# Loop passes between two heap samples (a pass is one wake-up of the loop).
HEAP_SAMPLE_PASSES = 200
# The watchdog: this long of device time without a feed resets the board.
# The Pico's is 8 s (hal/rp2.py; the RP2040 maximum is 8388 ms) and its
# supervisor feeds every 4 s. The virtual board's is 60 s, the longest sleep
# the scheduler takes, so that lockstep time can still jump a minute at a
# time (an 8 s watchdog made an idle day cost 21,600 wake-ups). The logic
# that feeds it is the same; only the period differs.
WATCHDOG_MS = const(60_000)
# Free-running: the most device time may run past a deadline before the
# board's loop gets there (the clock slips when the host falls behind).
MAX_LATE_MS = const(250)
# Lockstep under a flood: a pass that served bytes while more keep coming
# costs the time those bytes take on a 115,200-baud line (10 bits a byte).
LINE_BYTES_PER_S = const(11_520)
# The firmware's calibration of the virtual head, pL per step: the plant's
# nominal head (PLANT calibration_ppm is how far the real head is off it).
PL_PER_STEP = const(25_000)
# Annunciator outputs (rig ANNUNCIATION) and the ring of what they did.
_OUTPUT_BUZZER = const(1)
_OUTPUT_LED = const(2)
_ANNUNCIATION_RING = const(128)
# Journal state slots: magic u16, version u8, flags u8, seq u32 (pump/journal.py)
_SLOT_HEADER = "<HBBI"
_SLOT_MAGIC = const(0x4A53)


class VirtualClock:
    def __init__(self, mode=LOCKSTEP, speed=1):
        self.mode = mode
        self.speed = speed
        self._now_ms = 0  # device time since power-on; a host int, no wrap
        self._grant_end_ms = 0  # lockstep: time may run up to here
        # free-running: host microseconds since start, summed from ticks_us
        # steps (never a difference across a wrap). Microseconds, not ms: at
        # 600 x wall time a host millisecond is 600 ms of device time, and a
        # clock that moved in such jumps made every stroke and sample that
        # much late (a 10-minute bolus delivered 6 % short at 600x).
        self._host_us = 0
        self._host_last = time.ticks_us()
        # free-running: device time given up because the host was late (the
        # clock slips rather than leaping past a deadline), and the latest
        # device time the clock may show before the board idles again
        self._slip_ms = 0
        self._limit_ms = -1
        # fault TIMER_FAST: the ms timer runs tick_factor / 1000 times fast from
        # device time _tick_base_ms, where it read _tick_base
        self.tick_factor = 1000  # per mille: 1000 runs true
        self._tick_base_ms = 0
        self._tick_base = 0

    def time_ms(self):
        # Device time since power-on (a big int on the board's 30-bit ints,
        # so used for reporting, never in the dose path).
        self._follow_host()
        return self._now_ms

    def ticks_ms(self):
        self._follow_host()
        if self.tick_factor == 1000:
            return self._now_ms & TICKS_MAX
        return (
            self._tick_base + (self._now_ms - self._tick_base_ms) * self.tick_factor // 1000
        ) & TICKS_MAX

    def set_tick_factor(self, factor):
        # Keeps the ticks continuous at the change.
        self._tick_base = self.ticks_ms()
        self._tick_base_ms = self._now_ms
        self.tick_factor = factor

    def device_ms(self, ticks):
        # Device time that lets `ticks` of the (maybe fast) timer pass.
        factor = self.tick_factor
        return ticks if factor == 1000 else (ticks * 1000 + factor - 1) // factor

    def seconds(self):
        # Device seconds since power-on of the board (the RTC): counts on
        # across firmware resets and power cuts, fits a small int for 34 years.
        self._follow_host()
        return self._now_ms // 1000

    def _follow_host(self):
        if self.mode == FREE_RUNNING:
            now = time.ticks_us()
            self._host_us += time.ticks_diff(now, self._host_last)
            self._host_last = now
            t = self._host_us * self.speed // 1000 - self._slip_ms
            limit = self._limit_ms
            if 0 <= limit < t:
                self._slip_ms += t - limit
                t = limit
            if t > self._now_ms:
                self._now_ms = t

    def limit(self, wait_ms, hold_ms=-1):
        # Free-running: the board is about to wait wait_ms for its next
        # deadline. However late the host wakes it (a busy or preempted host
        # process), device time shows at most MAX_LATE_MS past that
        # deadline: the virtual clock then runs slower than --speed, as a
        # slow board would, instead of leaping over deadlines and the
        # watchdog (a Pico's loop is never that late).
        # hold_ms >= 0: device time stops there until the next idle (the
        # end of an ADVANCE grant, so that its reply is exact).
        self._follow_host()
        limit = self._now_ms + wait_ms + MAX_LATE_MS
        if 0 <= hold_ms < limit:
            limit = hold_ms if hold_ms > self._now_ms else self._now_ms
        self._limit_ms = limit

    def grant_end_ms(self):
        return self._grant_end_ms

    # --- lockstep -------------------------------------------------------------
    def grant(self, duration_ms):
        # Lets device time run duration_ms past the later of now and any
        # time already granted; returns the device time the grant ends at.
        base = self._grant_end_ms if self._grant_end_ms > self._now_ms else self._now_ms
        self._grant_end_ms = base + duration_ms
        return self._grant_end_ms

    def granted_ms(self):
        # Device time still granted (free-running: the time until the grant
        # ends by itself).
        self._follow_host()
        left = self._grant_end_ms - self._now_ms
        return left if left > 0 else 0

    def jump(self, delta_ms):
        self._now_ms += delta_ms


class FdPort:
    """A non-blocking byte stream on an inherited file descriptor."""

    def __init__(self, fd):
        # The launcher set O_NONBLOCK on the pty master before handing it
        # over: readinto() returns what is there, write() never stalls the
        # firmware when nobody reads (the bytes are dropped and counted).
        self.stream = open(fd, "r+b")
        self.hung_up = False
        self.got = 0  # bytes read since the board last idled

    def readinto(self, buf):
        try:
            count = self.stream.readinto(buf)
        except OSError:
            # EIO: nobody holds the slave side. Nothing to read.
            self.hung_up = True
            return 0
        if count:
            self.got += count
        return count or 0

    def write(self, data):
        try:
            written = self.stream.write(data)
        except OSError:
            return False
        return written == len(data)


class SimMotor:
    """The stepper as the plant sees it: a bounded move, then off."""

    def __init__(self, plant, clock):
        self._plant = plant
        self._clock = clock
        self.enabled = False
        self.moves = 0

    def start(self, steps):
        self.enabled = True
        self.moves += 1
        self._plant.move(steps, self._clock.time_ms())

    def stop(self):
        self.enabled = False


class SimEncoder:
    def __init__(self, plant):
        self._plant = plant

    def count(self):
        return self._plant.encoder


class SimPressure:
    """The pressure sensor at the pump outlet (gauge, 0.1 mmHg)."""

    def __init__(self, plant, clock):
        self._plant = plant
        self._clock = clock

    def read_x10(self):
        return self._plant.sensor_x10(self._clock.time_ms())

    def stroke_end_x10(self):
        # The reading held at the instant the last move ended (a sample and
        # hold started by the move's end), however late the loop asks: in
        # free-running time the loop wakes a host millisecond (speed x device
        # ms) late, and the line relaxes in 8 ms.
        return self._plant.stroke_end_x10(self._clock.time_ms())


class SimBattery:
    def __init__(self, plant, clock):
        self._plant = plant
        self._clock = clock

    def read_mv(self):
        return self._plant.battery_mv(self._clock.time_ms())


class SimAnnunciator:
    """Buzzer and LED. pattern: 0 off, else the alarm priority (1 low, 2
    medium, 3 high) whose IEC 60601-1-8 pattern the output plays on its own.
    Every call is recorded with device time in a preallocated ring that
    survives firmware resets (the rig's ANNUNCIATION reads it)."""

    def __init__(self, clock, size=_ANNUNCIATION_RING):
        self._clock = clock
        self.size = size
        self.time_ms = array("I", bytes(4 * size))  # low 32 bits
        self.output = bytearray(size)
        self.pattern = bytearray(size)
        self.total = 0  # records ever made
        self.buzzing = 0  # what each output plays now
        self.lit = 0

    def buzzer(self, pattern):
        self.buzzing = pattern
        self._record(_OUTPUT_BUZZER, pattern)

    def led(self, pattern):
        self.lit = pattern
        self._record(_OUTPUT_LED, pattern)

    def off(self):
        # A reset or power loss: the outputs stop with the firmware.
        if self.buzzing:
            self.buzzer(0)
        if self.lit:
            self.led(0)

    def _record(self, output, pattern):
        i = self.total % self.size
        self.time_ms[i] = self._clock.time_ms() & 0xFFFFFFFF
        self.output[i] = output
        self.pattern[i] = pattern
        self.total += 1


class SimBoard:
    """The virtual board: ports, clock, and the idle wait.

    links: the Link objects to wake for (pump port, rig port), registered by
    the application and the rig.
    """

    def __init__(self, pump_fd, rig_fd, device_id, journal_dir, seed=0, mode=LOCKSTEP, speed=1):
        self.name = BOARD_NAME
        self.device_id = device_id
        self.clock = VirtualClock(mode, speed)
        self.plant = Plant(seed)
        self.motor = SimMotor(self.plant, self.clock)
        self.encoder = SimEncoder(self.plant)
        self.pressure = SimPressure(self.plant, self.clock)
        self.battery = SimBattery(self.plant, self.clock)
        self.annunciator = SimAnnunciator(self.clock)
        self.fs = SimFs(journal_dir)
        self.plant.corrupt_journal = self.corrupt_journal
        self.watchdog_ms = WATCHDOG_MS  # the supervisor feeds twice per period
        self.pl_per_step = PL_PER_STEP
        self._watchdog_at_ms = -1  # device time the watchdog fires; -1: off
        self.watchdog_resets = 0
        self.powered = True
        self._cut_at_ms = -1  # device time of an armed power cut
        self.pump_port = FdPort(pump_fd)
        self.rig_port = FdPort(rig_fd)
        self._poll = select.poll()
        self._poll.register(self.pump_port.stream, select.POLLIN)
        self._poll.register(self.rig_port.stream, select.POLLIN)
        self._reset_cause = -1
        # Powered off since the application last looked (its loop checks
        # `powered` once a pass): a POWER on in the same pass must still
        # reboot it, as a power cycle reboots a real board.
        self._off_unseen = False
        self.orphaned = False
        self._passes = 0
        self.heap_peak = 0
        self.heap_samples = 0
        self.rig = None  # the virtual rig, attached by main
        # Non-volatile counters that survive a reset of the firmware (not a
        # power cut: the journal of the therapy issue takes that over).
        self.boot_count = 0

    # --- resets ---------------------------------------------------------------
    def request_reset(self, cause):
        self._reset_cause = cause

    def take_reset_request(self):
        cause = self._reset_cause
        self._reset_cause = -1
        if cause >= 0:
            # The chip resets: the watchdog is off until the new firmware
            # feeds it, the annunciator's outputs stop.
            self._watchdog_at_ms = -1
            self.annunciator.off()
        return cause

    # --- watchdog ---------------------------------------------------------------
    def feed_watchdog(self):
        # The first feed starts the watchdog (as creating machine.WDT does).
        self._watchdog_at_ms = self.clock.time_ms() + WATCHDOG_MS

    def watchdog_deadline_ms(self):
        # Device time (time_ms) the watchdog bites at; -1 while not armed.
        return self._watchdog_at_ms

    def service(self):
        # Work the board does on each loop pass besides the application:
        # on the virtual board, the plant's fault onsets, the rig (trace
        # samples, its port, the end of ADVANCE grants), the watchdog, a
        # power cut armed for this instant, and a heap sample now and then.
        now = self.clock.time_ms()
        if 0 <= self.plant.next_onset_ms() <= now:
            self.plant.update(now)
        if 0 <= self._watchdog_at_ms <= now and self.powered:
            self._watchdog_at_ms = -1
            self.watchdog_resets += 1
            self.request_reset(RESET_CAUSE_WATCHDOG)
        if self.rig is not None:
            self.rig.service()
        self._passes += 1
        if self._passes >= HEAP_SAMPLE_PASSES:
            self.sample_heap()
        if self._cut_at_ms >= 0 and self.clock.time_ms() >= self._cut_at_ms:
            self._cut_at_ms = -1
            raise PowerCut()

    def sample_heap(self):
        # The high-water mark of the live heap for `make bench`: collected
        # first, so garbage not yet collected does not count. Sampled every
        # HEAP_SAMPLE_PASSES loop passes (a collection walks the whole heap).
        self._passes = 0
        self.heap_samples += 1
        gc.collect()
        alloc = gc.mem_alloc()
        if alloc > self.heap_peak:
            self.heap_peak = alloc

    # --- power (driven by the rig) ------------------------------------------------
    def power_off(self):
        self.powered = False
        self._off_unseen = True
        self._reset_cause = -1  # a power loss supersedes a pending reset
        self._cut_at_ms = -1
        self._watchdog_at_ms = -1
        self.fs.disarm()
        self.motor.stop()
        self.annunciator.off()

    def power_on(self):
        if not self.powered and self._off_unseen:
            # Off and on again before the application saw the off (both
            # handled in one pass of its loop): it still restarts, with the
            # cause of a power-on (SPEC 16.8). The motor and annunciator
            # were already stopped by power_off().
            self._off_unseen = False
            self.request_reset(RESET_CAUSE_POWER_ON)
        self.powered = True

    def cut_after_bytes(self, count):
        self.fs.arm_cut(count)

    def cut_in_ms(self, delay_ms):
        self._cut_at_ms = self.clock.time_ms() + delay_ms

    def wait_for_power(self, drain):
        # Powered off: only the rig lives. Bytes on the pump port go nowhere.
        while True:
            self.service()
            self.pump_port.readinto(drain)  # one slice a pass, as the link reads
            if self.powered or self.orphaned:
                # the application boots next: that is the power-on reset
                self._off_unseen = False
                self._reset_cause = -1
                return
            self.idle(60_000)

    # --- idle -----------------------------------------------------------------
    def idle(self, wait_ms):
        # Returns when I/O may be pending or when device time has moved
        # wait_ms forward, whichever comes first. In lockstep, time only
        # moves inside a grant; with no grant left the board blocks on its
        # ports at a frozen time, still serving the pump port.
        clock = self.clock
        wait_ms = clock.device_ms(wait_ms)  # the scheduler counts timer ticks
        # Stop at the next thing the board must do at its instant: an armed
        # power cut, the watchdog, a fault onset, a trace sample.
        at = self.next_event_ms()
        if at >= 0:
            until = at - clock.time_ms()
            if until < wait_ms:
                wait_ms = until if until > 0 else 0
        if clock.mode == FREE_RUNNING:
            hold = -1
            if self.rig is not None and self.rig.advancing():
                # wake at the end of the rig's ADVANCE, and hold time there
                # until it is answered
                hold = clock.grant_end_ms()
                left = clock.granted_ms()
                if left < wait_ms:
                    wait_ms = left
            clock.limit(wait_ms, hold)
            self._wait_io(wait_ms // clock.speed if wait_ms else 0)
            return
        # Bytes that arrived while this pass served none are served at this
        # instant, before time moves. Bytes still coming after a pass that
        # served some (a flood: the link serves a bounded slice per pass)
        # do not hold time back: the clock moves on by the time those bytes
        # took on the line (LINE_BYTES_PER_S), as a real one would.
        got = self.pump_port.got + self.rig_port.got
        self.pump_port.got = 0
        self.rig_port.got = 0
        left = clock.granted_ms()
        if left == 0:
            self._wait_io(-1)
            return
        if self._wait_io(0):
            if not got:
                return
            line_ms = (got * 1000 + LINE_BYTES_PER_S - 1) // LINE_BYTES_PER_S
            if line_ms < wait_ms:
                wait_ms = line_ms
        clock.jump(wait_ms if wait_ms < left else left)

    def next_event_ms(self):
        # Device time of the board's next timed event, -1 if none.
        soonest = self._cut_at_ms
        at = self._watchdog_at_ms
        if at >= 0 and (soonest < 0 or at < soonest):
            soonest = at
        at = self.plant.next_onset_ms()
        if at >= 0 and (soonest < 0 or at < soonest):
            soonest = at
        if self.rig is not None:
            at = self.rig.next_sample_ms()
            if at >= 0 and (soonest < 0 or at < soonest):
                soonest = at
        return soonest

    # --- journal corruption (rig fault CORRUPT_JOURNAL) -----------------------------
    def corrupt_journal(self, offset):
        # Flips (xor 0xFF) the byte at offset (modulo the file's size) of
        # the newest journal state slot: the valid-looking header with the
        # higher sequence number. Straight to the file: not counted as a
        # journal write, never cut by an armed power cut.
        newest = None
        newest_seq = -1
        for name in SLOT_FILES:
            header = self.fs.read(name)
            if header is None or len(header) < 8:
                continue
            magic, _version, _flags, seq = struct.unpack_from(_SLOT_HEADER, header, 0)
            if magic == _SLOT_MAGIC and seq > newest_seq:
                newest, newest_seq = name, seq
        if newest is None:
            return False
        f = open(self.fs.directory + "/" + newest, "r+b")
        try:
            size = f.seek(0, 2)
            if size <= 0:
                return False
            f.seek(offset % size)
            byte = f.read(1)[0]
            f.seek(offset % size)
            f.write(bytes((byte ^ 0xFF,)))
        finally:
            f.close()
        return True

    def _wait_io(self, timeout_ms):
        events = self._poll.poll(timeout_ms)
        for _stream, flags in events:
            if flags & _POLL_ERRORS:
                # The launcher holds the slave side of both ptys for as long
                # as the virtual board lives; a hang-up means it is gone.
                self.orphaned = True
        return len(events)


def log(text):
    # Diagnostics go to stderr; stdout and the ports carry no text.
    sys.stderr.write(text)
    sys.stderr.write("\n")
