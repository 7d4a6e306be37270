# Occlusion: a blocked or narrowed catheter, found from the pressure response
# of each stroke rather than from the pressure level alone.
#
# Why not a level threshold: at 0.048 mL/day a stroke comes every 6 minutes
# and a blocked line gains V/C = 20-80 mmHg per stroke, so a 517 mmHg limit
# takes 7-26 strokes (40 min to 2.6 h; ThresholdDetector below), and a
# partial occlusion, which drains between strokes, never reaches it.
#
# The app samples the line pressure just before a stroke (before), at its end
# (peak) and 200 ms later (after). With rise = peak - before and residual =
# after - before:
#   healthy line    the stroke drains through the catheter in tau = RC (3-24
#                   ms): rise = Q R (9-24 mmHg), residual ~ 0;
#   full occlusion  nothing drains: residual = rise = V/C (20-80 mmHg), which
#                   is never less than the healthy rise (V/C over
#                   Q R (1 - exp(-T/RC)) is x / (1 - exp(-x)) >= 1, x = T/RC);
#   partial         R x 20-200: the peak grows and the line drains in
#                   0.06-5 s: the residual is clearly above 0 but decays.
# Both quantities are differences over 20 and 220 ms, so a posture change or
# a drift between strokes (minutes apart at low rates) cancels out; only an
# event inside those 220 ms (a cough, a posture step) disturbs one stroke,
# and the decisions need several strokes. A stroke whose three samples are
# equal is what a frozen sensor reports: it is skipped (no evidence).
#
# Decisions, shaped like Klipper's verify_heater (bounded configuration,
# hysteresis, accumulated evidence):
#   OCCLUSION          FULL_STROKES consecutive strokes whose residual is at
#                      least FULL_MIN_X10 and FULL_RESIDUAL_PCT of the learned
#                      rise, and that held their own rise over 200 ms (the
#                      decay peak - after is at most 100 - FULL_HOLD_PCT % of
#                      the rise, and after is not above peak by more than
#                      HOLD_NOISE_X10: a cough arriving after the peak is not
#                      a held stroke); or CEILING_READINGS level readings in a
#                      row at or above CEILING_X10. Cleared by RELIEF_STROKES
#                      healthy strokes in a row, or, while delivery is
#                      stopped, by RELIEF_READINGS level readings in a row
#                      back within RELIEF_MARGIN_X10 of the baseline (the
#                      trapped pressure is gone: the line was relieved).
#   PARTIAL_OCCLUSION  evidence +1 per stroke whose residual is at least
#                      PARTIAL_MIN_X10 and PARTIAL_RESIDUAL_PCT of the learned
#                      rise, or whose rise is PARTIAL_RISE_PCT of it; -1 per
#                      healthy stroke; raised at PARTIAL_STROKES, cleared at 0.
# A line whose outflow time constant exceeds 200 ms / ln(100 / FULL_HOLD_PCT)
# = 0.9 s holds its strokes and counts as fully occluded (R x 110 and up at
# nominal compliance): at that point pressure builds from stroke to stroke
# at the usual rates.
#
# Units: pressures in 0.1 mmHg (gauge), as the sensor reports them; counts in
# strokes or readings. Integers only; on_stroke() and on_level() allocate
# nothing.

from pump.monitors import OCCLUSION, PARTIAL_OCCLUSION
from pump.monitors.response import RiseLearner

# A residual counted as full occlusion is at least 8 mmHg: the smallest V/C in
# the compliance range (200 nL / 10 nL/mmHg = 20 mmHg) with a 2.5x margin, and
# 11 sigma of the residual noise (two samples of 0.5 mmHg: 0.7 mmHg).
FULL_MIN_X10 = 80
# ... and at least half the learned rise (V/C is never below it: 2x margin).
FULL_RESIDUAL_PCT = 50
# ... of a stroke that kept at least 80 % of its own rise after 200 ms.
FULL_HOLD_PCT = 80
# after - peak above this is a disturbance (a cough), not a held stroke:
# 3 mmHg, 4 sigma of the difference of two samples.
HOLD_NOISE_X10 = 30
# 3 strokes in a row: 12-18 min from onset at 0.048 mL/day, 2 s at 24 mL/day,
# 0.75 s during a bolus; one cough (about 1 s) never makes 3 held strokes.
FULL_STROKES = 3
# A partial-occlusion residual: 2.5 mmHg (3.5 sigma of the residual noise) ...
PARTIAL_MIN_X10 = 25
# ... and 20 % of the learned rise.
PARTIAL_RESIDUAL_PCT = 20
# Or a rise 2.5 times the learned one: the peak grows with the resistance;
# a healthy rise varies by about 0.7 mmHg on at least 9 mmHg.
PARTIAL_RISE_PCT = 250
# Evidence to raise PARTIAL_OCCLUSION: 8 strokes net (48 min at the minimum
# rate); the count is capped there, so clearing takes 8 healthy strokes net.
PARTIAL_STROKES = 8
# Healthy strokes in a row that clear OCCLUSION after relief.
RELIEF_STROKES = 3
# Absolute ceiling: 517 mmHg (about 10 psi, ECRI's epidural occlusion limit,
# clinical.md 3), for 2 readings in a row (once a minute: 1-2 min).
CEILING_X10 = 5170
CEILING_READINGS = 2
# Relief seen from the level: within 20 mmHg of the baseline (a full
# occlusion is declared with at least 3 x 20 = 60 mmHg trapped; posture moves
# the CSF pressure by up to about 15 mmHg), 2 readings in a row.
RELIEF_MARGIN_X10 = 200
RELIEF_READINGS = 2
# The baseline (CSF pressure at the sensor) starts at 7.4 mmHg (lying, mid
# 5-15 cmH2O) and follows healthy "before" samples and level readings by at
# most 1 mmHg per sample, so a cough (about 1 s) barely moves it.
DEFAULT_BASELINE_X10 = 74
BASELINE_STEP_X10 = 10


class OcclusionMonitor:
    def __init__(
        self,
        full_min_x10=FULL_MIN_X10,
        full_residual_pct=FULL_RESIDUAL_PCT,
        full_hold_pct=FULL_HOLD_PCT,
        hold_noise_x10=HOLD_NOISE_X10,
        full_strokes=FULL_STROKES,
        partial_min_x10=PARTIAL_MIN_X10,
        partial_residual_pct=PARTIAL_RESIDUAL_PCT,
        partial_rise_pct=PARTIAL_RISE_PCT,
        partial_strokes=PARTIAL_STROKES,
        relief_strokes=RELIEF_STROKES,
        ceiling_x10=CEILING_X10,
        ceiling_readings=CEILING_READINGS,
        relief_margin_x10=RELIEF_MARGIN_X10,
        relief_readings=RELIEF_READINGS,
        learner=None,
    ):
        if not (
            0 < full_min_x10
            and 0 < full_residual_pct
            and 0 < full_hold_pct <= 100
            and 0 <= hold_noise_x10
            and 0 < full_strokes
            and 0 < partial_min_x10 <= full_min_x10
            and 0 < partial_residual_pct
            and 100 < partial_rise_pct
            and 0 < partial_strokes
            and 0 < relief_strokes
            and 0 < ceiling_x10
            and 0 < ceiling_readings
            and 0 < relief_margin_x10
            and 0 < relief_readings
        ):
            raise ValueError("occlusion monitor")
        self.full_min_x10 = full_min_x10
        self.full_residual_pct = full_residual_pct
        self.full_hold_pct = full_hold_pct
        self.hold_noise_x10 = hold_noise_x10
        self.full_strokes = full_strokes
        self.partial_min_x10 = partial_min_x10
        self.partial_residual_pct = partial_residual_pct
        self.partial_rise_pct = partial_rise_pct
        self.partial_strokes = partial_strokes
        self.relief_strokes = relief_strokes
        self.ceiling_x10 = ceiling_x10
        self.ceiling_readings = ceiling_readings
        self.relief_margin_x10 = relief_margin_x10
        self.relief_readings = relief_readings
        self.learner = learner if learner is not None else RiseLearner()
        self.baseline_x10 = DEFAULT_BASELINE_X10
        self.alarm = 0  # OCCLUSION, PARTIAL_OCCLUSION or 0: the condition now
        self.occluded = False
        self.partial = False
        self.strokes = 0  # strokes seen since reset() / restart()
        self._full = 0  # consecutive held strokes
        self._evidence = 0  # partial-occlusion evidence, 0..partial_strokes
        self._relief = 0  # consecutive healthy strokes while occluded
        self._high = 0  # consecutive level readings at or above the ceiling
        self._low = 0  # consecutive relieved level readings while occluded

    def reset(self):
        # A new line (implant, priming, catheter revision): relearn the rise.
        self.learner.reset()
        self.baseline_x10 = DEFAULT_BASELINE_X10
        self.restart()

    def restart(self):
        # Forget the conditions and counts, keep what was learned (after a
        # clinician's clear: if the line is still blocked, the next strokes
        # find it again).
        self.alarm = 0
        self.occluded = False
        self.partial = False
        self.strokes = 0
        self._full = 0
        self._evidence = 0
        self._relief = 0
        self._high = 0
        self._low = 0

    def cleared(self):
        return self.alarm == 0

    def _update(self):
        if self.occluded:
            self.alarm = OCCLUSION
        elif self.partial:
            self.alarm = PARTIAL_OCCLUSION
        else:
            self.alarm = 0
        return self.alarm

    def _follow(self, reading_x10):
        b = self.baseline_x10
        if reading_x10 > b + BASELINE_STEP_X10:
            self.baseline_x10 = b + BASELINE_STEP_X10
        elif reading_x10 < b - BASELINE_STEP_X10:
            self.baseline_x10 = b - BASELINE_STEP_X10
        else:
            self.baseline_x10 = reading_x10

    # --- hot path ------------------------------------------------------------
    def on_stroke(self, before_x10, peak_x10, after_x10):
        # One delivered stroke (the encoder moved the full stroke). Returns
        # the condition: OCCLUSION, PARTIAL_OCCLUSION or 0.
        if before_x10 == peak_x10 and peak_x10 == after_x10:
            return self.alarm  # a frozen sensor (SensorCheck finds it): no evidence
        self.strokes += 1
        rise = peak_x10 - before_x10
        residual = after_x10 - before_x10
        nominal = self.learner.nominal_x10
        decay = peak_x10 - after_x10
        held = (
            residual >= self.full_min_x10
            and residual * 100 >= nominal * self.full_residual_pct
            and -self.hold_noise_x10 <= decay
            and decay * 100 <= rise * (100 - self.full_hold_pct)
        )
        restricted = held or (
            residual >= self.partial_min_x10
            and residual * 100 >= nominal * self.partial_residual_pct
        )
        if not restricted and rise * 100 >= nominal * self.partial_rise_pct:
            restricted = True
        # full occlusion: consecutive held strokes; relief: consecutive healthy
        if held:
            self._full += 1
            if self._full >= self.full_strokes:
                self.occluded = True
        else:
            self._full = 0
        if restricted:
            self._relief = 0
            if self._evidence < self.partial_strokes:
                self._evidence += 1
            if self._evidence >= self.partial_strokes:
                self.partial = True
        else:
            if self.occluded:
                self._relief += 1
                if self._relief >= self.relief_strokes:
                    self.occluded = False
                    self._relief = 0
                    self._low = 0
            if self._evidence > 0:
                self._evidence -= 1
            if self._evidence == 0:
                self.partial = False
            self.learner.offer(rise, residual)
            if not self.occluded:
                self._follow(before_x10)
        return self._update()

    def on_level(self, reading_x10):
        # A reading not tied to a stroke (once a minute, and while stopped).
        # Returns the condition, as on_stroke().
        if reading_x10 >= self.ceiling_x10:
            self._high += 1
            self._low = 0
            if self._high >= self.ceiling_readings:
                self.occluded = True
                self._relief = 0
        else:
            self._high = 0
            if self.occluded:
                if reading_x10 <= self.baseline_x10 + self.relief_margin_x10:
                    self._low += 1
                    if self._low >= self.relief_readings:
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


class ThresholdDetector:
    # The plain detector the benchmark compares against: OCCLUSION as soon as
    # `samples` readings in a row are at or above a fixed limit. Default limit
    # 517 mmHg (about 10 psi), ECRI's value for epidural lines (clinical.md
    # 3), not the 20 psi (1034 mmHg) general maximum: the lower limit is the
    # one an intrathecal pump would use, and it makes the plain detector as
    # fast as it can be, so the comparison does not flatter the monitor.
    def __init__(self, limit_x10=CEILING_X10, samples=1):
        if limit_x10 <= 0 or samples <= 0:
            raise ValueError("threshold detector")
        self.limit_x10 = limit_x10
        self.samples = samples
        self.alarm = 0
        self._run = 0

    def reset(self):
        self.alarm = 0
        self._run = 0

    def cleared(self):
        return self.alarm == 0

    def on_level(self, reading_x10):
        if reading_x10 >= self.limit_x10:
            self._run += 1
            if self._run >= self.samples:
                self.alarm = OCCLUSION
        else:
            self._run = 0
            self.alarm = 0
        return self.alarm

    def on_stroke(self, before_x10, peak_x10, after_x10):
        # The same three samples the monitor sees, in time order; OCCLUSION
        # if any of them completed a run.
        a = self.on_level(before_x10)
        b = self.on_level(peak_x10)
        c = self.on_level(after_x10)
        return a or b or c
