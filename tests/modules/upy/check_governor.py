# Runs under MicroPython: the sliding-window dose governor.
import json
from array import array

import micropython
from pump import governor as G
from pump.governor import DAILY, HOURLY, WITHIN, Governor

HOUR = 3600
DAY = 86400
T0 = 900 * 100_000  # a quarter-hour boundary, device seconds

# --- 1 h window: exactly at the limit holds, one nL more trips -----------------
g = Governor(6_000, 1_000_000)
for k in range(60):  # 100 nL every minute for an hour
    assert g.record(T0 + 60 * k, 100), k
assert g.totals(T0 + 3_599) == (6_000, 6_000)
assert g.exceeded == WITHIN
assert not g.record(T0 + 3_599, 1)
assert g.exceeded == HOURLY
assert g.totals(T0 + 3_599) == (6_001, 6_001)
# the trip is latched until cleared, even once the window has rolled on
assert g.record(T0 + 3 * HOUR, 0)
assert g.exceeded == HOURLY
g.clear_exceeded()
assert g.exceeded == WITHIN

# a delivery exactly one hour old still counts (a true sliding hour [t-3600, t]
# holds it); one full minute later it has left the window
g = Governor(1_000, 1_000_000)
assert g.record(T0, 1_000)
assert not g.record(T0 + 3_600, 1)
g = Governor(1_000, 1_000_000)
assert g.record(T0, 1_000)
assert g.record(T0 + 3_660, 1_000)  # minute m0 + 61: m0 has expired
assert g.totals(T0 + 3_660) == (1_000, 2_000)

# over-delivery in one hour, e.g. a runaway: 12 strokes of 250 nL in a minute
g = Governor(2_500, 100_000)
trips = 0
for k in range(12):
    if not g.record(T0 + 5 * k, 250):
        trips += 1
assert trips == 2 and g.exceeded == HOURLY

# --- 24 h window ----------------------------------------------------------------
g = Governor(1_000_000, 100_000)
for h in range(10):  # 10 uL every hour for 10 hours = the daily limit exactly
    assert g.record(T0 + h * HOUR, 10_000), h
assert g.exceeded == WITHIN
assert not g.record(T0 + 10 * HOUR, 1)
assert g.exceeded == DAILY
g = Governor(1_000_000, 100_000)
for h in range(10):
    assert g.record(T0 + h * HOUR, 10_000)
# 24 h after the first delivery it still counts (conservative) ...
assert not g.record(T0 + DAY, 10_000)
# ... and 24 h 15 min after it, it has left the window
g = Governor(1_000_000, 100_000)
for h in range(10):
    assert g.record(T0 + h * HOUR, 10_000)
assert g.record(T0 + DAY + 900, 10_000)
assert g.totals(T0 + DAY + 900) == (10_000, 100_000)
assert g.exceeded == WITHIN

# --- conservative against true sliding windows, across wraps and gaps -------------
# Pseudo-random deliveries at pseudo-random gaps (seconds up to days). After
# every delivery: true sliding sum over [t-L, t] <= window sum <= true sum
# over (t-L-bucket, t].
times = array("i", [0] * 700)
vols = array("i", [0] * 700)
seed = 12345
g = Governor(G.LIMIT_1H_MAX_NL, G.LIMIT_24H_MAX_NL)
t = T0
for n in range(700):
    seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
    kind = seed % 50
    if kind == 0:
        gap = 2 * DAY + seed % DAY  # long gap
    elif kind < 5:
        gap = seed % (3 * HOUR)
    else:
        gap = seed % 400
    t += gap
    v = 1 + (seed >> 8) % 500
    times[n] = t - T0
    vols[n] = v
    g.record(t, v)
    s1, s24 = g.totals(t)
    true1 = 0
    true1_wide = 0
    true24 = 0
    true24_wide = 0
    k = n
    while k >= 0:
        age = t - T0 - times[k]
        if age >= 87_300:
            break
        true24_wide += vols[k]
        if age <= DAY:
            true24 += vols[k]
        if age < 3_660:
            true1_wide += vols[k]
        if age <= HOUR:
            true1 += vols[k]
        k -= 1
    assert true1 <= s1 <= true1_wide, (n, true1, s1, true1_wide)
    assert true24 <= s24 <= true24_wide, (n, true24, s24, true24_wide)

# --- gaps of days -------------------------------------------------------------------
g = Governor(20_000, 200_000)
assert g.record(T0, 10_000)
assert g.totals(T0 + 10) == (10_000, 10_000)
g.advance(T0 + 10 * DAY)
assert g.totals(T0 + 10 * DAY) == (0, 0)
assert g.record(T0 + 10 * DAY, 10_000)
assert g.totals(T0 + 10 * DAY + 59) == (10_000, 10_000)
# time going backwards (must not happen) never drops a delivery
assert g.record(T0 + 10 * DAY - 500, 1)
assert g.totals(T0 + 10 * DAY - 500) == (10_001, 10_001)

# --- saturation, negative volumes, limits -----------------------------------------
g = Governor(G.LIMIT_1H_MAX_NL, G.LIMIT_24H_MAX_NL)
assert not g.record(T0, 10**9)  # absurd encoder volume: capped, and trips
s1, s24 = g.totals(T0)
assert s1 == G.BUCKET_MAX_NL and s24 == G.BUCKET_MAX_NL
assert G.N_24H * G.BUCKET_MAX_NL < 1 << 30
g = Governor(1_000, 10_000)
assert g.record(T0, -500)  # reverse motion is not credited
assert g.totals(T0) == (0, 0)
assert g.record(T0, 1_000)
g.set_limits(500, 10_000)  # tighter limits keep the history
assert not g.record(T0 + 1, 0)
assert g.exceeded == HOURLY
for bad in ((-1, 10), (10, -1), (G.LIMIT_1H_MAX_NL + 1, 10), (10, 1 << 30)):
    try:
        g.set_limits(bad[0], bad[1])
        raise AssertionError(bad)
    except ValueError:
        pass

# --- pack / unpack ------------------------------------------------------------------
g = Governor(100_000, 1_000_000)
for k in range(200):
    g.record(T0 + 37 * k, 100 + k)
g.record(T0 + 37 * 199, 500_000)  # trips hourly
assert g.exceeded == HOURLY
data = g.pack()
assert isinstance(data, bytes) and len(data) == G.PACKED_SIZE
h = Governor(100_000, 1_000_000)
assert h.unpack(data)
assert h.exceeded == HOURLY
assert h.pack() == data
now = T0 + 37 * 199 + 1_000
assert h.totals(now) == g.totals(now)
assert h.totals(now + 2 * HOUR) == g.totals(now + 2 * HOUR)
# into a caller's buffer at an offset
buf = bytearray(G.PACKED_SIZE + 8)
assert g.pack_into(buf, 8) == G.PACKED_SIZE
assert bytes(buf[8:]) == g.pack()
# bad images change nothing
fresh = Governor(1, 1)
before = fresh.pack()
bad_version = bytearray(data)
bad_version[0] = 99
negative = bytearray(data)
negative[12:16] = b"\xff\xff\xff\xff"
for bad in (data[:-1], data + b"\x00", bytes(bad_version), bytes(negative)):
    assert not fresh.unpack(bad)
    assert fresh.pack() == before

# --- no allocation on the hot path ----------------------------------------------------
g = Governor(1_000_000, 20_000_000)
g.record(T0, 250)
hot_buf = bytearray(G.PACKED_SIZE)
results = array("i", [0] * 8)


def hot():
    t = T0
    ok = 0
    for _k in range(300):  # strokes across many minute and quarter boundaries
        t += 17
        if g.record(t, 250):
            ok += 1
    g.advance(t + 10 * DAY)  # a long gap: rings cleared
    if g.record(t + 10 * DAY + 5, 250):
        ok += 1
    g.advance(t + 10 * DAY + 2 * HOUR)
    g.pack_into(hot_buf, 0)
    results[0] = ok


micropython.heap_lock()
try:
    hot()
    allocated = False
except MemoryError:
    allocated = True
micropython.heap_unlock()
assert not allocated, "Governor.record / advance / pack_into allocated"
assert results[0] == 301

print(json.dumps({"ok": True}))
