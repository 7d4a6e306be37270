# Runs under MicroPython: the occlusion monitor (pump/monitors/occlusion.py)
# on synthetic strokes (check_monitors_plant.py) across the physical ranges:
# compliance 2.5-10 nL/mmHg (0.5x-2x), catheter 40-90 cm, rates from the
# minimum (a stroke every 6 min) to a bolus (every 250 ms), with noise,
# coughs and posture changes. Every on_stroke() runs under heap_lock().
# Prints one JSON line of figures.
import json

from check_monitors_plant import (
    BOLUS_S,
    HALF_ML_S,
    MAX_RATE_S,
    MIN_RATE_S,
    Line,
    Strokes,
    feed,
    run,
)
from pump.monitors import OCCLUSION, PARTIAL_OCCLUSION, SENSOR_FAULT
from pump.monitors import occlusion as O
from pump.monitors.occlusion import OcclusionMonitor
from pump.monitors.threshold import ThresholdDetector

RATES = (MIN_RATE_S, HALF_ML_S, MAX_RATE_S, BOLUS_S)
CORNERS = ((2.5, 40), (2.5, 60), (2.5, 90), (5.0, 40), (5.0, 60), (5.0, 90), (10.0, 40))
CORNERS += ((10.0, 60), (10.0, 90))
WARMUP = 40  # healthy strokes before a fault (the rise is learned in 16)
s = Strokes(64)
seed = [1000]


def line(c, cm, **kw):
    seed[0] += 1
    return Line(seed[0], c=c, cm=cm, **kw)


# --- construction ----------------------------------------------------------------------
m = OcclusionMonitor()
assert (O.FULL_MIN_X10, O.FULL_STROKES, O.PARTIAL_STROKES, O.CEILING_X10) == (20, 3, 8, 5170)
# until learned, the thresholds are the nominal line's: 8 mmHg held
assert O.held_x10(m.learner) == 80
assert m.alarm == 0 and m.cleared()

# --- single-stroke disturbances never raise anything ---------------------------------
m = OcclusionMonitor()
for _ in range(20):
    assert m.on_stroke(74, 234, 75) == 0
assert m.learner.learned() and m.learner.nominal_x10 == 160
# learned: 16 mmHg +- 0.3 (the sd floor), residual 0.1 +- 0.3: 8 mmHg held
assert (m.learner.rise_sd_x10, m.learner.res_x10, O.held_x10(m.learner)) == (3, 1, 80)
# a cough arriving after the peak: after far above peak, not a held stroke
assert m.on_stroke(74, 234, 600) == 0 and m._full == 0
# a posture step of +15 mmHg between the peak and the after sample looks like
# one held stroke; one healthy stroke is a miss, two end the run
assert m.on_stroke(74, 234, 224) == 0 and m._full == 1
assert m.on_stroke(224, 384, 224) == 0 and m._full == 1
assert m.on_stroke(224, 384, 224) == 0 and m._full == 0
assert m.on_stroke(224, 624, 620) == 0 and m.on_stroke(620, 1020, 1018) == 0
assert m._full == 2
assert m.on_stroke(74, 234, 74) == 0 and m.on_stroke(74, 234, 74) == 0 and m._full == 0
# strokes 250 ms apart (a bolus): three held ones are a transient until they
# span 2.5 s or store 160 mmHg (a strain rises for at most 2 s)
m.restart()
for i in range(10):
    assert m.on_stroke(74 + 100 * i, 184 + 100 * i, 174 + 100 * i, 250) == 0, i
assert m.on_stroke(1074, 1184, 1174, 250) == OCCLUSION and m._span == 2500
m.restart()
assert m.on_stroke(74, 874, 870, 250) == 0 and m.on_stroke(870, 1670, 1666, 250) == 0
assert m.on_stroke(1666, 2466, 2460, 250) == OCCLUSION  # 238 mmHg stored in 3
m.restart()
# a frozen sensor (three equal samples) is skipped: no evidence, no relief
n = m.strokes
assert m.on_stroke(500, 500, 500) == 0 and m.strokes == n
# three held strokes in a row: OCCLUSION on the third
m = OcclusionMonitor()
assert m.on_stroke(74, 474, 470) == 0
assert m.on_stroke(470, 870, 868) == 0
assert m.on_stroke(868, 1268, 1270) == OCCLUSION and not m.cleared()
# relief: RELIEF_STROKES healthy strokes clear it
assert m.on_stroke(74, 234, 74) == OCCLUSION
assert m.on_stroke(74, 234, 74) == OCCLUSION
assert m.on_stroke(74, 234, 74) == 0 and m.cleared()

# --- level: absolute ceiling, relief seen from the level -------------------------------
m = OcclusionMonitor()
assert m.on_level(5200) == 0  # one reading is not enough
assert m.on_level(5000) == 0
assert m.on_level(5170) == 0
assert m.on_level(5170) == OCCLUSION
assert m.on_level(3000) == OCCLUSION  # trapped pressure: not relieved
assert m.on_level(80) == OCCLUSION  # back near the baseline once ...
assert m.on_level(90) == 0  # ... twice: relieved
m.restart()
assert m.alarm == 0 and m.learner.nominal_x10 == 160
# a level at the ceiling while the strokes drain like the learned line: the
# sensor is wrong (an offset), SENSOR_FAULT, never OCCLUSION; it goes with
# the level, and two held strokes in a row make the ceiling an occlusion
# again (one can be a CSF transient under the stroke)
assert m.on_stroke(74, 234, 74) == 0
assert m.on_level(6074) == 0 and m.on_level(6074) == SENSOR_FAULT
assert m.on_stroke(6074, 6234, 6074) == SENSOR_FAULT  # differences still answer
assert m.on_level(90) == 0
assert m.on_stroke(74, 474, 470) == 0
assert m.on_level(6074) == 0 and m.on_level(6074) == SENSOR_FAULT
assert m.on_level(90) == 0
assert m.on_stroke(470, 870, 866) == 0
assert m.on_level(6074) == 0 and m.on_level(6074) == OCCLUSION
m.restart()

# --- the plain threshold detector -----------------------------------------------------
t = ThresholdDetector()
assert t.limit_x10 == O.CEILING_X10
assert t.on_stroke(4000, 5100, 5169) == 0
assert t.on_stroke(4000, 5170, 5100) == OCCLUSION  # any sample at the limit
assert ThresholdDetector(10340, 2).on_stroke(10340, 100, 10400) == 0

# --- long nominal runs: no alarm ----------------------------------------------------------
# 10,000 strokes at every rate, at the nominal line and at the two extreme
# corners (stiff + short, soft + long), noise, 4 coughs an hour, posture
# changes; then a cough storm (60 an hour) at the fast rates.
nominal_strokes = 0
for rate in RATES:
    for c, cm in ((5.0, 60), (2.5, 40), (10.0, 90)):
        m = OcclusionMonitor()
        assert run(line(c, cm), m, s, rate, 10_000) == -1, (rate, c, cm)
        nominal_strokes += 10_000
for rate in (MAX_RATE_S, BOLUS_S):
    m = OcclusionMonitor()
    assert run(line(5.0, 60, coughs_per_h=60.0), m, s, rate, 10_000) == -1, rate
    nominal_strokes += 10_000
# upright (CSF 20 mmHg), twice the noise
m = OcclusionMonitor()
assert run(line(5.0, 60, baseline=20.0, noise=1.0), m, s, MIN_RATE_S, 10_000) == -1
nominal_strokes += 10_000


# --- full occlusion: strokes from onset to OCCLUSION --------------------------------------
def onset(c, cm, rate, k, monitor):
    ln = line(c, cm)
    assert run(ln, monitor, s, rate, WARMUP) == -1
    ln.occlude(k)
    return ln


full_worst = 0
full_at_3 = 0
full_cases = 0
plain_best = 1_000
plain_worst = 0
for rate in RATES:
    for c, cm in CORNERS:
        m = OcclusionMonitor()
        ln = onset(c, cm, rate, 0, m)
        n = run(ln, m, s, rate, 20, OCCLUSION, stop=True)
        assert 3 <= n <= 5, (rate, c, cm, n)  # 3, or a cough broke the run
        full_worst = max(full_worst, n)
        full_at_3 += n == 3
        full_cases += 1
        # the plain detector on the same kind of line
        t = ThresholdDetector()
        ln = onset(c, cm, rate, 0, t)
        n = run(ln, t, s, rate, 200, OCCLUSION, stop=True)
        assert n > 0
        plain_best = min(plain_best, n)
        plain_worst = max(plain_worst, n)
        # relief while strokes go on: cleared after RELIEF_STROKES healthy ones
        m = OcclusionMonitor()
        ln = onset(c, cm, rate, 0, m)
        assert run(ln, m, s, rate, 8, OCCLUSION, stop=True) > 0
        ln.clear()
        ln.advance(1.0)  # the trapped volume drains (tau <= 24 ms)
        s.fill(ln, rate, 8)
        feed(m, s)
        relieved = 0
        while s.result[relieved] == OCCLUSION:
            relieved += 1
        assert O.RELIEF_STROKES - 1 <= relieved <= O.RELIEF_STROKES + 1, (rate, c, cm, relieved)

# relief seen from the level, with delivery stopped: the trapped pressure
# holds (no relief) until the line is cleared
for c, cm in CORNERS:
    m = OcclusionMonitor()
    ln = onset(c, cm, MIN_RATE_S, 0, m)
    assert run(ln, m, s, MIN_RATE_S, 8, OCCLUSION, stop=True) > 0
    for _ in range(30):  # 30 minutes stopped, still blocked
        ln.advance(60.0)
        assert m.on_level(ln.reading()) == OCCLUSION
    ln.clear()
    minutes = 0
    while m.on_level(ln.reading()) == OCCLUSION:
        ln.advance(60.0)
        minutes += 1
        assert minutes <= 3, (c, cm)

# --- partial occlusion: R x 20, 50, 200 ----------------------------------------------------
# Every case is found (PARTIAL_OCCLUSION, or OCCLUSION when the line holds
# its strokes) at the minimum, 0.5 mL/day and maximum rates. During a
# bolus (a stroke every 250 ms, about the outflow time constant) the residual
# is hidden by the previous stroke's decay: reported, not required.
partial_worst = 0
partial_as_full = 0
partial_cases = 0
bolus_missed = 0
for k in (20, 50, 200):
    for rate in RATES:
        for c, cm in CORNERS:
            m = OcclusionMonitor()
            ln = onset(c, cm, rate, k, m)
            n = run(ln, m, s, rate, 40, 0, stop=True)
            if rate == BOLUS_S:
                bolus_missed += n < 0
                continue
            # a narrowing that still drains within 200 ms shows only by its
            # larger rise, counted when the residual is also above the
            # line's (a stiffening line, air dissolving, drains faster)
            assert 0 < n <= 3 * O.PARTIAL_STROKES, (k, rate, c, cm, n)
            partial_worst = max(partial_worst, n)
            partial_as_full += m.alarm == OCCLUSION
            partial_cases += 1
            # relief: the partial alarm clears within PARTIAL_STROKES healthy
            # strokes (+ a few for the alarm's own hysteresis)
            if m.alarm == PARTIAL_OCCLUSION:
                ln.clear()
                ln.advance(10.0)
                n = run(ln, m, s, rate, 24, 0, stop=False)
                assert m.alarm == 0, (k, rate, c, cm)

# --- learning, restart, reset --------------------------------------------------------------
m = OcclusionMonitor()
ln = line(10.0, 90)
run(ln, m, s, MIN_RATE_S, 30)
learned = m.learner.nominal_x10
assert m.learner.learned() and 100 < learned < 160, learned
m.restart()
assert m.learner.nominal_x10 == learned
m.reset()
assert not m.learner.learned() and m.learner.nominal_x10 == 160

print(
    json.dumps(
        {
            "ok": True,
            "nominal_strokes": nominal_strokes,
            "full_cases": full_cases,
            "full_strokes_worst": full_worst,
            "full_at_3": full_at_3,
            "plain_strokes": [plain_best, plain_worst],
            "partial_cases": partial_cases,
            "partial_strokes_worst": partial_worst,
            "partial_as_full": partial_as_full,
            "bolus_partial_missed": bolus_missed,
        }
    )
)
