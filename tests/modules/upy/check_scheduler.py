# Runs under MicroPython: wrapping ticks and the tickless scheduler.
import json

from pump.scheduler import MAX_WAIT_MS, Scheduler, Task
from pump.ticks import TICKS_MAX, TICKS_PERIOD, ticks_add, ticks_diff

# ticks wrap at 2**30 as on the RP2040, and intervals survive the wrap
near_end = TICKS_MAX - 5
later = ticks_add(near_end, 10)
assert later == 4, later
assert ticks_diff(later, near_end) == 10
assert ticks_diff(near_end, later) == -10
assert ticks_add(0, TICKS_PERIOD) == 0

fired = []
sched = Scheduler()
a = sched.add(Task("a", lambda now: fired.append(("a", now))))
b = sched.add(Task("b", lambda now: fired.append(("b", now))))
assert sched.wait_ms(0) == MAX_WAIT_MS  # nothing armed: bounded sleep
a.after(near_end, 100)  # due across the wrap
b.after(near_end, 50)
assert sched.wait_ms(near_end) == 50
assert sched.run_due(ticks_add(near_end, 49)) == 0
assert sched.run_due(ticks_add(near_end, 50)) == 1
assert fired == [("b", ticks_add(near_end, 50))]
assert sched.wait_ms(ticks_add(near_end, 50)) == 50
assert sched.run_due(ticks_add(near_end, 500)) == 1  # late tasks still run once
assert not a.armed and not b.armed
b.after(0, 10)
b.cancel()
assert sched.run_due(100) == 0
print(json.dumps({"ok": True}))
