# Leak or disconnection: drug leaving the line before the catheter tip (a
# torn catheter, a loose connector), into the pocket instead of the
# intrathecal space. Found from a weak or missing stroke response.
#
# Physics (plant figures): a leak is a path to the pocket (about atmospheric)
# in parallel with the catheter. Losing a fraction f of the flow lowers the
# effective resistance to R (1 - f), so the stroke rise (peak - before) drops
# to about (1 - f) of the learned nominal (pump/monitors/response.py), and
# the line's resting pressure to (1 - f) of the CSF pressure. A disconnection
# (f = 100 %) leaves no rise and a resting pressure near 0 (atmospheric).
#
# Decisions:
#   LEAK  LEAK_STROKES consecutive strokes whose rise is below LEAK_PCT % of
#         the learned nominal (or below the learner's MIN_RISE_X10 floor, which
#         alone applies until the nominal is learned); cleared by
#         RECOVER_STROKES strokes in a row with a normal rise.
#   LEAK  (disconnection, no strokes needed) DISCONNECT_READINGS level
#         readings in a row at or below DISCONNECT_X10, unless the last
#         stroke responded normally (a line that answers a stroke is
#         connected: a low level then is a sensor offset or a low CSF
#         pressure, not a disconnection); cleared by as many readings above
#         it, or by a normal stroke.
# A stroke rise is a difference over 20 ms: posture and drift between strokes
# cancel out, and a cough would have to end inside those 20 ms to weaken one.
# Three equal samples (before = peak = after) are what a frozen sensor
# reports; such a stroke is no evidence either way (with 0.5 mmHg noise a
# real flat line shows it once in 300 strokes), so a stuck sensor raises
# SENSOR_FAULT (11 equal readings) rather than LEAK.
#
# Integers only; on_stroke(), on_level() and responded() allocate nothing.

from pump.monitors import LEAK
from pump.monitors.response import MIN_RISE_X10, RiseLearner

# Weak: below 50 % of the nominal rise. The smallest physical nominal rise is
# about 9 mmHg, whose noise (two samples of 0.5 mmHg) is 0.7 mmHg: 50 % of it
# is 6 sigma away. So leaks that lose more than about half the flow are found;
# smaller ones show at refill (reservoir reconciliation).
LEAK_PCT = 50
# 3 weak strokes in a row: 12-18 min from onset at 0.048 mL/day.
LEAK_STROKES = 3
# Normal strokes in a row that clear it.
RECOVER_STROKES = 3
# Disconnection from the level: 1.5 mmHg or less (the lowest CSF pressure
# lying is about 3.7 mmHg, 5 cmH2O; 4 sigma of the sensor noise below it) for
# 5 readings in a row (once a minute: 5 min).
DISCONNECT_X10 = 15
DISCONNECT_READINGS = 5


class LeakMonitor:
    def __init__(
        self,
        leak_pct=LEAK_PCT,
        leak_strokes=LEAK_STROKES,
        recover_strokes=RECOVER_STROKES,
        disconnect_x10=DISCONNECT_X10,
        disconnect_readings=DISCONNECT_READINGS,
        learner=None,
    ):
        if not (
            0 < leak_pct < 100
            and 0 < leak_strokes
            and 0 < recover_strokes
            and 0 < disconnect_readings
        ):
            raise ValueError("leak monitor")
        self.leak_pct = leak_pct
        self.leak_strokes = leak_strokes
        self.recover_strokes = recover_strokes
        self.disconnect_x10 = disconnect_x10
        self.disconnect_readings = disconnect_readings
        self.learner = learner if learner is not None else RiseLearner()
        self.alarm = 0  # LEAK or 0: the condition now
        self.weak = False  # stroke responses are weak
        self.disconnected = False  # the level is at atmospheric
        self.strokes = 0  # strokes seen since reset() / restart()
        self._answered = False  # the last stroke responded normally
        # restarted after a leak and no stroke has answered normally since
        self._doubt = False
        self._weak = 0  # consecutive weak strokes
        self._good = 0  # consecutive normal strokes while weak
        self._low = 0  # consecutive readings at or below disconnect_x10
        self._high = 0  # consecutive readings above it while disconnected

    def reset(self):
        # A new line (implant, priming, catheter revision): relearn the rise.
        self.learner.reset()
        self.restart()

    def restart(self):
        # Forget the conditions and counts, keep the learned rise.
        self.alarm = 0
        self.weak = False
        self.disconnected = False
        self.strokes = 0
        self._answered = False
        self._doubt = True  # until a stroke answers normally again
        self._weak = 0
        self._good = 0
        self._low = 0
        self._high = 0

    def cleared(self):
        return self.alarm == 0

    def _update(self):
        self.alarm = LEAK if self.weak or self.disconnected else 0
        return self.alarm

    # --- hot path ------------------------------------------------------------
    def responded(self, before_x10, peak_x10):
        # Whether a stroke's rise is a normal response (not weak). Changes
        # nothing: StrokeCheck uses it to tell a blind encoder from a stall.
        rise = peak_x10 - before_x10
        if rise < MIN_RISE_X10:
            return False
        if self.learner.learned():
            return rise * 100 >= self.learner.nominal_x10 * self.leak_pct
        return True

    def witnesses(self):
        # Whether a missing stroke response is evidence that a stroke did not
        # move (StrokeCheck: a stall, not a blind encoder). Not while strokes
        # answer weakly (a leak in the making) or LEAK is active, nor after a
        # restart() (LEAK cleared by a clinician, the leak perhaps still
        # there) until a stroke has answered normally: a leak hides strokes
        # that moved.
        return self.alarm == 0 and self._weak == 0 and not self._doubt

    def on_stroke(self, before_x10, peak_x10, after_x10):
        # One delivered stroke (the encoder moved the full stroke). Returns
        # the condition: LEAK or 0.
        if before_x10 == peak_x10 and peak_x10 == after_x10:
            return self.alarm  # a frozen sensor (SensorCheck finds it): no evidence
        self.strokes += 1
        if self.responded(before_x10, peak_x10):
            self._answered = True
            self._doubt = False
            self.disconnected = False
            self._low = 0
            self._weak = 0
            if self.weak:
                self._good += 1
                if self._good >= self.recover_strokes:
                    self.weak = False
                    self._good = 0
            else:
                self.learner.offer(peak_x10 - before_x10, after_x10 - before_x10)
        else:
            self._answered = False
            self._good = 0
            self._weak += 1
            if self._weak >= self.leak_strokes:
                self.weak = True
        return self._update()

    def on_level(self, reading_x10):
        # A reading not tied to a stroke (once a minute, and while stopped).
        if reading_x10 <= self.disconnect_x10 and not self._answered:
            self._high = 0
            self._low += 1
            if self._low >= self.disconnect_readings:
                self.disconnected = True
        else:
            self._low = 0
            if self.disconnected:
                self._high += 1
                if self._high >= self.disconnect_readings:
                    self.disconnected = False
                    self._high = 0
        return self._update()
