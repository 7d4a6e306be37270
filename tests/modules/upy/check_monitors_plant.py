# Synthetic pressure samples for the monitor checks: the physics the plant
# engineer stated, small enough to run under MicroPython and CPython alike
# (the check scripts and tests/modules/test_monitors.py share it). Not
# firmware: floats are fine here.
#
# The line: compliance C (nL/mmHg) at the sensor, draining into the CSF
# through the catheter resistance R (mmHg s/nL) and, with a leak, to the
# pocket (atmospheric) through a parallel path:
#   C dP/dt = Q - (P - csf) / (k R) - P / R_leak
# solved exactly over piecewise-constant inflow. A stroke is 200 nL in 20 ms.
# Occlusion multiplies R by k (k = 0: full, no outflow at all); a leak of
# fraction f gives R_leak = R (1 - f) / f (f of a stroke's flow is lost);
# f = 1 is a disconnection (R_leak = R / 100).
# CSF pressure: a baseline (7.4 mmHg lying), posture steps (Poisson, 1 an
# hour: up to +15 mmHg, back down later), a slow daily drift (+-1 mmHg), and
# coughs (Poisson, rate per hour, +20..+60 mmHg, 0.6-1.4 s: a 0.1 s rise and
# a linear fall) added to the reading (not filtered by the line: the
# harshest case for the detectors). Sensor noise: Gaussian, 0.5 mmHg;
# readings are integers in 0.1 mmHg. Every draw comes from one seeded
# xorshift32, so a run is the same on both interpreters.
import math

STROKE_NL = 200.0
STROKE_S = 0.020
AFTER_S = 0.200
MIN_RATE_S = 360.0  # 0.048 mL/day: a stroke every 6 min
HALF_ML_S = 34.56  # 0.5 mL/day
MAX_RATE_S = 0.72  # 24 mL/day
BOLUS_S = 0.25
R_PER_CM = 1.6e-3 / 60  # mmHg s/nL per cm of catheter (60 cm: 1.6e-3)


class Line:
    def __init__(
        self,
        seed,
        c=5.0,
        cm=60,
        baseline=7.4,
        noise=0.5,
        coughs_per_h=4.0,
        postures_per_h=1.0,
        drift=1.0,
    ):
        self._x = (seed * 2654435761 + 12345) & 0xFFFFFFFF or 1
        self.c = c
        self.r = R_PER_CM * cm
        self.baseline = baseline
        self.noise = noise
        self.cough_rate = coughs_per_h / 3600.0
        self.posture_rate = postures_per_h / 3600.0
        self.drift = drift
        self.k = 1.0  # resistance multiplier; 0: full occlusion
        self.leak = 0.0  # fraction of the flow lost before the tip
        self.t = 0.0
        self.posture = 0.0
        self.coughs = []  # [start, amplitude, duration]
        self.next_cough = self._exp(self.cough_rate, 0.0)
        self.next_posture = self._exp(self.posture_rate, 0.0)
        self.p = baseline

    # --- random ---------------------------------------------------------------------
    def rand(self):
        x = self._x
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._x = x
        return (x + 0.5) / 4294967296.0

    def gauss(self):
        return math.sqrt(-2.0 * math.log(self.rand())) * math.cos(6.283185307179586 * self.rand())

    def _exp(self, rate, t0):
        # The next event of a Poisson process after t0.
        if rate <= 0:
            return 1e18
        return t0 - math.log(self.rand()) / rate

    # --- physics ----------------------------------------------------------------------
    def csf(self):
        day = 6.283185307179586 * self.t / 86400.0
        return self.baseline + self.posture + self.drift * math.sin(day)

    def _evolve(self, dt, q):
        gc = 0.0 if self.k == 0 else 1.0 / (self.r * self.k)
        if self.leak >= 1.0:
            gl = 100.0 / self.r
        elif self.leak > 0:
            gl = self.leak / (self.r * (1.0 - self.leak))
        else:
            gl = 0.0
        g = gc + gl
        if g == 0:
            self.p += q * dt / self.c
            return
        eq = (q + gc * self.csf()) / g
        self.p = eq + (self.p - eq) * math.exp(-dt * g / self.c)

    def advance(self, dt, q=0.0):
        # Moves time on by dt seconds with inflow q (nL/s); posture steps
        # happen at their own instants inside the interval.
        end = self.t + dt
        while self.next_posture < end:
            self._evolve(self.next_posture - self.t, q)
            self.t = self.next_posture
            if self.posture == 0:
                self.posture = 2.0 + 13.0 * self.rand()  # sits or stands up
            else:
                self.posture = 0.0  # lies down again
            self.next_posture = self._exp(self.posture_rate, self.t)
        self._evolve(end - self.t, q)
        self.t = end

    def cough(self):
        t = self.t
        while self.next_cough <= t:
            start = self.next_cough
            self.coughs.append([start, 20.0 + 40.0 * self.rand(), 0.6 + 0.8 * self.rand()])
            self.next_cough = self._exp(self.cough_rate, start)
        total = 0.0
        keep = []
        for c in self.coughs:
            age = t - c[0]
            if age >= c[2]:
                continue
            keep.append(c)
            if age < 0.1:
                total += c[1] * age / 0.1
            else:
                total += c[1] * (c[2] - age) / (c[2] - 0.1)
        self.coughs = keep
        return total

    def reading(self):
        # The sensor now: integer, 0.1 mmHg.
        v = self.p + self.cough() + self.noise * self.gauss()
        return math.floor(v * 10.0 + 0.5)

    # --- what the app samples ---------------------------------------------------------
    def stroke(self, interval):
        # One stroke every `interval` seconds: -> (before, peak, after).
        before = self.reading()
        self.advance(STROKE_S, STROKE_NL / STROKE_S)
        peak = self.reading()
        self.advance(AFTER_S)
        after = self.reading()
        self.advance(interval - STROKE_S - AFTER_S)
        return before, peak, after

    def occlude(self, k):
        self.k = k

    def leak_fraction(self, f):
        self.leak = f

    def clear(self):
        self.k = 1.0
        self.leak = 0.0


# --- feeding monitors without allocating --------------------------------------------
# The samples are made first (floats allocate) and kept in arrays; the
# monitor then runs over them under micropython.heap_lock(), which turns any
# allocation into a MemoryError.
try:
    from array import array

    import micropython

    _lock = micropython.heap_lock
    _unlock = micropython.heap_unlock
except (ImportError, AttributeError):  # CPython (or a stand-in for const only)

    def _lock():
        pass

    def _unlock():
        pass


class Strokes:
    def __init__(self, size):
        self.before = array("i", [0] * size)
        self.peak = array("i", [0] * size)
        self.after = array("i", [0] * size)
        self.result = array("i", [0] * size)
        self.n = 0

    def fill(self, line, interval, n):
        for i in range(n):
            b, p, a = line.stroke(interval)
            self.before[i] = b
            self.peak[i] = p
            self.after[i] = a
        self.n = n

    def first(self, alarm, start=0):
        # Index of the first stroke whose result was `alarm` (any if 0), or -1.
        for i in range(start, self.n):
            r = self.result[i]
            if (alarm == 0 and r != 0) or (alarm != 0 and r == alarm):
                return i
        return -1

    def count(self):
        # Strokes with a non-zero result.
        k = 0
        for i in range(self.n):
            if self.result[i]:
                k += 1
        return k


def _feed(monitor, s):
    b = s.before
    p = s.peak
    a = s.after
    r = s.result
    i = 0
    n = s.n
    while i < n:
        r[i] = monitor.on_stroke(b[i], p[i], a[i])
        i += 1


def feed(monitor, strokes):
    # monitor.on_stroke over every stroke, heap locked; raises if it allocated.
    _lock()
    try:
        _feed(monitor, strokes)
        allocated = False
    except MemoryError:
        allocated = True
    _unlock()
    assert not allocated, "on_stroke allocated"


def run(line, monitor, strokes, interval, n, alarm=0, stop=False):
    # Up to n strokes at `interval` s through the monitor, in chunks of the
    # arrays' size. -> the number of strokes up to and including the first
    # whose result is `alarm` (0: any alarm), or -1 if none. stop: end after
    # the chunk holding it.
    done = 0
    found = -1
    size = len(strokes.before)
    while done < n:
        chunk = n - done if n - done < size else size
        strokes.fill(line, interval, chunk)
        feed(monitor, strokes)
        if found < 0:
            f = strokes.first(alarm)
            if f >= 0:
                found = done + f + 1
                if stop:
                    return found
        done += chunk
    return found
