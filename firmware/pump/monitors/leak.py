# Leak or disconnection: drug leaving the line before the catheter tip (a
# torn catheter, a loose connector), into the pocket instead of the
# intrathecal space. Found from a weak or missing stroke response, against
# what this line was measured to do (response.py).
#
# Physics (docs/plant.md): a leak is a path to the pocket in parallel with the
# catheter. Losing a fraction f of the flow lowers the effective resistance
# to R (1 - f): on a stiff line the rise drops to about (1 - f) of the learned
# one; on a compliant line (silicone, air), whose rise is set by Q T / C more
# than by R, it drops less. A disconnection (f = 100 %) leaves no rise.
#
# How each threshold is derived (the learner's figures: nominal rise m, its
# standard deviation s, the residual's mean and sd):
#   weak stroke    rise < LEAK_PCT % of m. Its margin from the healthy rise
#                  is z = m (100 - LEAK_PCT) / 100 / s standard deviations;
#                  a healthy stroke looks weak with probability Q(z), so the
#                  strokes needed in a row, n, are the fewest with Q(z)^n <=
#                  1e-12 (at 24 mL/day, 4.4e7 strokes a year: under one false
#                  LEAK in 20,000 pump-years), at least LEAK_STROKES. z under
#                  2 (n over MAX_STROKES) means the line is too compliant or
#                  noisy to see leaks per stroke: limited() is True (the app
#                  raises SENSING_LIMITED), and only the slow window runs.
#   disturbed      a stroke whose residual is more than _DISTURBED_SD sd (+ 1
#                  mmHg) from the line's: the CSF pressure moved within the
#                  220 ms (a cough, a strain, a posture change). No evidence
#                  either way: it neither counts nor breaks a run.
#   slow leak      the learner's long-window mean rise (an EWMA over 256
#                  quiet settled strokes) under _SLOW_PCT % of its reference
#                  (the mean after the first 256 strokes, then only upwards
#                  by real steps: response.py), or _SLOW_SD of the mean's sd
#                  (s / 22) below it if that is lower: a 20-30 % leak on a
#                  stiff line (rise x 0.74-0.83). SLOW_LEAK (medium, no stop):
#                  under-delivery to be confirmed at refill, not a reason to
#                  stop an intrathecal drug. A compliant line's rise hardly
#                  changes with a leak (it is set by Q T / C): there the
#                  slow window sees only the larger leaks: under a learned
#                  rise of SLOW_MIN_RISE_X10 (12 mmHg) a 30 % leak moves it
#                  13 % or less, and slow_limited() makes the app raise
#                  SENSING_LIMITED (README, "the bound").
#   LEAK           n weak strokes in a row; cleared by _RECOVER_STROKES normal
#                  strokes in a row. Before the line is learned, a rise under
#                  MIN_RISE_X10 (1 mmHg) is weak (a disconnection at start).
#   disconnection  (no strokes needed) DISCONNECT_READINGS level readings in
#                  a row at or below DISCONNECT_X10, unless a stroke answered
#                  normally in the last ANSWER_MS... the app passes whether
#                  delivery is running: while stopped, nothing answers, so
#                  the level alone decides (5 min); while running, a line
#                  that answers its strokes may still be broken: its stump
#                  drains to the pocket. Then (level_low) the app takes a
#                  pulsation burst at once (pulse.py): no CSF pulsation
#                  behind a line at the pocket's pressure is a break
#                  (confirm_disconnected()); a pulsation is a low CSF
#                  pressure or an offset.
# Three equal samples (before = peak = after) are what a frozen sensor
# reports: no evidence either way (SensorCheck raises SENSOR_FAULT).
#
# Integers only; on_stroke(), on_level() and responded() allocate nothing.

from micropython import const

from pump.monitors import LEAK, SLOW_LEAK
from pump.monitors.response import MIN_RISE_X10, OUTLIER_X10, RiseLearner, mean_sd

LEAK_PCT = const(50)
LEAK_STROKES = const(3)  # the fewest weak strokes in a row
MAX_STROKES = const(8)  # more needed than this: per-stroke leak sensing is limited
_RECOVER_STROKES = const(3)
_DISTURBED_SD = const(4)
_SLOW_PCT = const(90)  # at most; lower when the line is noisy
# The slow window sees a 30 % leak only on a line whose learned rise is at
# least this (a rise set by the catheter's resistance more than by the
# line's compliance: C up to about 10 nL/mmHg); below it, a 30 % leak moves
# the rise by 13 % or less (rig, README "the bound"): slow_limited(), the app
# raises SENSING_LIMITED.
SLOW_MIN_RISE_X10 = const(120)
# the long-window mean's sd is the stroke's / 22: 7 of them (its lowest
# excursion over 90 days of windows at 24 mL/day is about 4.2 sd)
_SLOW_SD = const(7)
# Strokes at least this far apart (24 mL/day: 720 ms) find the line settled
# (a 90 cm silicone catheter with 30 uL of air drains in tau = 180 ms).
SETTLED_MS = const(700)
DISCONNECT_X10 = const(15)
DISCONNECT_READINGS = const(5)
# -log10 Q(z) x 10 for z = 1.0, 1.5, ... 7.0 (the upper tail of the normal):
_TAIL = b"\x08\x0c\x10\x16\x1d\x24\x2d\x37\x41\x4d\x5a\x68\x77"
_BUDGET = const(120)  # -log10 of 1e-12, x 10


def strokes_needed(margin_x10, sd_x10):
    # The fewest strokes in a row n with Q(z)^n <= 1e-12, z = margin / sd;
    # 0 if more than MAX_STROKES would be needed.
    z2 = 2 * margin_x10 // sd_x10  # z in half units
    if z2 < 2:
        return 0
    i = z2 - 2 if z2 - 2 < len(_TAIL) else len(_TAIL) - 1
    n = (_BUDGET + _TAIL[i] - 1) // _TAIL[i]
    if n > MAX_STROKES:
        return 0
    return n if n > LEAK_STROKES else LEAK_STROKES


class LeakMonitor:
    def __init__(self, learner=None):
        self.learner = learner if learner is not None else RiseLearner()
        self.alarm = 0  # LEAK, SLOW_LEAK or 0: the condition now
        self.weak = False  # stroke responses are weak
        self.slow = False  # the long-window mean is low
        self.disconnected = False  # the level is at atmospheric
        self.strokes = 0  # strokes seen since reset() / restart()
        self.needed = LEAK_STROKES  # weak strokes in a row that make LEAK
        self._version = -1  # the learner's figures the thresholds come from
        self._weak_x10 = MIN_RISE_X10
        self._slow_x10 = 0
        self._ref = 0
        self._answered = False  # the last stroke responded normally
        # restarted after a leak and no stroke has answered normally since
        self._doubt = False
        self._weak = 0  # consecutive weak strokes
        self._good = 0  # consecutive normal strokes while weak
        self._low = 0  # consecutive readings at or below disconnect_x10
        self._high = 0  # consecutive readings above it while disconnected
        self.level_low = 0  # consecutive readings at or below it, answered or not

    def reset(self):
        # A new line (implant, priming, refill, catheter revision): relearn.
        self.learner.reset()
        self.restart()

    def restart(self):
        # Forget the conditions and counts, keep the learned figures.
        self.alarm = 0
        self.weak = False
        self.slow = False
        self.disconnected = False
        self.strokes = 0
        self._answered = False
        self._doubt = True  # until a stroke answers normally again
        self._weak = 0
        self._good = 0
        self._low = 0
        self._high = 0
        self.level_low = 0

    def cleared(self):
        return self.alarm == 0

    def _update(self):
        if self.weak or self.disconnected:
            self.alarm = LEAK
        elif self.slow:
            self.alarm = SLOW_LEAK
        else:
            self.alarm = 0
        return self.alarm

    def _derive(self):
        # Thresholds from the learner's figures (when they change).
        r = self.learner
        if self._version == r.version and self._ref == r.ref_x10:
            return
        self._version = r.version
        if not r.learned():
            # until learned: no rise at all (under 1 mmHg), MAX_STROKES in a
            # row (a 50 nL/mmHg line rises 3.5 mmHg +- 0.8 at 0.8 mmHg noise)
            self._weak_x10 = MIN_RISE_X10
            self.needed = MAX_STROKES
            self._slow_x10 = 0
            return
        m = r.nominal_x10
        self._weak_x10 = m * LEAK_PCT // 100
        n = strokes_needed(m - self._weak_x10, r.rise_sd_x10)
        self.needed = n if n > LEAK_STROKES else (LEAK_STROKES if n else 0)
        ref = r.ref_x10
        self._ref = ref
        slow = ref * _SLOW_PCT // 100
        noisy = ref - mean_sd(r, _SLOW_SD) - 1
        self._slow_x10 = slow if slow < noisy else noisy

    def limited(self):
        # The learned line is too compliant or noisy for per-stroke leak
        # sensing (SENSING_LIMITED).
        self._derive()
        return self.learner.learned() and self.needed == 0

    def slow_limited(self):
        # The learned line is too compliant for the slow window to find a
        # 30 % leak (SENSING_LIMITED; larger leaks are still found).
        r = self.learner
        return r.learned() and r.nominal_x10 < SLOW_MIN_RISE_X10

    # --- hot path ------------------------------------------------------------
    def responded(self, before_x10, peak_x10):
        # Whether a stroke's rise is a normal response (not weak). Changes
        # nothing: StrokeCheck uses it to tell a blind encoder from a stall.
        rise = peak_x10 - before_x10
        self._derive()
        return rise >= MIN_RISE_X10 and rise >= self._weak_x10

    def witnesses(self):
        # Whether a missing stroke response is evidence that a stroke did not
        # move (StrokeCheck: a stall, not a blind encoder). Not while strokes
        # answer weakly (a leak in the making), LEAK is active, the line is
        # too compliant to tell, nor after a restart() (LEAK cleared by a
        # clinician) until a stroke has answered normally.
        return self.alarm == 0 and self._weak == 0 and not self._doubt and not self.limited()

    def on_stroke(self, before_x10, peak_x10, after_x10, interval_ms=SETTLED_MS):
        # One delivered stroke (the encoder moved the full stroke);
        # interval_ms since the previous one began: only strokes on a
        # settled line (SETTLED_MS apart) teach the learner and feed the
        # slow window (during a bolus the line never drains fully: its
        # strokes ride on what the last one left). Returns the condition:
        # LEAK, SLOW_LEAK or 0.
        if before_x10 == peak_x10 and peak_x10 == after_x10:
            return self.alarm  # a frozen sensor (SensorCheck finds it): no evidence
        self.strokes += 1
        learner = self.learner
        rise = peak_x10 - before_x10
        residual = after_x10 - before_x10
        self._derive()
        if learner.learned():
            dev = residual - learner.res_x10
            if dev < 0:
                dev = -dev
            if dev > _DISTURBED_SD * learner.res_sd_x10 + OUTLIER_X10:
                return self.alarm  # the CSF moved within the stroke: no evidence
        if rise >= self._weak_x10 and rise >= MIN_RISE_X10:
            self._answered = True
            self._doubt = False
            self.disconnected = False
            self._low = 0
            self._weak = 0
            if self.weak:
                self._good += 1
                if self._good >= _RECOVER_STROKES:
                    self.weak = False
                    self._good = 0
            elif interval_ms >= SETTLED_MS:
                learner.offer(rise, residual)
        else:
            self._answered = False
            self._good = 0
            if self.needed:
                self._weak += 1
                if self._weak >= self.needed:
                    self.weak = True
        if learner.learned() and interval_ms >= SETTLED_MS:
            learner.adapt(rise, residual)
            if learner.ref_x10:
                self._derive()
                self.slow = learner.mean_x10() < self._slow_x10
        return self._update()

    def level_is_low(self):
        return self.level_low >= DISCONNECT_READINGS

    def confirm_disconnected(self):
        # The level sits at the pocket's while strokes still answer, and no
        # CSF pulsation is seen behind the line (the app's pulse burst): a
        # break of the catheter (the strokes drain through its stump).
        if self.level_is_low():
            self.disconnected = True
        return self._update()

    def on_level(self, reading_x10, running=True):
        # A reading not tied to a stroke (once a minute, and while stopped);
        # running: delivery runs (strokes may answer).
        self.level_low = self.level_low + 1 if reading_x10 <= DISCONNECT_X10 else 0
        if reading_x10 <= DISCONNECT_X10 and not (running and self._answered):
            self._high = 0
            self._low += 1
            if self._low >= DISCONNECT_READINGS:
                self.disconnected = True
        else:
            self._low = 0
            if self.disconnected:
                self._high += 1
                if self._high >= DISCONNECT_READINGS:
                    self.disconnected = False
                    self._high = 0
        return self._update()
