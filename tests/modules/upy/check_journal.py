# Runs under MicroPython: the persistent journal (pump/journal.py) on the
# virtual board's filesystem adapter (hal/simfs.py), with simulated power
# cuts. argv[1]: an empty scratch directory. Prints one JSON line with
# figures; raises on the first failure.
import json
import os
import struct
import sys

import micropython
from hal.simfs import PowerCut, SimFs
from pump.journal import (
    EVENT_SIZE,
    MAX_DELTA,
    MAX_SNAPSHOT,
    Journal,
    JournalError,
)

ROOT = sys.argv[1]
_dirs = [0]


def new_dir():
    _dirs[0] += 1
    path = ROOT + "/case%d" % _dirs[0]
    os.mkdir(path)
    return path


def wipe(path):
    for name in os.listdir(path):
        os.remove(path + "/" + name)


def boot(path, events_per_file=4):
    # A "reboot": a new adapter and journal on the same files; -> (fs, j, state)
    fs = SimFs(path)
    j = Journal(fs, events_per_file)
    return fs, j, j.recover()


def plus(items, *more):
    # items + list(more) (MicroPython has no [*items, x])
    out = list(items)
    out.extend(more)
    return out


def event(index, i):
    # the tuple events() returns for the i-th test event, logged at index
    t = ev(i)
    return (index, t[0], t[1], t[2], t[3])


def delta(i):
    return struct.pack("<Ii", i, -i)


def flip(path, name, offset):
    f = open(path + "/" + name, "rb")
    data = bytearray(f.read())
    f.close()
    data[offset] ^= 0x40
    f = open(path + "/" + name, "wb")
    f.write(data)
    f.close()


def size(path, name):
    try:
        return os.stat(path + "/" + name)[6]
    except OSError:
        return -1


def snapshot_seq(fs, name):
    data = fs.read(name)
    return struct.unpack_from("<I", data, 4)[0]


def check_round_trip():
    d = new_dir()
    fs, j, state = boot(d)
    assert state == (None, []), state
    j.snapshot(b"state-1")
    for i in range(5):
        j.append(i, delta(i))
    fs.close()
    fs, j, state = boot(d)
    assert state == (b"state-1", [(i, delta(i)) for i in range(5)]), state
    assert j.next_seq() == 7, j.next_seq()  # snapshot 1, deltas 2..6
    j.append(9, b"")  # empty payloads are fine
    j.append(255, bytes(range(MAX_DELTA)))
    fs.close()
    fs, j, state = boot(d)
    assert state[1][-2:] == [(9, b""), (255, bytes(range(MAX_DELTA)))], state
    assert len(state[1]) == 7
    # deltas before any snapshot are kept too
    d = new_dir()
    fs, j, state = boot(d)
    j.append(1, b"early")
    fs.close()
    fs, j, state = boot(d)
    assert state == (None, [(1, b"early")]), state
    j.snapshot(b"first")
    fs.close()
    assert boot(d)[2] == (b"first", [])
    # the journal refuses to write before recover() and rejects bad sizes
    j = Journal(SimFs(d))
    for call in (lambda: j.append(1, b"x"), lambda: j.snapshot(b"x")):
        try:
            call()
            raise AssertionError("write before recover")
        except JournalError:
            pass
    j.recover()
    for call in (
        lambda: j.append(1, bytes(MAX_DELTA + 1)),
        lambda: j.append(256, b""),
        lambda: j.snapshot(bytes(MAX_SNAPSHOT + 1)),
    ):
        try:
            call()
            raise AssertionError("oversize accepted")
        except ValueError:
            pass
    j.snapshot(bytes(MAX_SNAPSHOT))
    assert boot(d)[2] == (bytes(MAX_SNAPSHOT), [])


def check_alternation():
    d = new_dir()
    fs, j, state = boot(d)
    slots = []
    for n in range(5):
        j.snapshot(b"snap%d" % n)
        j.append(1, delta(n))
        a = snapshot_seq(fs, "state.a") if fs.read("state.a") else -1
        b = snapshot_seq(fs, "state.b") if fs.read("state.b") else -1
        slots.append("a" if a > b else "b")
        fs.close()
        fs, j, state = boot(d)
        assert state == (b"snap%d" % n, [(1, delta(n))]), state
    assert slots == ["a", "b", "a", "b", "a"], slots
    # the older slot is a whole snapshot too: its log is separate
    assert fs.read("state.b") is not None and fs.read("log.b") is not None


def check_torn_snapshot():
    d = new_dir()
    fs, j, _ = boot(d)
    j.snapshot(b"P1" * 20)
    for i in range(3):
        j.append(2, delta(i))
    fs.arm_cut(25)  # inside the next snapshot record
    try:
        j.snapshot(b"P2" * 20)
        raise AssertionError("no cut")
    except PowerCut:
        pass
    assert size(d, "state.b") == 25
    try:
        j.append(2, b"after the cut")  # the journal knows its tail is unknown
        raise AssertionError("append after a failed write")
    except JournalError:
        pass
    fs, j, state = boot(d)
    expected = [(2, delta(i)) for i in range(3)]
    assert state == (b"P1" * 20, expected), state
    assert fs.read("state.b") is None  # the torn slot was removed
    j.append(2, delta(3))
    fs.close()
    fs, j, state = boot(d)
    assert state == (b"P1" * 20, plus(expected, (2, delta(3)))), state
    j.snapshot(b"P3")
    assert fs.read("state.b") is not None  # the slot that was torn
    fs.close()
    assert boot(d)[2] == (b"P3", [])


def check_torn_delta():
    d = new_dir()
    fs, j, _ = boot(d)
    j.snapshot(b"S")
    for i in range(5):
        j.append(3, delta(i))
    fs.arm_cut(4)
    try:
        j.append(3, delta(5))
        raise AssertionError("no cut")
    except PowerCut:
        pass
    fs, j, state = boot(d)
    expected = [(3, delta(i)) for i in range(5)]
    assert state == (b"S", expected), state
    seq = j.next_seq()
    assert seq > 6, seq  # after the snapshot and the five deltas
    j.append(3, delta(7))
    j.append(3, delta(8))
    fs.close()
    fs, j, state = boot(d)
    assert state == (b"S", plus(expected, (3, delta(7)), (3, delta(8)))), state
    fs.close()
    # a torn delta before any snapshot: the repair keeps "no snapshot"
    d = new_dir()
    fs, j, _ = boot(d)
    for i in range(3):
        j.append(5, delta(i))
    fs.arm_cut(12)
    try:
        j.append(5, delta(3))
        raise AssertionError("no cut")
    except PowerCut:
        pass
    fs, j, state = boot(d)
    expected = [(5, delta(i)) for i in range(3)]
    assert state == (None, expected), state
    j.append(5, delta(4))
    fs.close()
    fs, j, state = boot(d)
    assert state == (None, plus(expected, (5, delta(4)))), state
    j.snapshot(b"now")
    fs.close()
    assert boot(d)[2] == (b"now", [])
    # a damaged record in the middle ends the chain; appends after it stay readable
    d = new_dir()
    fs, j, _ = boot(d)
    j.snapshot(b"M")
    for i in range(4):
        j.append(4, delta(i))
    fs.close()
    flip(d, "log.a", 2 * (10 + 8) + 7)  # inside the third record
    fs, j, state = boot(d)
    assert state == (b"M", [(4, delta(0)), (4, delta(1))]), state
    j.append(4, delta(9))
    fs.close()
    assert boot(d)[2] == (b"M", [(4, delta(0)), (4, delta(1)), (4, delta(9))])


def check_corruption():
    d = new_dir()
    fs, j, _ = boot(d)
    j.snapshot(b"one")  # state.a
    j.append(5, delta(1))
    j.snapshot(b"two")  # state.b
    j.append(5, delta(2))
    j.append(5, delta(3))
    j.snapshot(b"three")  # state.a again, the newest
    j.append(5, delta(4))
    fs.close()
    assert boot(d)[2] == (b"three", [(5, delta(4))])
    flip(d, "state.a", 12)  # inside the payload of the newest snapshot
    fs, j, state = boot(d)
    assert state == (b"two", [(5, delta(2)), (5, delta(3))]), state
    assert fs.read("state.a") is None
    # life goes on from the older state; nothing of the damaged one returns
    j.append(5, delta(5))
    j.snapshot(b"four")
    j.append(5, delta(6))
    fs.close()
    assert boot(d)[2] == (b"four", [(5, delta(6))])
    # damage in the older slot changes nothing
    flip(d, "state.b", 3)
    assert boot(d)[2] == (b"four", [(5, delta(6))])
    # both slots damaged: no snapshot, no delta of a foreign generation
    flip(d, "state.a", 11)
    fs, j, state = boot(d)
    assert state == (None, []), state
    j.append(1, b"fresh")
    fs.close()
    assert boot(d)[2] == (None, [(1, b"fresh")])


# The sequence cut at every byte: (op, payload) and the state after each op.
def ops_sequence():
    ops = [("snap", b"first snapshot " * 3)]
    ops += [("delta", delta(i)) for i in range(20)]
    ops += [("snap", b"second snapshot " * 3)]
    ops += [("delta", delta(100 + i)) for i in range(5)]
    states = [(None, [])]
    snap = None
    deltas = []
    for op, data in ops:
        if op == "snap":
            snap = data
            deltas = []
        else:
            deltas = plus(deltas, (7, data))
        states.append((snap, deltas))
    return ops, states


def run_ops(j, ops):
    # -> number of ops that returned before the cut
    done = 0
    try:
        for op, data in ops:
            if op == "snap":
                j.snapshot(data)
            else:
                j.append(7, data)
            done += 1
    except PowerCut:
        pass
    return done


def check_every_cut():
    ops, states = ops_sequence()
    d = new_dir()
    fs, j, _ = boot(d)
    assert run_ops(j, ops) == len(ops)
    total = fs.bytes_written
    fs.close()
    assert boot(d)[2] == states[-1]
    old = new = 0
    for cut in range(total + 1):
        wipe(d)
        fs, j, _ = boot(d)
        fs.arm_cut(cut)
        done = run_ops(j, ops)
        assert done < len(ops), (cut, done)
        fs, j, state = boot(d)
        if state == states[done]:
            old += 1
        elif state == states[done + 1]:
            new += 1  # every byte of the interrupted op had landed
        else:
            raise AssertionError("cut %d after %d ops: %r" % (cut, done, state))
        # appends after the recovery are readable at the next one
        j.append(8, b"after")
        fs.close()
        again = boot(d)[2]
        assert again == (state[0], plus(state[1], (8, b"after"))), (cut, again)
    return {"bytes": total, "cuts": total + 1, "old": old, "new": new}


def check_cut_during_repair():
    # A torn delta forces a repair at boot; cut that repair at every byte.
    d = new_dir()

    def setup():
        wipe(d)
        fs, j, _ = boot(d)
        j.snapshot(b"base" * 10)
        for i in range(8):
            j.append(6, delta(i))
        fs.arm_cut(7)
        try:
            j.append(6, delta(8))
        except PowerCut:
            pass

    expected = (b"base" * 10, [(6, delta(i)) for i in range(8)])
    setup()
    fs, j, state = boot(d)
    assert state == expected, state
    total = fs.bytes_written  # what the repair wrote
    assert total > 8 * 10, total
    fs.close()
    for cut in range(total + 1):
        setup()
        fs = SimFs(d)
        fs.arm_cut(cut)
        try:
            Journal(fs).recover()
        except PowerCut:
            pass
        fs, j, state = boot(d)
        assert state == expected, (cut, state)
        j.append(6, b"next")
        fs.close()
        assert boot(d)[2] == (expected[0], plus(expected[1], (6, b"next"))), cut
    return total + 1


def ev(i):
    return (1000 + i, i % 7, -i, i * 3)


def check_events():
    d = new_dir()
    fs, j, _ = boot(d, events_per_file=4)
    assert j.event_count() == 0 and j.events(0, 10) == []
    for i in range(10):
        assert j.log_event(*ev(i)) == i
    assert j.event_count() == 10
    kept = j.events(0, 100)
    assert [e[0] for e in kept] == [4, 5, 6, 7, 8, 9], kept
    assert kept == [event(i, i) for i in range(4, 10)], kept
    assert j.oldest_event() == 4
    assert size(d, "events.0") == 2 * EVENT_SIZE and size(d, "events.1") == 4 * EVENT_SIZE
    assert j.events(5, 3) == [event(i, i) for i in range(5, 8)]
    assert j.events(8, 1) == [event(8, 8)]
    assert j.events(20, 5) == [] and j.events(0, 0) == []
    fs.close()
    # survives a reboot, indexes continue, old ones age out
    fs, j, _ = boot(d, events_per_file=4)
    assert j.event_count() == 10 and j.events(0, 100) == kept
    for i in range(10, 13):
        assert j.log_event(*ev(i)) == i
    assert [e[0] for e in j.events(0, 100)] == list(range(8, 13))
    # signed and wide values round-trip
    i = j.log_event(0xFFFFFFFF, 0xFFFF, -(2**31), 2**31 - 1)
    assert j.events(i, 1) == [(i, 0xFFFFFFFF, 0xFFFF, -(2**31), 2**31 - 1)]
    # a torn event: everything before it stays, the next ones are readable
    fs.arm_cut(EVENT_SIZE // 2)
    try:
        j.log_event(*ev(99))
        raise AssertionError("no cut")
    except PowerCut:
        pass
    fs, j, _ = boot(d, events_per_file=4)
    assert j.event_count() == 14
    before = j.events(0, 100)
    assert before[-1][0] == 13
    assert j.log_event(*ev(200)) == 14  # after the padded slot of the torn one
    assert j.log_event(*ev(201)) == 15  # rotates
    fs.close()
    fs, j, _ = boot(d, events_per_file=4)
    after = j.events(0, 100)
    assert [e[0] for e in after] == [12, 13, 14, 15], after
    assert after[2:] == [event(14, 200), event(15, 201)], after
    # state and events are independent files
    assert j.recover() == (None, [])
    # the default file size
    d = new_dir()
    j = Journal(SimFs(d))
    for i in range(300):
        j.log_event(*ev(i))
    assert j.event_count() == 300 and j.oldest_event() == 0
    start = 0
    while start < 300:  # pages, as a host query reads them
        page = j.events(start, 32)
        assert page == [event(i, i) for i in range(start, min(start + 32, 300))], start
        start += 32


def check_events_every_cut():
    d = new_dir()
    fs, j, _ = boot(d, events_per_file=3)
    for i in range(8):
        j.log_event(*ev(i))
    total = fs.bytes_written
    fs.close()
    for cut in range(total + 1):
        wipe(d)
        fs, j, _ = boot(d, events_per_file=3)
        fs.arm_cut(cut)
        done = 0
        try:
            for i in range(8):
                j.log_event(*ev(i))
                done += 1
        except PowerCut:
            pass
        fs, j, _ = boot(d, events_per_file=3)
        n = j.event_count()
        assert n in (done, done + 1), (cut, done, n)
        got = j.events(0, 100)
        assert got == [event(i, i) for i in range(j.oldest_event(), n)], (cut, got)
        assert len(got) >= min(n, 3), (cut, got)  # at least the newest full file
        assert j.log_event(*ev(50)) == n
        fs.close()
        fs, j, _ = boot(d, events_per_file=3)
        assert j.events(n, 5) == [event(n, 50)], cut
        fs.close()
    return total + 1


class NullFs:
    # Accepts everything, allocates nothing: isolates the journal's own heap use.
    def read(self, _name):
        return None

    def read_into(self, _name, _offset, _buf):
        return 0

    def write(self, _name, _data):
        pass

    def append(self, _name, _data):
        pass

    def remove(self, _name):
        pass


def check_no_allocation():
    j = Journal(NullFs())
    j.recover()
    j.snapshot(b"x" * 100)
    payload = bytes(16)
    packed = bytearray(MAX_DELTA)
    view = memoryview(packed)[:11]  # as a caller packs with struct.pack_into
    j.append(1, payload)
    j.log_event(1, 2, 3, 4)
    micropython.heap_lock()
    try:
        for _ in range(100):
            j.append(1, payload)
            j.append(2, b"")
            j.append(3, view)
        j.log_event(5, 6, 7, 8)
    finally:
        micropython.heap_unlock()
    # and with the real adapter (its file handle is kept open)
    d = new_dir()
    fs, j, _ = boot(d)
    j.snapshot(b"y")
    j.append(1, payload)
    micropython.heap_lock()
    try:
        for _ in range(10):
            j.append(1, payload)
    finally:
        micropython.heap_unlock()
    fs.close()
    assert len(boot(d)[2][1]) == 11


check_round_trip()
check_alternation()
check_torn_snapshot()
check_torn_delta()
check_corruption()
every = check_every_cut()
repair_cuts = check_cut_during_repair()
check_events()
event_cuts = check_events_every_cut()
check_no_allocation()
print(
    json.dumps(
        {"ok": True, "every_cut": every, "repair_cuts": repair_cuts, "event_cuts": event_cuts}
    )
)
