# Runs under MicroPython (make bench): the firmware's occlusion monitor and a
# plain threshold detector watch the same plant (firmware/virtual/plant.py) through
# a full occlusion, at one delivery rate. Both get the samples the app takes:
# before a stroke, at its end, 200 ms after it, and the level once a minute.
# Neither stops the pump, so both are timed on the same pressure history.
#
# Usage: micropython occlusion_race.py RATE_NL_DAY SEED COMPLIANCE_X10
# Prints one JSON line: onset-to-alarm in ms for each detector (-1: never),
# strokes until each, and the volume stored in the line when each fired.
import json
import sys

from pump.monitors.occlusion import OcclusionMonitor
from pump.monitors.threshold import ThresholdDetector
from virtual.plant import FAULT_OCCLUSION, Plant

STROKE_STEPS = 8
STROKE_NL = 200
STROKE_MS = 20
AFTER_MS = 200
LEVEL_MS = 60_000
DAY_MS = 86_400_000
WARMUP_MS = 2 * 3_600_000  # healthy strokes first: the monitor learns the rise
GIVE_UP_MS = 7 * DAY_MS


def race(rate_nl_day, seed, compliance_x10):
    plant = Plant(seed)
    plant.configure(0, 156_000, 0, 40_000_000, 0, compliance_x10, 100, 5, 74)
    monitor = OcclusionMonitor()
    plain = ThresholdDetector()
    interval = STROKE_NL * DAY_MS // rate_nl_day
    onset = WARMUP_MS
    found = {"monitor": -1, "threshold": -1}
    strokes = {"monitor": 0, "threshold": 0}
    stored = {"monitor": 0, "threshold": 0}
    now = 0
    next_level = 0
    held = 0
    while now < onset + GIVE_UP_MS and (found["monitor"] < 0 or found["threshold"] < 0):
        # the level samples due before this stroke
        while next_level < now:
            level = plant.sensor_x10(next_level)
            if plain.on_level(level) and found["threshold"] < 0 and next_level >= onset:
                found["threshold"] = next_level - onset
                stored["threshold"] = int(plant.stored_nl(next_level))
                strokes["threshold"] = held
            monitor.on_level(level)
            next_level += LEVEL_MS
        if now >= onset and not plant.active(FAULT_OCCLUSION):
            plant.inject(FAULT_OCCLUSION, 0, now, now)
        before = plant.sensor_x10(now)
        plant.move(STROKE_STEPS, now)
        peak = plant.sensor_x10(now + STROKE_MS)
        after = plant.sensor_x10(now + STROKE_MS + AFTER_MS)
        if now >= onset:
            held += 1
        verdict = monitor.on_stroke(before, peak, after)
        if verdict == 8 and found["monitor"] < 0 and now >= onset:  # OCCLUSION
            found["monitor"] = now + STROKE_MS + AFTER_MS - onset
            stored["monitor"] = int(plant.stored_nl(now + STROKE_MS + AFTER_MS))
            strokes["monitor"] = held
        if plain.on_stroke(before, peak, after) and found["threshold"] < 0 and now >= onset:
            found["threshold"] = now + STROKE_MS - onset
            stored["threshold"] = int(plant.stored_nl(now + STROKE_MS))
            strokes["threshold"] = held
        now += interval
    return {
        "rate_nl_day": rate_nl_day,
        "monitor_ms": found["monitor"],
        "threshold_ms": found["threshold"],
        "monitor_strokes": strokes["monitor"],
        "threshold_strokes": strokes["threshold"],
        "monitor_stored_nl": stored["monitor"],
        "threshold_stored_nl": stored["threshold"],
    }


print(json.dumps(race(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))))
