# Seeded randomness and the CSF pressure model of the plant (docs/plant.md).
#
# Everything random in the plant is a pure function of (seed, stream, time):
# a hash, not a sequential generator. So a value at a given device time is
# the same whoever asks, in whatever order (the firmware's reads, the rig's
# TRACE samples): a trace does not change what the firmware sees, and a run
# is reproduced exactly from its seed.
#
# Integers stay below 2**62 (small ints on the 64-bit unix port: no heap);
# on a 32-bit board the same code is correct but boxes its intermediates.

import math
from array import array

from micropython import const

_MASK32 = const(0xFFFFFFFF)
_MIX = const(0x45D9F3B)  # multiplier of the 32-bit integer hash below

# Streams: one key per use, so that the values are independent.
STREAM_NOISE = const(1)
_STREAM_DRIFT = const(2)
_STREAM_POSTURE = const(3)
_STREAM_COUGH = const(4)
_STREAM_PHASE = const(5)
_STREAM_STRAIN = const(6)
_STREAM_WEATHER = const(7)

HOUR_MS = const(3_600_000)
DAY_MS = const(86_400_000)

# Pressures here are integers in 0.001 mmHg (_x1000): the CSF model and the
# sensor noise allocate nothing on the unix port (a float is a heap object
# in MicroPython). Sines come from a 256-entry table.

# --- CSF pressure at the catheter tip (gauge) ---------------------------------------
# Lying (supine or lateral), lumbar/low thoracic: 10 cmH2O = 7.4 mmHg;
# normal 5-15 cmH2O lying (DESIGN.md 9); lumbar reference interval 5.7-15.5
# mmHg supine (Norager et al., Fluids Barriers CNS 2021;18:19).
_CSF_LYING_X10 = const(74)
# Upright: the hydrostatic column above the tip raises it, and the pump (the
# sensor) sits lower than the tip. Assumed +15 mmHg (about 20 cmH2O) in all,
# reached over _POSTURE_RAMP_MS (postural waves settle within seconds to
# minutes: Magnaes, J Neurosurg 1976;44:687).
_UPRIGHT_X1000 = const(15_000)
POSTURE_BUCKET_MS = const(1_800_000)  # the posture may change every 30 min
_POSTURE_RAMP_MS = const(5_000)
_UPRIGHT_DAY_PCT = const(60)  # chance of being upright in a daytime half hour
_UPRIGHT_NIGHT_PCT = const(5)  # ... between NIGHT_START_H and NIGHT_END_H device time
NIGHT_START_H = const(23)
NIGHT_END_H = const(7)
# Slow drift (vasomotor, B waves): piecewise linear between seeded knots.
_DRIFT_X1000 = const(1_000)  # knots uniform in +-1 mmHg (assumed)
_DRIFT_KNOT_MS = const(900_000)  # a knot every 15 min
# Coughs, sneezes, straining: short spikes (DESIGN.md 9; issue 4).
_COUGHS_PER_HOUR = const(3)
COUGH_BUCKET_MS = const(600_000)  # at most one cough per 10 min bucket
_COUGH_GAP_MS = const(300)  # between the coughs of a burst
_COUGH_MIN_X1000 = const(20_000)
_COUGH_MAX_X1000 = const(60_000)
COUGH_MIN_MS = const(600)
COUGH_MAX_MS = const(1_400)
# Pulsations of CSF pressure (assumed order of magnitude, peak amplitude).
_CARDIAC_X1000 = const(500)
CARDIAC_PERIOD_MS = const(833)  # 72 beats/min
_RESP_X1000 = const(500)
_RESP_PERIOD_MS = const(4_000)  # 15 breaths/min

# --- sensor noise -------------------------------------------------------------
# Sum of four uniform bytes of one hash: mean 510, standard deviation
# sqrt(4 x (256**2 - 1) / 12) = 147.80; tails end at +-3.45 sigma.
_NOISE_MEAN = const(510)
_NOISE_SUM_STD_X100 = const(14_780)

_SINE_STEPS = const(256)
_SINE_ONE = const(32_767)
SINE = array("h", [round(_SINE_ONE * math.sin(2 * math.pi * i / _SINE_STEPS)) for i in range(256)])


def mix32(x):
    # A 32-bit integer hash with full avalanche (xor-shift-multiply, the
    # "lowbias32" family). x: any int >= 0; the result is < 2**32.
    x &= _MASK32
    x = (((x >> 16) ^ x) * _MIX) & _MASK32
    x = (((x >> 16) ^ x) * _MIX) & _MASK32
    return (x >> 16) ^ x


def stream_key(seed, stream):
    return mix32(mix32(seed & _MASK32) ^ mix32((seed >> 32) ^ (stream * 0x9E3779B9)))


def hash_at(key, k):
    # The hash of integer k >= 0 (a time in ms or a bucket number) in a stream.
    return mix32(key ^ mix32((k & _MASK32) ^ mix32(k >> 32)))


def noise_sum(key, t_ms):
    # Irwin-Hall with n = 4 on bytes: mean _NOISE_MEAN, std _NOISE_SUM_STD_X100 / 100.
    h = hash_at(key, t_ms)
    return (h & 255) + ((h >> 8) & 255) + ((h >> 16) & 255) + (h >> 24)


def noise_x1000(key, t_ms, std_x10):
    # Sensor noise at t_ms, 0.001 mmHg, standard deviation std_x10 x 0.1 mmHg.
    return (noise_sum(key, t_ms) - _NOISE_MEAN) * std_x10 * 10_000 // _NOISE_SUM_STD_X100


class Csf:
    """CSF pressure at the catheter tip as a function of device time (ms),
    in 0.001 mmHg. slow: lying level + drift + posture; fast: coughs and
    pulsations. The scales are attributes (check scripts set them; 0
    switches a component off). Caches keep the current bucket's values."""

    def __init__(self, seed):
        self.base_x10 = _CSF_LYING_X10
        self.upright_x1000 = _UPRIGHT_X1000
        self.drift_x1000 = _DRIFT_X1000
        self.coughs_per_hour = _COUGHS_PER_HOUR
        self.cardiac_x1000 = _CARDIAC_X1000
        self.resp_x1000 = _RESP_X1000
        self._drift_key = stream_key(seed, _STREAM_DRIFT)
        self._posture_key = stream_key(seed, _STREAM_POSTURE)
        self._cough_key = stream_key(seed, _STREAM_COUGH)
        phases = hash_at(stream_key(seed, _STREAM_PHASE), 0)
        self._cardiac_phase_ms = (phases & 0xFFFF) % CARDIAC_PERIOD_MS
        self._resp_phase_ms = (phases >> 16) % _RESP_PERIOD_MS
        self._drift_k = -1
        self._drift_a = 0
        self._drift_b = 0
        self._posture_b = -1
        self._posture_prev = 0
        self._posture_now = 0
        self._cough_b = -1
        self._cough_start = 0  # ms into the bucket
        self._cough_ms = 0  # 0: no cough in this bucket
        self._cough_x1000 = 0
        # daily life (off until daily_life())
        self.posture_transient_x1000 = 0
        self.cough_burst = 1  # coughs per burst, at most
        self.cough_max_x1000 = _COUGH_MAX_X1000
        self._cough_n = 1
        self.strains_per_hour = 0
        self.weather_amp_x1000 = 0
        # virtual/line.py's strain() and weather_x1000(), set by its daily_life()
        # and weather(): the code stays off the heap of a quiet patient
        self.strain_fn = None
        self.weather_fn = None
        self._strain_key = stream_key(seed, _STREAM_STRAIN)
        self._weather_key = stream_key(seed, _STREAM_WEATHER)
        self._strain_b = -1
        self._strain = (0, 0, 0, 0)  # start ms into the bucket, rise, hold, peak

    def x1000(self, t):
        return self.slow_x1000(t) + self.fast_x1000(t)

    def slow_x1000(self, t):
        return self.base_x10 * 100 + self.drift(t) + self.posture(t)

    def fast_x1000(self, t):
        value = self.cough(t)
        strain = self.strain_fn
        if strain is not None and self.strains_per_hour:
            value += strain(self, t)
        if self.cardiac_x1000:
            i = (t + self._cardiac_phase_ms) % CARDIAC_PERIOD_MS * _SINE_STEPS // CARDIAC_PERIOD_MS
            value += self.cardiac_x1000 * SINE[i] // _SINE_ONE
        if self.resp_x1000:
            i = (t + self._resp_phase_ms) % _RESP_PERIOD_MS * _SINE_STEPS // _RESP_PERIOD_MS
            value += self.resp_x1000 * SINE[i] // _SINE_ONE
        return value

    # --- drift -------------------------------------------------------------------------
    def drift(self, t):
        if not self.drift_x1000:
            return 0
        k = t // _DRIFT_KNOT_MS
        if k != self._drift_k:
            self._drift_k = k
            self._drift_a = self._knot(k)
            self._drift_b = self._knot(k + 1)
        into = t - k * _DRIFT_KNOT_MS
        return self._drift_a + (self._drift_b - self._drift_a) * into // _DRIFT_KNOT_MS

    def _knot(self, k):
        span = self.drift_x1000
        return hash_at(self._drift_key, k) % (2 * span + 1) - span

    # --- posture -----------------------------------------------------------------------
    def upright_in(self, b):
        # 1 if the patient is upright during posture bucket b, else 0.
        hour = (b * POSTURE_BUCKET_MS % DAY_MS) // HOUR_MS
        night = hour >= NIGHT_START_H or hour < NIGHT_END_H
        pct = _UPRIGHT_NIGHT_PCT if night else _UPRIGHT_DAY_PCT
        return 1 if hash_at(self._posture_key, b) % 100 < pct else 0

    def posture(self, t):
        if not self.upright_x1000:
            return 0
        b = t // POSTURE_BUCKET_MS
        if b != self._posture_b:
            self._posture_b = b
            self._posture_now = self.upright_in(b)
            # at power-on the patient is already in the first posture
            self._posture_prev = self.upright_in(b - 1) if b > 0 else self._posture_now
        into = t - b * POSTURE_BUCKET_MS
        level = self._posture_now * self.upright_x1000
        if into < _POSTURE_RAMP_MS and self._posture_now != self._posture_prev:
            before = self._posture_prev * self.upright_x1000
            over = 0
            if self.posture_transient_x1000:
                # the overshoot: 80-120 % of the transient, a half sine
                size = (
                    self.posture_transient_x1000
                    * (80 + hash_at(self._posture_key, ~b & 0xFFFFFFF) % 41)
                    // 100
                )
                over = size * SINE[into * (_SINE_STEPS // 2) // _POSTURE_RAMP_MS] // _SINE_ONE
            return before + (level - before) * into // _POSTURE_RAMP_MS + over
        return level

    # --- coughs ------------------------------------------------------------------------
    def cough_in(self, b):
        # The cough of bucket b as (start ms into the bucket, duration ms,
        # peak 0.001 mmHg), duration 0 if none. Allocates: for tests.
        self._cough_bucket(b)
        return self._cough_start, self._cough_ms, self._cough_x1000

    def _cough_bucket(self, b):
        if b == self._cough_b:
            return
        self._cough_b = b
        h = hash_at(self._cough_key, b)
        # P(cough in a bucket) = rate x bucket length (<= 1)
        chance = self.coughs_per_hour * COUGH_BUCKET_MS * 65536 // HOUR_MS
        if (h & 0xFFFF) >= chance:
            self._cough_ms = 0
            return
        g = mix32(h)
        span = COUGH_MAX_MS - COUGH_MIN_MS
        duration = COUGH_MIN_MS + (g & 0xFFFF) * (span + 1) // 65536
        self._cough_ms = duration
        self._cough_n = 1 + (h >> 16) % self.cough_burst
        room = COUGH_BUCKET_MS - self._cough_n * (duration + _COUGH_GAP_MS)
        self._cough_start = (g >> 16) * room // 65536
        peaks = self.cough_max_x1000 - _COUGH_MIN_X1000 + 1
        self._cough_x1000 = _COUGH_MIN_X1000 + mix32(g) % peaks

    def cough(self, t):
        if not self.coughs_per_hour:
            return 0
        b = t // COUGH_BUCKET_MS
        self._cough_bucket(b)
        if not self._cough_ms:
            return 0
        x = t - b * COUGH_BUCKET_MS - self._cough_start
        if x <= 0:
            return 0
        if self._cough_n > 1:  # a burst: the same cough again after a gap
            x = (
                x % (self._cough_ms + _COUGH_GAP_MS)
                if x < self._cough_n * (self._cough_ms + _COUGH_GAP_MS)
                else x
            )
        if x >= self._cough_ms:
            return 0
        # half a sine: up and down within the cough
        return self._cough_x1000 * SINE[x * (_SINE_STEPS // 2) // self._cough_ms] // _SINE_ONE
