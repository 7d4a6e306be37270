# Runs under MicroPython: the battery monitor (pump/monitors/battery.py): ERI
# from the mean of 10 samples, the 90-day countdown, EOS, persistence across
# reboots. on_sample() runs under heap_lock(). Prints one JSON line.
import json
from array import array

import micropython
from pump.monitors import BATTERY_EOS, BATTERY_ERI
from pump.monitors import battery as B
from pump.monitors.battery import NO_ERI, BatteryMonitor

DAY = 86_400
T0 = 200_000_000  # device seconds (about 6 years in)

assert B.EOS_AFTER_ERI_S == 90 * DAY
for bad in ((2_400, 2_600), (2_600, 0), (2_600, 2_600)):
    try:
        BatteryMonitor(bad[0], bad[1])
        raise AssertionError(bad)
    except ValueError:
        pass

# --- debounce: nothing before 10 samples, then the mean decides ----------------------
b = BatteryMonitor(2_600, 2_400)
for k in range(9):
    assert b.on_sample(2_000, T0 + 60 * k) == 0  # low, but only 9 samples
assert b.eos_days_left(T0) == NO_ERI
assert b.on_sample(2_000, T0 + 540) == BATTERY_EOS  # the 10th: mean 2.0 V
b = BatteryMonitor(2_600, 2_400)
for k in range(10):
    assert b.on_sample(2_700, T0 + 60 * k) == 0
# one sag under load (9 good samples + 1 at 2.0 V: mean 2.64 V): nothing
assert b.on_sample(2_000, T0 + 600) == 0 and b.mean_mv == 2_630
# a real decline: the mean crosses 2.6 V
t = T0 + 660
while b.on_sample(2_590, t) == 0:
    t += 60
assert b.mean_mv <= 2_600
eri_s = b.eri_s
assert eri_s == t and b.alarm == BATTERY_ERI
assert b.eos_days_left(t) == 90
assert b.eos_days_left(t + 1) == 90  # rounded up
assert b.eos_days_left(t + DAY) == 89
# ERI is latched: a recovering voltage does not clear it
for k in range(20):
    assert b.on_sample(3_000, t + 60 * (k + 1)) == BATTERY_ERI
assert b.eri_s == eri_s

# --- the countdown: EOS 90 days after ERI -------------------------------------------------
assert b.check(eri_s + 90 * DAY - 1) == BATTERY_ERI
assert b.eos_days_left(eri_s + 90 * DAY - 1) == 1
assert b.check(eri_s + 90 * DAY) == BATTERY_EOS
assert b.eos_days_left(eri_s + 90 * DAY) == 0
assert b.on_sample(3_000, eri_s + 91 * DAY) == BATTERY_EOS  # latched

# --- EOS from the voltage, before the countdown ends ---------------------------------
b = BatteryMonitor(2_600, 2_400)
for k in range(10):
    b.on_sample(2_550, T0 + 60 * k)
assert b.alarm == BATTERY_ERI
t = T0 + 600
while b.on_sample(2_300, t) != BATTERY_EOS:
    t += 60
assert b.mean_mv <= 2_400 and b.eos_days_left(t) == 0

# --- persistence: the ERI date survives a reboot ----------------------------------------
b = BatteryMonitor(2_600, 2_400)
for k in range(10):
    b.on_sample(2_500, T0 + 60 * k)
data = b.pack()
assert isinstance(data, bytes) and len(data) == B.PACKED_SIZE
r = BatteryMonitor(2_600, 2_400)
assert r.unpack(data) and r.eri_s == b.eri_s and r.alarm == BATTERY_ERI
assert r.eos_days_left(T0 + 30 * DAY) == b.eos_days_left(T0 + 30 * DAY) == 61
assert r.check(b.eri_s + 90 * DAY) == BATTERY_EOS
r2 = BatteryMonitor()
assert r2.unpack(r.pack()) and r2.eos and r2.alarm == BATTERY_EOS
fresh = BatteryMonitor()
assert fresh.unpack(fresh.pack()) and fresh.alarm == 0 and fresh.eri_s == B.NOT_SET
bad_version = bytearray(data)
bad_version[0] = 9
bad_flags = bytearray(data)
bad_flags[1] = 4
eos_no_eri = bytearray(fresh.pack())
eos_no_eri[1] = 1
for bad in (data[:-1], bytes(bad_version), bytes(bad_flags), bytes(eos_no_eri)):
    x = BatteryMonitor()
    assert not x.unpack(bad) and x.eri_s == B.NOT_SET and not x.eos

# --- no allocation --------------------------------------------------------------------------
b = BatteryMonitor(2_600, 2_400)
days = array("i", [0, 0])
buf = bytearray(B.PACKED_SIZE)


def hot():
    t = T0
    k = 0
    while k < 500:
        b.on_sample(3_000 - k, t)
        days[0] = b.eos_days_left(t)
        b.check(t)
        t += 180
        k += 1
    b.pack_into(buf, 0)
    days[1] = b.alarm


allocated = True
micropython.heap_lock()
try:
    hot()
    allocated = False
except MemoryError:
    pass
micropython.heap_unlock()
assert not allocated, "BatteryMonitor allocated"
assert days[1] == BATTERY_ERI and days[0] == 90

print(json.dumps({"ok": True}))
