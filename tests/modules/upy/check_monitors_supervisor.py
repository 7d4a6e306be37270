# Runs under MicroPython: the watchdog supervisor
# (pump/monitors/supervisor.py) across the tick wrap, and the periodic
# self-test (pump/monitors/selftest.py): program CRC, and the journal slot
# verifier proposed for pump/journal.py (Journal.verify_slots, attached here
# from this file until it lands there) against corrupted files on the
# virtual board's filesystem adapter. argv[1]: an empty scratch directory.
# Prints one JSON line.
import json
import os
import struct
import sys
from array import array
from binascii import crc32

import micropython
from hal.simfs import SimFs
from pump import journal as journalmod
from pump.journal import LOG_FILES, SLOT_FILES, Journal
from pump.monitors import MEMORY, selftest
from pump.monitors import supervisor as V
from pump.monitors.supervisor import NONE, Supervisor
from pump.ticks import TICKS_MAX, ticks_add

# --- supervisor -----------------------------------------------------------------------------
sup = Supervisor()
stroke = sup.register("stroke", 30_000)
house = sup.register("housekeeping", 60_000)
battery = sup.register("battery", 180_000)
assert (stroke, house, battery) == (0, 1, 2)
assert sup.name(house) == "housekeeping" and sup.name(7) == ""
# before start(): never on time (an app that forgets it never feeds)
assert not sup.all_on_time(0) and not sup.feed_ok(0) and sup.late(0) == 0
t0 = TICKS_MAX - 45_000  # the tick counter wraps during the test
sup.start(t0)
assert sup.feed_ok(t0) and sup.late(t0) == NONE
# every monitor checks in on time, across the wrap
t = t0
for k in range(1, 200):
    t = ticks_add(t0, 10_000 * k)
    if k % 3 == 0:
        sup.checkin(stroke, t)
    if k % 6 == 0:
        sup.checkin(house, t)
    if k % 18 == 0:
        sup.checkin(battery, t)
    assert sup.feed_ok(t), k
# the stroke monitor falls silent: late after period + slack, not before
last = t
sup.checkin(stroke, last)
assert sup.feed_ok(ticks_add(last, 30_000 + V.SLACK_MS))
sup.checkin(house, ticks_add(last, 30_000))
sup.checkin(battery, ticks_add(last, 30_000))
assert not sup.feed_ok(ticks_add(last, 30_000 + V.SLACK_MS + 1))
assert sup.late(ticks_add(last, 30_000 + V.SLACK_MS + 1)) == stroke
# once late, late until it checks in, even when the ticks come round again
# (2**29 ms on, everything is late; back at `last`, nothing looks late)
assert sup.late(ticks_add(last, 1 << 29)) == stroke
assert sup.late(last) == stroke
sup.checkin(stroke, ticks_add(last, 40_000))
assert sup.late(ticks_add(last, 40_000)) == house
sup.checkin(house, ticks_add(last, 40_000))
sup.checkin(battery, ticks_add(last, 40_000))
assert sup.late(ticks_add(last, 40_000)) == NONE
# several late: the first is named, all are marked
later = ticks_add(last, 400_000)  # all three silent for 360 s
assert sup.late(later) == stroke
sup.checkin(stroke, later)
assert sup.late(later) == house
# not watched (period 0), e.g. the stroke check while delivery is stopped
sup.set_period(stroke, 0, later)
sup.checkin(house, later)
sup.checkin(battery, later)
assert sup.feed_ok(ticks_add(later, 60_000))
sup.set_period(stroke, 360_000, later)  # minimum rate: a stroke every 6 min
assert sup.feed_ok(ticks_add(later, 60_000))
for bad in (-1, (1 << 28) + 1):
    try:
        sup.register("bad", bad)
        raise AssertionError(bad)
    except ValueError:
        pass
full = Supervisor(capacity=1)
full.register("only", 1_000)
try:
    full.register("one more", 1_000)
    raise AssertionError("capacity")
except ValueError:
    pass
empty = Supervisor()
empty.start(0)
assert empty.feed_ok(123)

# no allocation in checkin / late / feed_ok
sup = Supervisor()
a = sup.register("a", 1_000)
b = sup.register("b", 5_000)
sup.start(0)
fed = array("i", [0])


def hot():
    t = TICKS_MAX - 2_000
    k = 0
    while k < 300:
        t = ticks_add(t, 500)
        sup.checkin(a, t)
        if k % 8 == 0:
            sup.checkin(b, t)
        if sup.feed_ok(t):
            fed[0] += 1
        k += 1


sup.checkin(a, TICKS_MAX - 2_000)
sup.checkin(b, TICKS_MAX - 2_000)
allocated = True
micropython.heap_lock()
try:
    hot()
    allocated = False
except MemoryError:
    pass
micropython.heap_unlock()
assert not allocated, "Supervisor allocated"
assert fed[0] == 300

# --- self-test: the program CRC ---------------------------------------------------------------
raw = bytes(range(40))
crc = crc32(raw) & 0xFFFFFFFF
assert selftest.program_ok(raw, crc)
damaged = bytearray(raw)
damaged[7] ^= 1
assert not selftest.program_ok(bytes(damaged), crc)
assert selftest.PERIOD_S == 3_600


# --- self-test: the journal (the method proposed for pump/journal.py) -------------------------
def _ignore(_kind, _data):
    pass


def verify_slots(self):
    # Self-test: re-reads the current snapshot slot and its delta log with
    # every CRC and the sequence chain, as recover() would. True if a reboot
    # now would recover the state of this generation whole (the slot holds
    # its snapshot, the log all its deltas); False before recover(), or
    # after a failed write.
    if not self._ready:
        return False
    snap_seq = self._seq - self._deltas - 1  # 0: no snapshot yet
    if self._read_slot(self._cur) != (snap_seq if snap_seq > 0 else -1):
        return False
    end, clean, count = self._read_chain(self._log, snap_seq + 1, _ignore)
    return clean and count == self._deltas and end == self._log_bytes


if not hasattr(Journal, "verify_slots"):
    Journal.verify_slots = verify_slots

ROOT = sys.argv[1]
cases = [0]


def fresh():
    cases[0] += 1
    path = ROOT + "/case%d" % cases[0]
    os.mkdir(path)
    fs = SimFs(path)
    j = Journal(fs)
    j.recover()
    return path, fs, j


def flip(path, name, offset):
    f = open(path + "/" + name, "rb")
    data = bytearray(f.read())
    f.close()
    data[offset] ^= 0x40
    f = open(path + "/" + name, "wb")
    f.write(data)
    f.close()


def current(j):
    return SLOT_FILES[j._cur], LOG_FILES[j._cur]


# a new pump: no snapshot yet, deltas only
path, fs, j = fresh()
assert selftest.journal_ok(j) and selftest.run(None, 0, j) == 0
j.append(1, b"before any snapshot")
assert selftest.journal_ok(j)
# snapshot + deltas, across generations
j.snapshot(b"state one")
assert selftest.journal_ok(j)
for i in range(10):
    j.append(2, struct.pack("<I", i))
assert selftest.journal_ok(j)
j.snapshot(b"state two")
j.append(3, b"x")
assert selftest.run(raw, crc, j) == 0
# a flipped bit in the current slot
slot, log = current(j)
flip(path, slot, 12)
assert not selftest.journal_ok(j) and selftest.run(raw, crc, j) == MEMORY
# a flipped bit in the current log
path, fs, j = fresh()
j.snapshot(b"state")
for i in range(5):
    j.append(2, struct.pack("<I", i))
slot, log = current(j)
flip(path, log, journalmod.DELTA_OVERHEAD + 4 + 3)
assert not selftest.journal_ok(j)
# a missing log record (the file cut short) and a stale record after the tail
path, fs, j = fresh()
j.snapshot(b"state")
for i in range(3):
    j.append(2, struct.pack("<I", i))
slot, log = current(j)
data = fs.read(log)
fs.write(log, data[: len(data) - 3])
assert not selftest.journal_ok(j)
fs.write(log, data + b"\x01\x02")
assert not selftest.journal_ok(j)
fs.write(log, data)
assert selftest.journal_ok(j)
# the slot removed
fs.remove(slot)
assert not selftest.journal_ok(j)
# the damaged other slot does not matter (recovery uses the current one)
path, fs, j = fresh()
j.snapshot(b"one")
j.snapshot(b"two")
other = SLOT_FILES[1 - j._cur]
flip(path, other, 12)
assert selftest.journal_ok(j)
# a bad program and a good journal
assert selftest.run(bytes(damaged), crc, j) == MEMORY

print(json.dumps({"ok": True}))
