# Runs under MicroPython: the plant (rig/plant.py, rig/noise.py) and the
# virtual board's sensors, annunciator, watchdog and trace (hal/sim.py).
# argv[1]: an empty scratch directory. Prints one JSON line with figures;
# raises on the first failure.
import json
import math
import sys
import time

import schema
from hal import sim
from pump.journal import SLOT_FILES, Journal
from rig import noise
from rig import plant as P
from rig.noise import Csf
from rig.plant import Plant
from rig.virtual import VirtualRig

ROOT = sys.argv[1]
STROKE = 8  # steps
V = 200  # nL per stroke at 25 nL/step
Q = V / 20  # nL/ms during a 20 ms stroke
figures = {}


def close(a, b, rel, what):
    assert abs(a - b) <= rel * abs(b), "%s: %r vs %r" % (what, a, b)


def quiet(plant):
    # CSF without its disturbances: a flat 7.4 mmHg.
    csf = plant.csf
    csf.drift_x1000 = 0
    csf.upright_x1000 = 0
    csf.coughs_per_hour = 0
    csf.cardiac_x1000 = 0
    csf.resp_x1000 = 0
    return plant


def new_plant(seed=1, compliance_x10=50, noise_x10=0, still=True):
    p = Plant(seed)
    p.configure(0, 156_000, 0, 20_000_000, 0, compliance_x10, 100, noise_x10, 74)
    return quiet(p) if still else p


# --- the fault ids are the schema's ------------------------------------------------------
names = {}
for code, name in schema.FAULTS:
    names[name] = code
for name in names:
    if name != "TIMER_FAST":  # the virtual board's timer, not the plant's
        assert getattr(P, "FAULT_" + name) == names[name], name
assert max(names.values()) + 1 == P.FAULT_COUNT

# --- Poiseuille resistance of the catheter, computed here independently --------------
r_60 = 8 * 0.7e-3 * 0.60 / (math.pi * (0.265e-3) ** 4) / 133.322 * 1e-12  # mmHg s/nL
close(new_plant().resistance(), r_60, 1e-9, "R 60 cm")
close(r_60, 1.63e-3, 0.01, "R is about 1.6e-3 mmHg s/nL")
figures["r_60cm_mmhg_s_per_nl"] = r_60

# --- a stroke at 0.5x, 1x and 2x the nominal compliance ------------------------------
R = r_60 * 1000  # mmHg ms/nL
response = {}
for c_x10 in (25, 50, 100):
    p = new_plant(compliance_x10=c_x10)
    c = c_x10 / 10
    tau = R * c
    close(p.tau_ms(), tau, 1e-9, "tau")
    base = p.pressure_mmhg(999)
    close(base, 7.4, 1e-9, "baseline is CSF pressure")
    assert p.move(STROKE, 1000) == STROKE
    # rising during the stroke: E = QR (1 - exp(-t/tau))
    for dt in (5, 10, 20):
        close(p.excess_mmhg(1000 + dt), Q * R * (1 - math.exp(-dt / tau)), 1e-6, "rise")
    peak = Q * R * (1 - math.exp(-20 / tau))
    close(p.pressure_mmhg(1020), 7.4 + peak, 1e-6, "pressure at the stroke's end")
    # decaying after it: E = peak exp(-t/tau) (device time only moves forward)
    for dt in (5, 10, 30):
        close(p.excess_mmhg(1020 + dt), peak * math.exp(-dt / tau), 1e-6, "decay")
    # everything that went in has come out a second later
    p.update(2000)
    assert p.tip_nl == V and p.pumped_nl == V and p.pocket_nl == 0, (p.tip_nl, p.pumped_nl)
    assert abs(p.excess_mmhg(2000)) < 1e-6
    response[c_x10] = peak
    figures["stroke_peak_mmhg_c%d" % c_x10] = round(peak, 2)
    figures["tau_ms_c%d" % c_x10] = round(tau, 2)
assert response[25] > response[50] > response[100]  # a stiffer line peaks higher

# the tip volume while the stroke goes out: conservation (in - stored)
p = new_plant()
p.move(STROKE, 0)
for t in (3, 10, 20, 25, 40):
    stored = p.stored_nl(t)
    inflow = Q * min(t, 20)
    assert abs(p.tip_nl - (inflow - stored)) <= 1.0, (t, p.tip_nl, inflow, stored)

# --- full occlusion: each stroke adds V/C; relief releases C x E ----------------------
for c_x10 in (25, 50, 100):
    c = c_x10 / 10
    p = new_plant(compliance_x10=c_x10, still=False)  # CSF moves: the line no longer sees it
    p.move(STROKE, 0)
    p.update(500)
    tip0 = p.tip_nl
    p.inject(P.FAULT_OCCLUSION, 0, 1000, 0)
    level = p.pressure_mmhg(1000)
    for k in range(5):
        at = 2000 + 1000 * k
        before = p.pressure_mmhg(at)
        p.move(STROKE, at)
        after = p.pressure_mmhg(at + 500)
        close(after - before, V / c, 1e-9, "rise per occluded stroke")
        close(p.pressure_mmhg(at + 900), after, 1e-12, "occluded line is flat")
    close(p.pressure_mmhg(7000) - level, 5 * V / c, 1e-9, "five strokes")
    assert p.tip_nl == tip0, "nothing reaches the patient"
    assert p.pocket_nl == 0
    p.clear_fault(P.FAULT_OCCLUSION, 7000)
    assert abs(p.released_nl - 5 * V) <= 1, p.released_nl
    assert p.released_at_ms == 7000
    p.update(8000)
    assert p.tip_nl == p.pumped_nl == 6 * V, (p.tip_nl, p.pumped_nl)
figures["occluded_rise_mmhg_per_stroke_c50"] = V / 5.0

# partial occlusion (R x 100): the same stroke decays 100x slower
p = new_plant()
p.inject(P.FAULT_OCCLUSION, 100, 0, 0)
tau = R * 5 * 100
close(p.tau_ms(), tau, 1e-9, "partial occlusion tau")
p.move(STROKE, 0)
end = p.excess_mmhg(20)
close(p.excess_mmhg(20 + round(tau)), end * math.exp(-round(tau) / tau), 1e-6, "slow decay")
# easing a full occlusion to a partial one is a relief too
p = new_plant()
p.inject(P.FAULT_OCCLUSION, 0, 0, 0)
p.move(STROKE, 0)
p.inject(P.FAULT_OCCLUSION, 10, 100, 0)
p.update(100)
assert abs(p.released_nl - V) <= 1 and p.released_at_ms == 100

# --- leak and disconnection -----------------------------------------------------------------
p = new_plant()
p.inject(P.FAULT_LEAK, 50, 0, 0)
close(p.pressure_mmhg(0), 7.4 / 2, 1e-9, "leak baseline")
close(p.tau_ms(), R * 5 / 2, 1e-9, "leak tau")
p.move(STROKE, 0)
leak_peak = p.excess_mmhg(20)
close(leak_peak, Q * R / 2 * (1 - math.exp(-20 / (R * 5 / 2))), 1e-6, "leak peak")
assert leak_peak < response[50]
p.update(1000)
assert p.tip_nl + p.pocket_nl == V and abs(p.tip_nl - V // 2) <= 1, (p.tip_nl, p.pocket_nl)
p = new_plant()
p.inject(P.FAULT_LEAK, 100, 0, 0)  # disconnected: atmospheric, ~no resistance
assert abs(p.pressure_mmhg(0)) < 1e-9
p.move(STROKE, 0)
disc_peak = p.excess_mmhg(20)
assert disc_peak < 0.2, disc_peak
p.update(1000)
assert p.tip_nl == 0 and p.pocket_nl == V
p.clear_fault(P.FAULT_LEAK, 1000)
close(p.pressure_mmhg(1000), 7.4, 1e-9, "reconnected")
figures["leak50_peak_mmhg"] = round(leak_peak, 2)
figures["disconnected_peak_mmhg"] = round(disc_peak, 3)

# several faults at once: a leak before a full occlusion sends all to the pocket
p = new_plant()
p.inject(P.FAULT_LEAK, 20, 0, 0)
p.inject(P.FAULT_OCCLUSION, 0, 0, 0)
p.move(STROKE, 0)
p.update(1000)
assert p.tip_nl == 0 and p.pocket_nl == V
p.clear_fault(0, 1000)  # 0: every fault
assert not p.active(P.FAULT_LEAK) and not p.active(P.FAULT_OCCLUSION)

# --- the head's faults ------------------------------------------------------------------------
p = new_plant()
p.inject(P.FAULT_STALL, 0, 0, 0)
assert p.move(STROKE, 0) == 0
assert (p.steps, p.encoder, p.pumped_nl) == (0, 0, 0)
p.clear_fault(P.FAULT_STALL, 0)
assert p.move(STROKE, 100) == STROKE and p.encoder == STROKE

p = new_plant()
p.inject(P.FAULT_LOST_STEPS, 10, 0, 0)
for k in range(1000):
    p.move(STROKE, 100 * k)
assert p.steps == 7200 and p.encoder == 7200, p.steps  # 10 % of 8000 lost
assert p.pumped_nl == 7200 * 25

p = new_plant()
p.inject(P.FAULT_RUNAWAY, 9, 0, 0)
assert p.move(STROKE, 0) == 80 and p.pumped_nl == 2000
# the runaway's 80 steps take 200 ms at 400 steps/s: the line sees a long inflow
assert p.excess_mmhg(150) > 14

p = new_plant()
p.inject(P.FAULT_ENCODER_FAILURE, 0, 0, 0)
p.move(STROKE, 0)
assert p.encoder == 0 and p.steps == STROKE and p.pumped_nl == V

p = new_plant()
p.inject(P.FAULT_RESERVOIR_EMPTY, 0, 0, 0)
assert p.reservoir_nl == 0 and p.reservoir_lost_nl == 20_000_000
assert p.move(STROKE, 0) == STROKE and p.encoder == STROKE  # the motor turns
assert p.pumped_nl == 0 and p.excess_mmhg(20) == 0  # nothing moves
p.reservoir_nl = 1_000_000  # FILL while the fault lasts: still nothing moves
p.move(STROKE, 100)
assert p.pumped_nl == 0
p.clear_fault(P.FAULT_RESERVOIR_EMPTY, 200)
p.move(STROKE, 200)
assert p.pumped_nl == V

# --- sensor faults, battery, CSF pressure, onsets ------------------------------------------
a = new_plant(noise_x10=5, still=False)
b = new_plant(noise_x10=5, still=False)
a.inject(P.FAULT_SENSOR_OFFSET, 123, 5000, 0)
assert a.next_onset_ms() == 5000
for t in (0, 4999, 5000, 9000):
    offset = a.sensor_x10(t) - b.sensor_x10(t)
    assert offset == (123 if t >= 5000 else 0), (t, offset)
assert a.next_onset_ms() == -1

a = new_plant(noise_x10=5, still=False)
b = new_plant(noise_x10=5, still=False)
a.inject(P.FAULT_SENSOR_STUCK, 0, 5010, 0)
for plant in (a, b):
    plant.move(STROKE, 5000)  # the stroke is rising at the onset
stuck = b.sensor_x10(5010)
assert a.sensor_x10(9000) == stuck  # first asked long after: frozen at the onset
for t in (9015, 9020, 16_000, 100_000):
    assert a.sensor_x10(t) == stuck
    assert a.pressure_x10(t) == b.pressure_x10(t)  # only the reading froze
a.clear_fault(P.FAULT_SENSOR_STUCK, 100_000)
assert a.sensor_x10(100_001) == b.sensor_x10(100_001)

p = new_plant()
assert p.battery_mv(0) == 3000
assert p.battery_mv(365 * 86_400_000) == 3000 - 54  # the slow drain: 150 uV/day
p.inject(P.FAULT_BATTERY, 2450, 1000, 0)
assert p.battery_mv(999) == 3000 and p.battery_mv(1000) == 2450
p.clear_fault(P.FAULT_BATTERY, 2000)
assert p.battery_mv(2000) == 3000

p = new_plant()
p.inject(P.FAULT_CSF_PRESSURE, 300, 0, 0)
assert p.pressure_x10(0) == 300 and p.sensor_x10(0) == 300
p.clear_fault(P.FAULT_CSF_PRESSURE, 10)
assert p.pressure_x10(10) == 74

# TIP_MIGRATION: the line's reference is the tissue's pressure, flat: the
# CSF's level, pulsations, posture and coughs are gone; a stroke still drains
# through the catheter to it; clearing it brings the CSF back
p = new_plant(still=False)
seen = set(p.pressure_x10(t) for t in range(0, 4000, 50))
assert len(seen) > 5  # the CSF pulsates
p.inject(P.FAULT_TIP_MIGRATION, 50, 4000, 0)
assert set(p.pressure_x10(t) for t in range(4000, 60_000, 50)) == {50}
p.move(8, 60_000)
assert p.pressure_x10(60_020) > 150  # the stroke rises over the tissue
assert p.pressure_x10(60_300) == 50  # and drains to it (tau 8 ms)
p.clear_fault(P.FAULT_TIP_MIGRATION, 61_000)
assert len(set(p.pressure_x10(t) for t in range(61_000, 65_000, 50))) > 5
assert not P.param_ok(P.FAULT_TIP_MIGRATION, 301) and P.param_ok(P.FAULT_TIP_MIGRATION, 0)
assert not P.fault_known(13) and P.fault_known(P.FAULT_TIP_MIGRATION)

# SENSOR_NOISE: the reading's noise is param (0.1 mmHg sd) while it lasts
p = new_plant()  # no noise, a still CSF
assert set(p.sensor_x10(t) for t in range(0, 200)) == {74}
p.inject(P.FAULT_SENSOR_NOISE, 50, 200, 0)
noisy = [p.sensor_x10(t) for t in range(200, 4200)]
mean = sum(noisy) / len(noisy)
sd = (sum((x - mean) ** 2 for x in noisy) / len(noisy)) ** 0.5
close(sd, 50, 0.05, "SENSOR_NOISE sd")
assert p.pressure_x10(4200) == 74  # the true pressure is still
p.clear_fault(P.FAULT_SENSOR_NOISE, 4200)
assert set(p.sensor_x10(t) for t in range(4200, 4400)) == {74}

assert P.param_ok(P.FAULT_LEAK, 199) and not P.param_ok(P.FAULT_LEAK, 200)
# LEAK 101..199: a break at (param - 100) % of the length: the stump drains to
# the pocket (0 mmHg) through that share of R
p = new_plant()
tau0 = p.tau_ms()
p.inject(P.FAULT_LEAK, 150, 0, 0)
close(p.tau_ms(), tau0 * 0.5, 1e-9, "break at mid-length: tau")
assert p.pressure_x10(10) == 0
tip0 = p.tip_nl
p.move(8, 100)
p.update(2_000)
assert p.tip_nl == tip0 and p.pocket_nl >= 199  # all of it to the pocket
assert not P.param_ok(P.FAULT_RUNAWAY, -1) and P.param_ok(P.FAULT_STALL, -5)
assert P.check_plant(0, 156_000, 50, 100, 5, 74) == -1
assert P.check_plant(300_000, 156_000, 50, 100, 5, 74) == 0
assert P.check_plant(0, 0, 50, 100, 5, 74) == 1
assert P.check_plant(0, 156_000, 0, 100, 5, 74) == 4
assert P.check_plant(0, 156_000, 50, 0, 5, 74) == 5
assert P.check_plant(0, 156_000, 50, 100, 1001, 74) == 6
assert P.check_plant(0, 156_000, 50, 100, 5, 9999) == 7

# --- sensor noise: seeded, gaussian-ish, std as configured ----------------------------------
for std_x10 in (5, 20):
    p = new_plant(noise_x10=std_x10)
    n = 20_000
    total = 0
    square = 0
    for t in range(n):
        x = p.sensor_x10(t) - 74
        total += x
        square += x * x
    mean = total / n
    std = math.sqrt(square / n - mean * mean)
    assert abs(mean) < 0.05 * std_x10, mean
    close(std, math.sqrt(std_x10 * std_x10 + 1 / 12), 0.04, "noise std")
    figures["noise_std_x10_for_%d" % std_x10] = round(std, 3)
assert new_plant(5, noise_x10=5).sensor_x10(77) == new_plant(5, noise_x10=5).sensor_x10(77)
seeds = [new_plant(s, noise_x10=5).sensor_x10(77) for s in range(20)]
assert len(set(seeds)) > 5, seeds  # the seed matters

# --- coughs, posture, drift: seeded and reproducible ----------------------------------------
HOURS = 200
buckets = HOURS * 3_600_000 // noise.COUGH_BUCKET_MS
a, b, other = Csf(7), Csf(7), Csf(8)
coughs = 0
differ = 0
for k in range(buckets):
    cough = a.cough_in(k)
    assert cough == b.cough_in(k)
    if cough != other.cough_in(k):
        differ += 1
    start, duration, peak = cough
    if duration:
        coughs += 1
        assert 600 <= duration <= 1400 and 20_000 <= peak <= 60_000, cough
        assert start + duration <= noise.COUGH_BUCKET_MS
        at = k * noise.COUGH_BUCKET_MS + start
        assert a.cough(at) == 0
        close(a.cough(at + duration // 2), peak, 0.001, "cough peak")
        assert a.cough(at + duration // 4) < peak * 3 // 4
        assert a.cough(at + duration) == 0
per_hour = coughs / HOURS
assert 2.5 <= per_hour <= 3.5, per_hour
assert differ > buckets // 3
figures["coughs_per_hour"] = per_hour
upright_day = upright_night = days = nights = 0
for k in range(30 * 48):
    hour = (k * noise.POSTURE_BUCKET_MS % noise.DAY_MS) // noise.HOUR_MS
    night = hour >= noise.NIGHT_START_H or hour < noise.NIGHT_END_H
    if night:
        nights += 1
        upright_night += a.upright_in(k)
    else:
        days += 1
        upright_day += a.upright_in(k)
assert 0.5 < upright_day / days < 0.7 and upright_night / nights < 0.12
# the whole CSF signal stays physiological: lying 7.4 +- drift, upright +15, coughs
lo = hi = a.x1000(0)
for t in range(0, 48 * 3_600_000, 1_000):
    x = a.x1000(t)
    lo = x if x < lo else lo
    hi = x if x > hi else hi
assert 5_000 < lo and 20_000 < hi < 7_400 + 1_000 + 15_000 + 1_000 + 60_000, (lo, hi)
assert Csf(7).x1000(123_456_789) == Csf(7).x1000(123_456_789)
# the pulsations: a sine of the stated amplitude and period
c = Csf(7)
c.drift_x1000 = c.upright_x1000 = c.coughs_per_hour = c.resp_x1000 = 0
beat = [c.x1000(t) - 7_400 for t in range(0, noise.CARDIAC_PERIOD_MS)]
assert max(beat) == 500 and min(beat) == -500, (max(beat), min(beat))
assert c.x1000(1234) == c.x1000(1234 + noise.CARDIAC_PERIOD_MS)

# --- lazy evaluation: the answer does not depend on who asked when -------------------------
a = new_plant(3, noise_x10=5, still=False)
b = new_plant(3, noise_x10=5, still=False)
a.inject(P.FAULT_OCCLUSION, 50, 30_000, 0)
b.inject(P.FAULT_OCCLUSION, 50, 30_000, 0)
for k in range(100):
    t = 1000 * k
    a.move(STROKE, t)
    b.move(STROKE, t)
    for dt in range(0, 1000, 7):
        a.sensor_x10(t + dt)
a.update(100_000)
b.update(100_000)
assert a.tip_nl == b.tip_nl and a.pumped_nl == b.pumped_nl
for t in (100_000, 100_003, 150_000):
    assert a.sensor_x10(t) == b.sensor_x10(t) and a.pressure_x10(t) == b.pressure_x10(t)
a.update(200_000)
b.update(200_000)
assert a.tip_nl == b.tip_nl == a.pumped_nl, (a.tip_nl, b.tip_nl, a.pumped_nl)

# --- cost: a day of 1 mL/day (5000 strokes, 17.28 s apart), three reads a stroke -----------
p = new_plant(noise_x10=5, still=False)
started = time.ticks_us()
for k in range(5000):
    t = 17_280 * k
    p.sensor_x10(t)
    p.move(STROKE, t)
    p.sensor_x10(t + 20)
    p.sensor_x10(t + 200)
day_us = time.ticks_diff(time.ticks_us(), started)
p.update(86_400_000)
assert p.tip_nl == p.pumped_nl == 5000 * V
figures["plant_day_1ml_ms"] = day_us // 1000
figures["plant_us_per_stroke"] = day_us // 5000


# --- the virtual board: watchdog, trace in lockstep, onsets, annunciator, journal ----------
class Board(sim.SimBoard):
    def _wait_io(self, _timeout_ms):
        return 0  # no I/O ever pending: the loop only waits for time


null = [open("/dev/null", "r+b"), open("/dev/null", "r+b")]
board = Board(null[0].fileno(), null[1].fileno(), "CHECK", ROOT + "/journal", 1)
board.rig = VirtualRig(board, 1)
resets = []


def run(ms, feed_every=0):
    # The application's loop, with nothing to do: service, resets, idle.
    clock = board.clock
    clock.grant(ms)
    fed = clock.time_ms()
    while clock.granted_ms():
        board.service()
        cause = board.take_reset_request()
        if cause >= 0:
            resets.append((clock.time_ms(), cause))
        wait = 60_000
        if feed_every:  # the supervisor's own deadline
            if clock.time_ms() - fed >= feed_every:
                board.feed_watchdog()
                fed = clock.time_ms()
            wait = fed + feed_every - clock.time_ms()
        board.idle(wait)
    board.service()


run(120_000)
assert resets == [] and board.watchdog_deadline_ms() == -1  # off until the first feed
board.feed_watchdog()
run(30_000, feed_every=5_000)
assert resets == []  # fed in time
t0 = board.clock.time_ms()
board.feed_watchdog()
run(sim.WATCHDOG_MS + 20_000)
assert resets == [(t0 + sim.WATCHDOG_MS, sim.RESET_CAUSE_WATCHDOG)], resets
assert board.watchdog_deadline_ms() == -1  # off again after the reset
run(sim.WATCHDOG_MS + 20_000)
assert len(resets) == 1

# trace samples land on their period; a fault onset on its instant
rig = board.rig
t0 = board.clock.time_ms()
rig.trace.configure(7, t0)
board.plant.inject(P.FAULT_CSF_PRESSURE, 500, t0 + 1234, t0)
assert board.next_event_ms() == t0
run(100)
assert rig.trace.total == 100 // 7 + 1, rig.trace.total
for i in range(rig.trace.total):
    assert rig.trace.time_ms[i] == t0 + 7 * i
run(2000)
assert board.plant.active(P.FAULT_CSF_PRESSURE)
i = (1234 + 6) // 7  # the first sample at or after the onset
fast = board.plant.csf.fast_x1000(t0 + 7 * i)
assert rig.trace.pressure_x10[i] == (500 * 100 + fast + 50) // 100
assert rig.trace.pressure_x10[i - 1] < 300
rig.trace.configure(0, board.clock.time_ms())
assert rig.next_sample_ms() == -1

# the annunciator records with device time; a reset silences it
ring = board.annunciator
now = board.clock.time_ms()
ring.buzzer(3)
ring.led(3)
board.request_reset(1)
board.take_reset_request()
assert ring.total == 4
assert [ring.output[i] for i in range(4)] == [1, 2, 1, 2]
assert [ring.pattern[i] for i in range(4)] == [3, 3, 0, 0]
assert ring.time_ms[0] == now

# CORRUPT_JOURNAL flips a byte of the newest state slot; the journal sees it
journal = Journal(board.fs)
journal.recover()
journal.snapshot(b"older" * 20)
journal.snapshot(b"newer" * 20)
newest = None
for name in SLOT_FILES:
    if board.fs.read(name)[10:15] == b"newer":
        newest = name
before = board.fs.read(newest)
board.plant.inject(P.FAULT_CORRUPT_JOURNAL, 30, board.clock.time_ms() + 500, board.clock.time_ms())
run(499)
assert board.fs.read(newest) == before
run(1)
after = board.fs.read(newest)
assert len(after) == len(before)
assert [i for i in range(len(before)) if before[i] != after[i]] == [30]
assert after[30] == before[30] ^ 0xFF
payload, _deltas = Journal(board.fs).recover()
assert payload == b"older" * 20  # the damaged newest slot is refused

print(json.dumps(figures))
