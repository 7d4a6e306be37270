# Runs under MicroPython: the leak/disconnection monitor
# (pump/monitors/leak.py) and the rise learner (pump/monitors/response.py)
# on synthetic strokes (check_monitors_plant.py) across compliance 2.5-10
# nL/mmHg, catheter 40-90 cm and every rate, with noise, coughs and posture.
# on_stroke() runs under heap_lock() (feed), on_level() and responded() too.
# Prints one JSON line of figures.
import json
from array import array

import micropython
from check_monitors_plant import (
    BOLUS_S,
    HALF_ML_S,
    MAX_RATE_S,
    MIN_RATE_S,
    Line,
    Strokes,
    run,
)
from pump.monitors import LEAK
from pump.monitors import leak as K
from pump.monitors import response as R
from pump.monitors.leak import LeakMonitor
from pump.monitors.response import RiseLearner

RATES = (MIN_RATE_S, HALF_ML_S, MAX_RATE_S, BOLUS_S)
CORNERS = ((2.5, 40), (2.5, 90), (5.0, 60), (10.0, 40), (10.0, 90))
WARMUP = 40
s = Strokes(64)
seed = [2000]


def line(c, cm, **kw):
    seed[0] += 1
    return Line(seed[0], c=c, cm=cm, **kw)


# --- the learner -----------------------------------------------------------------------
r = RiseLearner()
assert r.nominal_x10 == R.DEFAULT_RISE_X10 and not r.learned()
r.offer(R.MIN_RISE_X10 - 1, 0)  # below MIN_RISE_X10: a leak teaches nothing
r.offer(150, 80)  # a residual of half the rise: a line that holds teaches nothing
r.offer(150, -80)  # a residual the other way (a cough on before)
assert r.count == 0
for _ in range(R.LEARN_STROKES):
    r.offer(100, 3)
assert r.learned() and r.nominal_x10 == 100
r.offer(300, 0)  # frozen
assert r.nominal_x10 == 100
r.reset()
assert not r.learned() and r.nominal_x10 == R.DEFAULT_RISE_X10
# the figures: mean and sample sd of rise and residual over the learning
# strokes; after 4, an outlier (4 sd + 1 mmHg away: a cough) is not measured
r = RiseLearner()
for i in range(8):
    r.offer(90, -2)
    r.offer(110, 2)
    if i == 3:
        r.offer(300, 0)
        assert r.count == 8
assert r.learned() and (r.nominal_x10, r.rise_sd_x10, r.res_x10, r.res_sd_x10) == (100, 10, 0, 3)
assert R.isqrt(0) == 0 and R.isqrt(99) == 9 and R.isqrt(100) == 10 and R.isqrt(10**12) == 10**6
# adapt(): the long-window mean follows quiet strokes; the nominal follows it
# up (a stiffening line), never down (a leak)
v = r.version
for _ in range(2000):
    r.adapt(60, 0)
assert r.mean_x10() == 60 and r.nominal_x10 == 100 and r.version == v
assert r.ref_x10 == r.mean_x10() or r.adapted > 256
for _ in range(2000):
    r.adapt(130, 0)
assert r.mean_x10() == 130 and r.nominal_x10 == 130
assert 130 - R.mean_sd(r, 4) <= r.ref_x10 <= 130  # it steps up by real steps
r.adapt(130, 200)  # a disturbed stroke (its residual far from the line's): ignored
assert r.mean_x10() == 130

# --- construction and responded() ----------------------------------------------------------
m = LeakMonitor()
assert (K.LEAK_PCT, K.LEAK_STROKES, K.DISCONNECT_X10) == (50, 3, 15)
assert not m.responded(74, 74 + R.MIN_RISE_X10 - 1)  # the floor applies at once
assert m.responded(74, 74 + R.MIN_RISE_X10)  # 1 mmHg: enough until learned
# until learned, no response must last MAX_STROKES strokes to be a leak
m._derive()
assert m._weak_x10 == R.MIN_RISE_X10 and m.needed == K.MAX_STROKES
for _ in range(R.LEARN_STROKES):
    m.on_stroke(74, 274, 74)  # nominal 20 mmHg
assert m.learner.nominal_x10 == 200
assert not m.responded(74, 173) and m.responded(74, 174)  # 50 %

# weak strokes: LEAK on the third in a row; a normal one breaks the run
assert m.on_stroke(74, 80, 74) == 0
assert m.on_stroke(74, 80, 74) == 0
assert m.on_stroke(74, 274, 74) == 0
assert m.on_stroke(74, 80, 74) == 0 and m.on_stroke(74, 80, 74) == 0
assert m.on_stroke(74, 80, 74) == LEAK and not m.cleared()
assert m.on_stroke(74, 274, 74) == LEAK
assert m.on_stroke(74, 274, 74) == LEAK
assert m.on_stroke(74, 274, 74) == 0 and m.cleared()
# a frozen sensor (three equal samples) is no evidence: LEAK never comes
# from it, and the run of weak strokes is not broken by it either
m.restart()
for _ in range(10):
    assert m.on_stroke(123, 123, 123) == 0
assert m.strokes == 0
assert m.on_stroke(74, 80, 74) == 0 and m.on_stroke(74, 80, 74) == 0
assert m.on_stroke(90, 90, 90) == 0
assert m.on_stroke(74, 80, 74) == LEAK
# the learned value survives restart(), not reset()
m.restart()
assert m.learner.nominal_x10 == 200
m.reset()
assert not m.learner.learned()

# level: disconnection after 5 readings in a row at atmospheric, cleared by 5
m = LeakMonitor()
for _ in range(4):
    assert m.on_level(10) == 0
assert m.on_level(74) == 0  # the run is broken
for _ in range(4):
    assert m.on_level(15) == 0
assert m.on_level(-5) == LEAK and m.disconnected
for _ in range(4):
    assert m.on_level(74) == LEAK
assert m.on_level(74) == 0
# a line that answers its strokes is connected: a low level then is a sensor
# offset (or a low CSF pressure), never LEAK; after a weak stroke it counts
m = LeakMonitor()
assert m.on_stroke(-50, 150, -50) == 0  # reads -5 mmHg, answers 20 mmHg
for _ in range(20):
    assert m.on_level(-50) == 0
assert m.on_stroke(-50, -48, -50) == 0  # no answer
for _ in range(4):
    assert m.on_level(-50) == 0
assert m.on_level(-50) == LEAK and m.disconnected
assert m.on_stroke(-50, 150, -50) == 0 and not m.disconnected  # it answers again
# while delivery is stopped nothing answers: the level alone decides
for _ in range(4):
    assert m.on_level(-50, False) == 0
assert m.on_level(-50, False) == LEAK and m.disconnected

# --- thresholds from the learned noise --------------------------------------------------
# the weak-stroke run: the fewest n with Q(z)^n <= 1e-12, z = margin / sd
assert K.strokes_needed(100, 3) == 3  # z = 33: 3 (the floor)
assert K.strokes_needed(60, 20) == 5  # z = 3: Q = 1.35e-3, 4 make 3.3e-12: 5
assert K.strokes_needed(50, 20) == 6  # z = 2.5: Q = 6e-3
assert K.strokes_needed(40, 20) == 8  # z = 2: Q = 2.3e-2
assert K.strokes_needed(35, 20) == 0  # z = 1.75: limited
m = LeakMonitor()
for i in range(16):
    m.on_stroke(74, 74 + 30 + (i & 1) * 16 - 8, 74)  # a 50 nL/mmHg line: 3 +- 0.8 mmHg
assert m.learner.learned() and m.limited() and not m.witnesses()
# a weak stroke run never raises LEAK on a line too compliant to tell
for _ in range(20):
    assert m.on_stroke(74, 80, 74) == 0

# --- no allocation in on_level() and responded() ------------------------------------------
out = array("i", [0, 0])


def hot_level(mon):
    k = 0
    hits = 0
    while k < 200:
        if mon.on_level(74 if k & 1 else 10):
            hits += 1
        if mon.responded(74, 200 + k):
            hits += 1
        k += 1
    out[0] = hits


m = LeakMonitor()
allocated = True  # bound before the lock: a new global would allocate
micropython.heap_lock()
try:
    hot_level(m)
    allocated = False
except MemoryError:
    allocated = True
micropython.heap_unlock()
assert not allocated, "on_level / responded allocated"
assert out[0] == 200

# --- long nominal runs: no leak -----------------------------------------------------------
nominal_strokes = 0
for rate in RATES:
    for c, cm in ((5.0, 60), (2.5, 40), (10.0, 90)):
        m = LeakMonitor()
        assert run(line(c, cm), m, s, rate, 10_000) == -1, (rate, c, cm)
        nominal_strokes += 10_000
m = LeakMonitor()
assert run(line(5.0, 60, coughs_per_h=60.0), m, s, BOLUS_S, 10_000) == -1
nominal_strokes += 10_000
# the level once a minute for a week at the lowest lying CSF pressure (3.7
# mmHg), coughs and posture included: never taken for a disconnection
m = LeakMonitor()
ln = line(5.0, 60, baseline=3.7)
level_minutes = 0
while level_minutes < 7 * 1440:
    assert m.on_level(ln.reading()) == 0
    ln.advance(60.0)
    level_minutes += 1


# --- leaks: strokes from onset to LEAK ------------------------------------------------------
def onset(c, cm, rate, f, monitor):
    ln = line(c, cm)
    assert run(ln, monitor, s, rate, WARMUP) == -1
    ln.leak_fraction(f)
    return ln


leak_worst = 0
leak_cases = 0
for f in (1.0, 0.9, 0.8):
    for rate in RATES:
        for c, cm in CORNERS:
            m = LeakMonitor()
            ln = onset(c, cm, rate, f, m)
            n = run(ln, m, s, rate, 12, LEAK, stop=True)
            assert K.LEAK_STROKES <= n <= K.LEAK_STROKES + 2, (f, rate, c, cm, n)
            leak_worst = max(leak_worst, n)
            leak_cases += 1
            # repaired: cleared after RECOVER_STROKES normal strokes
            ln.clear()
            ln.advance(1.0)
            n = run(ln, m, s, rate, 12, 0, stop=False)
            assert m.alarm == 0, (f, rate, c, cm)
# smaller leaks: found when the rise falls below half the nominal, which
# depends on R C (the leak also shortens the line's time constant)
found_60 = 0
found_30 = 0
for f, counter in ((0.6, 0), (0.3, 1)):
    for c, cm in CORNERS:
        m = LeakMonitor()
        ln = onset(c, cm, MIN_RATE_S, f, m)
        if run(ln, m, s, MIN_RATE_S, 20, LEAK, stop=True) > 0:
            if counter:
                found_30 += 1
            else:
                found_60 += 1

# disconnection with delivery stopped: found from the level alone
disconnect_worst = 0
for c, cm in CORNERS:
    m = LeakMonitor()
    ln = line(c, cm)
    ln.leak_fraction(1.0)
    ln.advance(5.0)
    n = 0
    while m.on_level(ln.reading()) != LEAK:
        ln.advance(60.0)
        n += 1
        assert n < 20
    disconnect_worst = max(disconnect_worst, n + 1)
assert disconnect_worst == K.DISCONNECT_READINGS

print(
    json.dumps(
        {
            "ok": True,
            "nominal_strokes": nominal_strokes,
            "level_minutes": level_minutes,
            "leak_cases": leak_cases,
            "leak_strokes_worst": leak_worst,
            "leak_60_found": [found_60, len(CORNERS)],
            "leak_30_found": [found_30, len(CORNERS)],
            "disconnect_readings": disconnect_worst,
        }
    )
)
