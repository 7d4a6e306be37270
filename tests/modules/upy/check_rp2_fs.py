# Runs under MicroPython with tests/modules/fakes on MICROPYPATH: the Pico's
# journal adapter (hal/rp2fs.LfsFs) on real littlefs (vfs.VfsLfs2) over a RAM
# flash that can lose power at any erase or program. Prints {case: result}.
import os
import struct

import rp2kit
from hal.rp2fs import LfsFs

DIR = rp2kit.LFS_MOUNT + "/journal"


class Clock:
    def __init__(self):
        self.now = 0

    def ticks_ms(self):
        return self.now


def _files():
    out = {}
    for name in sorted(os.listdir(DIR)):
        f = open(DIR + "/" + name, "rb")
        out[name] = f.read()
        f.close()
    return out


def batches_in_order():
    rp2kit.mount()
    fs = LfsFs(DIR, batch_bytes=64, max_age_ms=1000, clock=Clock())
    fs.append("a", b"1")
    fs.append("a", b"2")  # same file: one segment
    fs.append("b", b"3")
    fs.append("a", b"4")
    commits_while_batched = fs.commits
    pending = fs.pending()
    read_sees_pending = fs.read("a")  # a read flushes first
    after_read = (fs.pending(), fs.commits)
    fs.append("a", b"5")
    fs.write("c", b"new")  # barrier
    after_write = (fs.pending(), fs.commits)
    fs.append("b", b"6")
    fs.remove("a")  # barrier
    after_remove = (fs.pending(), sorted(os.listdir(DIR)))
    fs.remove("missing")  # no error
    # a batch that fills flushes itself; a record larger than the batch
    # goes after what was batched
    for i in range(10):
        fs.append("d", bytes([48 + i]) * 10)
    big = b"B" * 100
    fs.append("e", b"small")
    fs.append("e", big)
    buf = bytearray(8)
    n = fs.read_into("d", 95, buf)
    return {
        "commits_while_batched": commits_while_batched,
        "pending": pending,
        "read_sees_pending": read_sees_pending,
        "after_read": after_read,
        "after_write": after_write,
        "after_remove": after_remove,
        "files": {k: v.decode() for k, v in _files().items() if k != "e"},
        "e_in_order": _files()["e"] == b"small" + big,
        "read_into": bytes(buf[:n]).decode(),
        "read_into_missing": fs.read_into("nothing", 0, buf),
        "read_missing": fs.read("nothing"),
        "flushes": fs.flushes,
    }


def age_and_due():
    rp2kit.mount()
    clock = Clock()
    fs = LfsFs(DIR, batch_bytes=256, max_age_ms=1000, clock=clock)
    empty = (fs.due(0), fs.due_in_ms(0))
    clock.now = 500
    fs.append("a", b"x")
    clock.now = 900
    fs.append("a", b"y")
    half = (fs.due(clock.now), fs.due_in_ms(clock.now))
    clock.now = 1500
    due = (fs.due(clock.now), fs.due_in_ms(clock.now))
    fs.flush()
    return {"empty": empty, "after_400": half, "after_1000": due, "after_flush": fs.due(clock.now)}


def no_allocation_when_batching():
    import micropython

    rp2kit.mount()
    fs = LfsFs(DIR, batch_bytes=256, max_age_ms=1000, clock=Clock())
    record = memoryview(bytearray(21))
    fs.append("log.a", record)  # first use of a name builds its path
    fs.flush()
    micropython.heap_lock()
    try:
        for _ in range(5):
            fs.append("log.a", record)
            fs.append("events.0", record)
        error = None
    except MemoryError:
        error = "MemoryError"
    finally:
        micropython.heap_unlock()
    return {"error": error, "pending": fs.pending()}


# --- power cuts ----------------------------------------------------------------
# (op, file, data); "flush" is the board's flush before a move.
WORKLOAD = [
    ("append", "log.b", b"r1"),
    ("append", "events.0", b"E1"),
    ("append", "log.b", b"r2"),
    ("flush", "", b""),
    ("append", "log.b", b"r3"),
    ("remove", "log.a", b""),
    ("write", "state.a", b"S1" * 40),
    ("append", "log.a", b"q1"),
    ("append", "events.0", b"E2"),
    ("flush", "", b""),
    ("append", "log.a", b"q2"),
    ("append", "log.a", b"q3" * 30),
    ("write", "events.1", b"F1"),
    ("append", "log.a", b"q4"),
    ("remove", "log.b", b""),
    ("append", "events.1", b"F2"),
    ("write", "state.b", b"S2" * 40),
    ("append", "log.b", b"p1"),
    ("flush", "", b""),
]


def _model(ops):
    files = {}
    for op, name, data in ops:
        if op == "append":
            files[name] = files.get(name, b"") + data
        elif op == "write":
            files[name] = data
        elif op == "remove":
            files.pop(name, None)
    return files


def _run(fs, ops, done):
    for i, (op, name, data) in enumerate(ops):
        if op == "append":
            fs.append(name, data)
        elif op == "write":
            fs.write(name, data)
        elif op == "remove":
            fs.remove(name)
        else:
            fs.flush()
        if op != "append":
            done[0] = i + 1  # everything issued so far has landed


def _count_flash_operations(run):
    # -> erases + programs that run(fs) makes on a fresh volume
    flash = rp2kit.RamFlash()
    rp2kit.mount(flash)
    fs = LfsFs(DIR, batch_bytes=128, clock=Clock())
    before = flash.operations
    run(fs)
    return flash.operations - before


def _cut_and_reboot(k, run):
    # Runs run(fs) on a fresh volume with the power cut at the k-th flash
    # operation, then mounts what landed (littlefs recovers at mount).
    flash = rp2kit.RamFlash()
    rp2kit.mount(flash)
    fs = LfsFs(DIR, batch_bytes=128, clock=Clock())
    flash.cut_after(k)
    try:
        run(fs)
    except rp2kit.PowerCut:
        pass
    rp2kit.unmount()
    rp2kit.mount(flash.revived(), fresh=False)


def _nonempty(files):
    # An empty file is what a cut between littlefs's create and its first
    # commit leaves: the journal reads it as missing (a prefix of nothing).
    return {k: v for k, v in files.items() if v}


def cut_anywhere_leaves_a_prefix():
    total = _count_flash_operations(lambda fs: _run(fs, WORKLOAD, [0]))
    models = [_model(WORKLOAD[:j]) for j in range(len(WORKLOAD) + 1)]
    bad = []
    prefixes = {}
    for k in range(total):
        done = [0]
        _cut_and_reboot(k, lambda fs, done=done: _run(fs, WORKLOAD, done))
        seen = _nonempty(_files())
        matches = [j for j in range(len(models)) if _nonempty(models[j]) == seen]
        if not matches or max(matches) < done[0]:
            bad.append({"cut": k, "done": done[0], "seen": seen, "matches": matches})
        else:
            prefixes[max(matches)] = prefixes.get(max(matches), 0) + 1
    return {"cut_points": total, "bad": bad[:3], "prefix_lengths_seen": len(prefixes)}


def journal_on_littlefs_survives_cuts():
    # pump/journal.Journal on LfsFs: after a cut at any flash operation the
    # recovered deltas are exactly the first N issued (N at least every
    # delta flushed before the cut), never a gap or a reordering.
    from pump.journal import Journal

    def workload(fs, journal, durable):
        journal.recover()
        issued = 0
        for stroke in range(24):
            journal.append(1, struct.pack("<I", issued))  # "before"
            issued += 1
            fs.flush()  # the board flushes before the motor moves
            durable[0] = issued
            journal.append(2, struct.pack("<I", issued))  # "after"
            issued += 1
            if stroke % 8 == 7:
                journal.snapshot(struct.pack("<I", issued))
                durable[0] = issued
            if stroke % 5 == 0:
                journal.log_event(stroke, 7, stroke, 0)

    total = _count_flash_operations(lambda fs: workload(fs, Journal(fs, events_per_file=8), [0]))
    bad = []
    step = 1 if total < 400 else total // 400
    tried = 0
    for k in range(0, total, step):
        durable = [0]
        _cut_and_reboot(k, lambda fs, d=durable: workload(fs, Journal(fs, events_per_file=8), d))
        fs = LfsFs(DIR, batch_bytes=128, clock=Clock())
        journal = Journal(fs, events_per_file=8)
        snapshot, deltas = journal.recover()
        count = struct.unpack("<I", snapshot)[0] if snapshot else 0
        ok = True
        for _kind, payload in deltas:
            if struct.unpack("<I", payload)[0] != count:
                ok = False
            count += 1
        if not ok or count < durable[0]:
            bad.append({"cut": k, "recovered": count, "durable": durable[0], "in_order": ok})
        tried += 1
    return {"cut_points": total, "tried": tried, "bad": bad[:3]}


def wear_per_stroke():
    # Erases and bytes programmed per stroke: the journal's two records per
    # stroke, flushed before every move (batched), against a flush after
    # every append (an unbatched adapter). 300 strokes, a snapshot every 57.
    from pump.journal import Journal

    out = {}
    for mode in ("batched", "every_append"):
        flash = rp2kit.RamFlash(blocks=64)
        rp2kit.mount(flash)
        fs = LfsFs(DIR, batch_bytes=512, clock=Clock())
        journal = Journal(fs)
        journal.recover()
        journal.snapshot(b"S" * 1100)
        erases = flash.erases
        programmed = flash.programmed
        for _stroke in range(300):
            journal.append(1, b"\x01" * 5)
            fs.flush()  # before the move
            journal.append(2, b"\x02" * 11)
            if mode == "every_append":
                fs.flush()
            if journal.wants_snapshot():
                journal.snapshot(b"S" * 1100)
        fs.flush()
        out[mode] = {
            "erases_per_100_strokes": (flash.erases - erases) * 100 // 300,
            "bytes_programmed_per_stroke": (flash.programmed - programmed) // 300,
            "max_block_erases": max(flash.block_erases),
        }
    return out


rp2kit.run_cases(
    {
        "batches_in_order": batches_in_order,
        "age_and_due": age_and_due,
        "no_allocation_when_batching": no_allocation_when_batching,
        "cut_anywhere_leaves_a_prefix": cut_anywhere_leaves_a_prefix,
        "journal_on_littlefs_survives_cuts": journal_on_littlefs_survives_cuts,
        "wear_per_stroke": wear_per_stroke,
    }
)
