# Supervisor: feeds the watchdog only while every monitor has run on time
# (GIP, docs/sources.md [55]: a per-task watchdog; alarm if a task is silent for
# more than 3 minutes). A task that stops running - a hung monitor, a
# scheduler that lost a deadline - stops the feeding, and the hardware
# watchdog resets the pump, which then raises WATCHDOG_RESET.
#
# Use: register(name, period_ms) for each monitor while the app is built;
# start(now) at the end of boot; checkin(index, now) each time a monitor
# runs; feed_ok(now) (= all_on_time) before each watchdog feed; late(now)
# names the one that is late, for the log. A monitor that is not expected to
# run for now (the stroke checks while delivery is stopped, or between
# strokes at 6-minute intervals) gets its period changed with
# set_period(index, period_ms); period 0 means "not watched".
#
# A monitor is late when more than its period plus the slack has passed
# since its last check-in (or since start()). Once seen late it stays late
# until it checks in again, so a wait longer than the tick wrap (2**29 ms,
# 6 days) can never look on time. Before start() nothing is on time: an app
# that forgets to start the supervisor never feeds the watchdog.
#
# Ticks are the wrapping millisecond ticks of pump/ticks.py. checkin(),
# all_on_time(), late() and feed_ok() allocate nothing.

from array import array

from micropython import const

from pump.ticks import ticks_diff

# Scheduling jitter allowed on top of each period (the scheduler runs a due
# task after the one in progress; a stroke takes 20 ms, a journal write a few
# ms): 2 s, well inside the RP2040 watchdog's 8.3 s maximum.
SLACK_MS = const(2_000)
_CAPACITY = const(8)  # monitors that can be registered
NONE = const(-1)  # late() when every monitor is on time
# Longest period: a quarter of the tick wrap, so that period + slack stays
# well inside what ticks_diff measures (2**29 ms).
_MAX_PERIOD_MS = const(1 << 28)


class Supervisor:
    def __init__(self, capacity=_CAPACITY, slack_ms=SLACK_MS):
        if capacity <= 0 or slack_ms < 0:
            raise ValueError("supervisor")
        self.slack_ms = slack_ms
        self.names = []
        self._period = array("i", [0] * capacity)
        self._last = array("i", [0] * capacity)
        self._late = bytearray(capacity)
        self._count = 0
        self.started = False

    def register(self, name, period_ms):
        # -> the monitor's index (at construction, not on a hot path).
        if self._count >= len(self._period):
            raise ValueError("supervisor full")
        if not 0 <= period_ms <= _MAX_PERIOD_MS:
            raise ValueError("period")
        i = self._count
        self.names.append(name)
        self._period[i] = period_ms
        self._count = i + 1
        return i

    def start(self, now_ticks):
        # Every monitor's clock starts now.
        i = 0
        while i < self._count:
            self._last[i] = now_ticks
            self._late[i] = 0
            i += 1
        self.started = True

    def set_period(self, index, period_ms, now_ticks):
        # A new expectation (0: not watched); the monitor's clock restarts.
        if not 0 <= period_ms <= _MAX_PERIOD_MS:
            raise ValueError("period")
        self._period[index] = period_ms
        self._last[index] = now_ticks
        self._late[index] = 0

    # --- hot path ------------------------------------------------------------
    def checkin(self, index, now_ticks):
        self._last[index] = now_ticks
        self._late[index] = 0

    def late(self, now_ticks):
        # Index of the first late monitor, or NONE. Marks every late one.
        if not self.started:
            return 0 if self._count else NONE
        first = NONE
        i = 0
        while i < self._count:
            period = self._period[i]
            if period > 0:
                if self._late[i] or ticks_diff(now_ticks, self._last[i]) > period + self.slack_ms:
                    self._late[i] = 1
                    if first == NONE:
                        first = i
            i += 1
        return first

    def all_on_time(self, now_ticks):
        return self.started and self.late(now_ticks) == NONE

    def feed_ok(self, now_ticks):
        # The watchdog may be fed now.
        return self.all_on_time(now_ticks)

    def name(self, index):
        return self.names[index] if 0 <= index < self._count else ""
