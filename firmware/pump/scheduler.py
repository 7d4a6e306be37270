# Tickless scheduler: every task keeps one deadline; the main loop runs what
# is due and then sleeps until the earliest deadline or until I/O arrives.
# Nothing polls at a fixed rate, so the virtual board can jump its clock from
# deadline to deadline and 30 idle days cost a few thousand wake-ups.

from micropython import const

from pump.ticks import ticks_add, ticks_diff

# Longest single sleep the scheduler asks for. Bounded so that ticks_diff
# stays unambiguous and so that a board never sleeps past its watchdog.
MAX_WAIT_MS = const(60_000)


class Task:
    """A callback with one optional deadline. fn(now_ticks) re-arms if periodic."""

    def __init__(self, name, fn):
        self.name = name
        self.fn = fn
        self.deadline = 0
        self.armed = False

    def at(self, deadline_ticks):
        self.deadline = deadline_ticks
        self.armed = True

    def after(self, now_ticks, delay_ms):
        self.at(ticks_add(now_ticks, delay_ms))

    def cancel(self):
        self.armed = False


class Scheduler:
    def __init__(self):
        self._tasks = []

    def add(self, task):
        # Tasks are registered while the app is built, never in the loop.
        self._tasks.append(task)
        return task

    def run_due(self, now_ticks):
        # Runs every armed task whose deadline is not in the future. A task
        # that re-arms for "now" runs again on the next loop pass, not here,
        # so one pass is bounded by the number of tasks.
        ran = 0
        for task in self._tasks:
            if task.armed and ticks_diff(task.deadline, now_ticks) <= 0:
                task.armed = False
                task.fn(now_ticks)
                ran += 1
        return ran

    def wait_ms(self, now_ticks):
        # Milliseconds until the earliest deadline, capped at MAX_WAIT_MS.
        wait = MAX_WAIT_MS
        for task in self._tasks:
            if task.armed:
                left = ticks_diff(task.deadline, now_ticks)
                if left < wait:
                    wait = left
        return wait if wait > 0 else 0
