# Runs under MicroPython: the stroke check (pump/monitors/stroke.py): stall
# with bounded retries, lost steps, runaway, encoder failure. The hot path
# runs under heap_lock(). Prints one JSON line.
import json
from array import array

import micropython
from pump.monitors import ENCODER_FAILURE, LOST_STEPS, MOTOR_STALL, RUNAWAY
from pump.monitors import stroke as S
from pump.monitors.stroke import OK, RETRY, SHORT, STALL, StrokeCheck
from pump.ticks import TICKS_MAX, ticks_diff

STEPS = 8

# --- actions are alarm ids (positive) or OK / negative ------------------------------
assert STALL == MOTOR_STALL and S.LOST_STEPS == LOST_STEPS
assert OK == 0 and RETRY < 0 and SHORT < 0
for bad in (
    {"max_retries": -1},
    {"lost_strokes": 0},
    {"lost_pct": 0},
    {"window": 0},
    {"runaway_tolerance_steps": -1},
):
    try:
        StrokeCheck(**bad)
        raise AssertionError(bad)
    except ValueError:
        pass

# --- stall: 3 retries, then MOTOR_STALL ----------------------------------------------------
c = StrokeCheck()
assert c.on_stroke_end(STEPS, STEPS, True) == OK and c.cleared()
assert c.on_stroke_end(STEPS, 0, False) == RETRY
assert c.on_stroke_end(STEPS, 0, False) == RETRY
assert c.on_stroke_end(STEPS, 0, False) == RETRY
assert c.on_stroke_end(STEPS, 0, False) == STALL and c.alarm == MOTOR_STALL
assert c.stalls == 1
# a stroke that moves again ends the stall condition
assert c.on_stroke_end(STEPS, STEPS, True) == OK and c.cleared()
# a retry that works resets the count: the next stall gets 3 retries again
assert c.on_stroke_end(STEPS, 0, False) == RETRY
assert c.on_stroke_end(STEPS, STEPS, True) == OK
for _ in range(S.MAX_RETRIES):
    assert c.on_stroke_end(STEPS, 0, False) == RETRY
assert c.on_stroke_end(STEPS, 0, False) == STALL
assert c.stalls == 3
# no retries configured: the first stall is the alarm
assert StrokeCheck(max_retries=0).on_stroke_end(STEPS, 0, False) == STALL

# --- encoder failure: the pressure saw the stroke, the encoder did not ----------------
c = StrokeCheck()
assert c.on_stroke_end(STEPS, 0, True) == ENCODER_FAILURE  # never retried
assert c.alarm == ENCODER_FAILURE and c.retries == 0
assert c.on_stroke_end(STEPS, STEPS, True) == OK
assert c.alarm == ENCODER_FAILURE  # stays until restart()
c.restart()
assert c.cleared()

# --- lost steps: 3 short strokes in a row -------------------------------------------------
c = StrokeCheck()
assert c.on_stroke_end(STEPS, 7, True) == SHORT
assert c.on_stroke_end(STEPS, 6, True) == SHORT
assert c.on_stroke_end(STEPS, STEPS, True) == OK  # the run is broken
assert c.on_stroke_end(STEPS, 7, True) == SHORT
assert c.on_stroke_end(STEPS, 7, True) == SHORT
assert c.on_stroke_end(STEPS, 1, False) == LOST_STEPS and c.alarm == LOST_STEPS
assert c.lost_steps == 1 + 2 + 1 + 1 + 7
assert c.on_stroke_end(STEPS, 4, True) == LOST_STEPS  # still short
assert c.on_stroke_end(STEPS, STEPS, True) == OK and c.cleared()

# intermittent losses never make a run of 3; the window finds them: 1 step
# lost every other stroke (6 %) is within 10 %, 2 steps (12.5 %) is not
c = StrokeCheck()
for k in range(200):
    assert c.on_stroke_end(STEPS, STEPS - (k & 1), True) in (OK, SHORT), k
assert c.cleared() and c.window_lost == 16
c = StrokeCheck()
k = 0
while c.on_stroke_end(STEPS, STEPS - 2 * (k & 1), True) != LOST_STEPS:
    k += 1
    assert k < 64
assert k == 25 and c.alarm == LOST_STEPS  # 13 short strokes: 26 > 25.6 steps
# full strokes drain the window: the condition goes once it is back under
n = 0
while c.on_stroke_end(STEPS, STEPS, True) != OK:
    n += 1
assert c.cleared() and c.window_lost <= 25 and n > 0
c.restart()
assert c.window_lost == 0 and c.lost_steps == 0

# --- runaway: more than commanded, reverse, or motion while idle -----------------------
c = StrokeCheck()
assert c.on_stroke_end(STEPS, STEPS + 1, True) == RUNAWAY and c.alarm == RUNAWAY
assert c.on_stroke_end(STEPS, STEPS, True) == OK and c.alarm == RUNAWAY  # latched
assert StrokeCheck().on_stroke_end(STEPS, -2, True) == RUNAWAY
assert StrokeCheck(runaway_tolerance_steps=1).on_stroke_end(STEPS, STEPS + 1, True) == OK
c = StrokeCheck()
assert c.on_idle(0) == OK and c.cleared()
assert c.on_idle(1) == RUNAWAY and c.alarm == RUNAWAY
assert StrokeCheck().on_idle(-1) == RUNAWAY
assert StrokeCheck(idle_tolerance_steps=2).on_idle(-2) == OK
# the encoder counter wraps at 2**30: the app takes the delta with ticks_diff
start = TICKS_MAX - 2
end = (start + STEPS) & TICKS_MAX
assert StrokeCheck().on_stroke_end(STEPS, ticks_diff(end, start), True) == OK
assert StrokeCheck().on_idle(ticks_diff(end, end)) == OK

# --- no allocation --------------------------------------------------------------------------
counts = array("i", [0] * 4)
c = StrokeCheck()


def hot():
    k = 0
    while k < 400:
        moved = STEPS if k % 5 else (0 if k % 3 else 7)
        a = c.on_stroke_end(STEPS, moved, k % 7 == 0)
        if a > 0:
            counts[0] += 1
            c.restart()
        elif a == RETRY:
            counts[1] += 1
        if c.on_idle(0) != OK:
            counts[2] += 1
        k += 1


allocated = True
micropython.heap_lock()
try:
    hot()
    allocated = False
except MemoryError:
    pass
micropython.heap_unlock()
assert not allocated, "StrokeCheck allocated"
assert counts[1] > 0 and counts[2] == 0

print(json.dumps({"ok": True}))
