# The line's stroke response, measured on this patient's catheter: how far
# the pressure rises during a stroke (rise = peak - before, 0.1 mmHg), what is
# left 200 ms later (residual = after - before), and how much both scatter
# (their standard deviations: sensor noise, CSF pulsations, the line itself).
# Learned over LEARN_STROKES healthy strokes after reset() (start of therapy,
# refill, catheter change), then the occlusion and leak monitors derive every
# threshold from these four figures (README.md, "How each threshold is
# derived"), not from constants tuned to one line.
#
# Physics (docs/plant.md section 1): a stroke pushes 200 nL in 20 ms into a
# line of compliance C draining through the catheter resistance R: the rise
# is Q R (1 - exp(-20 ms / RC)) on a first-order line, 9-24 mmHg for C = 2.5
# -10 nL/mmHg but only 3-6 mmHg on a 90 cm silicone catheter (C = 23-46) or
# with tens of uL of air (1.3 nL/mmHg per uL); the column's inertance makes
# the line ring (L/R = 17 ms). The learner does not need the model: it
# measures what this line does.
#
# After learning, adapt() keeps a long-window mean of the rise (the slow-leak
# window) and lets the nominal follow it in one direction only: towards a
# stiffer line (a larger rise whose residual is no larger than learned): air
# dissolving after a refill. A leak (smaller rise) or a narrowing catheter
# (larger residual) is never learned as the new normal.
#
# Integers only; offer() and adapt() allocate nothing on the unix port.

from micropython import const

DEFAULT_RISE_X10 = const(160)  # 16 mmHg: Q x R for a 60 cm catheter, used until learned
LEARN_STROKES = const(16)  # healthy strokes measured after reset()
# A rise under 1 mmHg teaches nothing: no stroke, or a leak (the smallest
# monitorable line, 50 nL/mmHg, rises about 3.5 mmHg).
MIN_RISE_X10 = const(10)
# Standard deviations are at least 0.3 mmHg: a quieter figure would make the
# thresholds tighter than the sensor's conversion can back (0.1 mmHg steps).
_MIN_SD_X10 = const(3)
# Outliers while learning (after 4 strokes): further than 4 sd + 1 mmHg from
# the mean so far (a cough, a strain): not measured.
_OUTLIER_SD = const(4)
OUTLIER_X10 = const(10)
# adapt(): 1/256 of the way per stroke (hours to days at basal rates: air
# dissolves over days).
_ADAPT_SHIFT = const(8)
_WINDOW_STROKES = const(256)  # the slow window's length: 1 << _ADAPT_SHIFT
_REF_STEP_SD = const(4)
_FRAC = const(12)  # the long-window mean is kept x4096 (the shift's rounding bias: 0.03 x 0.1 mmHg)
# The sensor's noise, from the second difference d = a - 2 b + c of the three
# readings 20 ms apart around each stroke's "after" sample (var(d) = 6
# sigma^2 on a settled line: the line's decay and the CSF pulsation curve by
# hundredths of a mmHg in 40 ms). A difference of two readings (the rise, the
# residual) has sd sqrt(2) sigma at least, whatever the learning window
# kept: that is the floor of both learned sds (noise()). Each d is clipped
# (a cough's kink, a glitch) to _NOISE_CLIP_X10 (2 x sensor.JUMP_X10).
_NOISE_CLIP_X10 = const(106)
_NOISE_TRIPLES = const(256)


def isqrt(n):
    # Integer square root (floor) by Newton's method; n >= 0.
    if n <= 0:
        return 0
    x = n
    y = (x + 1) >> 1
    while y < x:
        x = y
        y = (x + n // x) >> 1
    return x


def mean_sd(learner, k):
    # k standard deviations of the long-window mean, 0.1 mmHg (rounded up):
    # an EWMA of weight 1/256 has sd = sd / sqrt(511) = sd / 22.6.
    return (k * learner.rise_sd_x10 + 21) // 22


def _sd(s, s2, n):
    # Sample standard deviation from the sums of x and x^2 over n values.
    return isqrt((s2 - s * s // n) // (n - 1))


def _far(x, s, s2, n):
    # Whether x is an outlier: further than _OUTLIER_SD sd + OUTLIER_X10
    # from the mean of the n values summed so far.
    dev = x - s // n
    if dev < 0:
        dev = -dev
    return dev > _OUTLIER_SD * _sd(s, s2, n) + OUTLIER_X10


class RiseLearner:
    def __init__(self):
        self.reset()

    def reset(self):
        self.count = 0  # healthy strokes measured since reset()
        self._sr = 0  # sums of rise, rise^2, residual, residual^2
        self._sr2 = 0
        self._ss = 0
        self._ss2 = 0
        self.nominal_x10 = DEFAULT_RISE_X10
        self.rise_sd_x10 = _MIN_SD_X10
        self.res_x10 = 0
        self.res_sd_x10 = _MIN_SD_X10
        self._avg = DEFAULT_RISE_X10 << _FRAC
        self.adapted = 0  # quiet strokes in the long-window mean since learning
        self.ref_x10 = 0  # the slow window's reference (0: not yet)
        self.version = 0  # + 1 each time the figures are set (learned, adapted, restored)
        self._nd2 = 0  # sum of the clipped d^2 while learning (noise())
        self._nn = 0  # triples summed
        self.noise_floor_x10 = 0  # sqrt(2) sigma, rounded up (0: no triples)

    def learned(self):
        return self.count >= LEARN_STROKES

    def noise(self, a_x10, b_x10, c_x10):
        # The after triple of every stroke (judged or not) until
        # _NOISE_TRIPLES have been summed: the sensor's noise, measured, the
        # floor of the learned sds. Learning ends after 16 strokes (a floor
        # from 16 or more triples); at _NOISE_TRIPLES the floor is measured
        # again (sd of the estimate 4 %) and the sds raised to it if needed.
        nn = self._nn
        if nn >= _NOISE_TRIPLES:
            return
        d = a_x10 - 2 * b_x10 + c_x10
        if d > _NOISE_CLIP_X10:
            d = _NOISE_CLIP_X10
        elif d < -_NOISE_CLIP_X10:
            d = -_NOISE_CLIP_X10
        self._nd2 += d * d  # at most 256 x 106^2: a small int on the Pico
        nn += 1
        self._nn = nn
        if nn == _NOISE_TRIPLES and self.count >= LEARN_STROKES and self._floor():
            self.version += 1

    def _floor(self):
        # sqrt(2) sigma from the triples so far (2 sigma^2 = 2 mean(d^2) / 6),
        # rounded up; raises the learned sds to it. True if one was raised.
        nn = self._nn
        if not nn:
            return False
        f = isqrt((self._nd2 + 3 * nn - 1) // (3 * nn)) + 1
        self.noise_floor_x10 = f
        raised = False
        if self.rise_sd_x10 < f:
            self.rise_sd_x10 = f
            raised = True
        if self.res_sd_x10 < f:
            self.res_sd_x10 = f
            raised = True
        return raised

    def offer(self, rise_x10, residual_x10):
        # One stroke's response; measured while learning if it looks healthy.
        n = self.count
        if n >= LEARN_STROKES:
            return
        if rise_x10 < MIN_RISE_X10 or 2 * residual_x10 >= rise_x10 or 2 * residual_x10 <= -rise_x10:
            return  # no response, a held stroke, or a disturbed one
        if n >= 4 and (
            _far(rise_x10, self._sr, self._sr2, n) or _far(residual_x10, self._ss, self._ss2, n)
        ):
            return
        self._sr += rise_x10
        self._sr2 += rise_x10 * rise_x10
        self._ss += residual_x10
        self._ss2 += residual_x10 * residual_x10
        n += 1
        self.count = n
        if n == LEARN_STROKES:
            self._figures(n)

    def _figures(self, n):
        self.nominal_x10 = self._sr // n
        self._avg = self.nominal_x10 << _FRAC
        self.adapted = 0
        self.ref_x10 = 0
        sd = _sd(self._sr, self._sr2, n)
        self.rise_sd_x10 = sd if sd > _MIN_SD_X10 else _MIN_SD_X10
        self.res_x10 = self._ss // n
        sd = _sd(self._ss, self._ss2, n)
        self.res_sd_x10 = sd if sd > _MIN_SD_X10 else _MIN_SD_X10
        # The learning window keeps only strokes whose residual is under half
        # their rise (a held stroke teaches nothing): on a soft, noisy line
        # (a rise of 3 mmHg, a residual's noise of 1.1 mmHg) that cuts the
        # residual's spread at +-1.2 sd, and the sds it measures would be
        # half the truth (a false OCCLUSION every few days). The measured
        # noise is their floor.
        self._floor()
        self.version += 1

    def adapt(self, rise_x10, residual_x10):
        # A quiet stroke after learning (its residual where the line's is):
        # the long-window mean of the rise (mean_x10: the slow-leak window,
        # 1/2**_ADAPT_SHIFT per stroke) follows every such stroke; the nominal
        # follows the mean only upwards (a stiffening line: air dissolving),
        # never down (a leak) and never on strokes that hold (narrowing).
        if self.count < LEARN_STROKES:
            return
        dev = residual_x10 - self.res_x10
        if dev < 0:
            dev = -dev
        if dev > _OUTLIER_SD * self.res_sd_x10 + OUTLIER_X10:
            return  # disturbed (a cough, a strain) or holding
        if rise_x10 > self.nominal_x10 + _OUTLIER_SD * self.rise_sd_x10 + OUTLIER_X10:
            return  # a disturbance inside the stroke, not the line
        self._avg += ((rise_x10 << _FRAC) - self._avg + (1 << (_ADAPT_SHIFT - 1))) >> _ADAPT_SHIFT
        self.adapted += 1
        mean = (self._avg + (1 << (_FRAC - 1))) >> _FRAC
        # the slow window's reference: the mean once it has seen a window
        # (sd / 22, not the 16-stroke nominal's sd / 4), then only upwards,
        # and only by a real step (_REF_STEP_SD of the mean's sd)
        if self.adapted == _WINDOW_STROKES:
            # the mean, unless a leak began within the window: the 16-stroke
            # nominal is off by sd / 4 at most 3 times
            floor = self.nominal_x10 - (3 * self.rise_sd_x10 + 3) // 4
            self.ref_x10 = mean if mean > floor else floor
        elif self.adapted > _WINDOW_STROKES and mean > self.ref_x10 + mean_sd(self, _REF_STEP_SD):
            self.ref_x10 = mean
        if mean > self.nominal_x10 and residual_x10 <= self.res_x10 + 2 * self.res_sd_x10:
            self.nominal_x10 = mean
            self.version += 1

    def mean_x10(self):
        # The long-window mean rise (0.1 mmHg) since learning.
        return (self._avg + (1 << (_FRAC - 1))) >> _FRAC
