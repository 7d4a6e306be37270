# The nominal stroke response: how far the line pressure rises during one
# stroke (peak - before, in 0.1 mmHg) on this patient's catheter, learned
# over the first healthy strokes after reset() and then frozen. Used by the
# occlusion monitor (a residual is judged against it) and the leak monitor
# (a weak response is a fraction of it).
#
# Physics (plant figures): a stroke pushes V = 200 nL in 20 ms (Q = 10 nL/ms)
# into a line of compliance C (2.5-10 nL/mmHg) draining through the catheter
# resistance R (1.1-2.4e-3 mmHg s/nL for 40-90 cm), so the rise at the end of
# the stroke is Q R (1 - exp(-20 ms / RC)): about 9 to 24 mmHg, fixed for a
# given catheter. It is learned, not configured, because R and C differ from
# patient to patient by more than the margins the detectors need.
#
# Why frozen after learning: a slowly growing fault (a granuloma narrowing
# the tip, a slowly tearing catheter) would otherwise be learned as the new
# normal. Call reset() after implant, priming and any catheter revision, on
# a healthy line; set_nominal() restores a value kept across reboots.
#
# Integers only; offer() allocates nothing.

DEFAULT_RISE_X10 = 160  # 16 mmHg: Q x R for a 60 cm catheter, used until learned
LEARN_STROKES = 16  # healthy strokes averaged after reset()
LEARN_SHIFT = 2  # EWMA weight 1/4 per stroke: the estimate's noise is 0.38 x one stroke's
# Strokes that teach nothing: a rise below MIN_RISE_X10 (4 mmHg, under half
# the smallest physical nominal rise of about 9 mmHg: a leak, or no stroke)
# or a residual (after - before) of MAX_RESIDUAL_X10 or more (2.5 mmHg, 3.5
# sigma of the residual noise: a restricted line, or a cough).
MIN_RISE_X10 = 40
MAX_RESIDUAL_X10 = 25

_FRAC_BITS = 4  # the average is kept x16


class RiseLearner:
    def __init__(self, default_x10=DEFAULT_RISE_X10, strokes=LEARN_STROKES):
        if default_x10 <= 0 or strokes <= 0:
            raise ValueError("rise learner")
        self._default = default_x10
        self._strokes = strokes
        self._avg = 0  # x16
        self.count = 0  # healthy strokes averaged since reset()
        self.nominal_x10 = default_x10

    def reset(self):
        self._avg = 0
        self.count = 0
        self.nominal_x10 = self._default

    def learned(self):
        return self.count >= self._strokes

    def set_nominal(self, nominal_x10):
        # A learned value restored from the journal: learning is over.
        if nominal_x10 < MIN_RISE_X10:
            raise ValueError("nominal rise")
        self._avg = nominal_x10 << _FRAC_BITS
        self.count = self._strokes
        self.nominal_x10 = nominal_x10

    def offer(self, rise_x10, residual_x10):
        # One stroke's response; averaged while learning if it looks healthy.
        if self.count >= self._strokes:
            return
        if rise_x10 < MIN_RISE_X10 or residual_x10 >= MAX_RESIDUAL_X10:
            return
        if residual_x10 <= -MAX_RESIDUAL_X10:
            return
        if self.count == 0:
            self._avg = rise_x10 << _FRAC_BITS
        else:
            self._avg += ((rise_x10 << _FRAC_BITS) - self._avg) >> LEARN_SHIFT
        self.count += 1
        self.nominal_x10 = self._avg >> _FRAC_BITS
