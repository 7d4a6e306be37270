# Occlusion: a blocked or narrowed catheter, found from the pressure response
# of each stroke rather than from the pressure level alone.
#
# Why not a level threshold: at 0.048 mL/day a stroke comes every 6 minutes
# and a blocked line gains V/C = 4-80 mmHg per stroke (C = 2.5-50 nL/mmHg),
# so a 517 mmHg limit takes 7-130 strokes (40 min to 13 h; ThresholdDetector
# below), and a partial occlusion, which drains between strokes, never
# reaches it.
#
# The app samples the line pressure just before a stroke (before), at its end
# (peak) and 200 ms later (after). With rise = peak - before and residual =
# after - before:
#   healthy line    the stroke drains through the catheter: residual ~ the
#                   line's learned one (0 on a stiff line, a few tenths of a
#                   mmHg on a silicone one);
#   full occlusion  nothing drains: residual = rise = V/C, never less than
#                   the healthy rise (V/C over Q R (1 - exp(-T/RC)) is x / (1
#                   - exp(-x)) >= 1, x = T/RC);
#   partial         the peak grows and the line drains slowly: the residual
#                   is clearly above the line's but decays.
#
# How each threshold is derived, from the learner's figures (response.py:
# nominal rise m and its sd, the residual's mean r and sd s):
#   held stroke     residual >= max(r + _HELD_SD s, _FULL_RESIDUAL_PCT % of m,
#                   FULL_MIN_X10): 5 sd from a healthy stroke, and at most
#                   half of the smallest full-occlusion step (V/C >= m); the
#                   stroke kept its rise (peak - after <= (100 -
#                   _FULL_HOLD_PCT) % of the rise + 3 sd of the rise), and
#                   after is not above peak by more than _HOLD_NOISE_X10 + 3
#                   sd (the CSF rising after the peak is a cough or a
#                   strain, not a held stroke).
#   OCCLUSION       FULL_STROKES held strokes in a row AND the run is not a
#                   transient: either it spans _FULL_SPAN_MS (2.5 s: longer
#                   than the rise of any strain, 0.5-2 s, and any one cough;
#                   a CSF event rises only while it lasts, an occlusion
#                   holds every stroke) or the pressure it stored adds up to
#                   _FULL_SUM_X10 (160 mmHg: more than a cough burst or a
#                   strain can add); a run also ends when a stroke misses
#                   twice in a row, when the CSF is seen to rise after a
#                   peak or fall below a stroke's start, and when the next
#                   stroke starts lower than the last one ended (a blocked
#                   line keeps its pressure between strokes: it no longer
#                   sees the CSF). So 3 strokes at basal rates under 20
#                   mL/day, 4-5 at 24 mL/day, 4-10 during a bolus; a stiff
#                   line (40-80 mmHg a stroke) in 2-4.
#   PARTIAL         evidence +1 per restricted stroke (held, or residual >=
#                   max(r + _PARTIAL_SD s, _PARTIAL_RESIDUAL_PCT % of m,
#                   _PARTIAL_MIN_X10) with after <= peak + the hold noise, or
#                   a rise _PARTIAL_RISE_PCT % of m), -1 per healthy one;
#                   disturbed strokes (after above peak: the CSF rose) count
#                   neither way; raised at PARTIAL_STROKES once the evidence
#                   has been building for _PARTIAL_SPAN_MS (10 s: longer than
#                   a posture change's 5 s overshoot, a strain or a cough
#                   burst), cleared at 0.
#   ceiling         _CEILING_READINGS level readings in a row at or above
#                   CEILING_X10 (517 mmHg) raise OCCLUSION, unless the last
#                   stroke drained (it was not held): a line that drains
#                   cannot hold 517 mmHg (a blocked one gets there only
#                   through many held strokes), so the sensor is wrong (an
#                   offset): SENSOR_FAULT, never OCCLUSION.
# A stroke whose three samples are equal is what a frozen sensor reports:
# it is skipped (no evidence).
#
# Units: pressures in 0.1 mmHg (gauge), as the sensor reports them; counts in
# strokes or readings. Integers only; on_stroke() and on_level() allocate
# nothing.

from micropython import const

from pump.monitors import OCCLUSION, PARTIAL_OCCLUSION, SENSOR_FAULT
from pump.monitors.leak import SETTLED_MS
from pump.monitors.response import OUTLIER_X10, RiseLearner

# SENSING_LIMITED when the held threshold is above 80 % of the nominal rise.
_LIMITED_PCT = const(80)
# Floors, whatever the learned line: 2 mmHg held, 1.5 mmHg restricted (5 and
# 4 sd of the residual of two samples of the 0.3 mmHg sd floor).
FULL_MIN_X10 = const(20)
_FULL_RESIDUAL_PCT = const(50)
_HELD_SD = const(4)
_FULL_HOLD_PCT = const(80)
_HOLD_NOISE_X10 = const(30)
FULL_STROKES = const(3)
_FULL_SPAN_MS = const(2_500)
_FULL_SUM_X10 = const(1_600)
_PARTIAL_MIN_X10 = const(15)
_PARTIAL_SD = const(4)
_PARTIAL_RESIDUAL_PCT = const(20)
_PARTIAL_RISE_PCT = const(250)
PARTIAL_STROKES = const(8)
_PARTIAL_SPAN_MS = const(10_000)
RELIEF_STROKES = const(3)
CEILING_X10 = const(5170)
_CEILING_READINGS = const(2)
_RELIEF_MARGIN_X10 = const(200)
_RELIEF_READINGS = const(2)
_DEFAULT_BASELINE_X10 = const(74)
_BASELINE_STEP_X10 = const(10)
# The stored-pressure sum on a limited line (a CUSUM of the residual, see
# on_stroke): its decision level is ln(1e14) t^2 / (m - r), x 10.
_SUM_LN_X10 = const(322)
# A stroke interval not given (tests feeding strokes only): long enough that
# a run of held strokes always spans _FULL_SPAN_MS.
_LONG_MS = const(60_000)


def _threshold(r, sd, pct, floor):
    # A residual threshold from the learner's figures: sd standard
    # deviations above the line's residual, pct % of its rise, and a floor.
    t = r.res_x10 + sd * r.res_sd_x10
    p = r.nominal_x10 * pct // 100
    if p > t:
        t = p
    return t if t > floor else floor


def held_x10(r):
    # The residual a held stroke reaches at least, 0.1 mmHg.
    return _threshold(r, _HELD_SD, _FULL_RESIDUAL_PCT, FULL_MIN_X10)


class OcclusionMonitor:
    def __init__(self, learner=None):
        # a learner of its own is taught here; a shared one by the leak monitor
        self.teach = learner is None
        self.learner = learner if learner is not None else RiseLearner()
        self.baseline_x10 = _DEFAULT_BASELINE_X10
        self.alarm = 0  # OCCLUSION, PARTIAL_OCCLUSION, SENSOR_FAULT or 0
        self.occluded = False
        self.partial = False
        self.implausible = False  # the level says blocked, the strokes say not
        self.strokes = 0  # strokes seen since reset() / restart()
        self._full = 0  # consecutive held strokes
        self._span = 0  # ms they span
        self._sum = 0  # pressure they stored, 0.1 mmHg
        self._miss = 0  # non-held strokes in a row inside a run
        self._pspan = 0  # ms the partial evidence has been building
        self._last_after = 0  # the previous stroke's after sample
        self._evidence = 0  # partial-occlusion evidence, 0..partial_strokes
        self._relief = 0  # consecutive healthy strokes while occluded
        self._high = 0  # consecutive level readings at or above the ceiling
        self._low = 0  # consecutive relieved level readings while occluded
        self._drains = False  # the last strokes drained like the learned line
        self._cusum = 0  # limited lines: the residual's CUSUM, 0.1 mmHg
        self._cn = 0  # strokes in it
        self._cspan = 0  # ms they span
        self._stored = 0  # strokes in a row that added to it

    def reset(self):
        # A new line (implant, priming, refill, catheter revision): relearn.
        self.learner.reset()
        self.baseline_x10 = _DEFAULT_BASELINE_X10
        self.restart()

    def restart(self):
        # Forget the conditions and counts, keep what was learned (after a
        # clinician's clear: if the line is still blocked, the next strokes
        # find it again).
        self.alarm = 0
        self.occluded = False
        self.partial = False
        self.implausible = False
        self.strokes = 0
        self._full = 0
        self._span = 0
        self._sum = 0
        self._miss = 0
        self._pspan = 0
        self._evidence = 0
        self._relief = 0
        self._high = 0
        self._low = 0
        self._drains = False
        self._cusum = 0
        self._cn = 0
        self._cspan = 0
        self._stored = 0

    def cleared(self):
        return self.alarm == 0

    def _update(self):
        if self.occluded:
            self.alarm = OCCLUSION
        elif self.implausible:
            self.alarm = SENSOR_FAULT
        elif self.partial:
            self.alarm = PARTIAL_OCCLUSION
        else:
            self.alarm = 0
        return self.alarm

    def limited(self):
        # The learned line is too compliant or noisy for a full occlusion to
        # stand clear of the held threshold (V/C >= m, the threshold within
        # 20 % of m): SENSING_LIMITED (it is then found more slowly, from
        # runs with a missed stroke, the stored pressure and the ceiling).
        if not self.learner.learned():
            return False
        r = self.learner
        return held_x10(r) * 100 > r.nominal_x10 * _LIMITED_PCT

    def _follow(self, reading_x10):
        b = self.baseline_x10
        if reading_x10 > b + _BASELINE_STEP_X10:
            self.baseline_x10 = b + _BASELINE_STEP_X10
        elif reading_x10 < b - _BASELINE_STEP_X10:
            self.baseline_x10 = b - _BASELINE_STEP_X10
        else:
            self.baseline_x10 = reading_x10

    def _store(self, residual, interval_ms, rising, reset):
        # Limited lines (held_x10 above 80 % of the rise: a soft, noisy
        # line, where a full occlusion's V/C >= m is not clear of one
        # stroke's noise): a CUSUM of the residual, S = max(0, S + min(res,
        # m + t) - k), k = (r + m) / 2 halfway between the healthy residual
        # r and the smallest full occlusion's (m). Healthy (mean r, sd t),
        # S crosses h with probability exp(-(m - r) h / t^2): h = ln(1e14)
        # t^2 / (m - r); blocked, S gains (m - r) / 2 a stroke: found in
        # 2 h / (m - r) strokes (10-25 on the softest, noisiest lines, the
        # 517 mmHg ceiling needs 120-190). A CSF event is capped at m + t a
        # stroke, counts nothing while the CSF rises after the peak, and
        # resets the sum when the pressure falls below where a stroke
        # started or drained before the next one (a blocked line keeps its
        # pressure) or rose between the strokes (a blocked line no longer
        # sees the CSF: its pressure holds from one stroke to the next).
        # OCCLUSION at h, once the sum spans _FULL_SPAN_MS and its last
        # FULL_STROKES strokes each added to it: a strain rises for 2 s at
        # most and then holds (the sum falls, its strokes add with
        # probability Q((k - r) / t)), a blocked line stores on every stroke
        # (each adds with probability Phi((m - r) / 2t), 70-85 %). True while
        # S is at or above h (the line stores: the ceiling is then an
        # occlusion, not a sensor fault).
        r = self.learner
        m = r.nominal_x10
        base = r.res_x10
        if reset or not r.learned() or m <= base or held_x10(r) * 100 <= m * _LIMITED_PCT:
            self._cusum = 0
            self._stored = 0
            self._cn = 0
            return False
        if rising:
            return False
        t = r.res_sd_x10
        cap = m + t
        add = (residual if residual < cap else cap) - (base + m) // 2
        c = self._cusum + add
        self._stored = self._stored + 1 if add > 0 else 0
        if c <= 0:
            self._cusum = 0
            self._cn = 0
            return False
        if self._cn:
            self._cspan += interval_ms
        else:
            self._cspan = 0
        self._cn += 1
        self._cusum = c
        if c < _SUM_LN_X10 * t * t // (10 * (m - base)):
            return False
        if self._stored >= FULL_STROKES and self._cspan >= _FULL_SPAN_MS:
            self.occluded = True
        return True

    # --- hot path ------------------------------------------------------------
    def on_stroke(self, before_x10, peak_x10, after_x10, interval_ms=_LONG_MS):
        # One delivered stroke (the encoder moved the full stroke);
        # interval_ms: since the previous stroke began. Returns the
        # condition: OCCLUSION, PARTIAL_OCCLUSION, SENSOR_FAULT or 0.
        if before_x10 == peak_x10 and peak_x10 == after_x10:
            return self.alarm  # a frozen sensor (SensorCheck finds it): no evidence
        self.strokes += 1
        learner = self.learner
        rise = peak_x10 - before_x10
        residual = after_x10 - before_x10
        nominal = learner.nominal_x10
        decay = peak_x10 - after_x10
        noise = 3 * learner.rise_sd_x10
        rising = decay < -(_HOLD_NOISE_X10 + noise)  # the CSF rose after the peak
        held = (
            not rising
            and residual >= held_x10(learner)
            and decay * 100 <= rise * (100 - _FULL_HOLD_PCT) + noise * 100
        )
        restricted = held or (
            not rising
            and residual
            >= _threshold(learner, _PARTIAL_SD, _PARTIAL_RESIDUAL_PCT, _PARTIAL_MIN_X10)
            and decay >= -_HOLD_NOISE_X10
        )
        if (
            not restricted
            and not rising
            and rise * 100 >= nominal * _PARTIAL_RISE_PCT
            and residual > learner.res_x10 + learner.res_sd_x10
        ):
            restricted = (
                True  # a larger rise that also drains slower (a stiffening line drains faster)
            )
        # full occlusion: consecutive held strokes that are not a transient
        # A blocked line no longer sees the CSF: a stroke whose pressure rose
        # after its peak, or fell below where it started, is a CSF event on
        # an open line and ends a run; one stroke that merely misses the
        # threshold (on a compliant line V/C is near it) does not, two do.
        falling = residual < -(3 * learner.res_sd_x10 + OUTLIER_X10)
        # ... and between strokes a blocked line keeps what it holds: a run
        # whose pressure drained away before this stroke was a CSF event
        # (or rose since the last one ended: the CSF, which a blocked line
        # no longer sees, rose between the strokes)
        step = 4 * learner.res_sd_x10 + OUTLIER_X10
        dropped = before_x10 < self._last_after - step
        jumped = before_x10 > self._last_after + step
        if self._full and (dropped or jumped):
            self._full = 0
        self._last_after = after_x10
        stores = self._store(residual, interval_ms, rising, falling or dropped or jumped)
        if held:
            if self._full:
                self._span += interval_ms
            else:
                self._span = 0
                self._sum = 0
            self._full += 1
            self._miss = 0
            self._sum += residual
            if self._full >= FULL_STROKES and (
                self._span >= _FULL_SPAN_MS or self._sum >= _FULL_SUM_X10
            ):
                self.occluded = True
        elif rising or falling:
            self._full = 0
        elif self._full:
            self._miss += 1
            if self._miss >= 2:
                self._full = 0
            else:
                self._span += interval_ms
        if self._evidence:
            self._pspan += interval_ms
        if (held and self._full >= 2) or stores:
            # two held strokes in a row (or the limited line's sum): one held
            # stroke can be a CSF transient under it (a 600 mmHg offset with
            # a cough on the stroke read as OCCLUSION at 0.048 mL/day)
            self._drains = False
        elif held:
            pass  # one held stroke: the drain evidence stands as it was
        elif not rising and not falling:
            self._drains = True  # it drained (fully, or at least partly)
        if restricted:
            self._relief = 0
            if not self._evidence:
                self._pspan = 0
            if self._evidence < PARTIAL_STROKES:
                self._evidence += 1
            if self._evidence >= PARTIAL_STROKES and self._pspan >= _PARTIAL_SPAN_MS:
                self.partial = True
        elif not rising:
            if self.occluded:
                self._relief += 1
                if self._relief >= RELIEF_STROKES:
                    self.occluded = False
                    self._relief = 0
                    self._low = 0
            if self._evidence > 0:
                self._evidence -= 1
            if self._evidence == 0:
                self.partial = False
            if self.teach and interval_ms >= SETTLED_MS:
                learner.offer(rise, residual)
                learner.adapt(rise, residual)
            if not self.occluded:
                self._follow(before_x10)
        return self._update()

    def on_level(self, reading_x10):
        # A reading not tied to a stroke (once a minute, and while stopped).
        # Returns the condition, as on_stroke().
        if reading_x10 >= CEILING_X10:
            self._high += 1
            self._low = 0
            if self._high >= _CEILING_READINGS:
                if self._drains and not self.occluded:
                    self.implausible = True  # a draining line cannot hold this
                else:
                    self.occluded = True
                    self._relief = 0
        else:
            self._high = 0
            self.implausible = False
            if self.occluded:
                if reading_x10 <= self.baseline_x10 + _RELIEF_MARGIN_X10:
                    self._low += 1
                    if self._low >= _RELIEF_READINGS:
                        self.occluded = False
                        self._low = 0
                        self._full = 0
                        self._evidence = 0
                        self.partial = False
                else:
                    self._low = 0
            else:
                self._follow(reading_x10)
        return self._update()
