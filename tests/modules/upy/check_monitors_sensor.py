# Runs under MicroPython: pressure sensor plausibility
# (pump/monitors/sensor.py) on synthetic readings (check_monitors_plant.py):
# no fault on long noisy runs, stuck and out-of-range readings found and
# cleared. on_sample() runs under heap_lock(). Prints one JSON line.
import json
from array import array

import micropython
from check_monitors_plant import MAX_RATE_S, Line, Strokes
from pump.monitors import SENSOR_FAULT
from pump.monitors import sensor as P
from pump.monitors.sensor import SensorCheck

N = 2_000
readings = array("i", [0] * N)
results = array("i", [0] * N)
longest = array("i", [0])


def _feed(check, n):
    i = 0
    last = -100_000
    run = 0
    while i < n:
        v = readings[i]
        results[i] = check.on_sample(v)
        run = run + 1 if v == last else 1
        if run > longest[0]:
            longest[0] = run
        last = v
        i += 1


def feed(check, n):
    allocated = True
    micropython.heap_lock()
    try:
        _feed(check, n)
        allocated = False
    except MemoryError:
        pass
    micropython.heap_unlock()
    assert not allocated, "on_sample allocated"


def faults(n):
    k = 0
    for i in range(n):
        if results[i]:
            k += 1
    return k


for bad in ({"low_x10": 100, "high_x10": 100}, {"stuck_samples": 1}, {"clear_samples": 0}):
    try:
        SensorCheck(**bad)
        raise AssertionError(bad)
    except ValueError:
        pass

# --- long noisy runs: never a fault -------------------------------------------------------
# (a) the pump stopped: level readings only, the steadiest signal there is
# (no strokes), 100,000 readings 5 s apart with drift, posture and coughs
samples = 0
c = SensorCheck()
ln = Line(301)
for _ in range(50):
    for i in range(N):
        readings[i] = ln.reading()
        ln.advance(5.0)
    feed(c, N)
    assert faults(N) == 0
    samples += N
# (b) the same with no coughs, no posture changes and no drift
c = SensorCheck()
ln = Line(302, coughs_per_h=0.0, postures_per_h=0.0, drift=0.0)
for _ in range(50):
    for i in range(N):
        readings[i] = ln.reading()
        ln.advance(5.0)
    feed(c, N)
    assert faults(N) == 0
    samples += N
# (c) stroke samples in time order at the maximum rate
c = SensorCheck()
ln = Line(303)
s = Strokes(N // 3)
for _ in range(30):
    s.fill(ln, MAX_RATE_S, N // 3)
    for i in range(N // 3):
        readings[3 * i] = s.before[i]
        readings[3 * i + 1] = s.peak[i]
        readings[3 * i + 2] = s.after[i]
    n = 3 * (N // 3)
    feed(c, n)
    assert faults(n) == 0
    samples += n
noise_longest_run = longest[0]
assert noise_longest_run < P.STUCK_SAMPLES

# --- stuck: found after STUCK_SAMPLES equal readings, cleared by 3 changes --------------
c = SensorCheck()
ln = Line(304)
for i in range(100):
    readings[i] = ln.reading()
    ln.advance(5.0)
for i in range(100, 130):
    readings[i] = 123  # the sensor freezes
for i in range(130, 140):
    readings[i] = ln.reading() + i  # alive again (distinct values)
feed(c, 140)
assert results[99] == 0
first = 100
while results[first] == 0:
    first += 1
# the run starts at 100 (or at 99 if the last live reading was 123 too)
assert first == 100 + P.STUCK_SAMPLES - 1 or first == 100 + P.STUCK_SAMPLES - 2
assert results[129] == SENSOR_FAULT
assert results[130] == SENSOR_FAULT and results[131] == SENSOR_FAULT
assert results[132] == 0 and c.cleared()

# --- out of range: at once, cleared by 3 plausible readings --------------------------------
c = SensorCheck()
assert c.on_sample(74) == 0
assert c.on_sample(P.LOW_X10) == 0 and c.on_sample(P.HIGH_X10) == 0
assert c.on_sample(P.LOW_X10 - 1) == SENSOR_FAULT and c.out_of_range
assert c.on_sample(70) == SENSOR_FAULT
assert c.on_sample(20_000) == SENSOR_FAULT  # the count starts again
assert c.on_sample(71) == SENSOR_FAULT
assert c.on_sample(72) == SENSOR_FAULT
assert c.on_sample(73) == 0 and c.cleared()
# a rail is both out of range and stuck; repeated plausible values do not clear
c = SensorCheck()
for _ in range(20):
    assert c.on_sample(32_767) == SENSOR_FAULT
assert c.on_sample(74) == SENSOR_FAULT
assert c.on_sample(74) == SENSOR_FAULT  # unchanged: not evidence of life
assert c.on_sample(75) == SENSOR_FAULT
assert c.on_sample(76) == SENSOR_FAULT
assert c.on_sample(77) == 0
c.restart()
assert c.cleared() and not c.stuck


# --- noisy: triples PAIR_MS apart whose second difference jumps, under heap_lock -----------
def _pairs(check, jumps, n):
    # n triples; triple i jumps (second difference JUMP_X10 + 1) if
    # jumps[i % len(jumps)]
    i = 0
    while i < n:
        d = P.JUMP_X10 + 1 if jumps[i % len(jumps)] else P.JUMP_X10
        d = d if i & 1 else -d
        results[i % N] = check.on_triple(100, 100, 100 + d)
        i += 1


def pairs(check, jumps, n):
    allocated = True
    micropython.heap_lock()
    try:
        _pairs(check, jumps, n)
        allocated = False
    except MemoryError:
        pass
    micropython.heap_unlock()
    assert not allocated, "on_triple allocated"


c = SensorCheck()
quiet = bytes(1)
pairs(c, quiet, 1_000)  # a healthy sensor: never jumps
assert faults(1_000) == 0 and not c.suspect()
pairs(c, bytes((1, 0, 0, 0, 0)), 1_000)  # one pair in 5 jumps: 6 in any window
assert faults(1_000) == 0 and c.suspect()
c = SensorCheck()
pairs(c, bytes((1, 0, 0)), 100)  # one in 3: 10 in a window
first = 0
while results[first] == 0:
    first += 1
assert c.noisy and c.alarm == SENSOR_FAULT and first < 30
pairs(c, quiet, P.QUIET_PAIRS - 1)
assert results[P.QUIET_PAIRS - 2] == SENSOR_FAULT
pairs(c, quiet, 1)
assert results[0] == 0 and c.cleared() and not c.suspect()
# the window's bits stay a small int on the Pico (2**30)
c = SensorCheck()
pairs(c, bytes((1,)), 10_000)
assert c._jumps < (1 << 30) and c._count == P.WINDOW

print(json.dumps({"ok": True, "samples": samples, "noise_longest_run": noise_longest_run}))
