# Runs under MicroPython: reservoir accounting, refill date, reconciliation.
import json
from array import array

import micropython
from pump import reservoir as R
from pump.reservoir import EMPTY, LOW, NEVER, OK, Reservoir

DAY = 86400
NOW = 5_000_000  # device seconds

# --- defaults and construction ------------------------------------------------------
r = Reservoir()
assert (r.volume_nl, r.low_threshold_nl, r.capacity_nl) == (0, 2_000_000, 40_000_000)
assert r.state == EMPTY and r.is_empty() and r.is_low()
for bad in ((-1, 2_000_000, 40_000_000), (40_000_001, 2_000_000, 40_000_000),
            (0, 40_000_000, 40_000_000), (0, -1, 40_000_000), (0, 0, 0)):  # fmt: skip
    try:
        Reservoir(bad[0], bad[1], bad[2])
        raise AssertionError(bad)
    except ValueError:
        pass

# --- low and empty transitions (low alarm level 2 mL, empty at 0 mL) ---------------
r = Reservoir(5_000_000)
assert r.state == OK and not r.is_low() and not r.is_empty()
assert r.consume(2_999_999) == OK  # 2,000,001 nL left
assert r.consume(1) == LOW  # exactly 2 mL: low
assert r.is_low() and not r.is_empty()
assert r.consume(1_999_999) == LOW  # 1 nL left
assert r.consume(0) == LOW and r.consume(-5) == LOW  # nothing moved
assert r.volume_nl == 1
assert r.consume(1) == EMPTY
assert r.is_empty() and r.volume_nl == 0
assert r.consume(250) == EMPTY  # never negative; counted as overrun
assert r.volume_nl == 0 and r.overrun_nl == 250
assert r.delivered_nl == 5_000_250
r2 = Reservoir(3_000_000)
assert r2.state == OK
r2.set_low_threshold(4_000_000)  # programmable alarm level
assert r2.state == LOW and r2.is_low()

# --- time to empty ------------------------------------------------------------------------
r = Reservoir(10_000_000)
assert r.time_to_empty_s(500_000) == 20 * DAY  # 10 mL at 0.5 mL/day
assert r.time_to_empty_s(0) == NEVER
assert r.time_to_empty_s(-1) == NEVER
assert Reservoir(1).time_to_empty_s(86_401) == 0  # 0.99999 s rounds down

# --- refill date (Prometra style: at the alarm level, all boluses taken) ---------
r = Reservoir(10_000_000)
# basal only: 8 mL above a 2 mL floor at 0.5 mL/day = 16 days
assert r.refill_date_s(NOW, 500_000, 0, 0, 2_000_000) == NOW + 16 * DAY
# + two 0.1 mL boluses a day, all taken at the start of each day: the floor
# is crossed on day 11 at 8 - 11 * 0.7 - 0.2 = 0.1 mL left after the
# boluses, 0.2 day of basal: 11 days + 17,280 s
assert r.refill_date_s(NOW, 500_000, 100_000, 2, 2_000_000) == NOW + 11 * DAY + 17_280
# never later than the even-spread estimate 8 / 0.7 days
assert NOW + 11 * DAY + 17_280 <= NOW + 8_000_000 * DAY // 700_000
# boluses only: 1 mL x 2 a day from 10 mL to 2 mL: at the start of day 3
assert r.refill_date_s(NOW, 0, 1_000_000, 2, 2_000_000) == NOW + 3 * DAY
# crossed by a day's boluses rather than by the basal
r = Reservoir(3_500_000)
assert r.refill_date_s(NOW, 240_000, 1_000_000, 1, 2_000_000) == NOW + DAY
# Prometra's 3.0 mL level, 20 mL, 1 mL/day basal: 17 days
r = Reservoir(20_000_000)
assert r.refill_date_s(NOW, 1_000_000, 0, 0, 3_000_000) == NOW + 17 * DAY
# the floor defaults to empty
assert r.refill_date_s(NOW, 1_000_000, 0, 0) == NOW + 20 * DAY
# already at or below the floor: now; nothing consumed: never
assert Reservoir(2_000_000).refill_date_s(NOW, 500_000, 0, 0, 2_000_000) == NOW
assert Reservoir(10_000_000).refill_date_s(NOW, 0, 0, 0, 2_000_000) == NEVER
assert Reservoir(10_000_000).refill_date_s(NOW, 0, 100_000, 0, 2_000_000) == NEVER
# Independent check: binary search for the first second t at which the
# account is at or below the floor, with day d's boluses taken at d * DAY and
# the basal spread evenly; refill_date_s rounds down, so it is t or t - 1.


def reached(t, vol, basal, pb, count, floor):
    d = t // DAY
    used_x_day = ((d + 1) * pb * count + d * basal) * DAY + basal * (t % DAY)
    return used_x_day >= (vol - floor) * DAY


for case in ((10_000_000, 480_000, 50_000, 3, 2_000_000),
             (40_000_000, 1_000_000, 200_000, 4, 2_000_000),
             (40_000_000, 24_000_000, 0, 0, 0),
             (7_777_777, 333_333, 0, 0, 1_000_000),
             (7_777_777, 0, 333_333, 2, 1_000_000),
             (2_500_000, 48_000, 400_000, 1, 2_000_000),
             (39_999_999, 48_000, 0, 0, 0)):  # fmt: skip
    vol, basal, pb, count, floor = case
    got = Reservoir(vol).refill_date_s(0, basal, pb, count, floor)
    lo = 0
    hi = 1000 * DAY
    while lo < hi:
        mid = (lo + hi) // 2
        if reached(mid, vol, basal, pb, count, floor):
            hi = mid
        else:
            lo = mid + 1
    assert got == lo or got == lo - 1, (case, got, lo)
    assert got <= lo

# --- refill and reconciliation ---------------------------------------------------
# small delivery: 20 mL filled, 2 mL delivered, 18 mL expected; tolerance
# is max(0.5 mL, 14.5 % of 2 mL) = 0.5 mL
r = Reservoir(20_000_000)
r.consume(2_000_000)
code, disc, flagged = r.refill(17_200_000, 20_000_000)  # 0.8 mL missing
assert (code, disc, flagged) == (R.REFILL_OK, -800_000, True)
assert r.volume_nl == 20_000_000 and r.state == OK and r.delivered_nl == 0
r.consume(2_000_000)
assert r.refill(17_600_000, 20_000_000) == (R.REFILL_OK, -400_000, False)
r.consume(2_000_000)
# more left than expected (under-infusion / occlusion): flagged too
assert r.refill(19_000_000, 20_000_000) == (R.REFILL_OK, 1_000_000, True)
r.consume(2_000_000)
assert r.refill(18_500_000, 20_000_000) == (R.REFILL_OK, 500_000, False)  # exactly 0.5 mL
# large delivery: 40 mL filled, 30 mL delivered; tolerance 14.5 % of 30 mL
# = 4.35 mL (SynchroMed labelling)
r = Reservoir(40_000_000)
r.consume(30_000_000)
assert r.refill(6_000_000, 40_000_000) == (R.REFILL_OK, -4_000_000, False)
r.consume(30_000_000)
assert r.refill(5_000_000, 40_000_000) == (R.REFILL_OK, -5_000_000, True)
# the caller's belief instead of the account: 9 mL expected, so 11 mL
# delivered and a tolerance of 1.595 mL
r = Reservoir(20_000_000)
r.consume(10_000_000)
assert r.refill(7_500_000, 20_000_000, 9_000_000) == (R.REFILL_OK, -1_500_000, False)
r.consume(10_000_000)
assert r.refill(7_400_000, 20_000_000, 9_000_000) == (R.REFILL_OK, -1_600_000, True)
# refill to a low volume: low at once
assert r.refill(19_000_000, 1_500_000)[0] == R.REFILL_OK
assert r.state == LOW
# over capacity: refused, nothing changed (discrepancy still reported)
r = Reservoir(20_000_000)
r.consume(5_000_000)
assert r.refill(15_000_000, 40_000_001) == (R.REFILL_OVER_CAPACITY, 0, False)
assert r.volume_nl == 15_000_000 and r.delivered_nl == 5_000_000
assert r.refill(-1, 20_000_000)[0] == R.REFILL_BAD_VOLUME
assert r.refill(15_000_000, -1)[0] == R.REFILL_BAD_VOLUME
assert r.refill(40_000_001, 20_000_000)[0] == R.REFILL_BAD_VOLUME
assert r.volume_nl == 15_000_000
assert r.refill(15_000_000, 40_000_000) == (R.REFILL_OK, 0, False)  # exactly full
assert r.volume_nl == 40_000_000

# --- pack / unpack --------------------------------------------------------------------
r = Reservoir(30_000_000, 3_000_000)
r.consume(28_000_000)
r.consume(2_500_000)
data = r.pack()
assert isinstance(data, bytes) and len(data) == R.PACKED_SIZE
s = Reservoir()
assert s.unpack(data)
assert (s.volume_nl, s.low_threshold_nl, s.capacity_nl) == (0, 3_000_000, 40_000_000)
assert (s.filled_nl, s.delivered_nl, s.overrun_nl, s.state) == (
    30_000_000,
    30_500_000,
    500_000,
    EMPTY,
)
assert s.pack() == data
before = Reservoir(1_000).pack()
bad_version = bytearray(data)
bad_version[0] = 2
over = bytearray(data)
over[4:8] = b"\xff\xff\xff\x7f"  # volume above capacity
for bad in (data[:-1], bytes(bad_version), bytes(over)):
    t = Reservoir(1_000)
    assert not t.unpack(bad)
    assert t.pack() == before

# --- no allocation on the hot path --------------------------------------------------
r = Reservoir(2_100_000)
buf = bytearray(R.PACKED_SIZE)
states = array("i", [0] * 4)


def hot():
    for _k in range(1_000):
        st = r.consume(250)
        states[st] += 1
        r.pack_into(buf, 0)
    r.is_low()
    r.is_empty()


micropython.heap_lock()
try:
    hot()
    allocated = False
except MemoryError:
    allocated = True
micropython.heap_unlock()
assert not allocated, "Reservoir.consume / pack_into allocated"
# 2.1 mL in 250 nL strokes: 399 OK (down to 2,000,250), then LOW from 2 mL
assert states[OK] == 399 and states[LOW] == 601 and states[EMPTY] == 0, states
assert r.volume_nl == 1_850_000

print(json.dumps({"ok": True}))
