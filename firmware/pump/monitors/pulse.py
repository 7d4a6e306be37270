# Catheter tip migration: the tip has left the intrathecal space (into the
# epidural or subcutaneous tissue). The line still drains through the
# catheter (the strokes look healthy), but behind it there is no CSF any
# more: no CSF pulsation (cardiac, breathing), no posture, no coughs. What
# the pump can see of it is the pulsation through the open catheter.
#
# Method: a burst of BURST_SAMPLES readings SAMPLE_MS apart, taken only while
# the line is settled (the app skips the stroke responses), once every
# PERIOD_S (LEARN_PERIOD_S while learning). Over the burst:
#   total variance   v_t = var(x): sensor noise + CSF pulsation + anything slow
#   noise variance   v_n = mean(d^2) / 2, d the differences of consecutive
#                    samples SAMPLE_MS apart: white noise is independent from
#                    one sample to the next, the pulsation hardly moves in
#                    20 ms (a 0.5 mmHg cardiac sine at 72/min: 0.05 mmHg rms,
#                    0.6 % of the noise's d^2 at 0.5 mmHg)
#   pulsation power  p = v_t - v_n: ~0 without CSF, the pulsation's variance
#                    (0.25 mmHg^2 for the rig's +-0.5 cardiac and +-0.5
#                    breathing sines) with it. The sensor's noise cancels: the
#                    figure needs no assumed noise level.
# For white noise of variance v, p has sd v / sqrt(N) (the quadratic form's
# matrix has zero diagonal and 1/(2N) beside it: var = 2 v^2 tr(A^2) = v^2 /
# N): at 0.5 mmHg noise and N = 512, 0.011 mmHg^2, 23 times below the rig's
# pulsation.
#
# How each threshold is derived (README.md):
#   learned        the first LEARN_BURSTS (3) bursts after reset(): the
#                  smallest p (a cough, a strain or a posture change inside a
#                  burst only adds power) and the mean noise variance.
#   low burst      p < _LOW_PCT % of the learned p, and p < _Z_MIN v / sqrt(N)
#                  with this burst's own noise v (not clearly above zero):
#                  three disturbed learning bursts (a reference far too
#                  high) cannot make a healthy pulsation low.
#   limited        the learned p is less than _Z_MIN sd1 above the zero band
#                  _Z_MIN sd0: sd0 = v / sqrt(N) is p's sd without a
#                  pulsation, sd1 = sqrt((v^2 + 4 p v) / N) with it (the
#                  noise's own term and its product with the pulsation): the
#                  pulsation is too weak or the sensor too noisy to watch
#                  (SENSING_LIMITED; no TIP_MIGRATION then). Armed, a healthy
#                  burst looks low with probability under Q(4) = 3e-5, a
#                  migrated one looks healthy with about the same; with the
#                  rig's pulsation that needs sensor noise under ~0.85 mmHg.
#   TIP_MIGRATION  RUN_BURSTS low bursts in a row: Q(4)^2 ~ 1e-9 a pair, under
#                  one false alert in 10^6 patient-years of daily bursts.
#                  Found within RUN_BURSTS periods of the onset plus a burst
#                  and a minute (48 h 5 min).
# Cleared by a clinician (restart(): the learned figures stay); reset() (a
# boot) learns anew. A tip that migrated before the learning leaves nothing
# to learn: p ~ 0 is "limited" (SENSING_LIMITED with the figures), never a
# silent pass.
#
# Integers: readings in 0.1 mmHg; deviations from the burst's first sample
# and the differences are clipped to CLIP_X10 so that the sums stay small ints
# on the Pico (31 bits): 1024 x 250^2 x 16 < 2^30. on_sample() allocates
# nothing. Powers are kept in (0.1 mmHg)^2 x 16.

from micropython import const

from pump.monitors import TIP_MIGRATION
from pump.monitors.response import isqrt

# a burst a day, just under: not a round figure, so that the bursts never
# lock to a schedule of the day (the rig changes posture on a 30 min grid).
# Counted on the RTC (seconds), not the ms timer: a timer that runs fast
# must not multiply the bursts. A burst is 1024 wake-ups: hourly ones made a
# 180-day ADVANCE of the virtual board 4 million. While learning, every 20
# minutes.
PERIOD_S = const(86_393)
LEARN_PERIOD_S = const(1_193)
SAMPLE_MS = const(20)
BURST_SAMPLES = const(1024)
# the line is settled this long after a stroke began (the "after" sample is
# at 220 ms; a 90 cm silicone line with 30 uL of air drains in tau = 180 ms)
QUIET_MS = const(500)
# a burst that cannot collect its samples within this (a bolus: strokes every
# 250 ms) is dropped and tried again at the next period
BURST_MAX_MS = const(600_000)
LEARN_BURSTS = const(3)
_LOW_PCT = const(50)
_Z_MIN = const(4)
RUN_BURSTS = const(2)
CLIP_X10 = const(250)
V_MAX_X16 = const(20_000)  # noise over 3.5 mmHg: limited
P_CAP_X16 = const(7_000)


class PulseMonitor:
    def __init__(self):
        self.reset()

    def reset(self):
        # A boot, a catheter revision: learn the pulsation anew.
        self.learned = 0  # bursts learned so far
        self.pulse_x16 = 0  # the learned (smallest) pulsation power
        self.noise_x16 = 0  # the learned noise variance
        self._noise_sum = 0
        self.restart()

    def restart(self):
        # After a clinician's clear: forget the condition, keep what was learned.
        self.alarm = 0
        self.absent = False  # the last burst saw no pulsation (armed only)
        self.low = 0  # low bursts in a row
        self.last_x16 = 0  # the last burst's pulsation power
        self.begin()

    def begin(self):
        # A new burst.
        self.n = 0
        self._x0 = 0
        self._s = 0
        self._s2 = 0
        self._d2 = 0
        self._nd = 0
        self._prev = 0

    def cleared(self):
        return self.alarm == 0

    def armed(self):
        return self.learned >= LEARN_BURSTS and not self.limited()

    def limited(self):
        # Learned, and the learned p is not _Z_MIN sd (with the pulsation)
        # above the zero band (_Z_MIN sd of p without it): the pulsation is
        # too weak or the sensor too noisy to watch.
        if self.learned < LEARN_BURSTS:
            return False
        p = self.pulse_x16
        v = self.noise_x16
        if v > V_MAX_X16:
            return True
        p = P_CAP_X16 if p > P_CAP_X16 else p  # small ints on the Pico
        root = isqrt(BURST_SAMPLES)
        sd0 = v // root
        sd1 = isqrt(v * (v + 4 * p)) // root
        return p < _Z_MIN * (sd0 + sd1)

    # --- hot path ------------------------------------------------------------
    def on_sample(self, reading_x10, follows):
        # One settled reading; follows: taken SAMPLE_MS after the previous
        # one (a difference to count). Returns True when the burst is full
        # (then call end()).
        if self.n == 0:
            self._x0 = reading_x10
        x = reading_x10 - self._x0
        x = CLIP_X10 if x > CLIP_X10 else -CLIP_X10 if x < -CLIP_X10 else x
        if follows and self.n:
            d = x - self._prev
            d = CLIP_X10 if d > CLIP_X10 else -CLIP_X10 if d < -CLIP_X10 else d
            self._d2 += d * d
            self._nd += 1
        self._prev = x
        self._s += x
        self._s2 += x * x
        self.n += 1
        return self.n >= BURST_SAMPLES

    def end(self, line_open=False):
        # The burst's verdict: TIP_MIGRATION or 0 (the condition now).
        # line_open: a leak before the tip is known; a low burst is then
        # explained by it (absent, for the disconnection check) and does not
        # count towards TIP_MIGRATION.
        n = self.n
        if n < BURST_SAMPLES or self._nd < BURST_SAMPLES // 2:
            self.begin()
            return self.alarm
        mean_x64 = self._s * 64 // n
        total = self._s2 * 16 // n - mean_x64 * mean_x64 // 256
        noise = self._d2 * 8 // self._nd
        p = total - noise
        self.last_x16 = p
        self.begin()
        k = self.learned
        if k < LEARN_BURSTS:
            # the smallest p of the learning bursts: a cough, a strain or a
            # posture change inside a burst only adds power
            if k == 0 or p < self.pulse_x16:
                self.pulse_x16 = p
            self._noise_sum += noise
            k += 1
            self.learned = k
            if k == LEARN_BURSTS:
                self.noise_x16 = self._noise_sum // LEARN_BURSTS
            return self.alarm
        self.absent = False
        if self.limited():
            self.low = 0
            return self.alarm
        # low: under _LOW_PCT % of the learned p, and not _Z_MIN sd (this
        # burst's noise alone: v / sqrt(N)) above zero
        if p < self.pulse_x16 * _LOW_PCT // 100 and p < _Z_MIN * noise // isqrt(BURST_SAMPLES):
            self.absent = True
            self.low = 0 if line_open else self.low + 1
            if self.low >= RUN_BURSTS:
                self.alarm = TIP_MIGRATION
        else:
            self.low = 0
        return self.alarm
