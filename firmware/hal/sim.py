# Virtual board: the HAL of the MicroPython unix port.
#
# - VirtualClock: device time in ms. In lockstep mode it only moves when the
#   rig grants time (ADVANCE) and then jumps from deadline to deadline; in
#   free-running mode it follows the host clock times a speed factor.
# - FdPort: a serial port on a file descriptor handed over by the launcher
#   (the master side of a pty; the bench opens the slave with pyserial).
# - SimBoard: the ports, the clock and the wait-for-deadline-or-I/O loop.
#
# Only this file and hal/rp2 know what hardware they run on.

import gc
import select
import sys
import time

from pump.ticks import TICKS_MAX
from rig.plant import Plant

from hal.simfs import PowerCut, SimFs

BOARD_NAME = "sim"

LOCKSTEP = 0
FREE_RUNNING = 1

_POLL_ERRORS = select.POLLHUP | select.POLLERR
# Loop passes between two heap samples (a pass is one wake-up of the loop).
HEAP_SAMPLE_PASSES = 200


class VirtualClock:
    def __init__(self, mode=LOCKSTEP, speed=1):
        self.mode = mode
        self.speed = speed
        self._now_ms = 0  # device time since power-on; a host int, no wrap
        self._grant_end_ms = 0  # lockstep: time may run up to here
        self._host_start = time.ticks_ms()

    def time_ms(self):
        # Device time since power-on (a big int on the board's 30-bit ints,
        # so used for reporting, never in the dose path).
        self._follow_host()
        return self._now_ms

    def ticks_ms(self):
        self._follow_host()
        return self._now_ms & TICKS_MAX

    def seconds(self):
        # Device seconds since power-on of the board (the RTC): counts on
        # across firmware resets and power cuts, fits a small int for 34 years.
        self._follow_host()
        return self._now_ms // 1000

    def _follow_host(self):
        if self.mode == FREE_RUNNING:
            host = time.ticks_diff(time.ticks_ms(), self._host_start)
            if host * self.speed > self._now_ms:
                self._now_ms = host * self.speed

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

    def readinto(self, buf):
        try:
            count = self.stream.readinto(buf)
        except OSError:
            # EIO: nobody holds the slave side. Nothing to read.
            self.hung_up = True
            return 0
        return count or 0

    def write(self, data):
        try:
            written = self.stream.write(data)
        except OSError:
            return False
        return written == len(data)


class SimMotor:
    """The stepper as the plant sees it: a bounded move, then off."""

    def __init__(self, plant):
        self._plant = plant
        self.enabled = False
        self.moves = 0

    def start(self, steps):
        self.enabled = True
        self.moves += 1
        self._plant.move(steps)

    def stop(self):
        self.enabled = False


class SimEncoder:
    def __init__(self, plant):
        self._plant = plant

    def count(self):
        return self._plant.encoder


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
        self.motor = SimMotor(self.plant)
        self.encoder = SimEncoder(self.plant)
        self.fs = SimFs(journal_dir)
        self.powered = True
        self._cut_at_ms = -1  # device time of an armed power cut
        self.pump_port = FdPort(pump_fd)
        self.rig_port = FdPort(rig_fd)
        self._poll = select.poll()
        self._poll.register(self.pump_port.stream, select.POLLIN)
        self._poll.register(self.rig_port.stream, select.POLLIN)
        self._reset_cause = -1
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
        return cause

    def service(self):
        # Work the board does on each loop pass besides the application:
        # on the virtual board, the rig port, the end of ADVANCE grants, a
        # power cut armed for this instant, and a heap sample now and then.
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
        self._cut_at_ms = -1
        self.fs.disarm()
        self.motor.stop()

    def power_on(self):
        self.powered = True

    def cut_after_bytes(self, count):
        self.fs.arm_cut(count)

    def cut_in_ms(self, delay_ms):
        self._cut_at_ms = self.clock.time_ms() + delay_ms

    def wait_for_power(self, drain):
        # Powered off: only the rig lives. Bytes on the pump port go nowhere.
        while True:
            self.service()
            while self.pump_port.readinto(drain):
                pass
            if self.powered or self.orphaned:
                return
            self.idle(60_000)

    # --- idle -----------------------------------------------------------------
    def idle(self, wait_ms):
        # Returns when I/O may be pending or when device time has moved
        # wait_ms forward, whichever comes first. In lockstep, time only
        # moves inside a grant; with no grant left the board blocks on its
        # ports at a frozen time, still serving the pump port.
        clock = self.clock
        if clock.mode == FREE_RUNNING:
            self._wait_io(wait_ms // clock.speed if wait_ms else 0)
            return
        left = clock.granted_ms()
        if left == 0:
            self._wait_io(-1)
            return
        if self._wait_io(0):
            return
        if self._cut_at_ms >= 0:
            # stop at the armed power cut so that it lands on its instant
            until_cut = self._cut_at_ms - clock.time_ms()
            if until_cut < wait_ms:
                wait_ms = until_cut if until_cut > 0 else 0
        clock.jump(wait_ms if wait_ms < left else left)

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
