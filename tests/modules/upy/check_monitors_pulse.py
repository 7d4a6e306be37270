# Runs under MicroPython: the CSF pulsation monitor (pump/monitors/pulse.py)
# on the rig's own plant (rig/plant.py: sensor noise, the CSF's cardiac and
# breathing pulsations, daily life off), sampled as pump/safety.py samples
# it (SAMPLE_MS apart, no strokes). on_sample() and end() run under
# heap_lock(); the sums stay small ints on the Pico (31 bits). Prints one
# JSON line.
import json

import micropython
from pump.monitors import TIP_MIGRATION
from pump.monitors import pulse as P
from pump.monitors.pulse import PulseMonitor
from rig.plant import FAULT_TIP_MIGRATION, Plant

# the worst sums of a burst fit the Pico's small ints (2**30)
assert P.BURST_SAMPLES * P.CLIP_X10 * P.CLIP_X10 * 16 < 1 << 30
assert P.BURST_SAMPLES * P.CLIP_X10 * 64 < 1 << 30
assert (P.CLIP_X10 * 64) ** 2 < 1 << 30
assert P.V_MAX_X16 * (P.V_MAX_X16 + 4 * P.P_CAP_X16) < 1 << 30

state = [0]  # device time, ms


def _burst(plant, mon, line_open):
    t = state[0]
    while not mon.on_sample(plant.sensor_x10(t), True):
        t += P.SAMPLE_MS
    state[0] = t + 1000 * P.PERIOD_S
    return mon.end(line_open)


def burst(plant, mon, line_open=False):
    plant.update(state[0])  # the plant's own lazy work, before the lock
    alarm = -1
    micropython.heap_lock()
    try:
        alarm = _burst(plant, mon, line_open)
    except MemoryError:
        pass
    micropython.heap_unlock()
    assert alarm >= 0, "the burst allocated"
    return alarm


out = {"ok": False, "cases": 0, "learned_x16": [], "migrated_x16": []}
for seed, noise_x10 in ((1, 3), (2, 5), (3, 5), (4, 7)):
    plant = Plant(seed)
    plant.configure(0, 156_000, 0, 10**9, 0, 50, 100, noise_x10, 74)
    mon = PulseMonitor()
    state[0] = 1_000
    for _ in range(P.LEARN_BURSTS + 3):
        assert burst(plant, mon) == 0, ("false alert", seed)
    assert mon.learned == P.LEARN_BURSTS and not mon.limited(), (seed, mon.pulse_x16)
    out["learned_x16"].append(mon.pulse_x16)
    plant.inject(FAULT_TIP_MIGRATION, 50, state[0], state[0])
    alarms = [burst(plant, mon) for _ in range(P.RUN_BURSTS)]
    assert alarms[-1] == TIP_MIGRATION and alarms[0] == 0, (seed, alarms)
    out["migrated_x16"].append(mon.last_x16)
    mon.restart()  # a clinician's clear: learned figures kept
    assert mon.alarm == 0 and mon.learned == P.LEARN_BURSTS
    # a known leak before the tip (pump/safety.py: _line_open) explains a
    # burst without pulsation: absent, for the disconnection check, and
    # never TIP_MIGRATION however many come
    for _ in range(P.RUN_BURSTS + 2):
        assert burst(plant, mon, True) == 0 and mon.absent, ("leak named migration", seed)
    out["cases"] += 1

# a sensor too noisy for the pulsation: limited, never an alert
plant = Plant(9)
plant.configure(0, 156_000, 0, 10**9, 0, 50, 100, 30, 74)
mon = PulseMonitor()
state[0] = 1_000
for _ in range(P.LEARN_BURSTS + 1):
    burst(plant, mon)
assert mon.limited(), mon.pulse_x16
plant.inject(FAULT_TIP_MIGRATION, 0, state[0], state[0])
for _ in range(4):
    assert burst(plant, mon) == 0
out["ok"] = True
print(json.dumps(out))
