# Wrapping millisecond ticks, as on the RP2040: time.ticks_ms() wraps at 2**30.
# The virtual board wraps at the same period so that the wrap is exercised on
# the host (30 days of device time cross it twice). Intervals are always taken
# with ticks_diff, never by subtracting.

TICKS_PERIOD = 1 << 30
TICKS_MAX = TICKS_PERIOD - 1
_HALF = TICKS_PERIOD >> 1


def ticks_add(ticks, delta_ms):
    return (ticks + delta_ms) & TICKS_MAX


def ticks_diff(end, start):
    # Signed end - start, valid while the true interval is under 2**29 ms
    # (about 6 days); longer waits are split by the scheduler.
    return ((end - start + _HALF) & TICKS_MAX) - _HALF
