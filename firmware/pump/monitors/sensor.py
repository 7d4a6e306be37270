# Pressure sensor plausibility: a sensor that lies blinds the occlusion and
# leak monitors (the app stops feeding them while SENSOR_FAULT holds).
#   out of range  a reading below LOW_X10 (-50 mmHg: the line is never that
#                 far below atmospheric) or above HIGH_X10 (1500 mmHg: beyond
#                 any pressure the head can make before the occlusion
#                 ceiling stops it) - a rail, a short, an open wire;
#   stuck         STUCK_SAMPLES readings in a row with the same raw value,
#                 where the sensor noise makes that improbable.
#   noisy         the second differences (a - 2 b + c) of three readings
#                 PAIR_MS apart on a settled line (around each stroke's
#                 "after" sample: on_triple()) beyond JUMP_X10 in _NOISY_COUNT
#                 of the last WINDOW strokes.
# SENSOR_FAULT (stuck, out of range) clears after _CLEAR_SAMPLES plausible
# readings in a row (in range, and each different from the one before);
# noisy clears after QUIET_PAIRS triples in a row without a jump. From
# _SUSPECT_COUNT jumps in the window the sensor is suspect (suspect()): the
# app feeds no stroke to the occlusion and leak monitors (no evidence either
# way) until it is not.
#
# How the noise figures follow. A second difference is the sensor's noise,
# N(0, 6 sigma^2): sd 1.22 mmHg at 0.5 mmHg, plus the curvature of what the
# CSF and the line do over 40 ms. A first difference would also carry their
# slope: a strong cough (150 mmHg in 0.3 s) moves 10 mmHg in 20 ms, and a
# cough burst at 24 mL/day put 8 such pairs in 30 strokes; its curvature is
# at most 150 (pi / 0.6 s)^2 x (20 ms)^2 = 1.6 mmHg (the line's decay at
# 200 ms: under 0.1). JUMP_X10 = 3 sd + 1.6 mmHg = 5.3 mmHg: a healthy
# triple jumps with probability 2 Q(4.3) = 2e-5; at 0.8 mmHg, the noisiest
# sensor the rig sweeps, 2 Q(2.7) = 7e-3 (8 of 30: 2e-11 a stroke, under
# one false fault in 1,000 pump-years at 24 mL/day); the kink where a
# cough or a strain starts or stops, only if a triple straddles it. A sensor
# whose noise is 1.5 mmHg jumps in 15 % of triples, 2 mmHg in 28 %, 5 mmHg in
# 72 %: SENSOR_FAULT within tens of strokes. Meanwhile, from _SUSPECT_COUNT =
# 2 jumps in the window (at 1.5 mmHg: 93 % of strokes; healthy at 0.5 mmHg:
# 2e-7, at 0.8: 2 %) the strokes are not judged, so the noise never lines
# up the 3-8 weak or held strokes of a false LEAK or OCCLUSION. Up to about 1
# mmHg the monitors' own margins hold (no false stop, no fault). Cleared
# after QUIET_PAIRS = 90 quiet triples: a 1.5 mmHg sensor has them in a row
# with probability 5e-7.
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
# recomputed (N = 15). tests/modules/test_monitors.py checks the figure.
#
# Integers only; on_sample() allocates nothing.

from micropython import const

from pump.monitors import SENSOR_FAULT

LOW_X10 = const(-500)  # -50 mmHg
HIGH_X10 = const(15_000)  # 1500 mmHg
NOISE_X10 = const(5)  # sensor noise sigma the stuck count is computed for (0.5 mmHg)
STUCK_SAMPLES = const(11)
_CLEAR_SAMPLES = const(3)
PAIR_MS = const(20)  # the readings of a triple, this far apart
JUMP_X10 = const(53)  # 3 x 1.22 + 1.6 mmHg
WINDOW = const(30)  # pairs (bits of a small int on the Pico)
_NOISY_COUNT = const(8)
_SUSPECT_COUNT = const(2)
QUIET_PAIRS = const(90)
_OLDER = const((1 << (WINDOW - 1)) - 1)  # all but the oldest pair


class SensorCheck:
    def __init__(
        self,
        low_x10=LOW_X10,
        high_x10=HIGH_X10,
        stuck_samples=STUCK_SAMPLES,
        clear_samples=_CLEAR_SAMPLES,
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
        self.noisy = False
        self._jumps = 0  # the last WINDOW pairs, a bit each (1: jumped)
        self._count = 0  # bits set in _jumps
        self._quiet = 0  # pairs in a row without a jump
        self._last = 0
        self._have_last = False
        self._same = 0  # readings in a row equal to _last (1 = just _last)
        self._plausible = 0  # plausible readings in a row while faulty

    def restart(self):
        self.alarm = 0
        self.stuck = False
        self.out_of_range = False
        self.noisy = False
        self._jumps = 0
        self._count = 0
        self._quiet = 0
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
        self.alarm = SENSOR_FAULT if self.stuck or self.out_of_range or self.noisy else 0
        return self.alarm

    def suspect(self):
        # Enough jumps in the window that a stroke response means little.
        return self._count >= _SUSPECT_COUNT

    def on_triple(self, a_x10, b_x10, c_x10):
        # Three readings PAIR_MS apart on a settled line (around a stroke's
        # "after" sample). Returns SENSOR_FAULT or 0.
        d = a_x10 - 2 * b_x10 + c_x10
        jump = 1 if d > JUMP_X10 or d < -JUMP_X10 else 0
        jumps = self._jumps
        self._count += jump - (jumps >> (WINDOW - 1))
        # masked before the shift: never past 2**30 - 1 (a small int on the Pico)
        self._jumps = ((jumps & _OLDER) << 1) | jump
        self._quiet = 0 if jump else self._quiet + 1
        if self._count >= _NOISY_COUNT:
            self.noisy = True
        elif self._quiet >= QUIET_PAIRS:
            self.noisy = False
        self.alarm = SENSOR_FAULT if self.stuck or self.out_of_range or self.noisy else 0
        return self.alarm
