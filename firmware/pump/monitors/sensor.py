# Pressure sensor plausibility: a sensor that lies blinds the occlusion and
# leak monitors (the app stops feeding them while SENSOR_FAULT holds).
#   out of range  a reading below LOW_X10 (-50 mmHg: the line is never that
#                 far below atmospheric) or above HIGH_X10 (1500 mmHg: beyond
#                 any pressure the head can make before the occlusion
#                 ceiling stops it) - a rail, a short, an open wire;
#   stuck         STUCK_SAMPLES readings in a row with the same raw value,
#                 where the sensor noise makes that improbable.
# SENSOR_FAULT clears after CLEAR_SAMPLES plausible readings in a row (in
# range, and each different from the one before).
#
# How STUCK_SAMPLES follows from the noise. With Gaussian noise of sigma
# counts (0.5 mmHg = 5 counts of 0.1 mmHg) on a steady pressure, two
# successive readings are equal when their difference, N(0, 2 sigma^2),
# rounds to 0: p = P(|d| < 0.5) ~ 1 / (2 sigma sqrt(pi)) = 0.056 for sigma =
# 5. A run of N equal readings needs N - 1 such pairs: p^(N-1). The app
# reads at most about 12 samples a second (3 per stroke during a bolus,
# every 250 ms), about 4e8 a year if it never stopped; for less than one
# false fault in 1000 pump-years, p^(N-1) < 2.5e-12, so N - 1 >= 9.4: N = 11
# (p^10 = 3e-13). Stroke peaks differ from the samples around them, so real
# runs are rarer still. The count is in the sensor's own units: with a
# quieter or coarser sensor (sigma of 2 counts: p = 0.14) it must be
# recomputed (N = 15). tests/firmware/test_monitors.py checks the figure.
#
# Integers only; on_sample() allocates nothing.

from pump.monitors import SENSOR_FAULT

LOW_X10 = -500  # -50 mmHg
HIGH_X10 = 15_000  # 1500 mmHg
NOISE_X10 = 5  # sensor noise sigma the stuck count is computed for (0.5 mmHg)
STUCK_SAMPLES = 11
CLEAR_SAMPLES = 3


class SensorCheck:
    def __init__(
        self,
        low_x10=LOW_X10,
        high_x10=HIGH_X10,
        stuck_samples=STUCK_SAMPLES,
        clear_samples=CLEAR_SAMPLES,
    ):
        if not (low_x10 < high_x10 and 1 < stuck_samples and 0 < clear_samples):
            raise ValueError("sensor check")
        self.low_x10 = low_x10
        self.high_x10 = high_x10
        self.stuck_samples = stuck_samples
        self.clear_samples = clear_samples
        self.alarm = 0  # SENSOR_FAULT or 0: the condition now
        self.stuck = False
        self.out_of_range = False
        self._last = 0
        self._have_last = False
        self._same = 0  # readings in a row equal to _last (1 = just _last)
        self._plausible = 0  # plausible readings in a row while faulty

    def restart(self):
        self.alarm = 0
        self.stuck = False
        self.out_of_range = False
        self._have_last = False
        self._same = 0
        self._plausible = 0

    def cleared(self):
        return self.alarm == 0

    # --- hot path ------------------------------------------------------------
    def on_sample(self, reading_x10):
        # Every raw reading, in time order. Returns SENSOR_FAULT or 0.
        if self._have_last and reading_x10 == self._last:
            self._same += 1
        else:
            self._same = 1
        changed = self._same == 1
        self._last = reading_x10
        self._have_last = True
        in_range = self.low_x10 <= reading_x10 <= self.high_x10
        if not in_range:
            self.out_of_range = True
        if self._same >= self.stuck_samples:
            self.stuck = True
        if in_range and changed:
            if self.stuck or self.out_of_range:
                self._plausible += 1
                if self._plausible >= self.clear_samples:
                    self.stuck = False
                    self.out_of_range = False
                    self._plausible = 0
        else:
            self._plausible = 0
        self.alarm = SENSOR_FAULT if self.stuck or self.out_of_range else 0
        return self.alarm
