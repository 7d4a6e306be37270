# Runs under MicroPython: a bolus keeps its schedule when the loop starts
# its strokes late, and never runs faster than the schedule.
#
# A sweep over bolus sizes and durations, and over how late the loop starts
# each stroke (none, a steady lag, random lag, a spike now and then, lag past
# a whole interval), starting near the tick wrap. For every run:
# - consecutive strokes are never closer than MIN_BOLUS_INTERVAL_MS;
# - no window of k intervals holds more than k + 1 strokes;
# - with every stroke less than (interval - MIN_BOLUS_INTERVAL_MS) late, the
#   bolus ends on time: its last stroke starts within that lag of the
#   schedule's last slot (lags never add up).
import json

from pump.therapy import KIND_BOLUS, MIN_BOLUS_INTERVAL_MS, Therapy
from pump.ticks import TICKS_MAX, ticks_add, ticks_diff

from protocol.table import BOLUS_CLINICIAN, BOLUS_NONE

STROKE_NL = 200


class Lcg:
    # a small generator of its own: the same sequence on every interpreter
    def __init__(self, seed):
        self.state = seed

    def below(self, n):
        self.state = (self.state * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.state >> 8) % n if n > 0 else 0


def lag(pattern, i, interval, rng):
    # how late the loop starts stroke i, in ms
    slack = interval - MIN_BOLUS_INTERVAL_MS  # 0 at the fastest bolus: no room to catch up
    if pattern == "none":
        return 0
    if pattern == "steady":
        return slack * 3 // 4
    if pattern == "random":
        return rng.below(slack)
    if pattern == "spikes":
        return max(slack - 1, 0) if i % 7 == 3 else rng.below(min(20, slack))
    return interval + rng.below(interval)  # "beyond": past a whole interval


def run(volume_nl, duration_ms, pattern, seed):
    therapy = Therapy(STROKE_NL)
    therapy.running = True
    start = ticks_add(TICKS_MAX, -(duration_ms // 2))  # the bolus crosses the wrap
    therapy.start_bolus(BOLUS_CLINICIAN, 1, volume_nl, duration_ms, start)
    interval = therapy.bolus_interval_ms
    rng = Lcg(seed)
    starts = []  # ms since the bolus started
    worst = 0
    while therapy.bolus_kind != BOLUS_NONE:
        kind, due = therapy.next_due()
        assert kind == KIND_BOLUS, kind
        late = lag(pattern, len(starts), interval, rng)
        worst = max(worst, late)
        started = ticks_add(due, late)
        starts.append(ticks_diff(started, start))
        therapy.stroke_started(KIND_BOLUS, started)
        therapy.stroke_done(KIND_BOLUS, STROKE_NL)
        assert len(starts) <= volume_nl // STROKE_NL + 1
    for i in range(1, len(starts)):
        gap = starts[i] - starts[i - 1]
        assert gap >= MIN_BOLUS_INTERVAL_MS, (pattern, i, gap)
    for k in (1, 2, 5):
        end = 0
        for first in range(len(starts)):
            while end < len(starts) and starts[end] - starts[first] < k * interval:
                end += 1
            assert end - first <= k + 1, (pattern, k, first, end - first)
    last_slot = (len(starts) - 1) * interval
    if pattern != "beyond":
        assert starts[-1] <= last_slot + worst, (pattern, starts[-1], last_slot, worst)
    return len(starts)


runs = strokes = 0
for volume_nl in (200, 1_000, 30_000, 100_000):
    for duration_ms in (0, 60_000, 600_000, 3_600_000):
        for pattern in ("none", "steady", "random", "spikes", "beyond"):
            strokes += run(volume_nl, duration_ms, pattern, volume_nl + duration_ms)
            runs += 1
print(json.dumps({"runs": runs, "strokes": strokes}))
