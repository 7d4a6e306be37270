# Persistent journal: state snapshots, a delta log and an event log, every
# record CRC-32 protected, on the filesystem adapter the board hands in
# (virtual/fs.SimFs on the virtual board, a littlefs adapter on the Pico; the
# interface and the ordering contract it keeps are in virtual/fs.py). The
# journal never opens a file itself.
#
# State = the newest valid snapshot + the deltas appended after it. The
# caller packs both (snapshot: up to MAX_SNAPSHOT opaque bytes; delta: a kind
# 0-255 and up to MAX_DELTA bytes); the journal only keeps them safe.
#
# Files
#   state.a, state.b   snapshot slots A/B, one record each
#   log.a, log.b       delta log of the snapshot in state.a / state.b
#   events.0/1         event log, two rotating files of fixed-size records
#
# Records (little-endian)
#   snapshot: magic u16 0x4A53, version u8, flags u8, seq u32, length u16,
#             payload[length], crc32 u32 over everything before it
#             (flags bit 0: "no payload", recovered as None)
#   delta:    length u8, kind u8, seq u32, payload[length], crc32 u32
#   event:    index u32, time_s u32, code u16, a i32, b i32, crc32 u32 (22 B)
#
# Sequence numbers: one counter (u32) for snapshots and deltas. A snapshot
# takes seq S, the deltas after it S+1, S+2, ... in the log of its slot. At
# recovery the deltas must form exactly that chain: the first record that is
# damaged (bad length, short, bad CRC) or out of sequence ends it.
#
# Why every write is power-loss safe ("a cut at any instant leaves either the
# old or the new state"):
# - append(): one record is appended to the current log. A cut leaves a
#   prefix of it: the CRC (and the length) reject the torn record, so the
#   state is the old one; if every byte landed, it is the new one. Records
#   completely written before are never touched again.
# - snapshot(): the slot that does NOT hold the newest valid snapshot is
#   rewritten; the newest slot and its log are not touched. Its log is
#   removed first (remove is atomic), then the slot written. A cut before
#   the slot record is complete leaves an invalid slot (CRC), so recovery
#   takes the other slot and its intact log: the old state. Once complete, it
#   is the newest (higher seq) and its log is empty: the new state.
# - recover() finding bytes after the last good delta (a torn append, a
#   damaged or stale record): new appends behind them could never be read
#   again, and rewriting the log in place (truncate + write) could lose good
#   records in a cut. So recovery starts a new generation in the OTHER slot,
#   exactly like snapshot(): remove the other log, re-append the good deltas
#   to it under fresh seqs, then write the other slot with the same snapshot
#   payload and a seq higher than any in the chain. Until that last write is
#   complete the old slot and its log win (same state as before the repair);
#   afterwards the new slot wins with the same state. With no good delta the
#   log is simply removed.
# - recover() removes slot files that fail their check (a torn snapshot, a
#   flipped bit): they are unusable, and removing them (atomic) keeps one
#   interpretation of the flash; the slot is rewritten by the next snapshot.
# - log_event(): a record is appended to the current event file, or a full
#   file is rotated by replacing the older file with the first record. A cut
#   leaves a torn record at the tail (or a torn first record in a replaced
#   file, whose events had already aged out). At construction a torn tail is
#   padded to a whole record slot (the padded slot fails its CRC and is
#   skipped by readers), so later records stay aligned and readable.
#
# Hot path: append() runs before and after every pump stroke. It packs into
# one preallocated bytearray (struct.pack_into, slice assignment) and hands
# the adapter a preallocated memoryview of the exact length: no allocation
# besides binascii.crc32's result (a big int on the rp2 above 2**30).
#
# Error handling: if the adapter raises in snapshot() or append(), the log
# tail is unknown; the journal refuses further writes (JournalError) until
# recover() has been called again, which repairs the tail. recover() must
# also be called once before the first append() or snapshot().
#
# Memory: the journal reads through the adapter's read_into() into buffers
# allocated at construction (~1.3 KB plus the views), never a whole file.
# What recover() returns is allocated, though: the snapshot payload and one
# (kind, bytes) tuple per delta (~120 B each on the 64-bit host, about half
# on the rp2). The caller bounds that, and the boot time, by taking a
# snapshot when wants_snapshot() says so (_LOG_SNAPSHOT_BYTES of log, about
# a hundred deltas). events() returns a list too: ask for small pages.

import binascii
import struct

from micropython import const

MAX_SNAPSHOT = const(1536)  # bytes of snapshot payload (persist.py needs about 1.1 KB)
MAX_DELTA = const(32)  # bytes of delta payload
# Records per event file (two files are kept, so at least this many): the
# therapy history. 2048 hold over 240 days of a busy patient (4 patient
# boluses a day, 2 entries each, a refill a month; docs/pump.md section 15): the
# noisy entries (sessions, refusals) go to the access log instead.
EVENTS_PER_FILE = const(2048)
_ACCESS_PER_FILE = const(256)  # records per access-log file
_LOG_SNAPSHOT_BYTES = const(2048)  # wants_snapshot() once the log is this long

SLOT_FILES = ("state.a", "state.b")
LOG_FILES = ("log.a", "log.b")
EVENT_FILES = ("events.0", "events.1")
ACCESS_FILES = ("access.0", "access.1")

_CRC = "<I"
_CRC_SIZE = const(4)

_SNAP_HDR = "<HBBIH"
_SNAP_HDR_SIZE = const(10)
_SNAP_MAGIC = const(0x4A53)
_SNAP_VERSION = const(1)
_SNAP_NONE = const(1)  # flags: the snapshot has no payload (recovered as None)

_DELTA_HDR = "<BBI"
_DELTA_HDR_SIZE = const(6)
DELTA_OVERHEAD = const(_DELTA_HDR_SIZE + _CRC_SIZE)  # bytes on top of the payload

_EVENT_BODY = "<IIHii"
_EVENT_BODY_SIZE = const(18)
EVENT_SIZE = const(_EVENT_BODY_SIZE + _CRC_SIZE)

# With no valid snapshot the deltas go to log.b, so the first snapshot lands
# in state.a without removing them first.
_NO_SNAPSHOT_SLOT = const(1)

# Read buffer for the delta log and the event files (> the largest delta).
_CHUNK = const(256)


class JournalError(Exception):
    """A write was attempted before recover(), or after a failed write."""


class Journal:
    def __init__(self, fs, events_per_file=EVENTS_PER_FILE):
        self._fs = fs
        self._ready = False  # recover() done and no write failed since
        self._cur = _NO_SNAPSHOT_SLOT  # slot whose log takes the deltas
        self._log = LOG_FILES[_NO_SNAPSHOT_SLOT]
        self._seq = 1  # next sequence number
        self._deltas = 0  # deltas after the current snapshot
        self._log_bytes = 0  # size of the current log
        # Delta record buffer and one view per length: append() slices nothing.
        self._dbuf = bytearray(DELTA_OVERHEAD + MAX_DELTA)
        view = memoryview(self._dbuf)
        self._dviews = [view[:n] for n in range(len(self._dbuf) + 1)]
        # Snapshot record buffer, for writing and reading a slot; one spare
        # byte so that reading an oversized file fills it and is rejected.
        self._sbuf = bytearray(_SNAP_HDR_SIZE + MAX_SNAPSHOT + _CRC_SIZE + 1)
        # Read buffer for scanning the delta log and the event files.
        self._chunk = bytearray(_CHUNK)
        self._chunk_events = memoryview(self._chunk)[: (_CHUNK // EVENT_SIZE) * EVENT_SIZE]
        # The event log (the therapy history), and the access log: session
        # opens and closes, refusals (docs/pump.md section 15), in a ring of its own
        # so that no peer can push the therapy history out of the event log.
        chunk = self._chunk_events
        self._events = Ring(fs, EVENT_FILES, _EVENT_BODY_SIZE, events_per_file, chunk)
        self._events._load()  # a torn tail is padded now, before any write
        self.access = Ring(fs, ACCESS_FILES, _EVENT_BODY_SIZE, _ACCESS_PER_FILE, chunk)

    # --- state: snapshots and deltas -------------------------------------------
    def recover(self, on_delta=None, on_snapshot=None):
        """Boot: -> (snapshot payload or None, deltas after it).

        With on_delta, each delta is handed to on_delta(kind, payload) as it
        is read (payload is a memoryview valid during the call) and the
        second value is their number: recovery then needs no memory for the
        log, however long. Without it, the deltas come back as a list of
        (kind, payload bytes) (tests, tools). on_snapshot(payload or None)
        is called before the first delta.
        """
        self._ready = False
        fs = self._fs
        best = -1
        best_seq = -1
        for slot in (0, 1):
            seq = self._read_slot(slot)
            if seq == -2:
                fs.remove(SLOT_FILES[slot])  # torn or damaged: never valid again
            elif seq > best_seq:
                best = slot
                best_seq = seq
        payload = None
        if best < 0:
            best = _NO_SNAPSHOT_SLOT
            best_seq = 0
        else:
            self._read_slot(best)
            size = struct.unpack_from("<H", self._sbuf, 8)[0]
            if not self._sbuf[3] & _SNAP_NONE:
                payload = bytes(memoryview(self._sbuf)[_SNAP_HDR_SIZE : _SNAP_HDR_SIZE + size])
        self._set_generation(best, best_seq + 1)
        if on_snapshot is not None:
            on_snapshot(payload)
        collected: list = []
        streaming = on_delta is not None
        if on_delta is None:

            def on_delta(kind, data):
                collected.append((kind, bytes(data)))

        first_seq = self._seq
        end, clean, count = self._read_chain(self._log, first_seq, on_delta)
        self._deltas = count
        self._seq += count
        self._log_bytes = end
        if not clean:
            if count:
                self._repair(payload, self._log, first_seq)
            else:
                fs.remove(self._log)
                self._log_bytes = 0
        self._ready = True
        return payload, (count if streaming else collected)

    def _read_slot(self, slot):
        # Reads a slot into _sbuf; -> its seq, -1 if missing, -2 if invalid.
        buf = self._sbuf
        n = self._fs.read_into(SLOT_FILES[slot], 0, buf)
        if n <= 0:
            return -1
        if n < _SNAP_HDR_SIZE + _CRC_SIZE:
            return -2
        magic, version, _flags, seq, size = struct.unpack_from(_SNAP_HDR, buf, 0)
        end = _SNAP_HDR_SIZE + size
        if magic != _SNAP_MAGIC or version != _SNAP_VERSION or n != end + _CRC_SIZE:
            return -2
        if binascii.crc32(memoryview(buf)[:end]) != struct.unpack_from(_CRC, buf, end)[0]:
            return -2
        return seq

    def _read_chain(self, log, seq, on_delta):
        # Hands (kind, payload) of the chain seq, seq+1, ... at the start of
        # the log to on_delta; stops at the first damaged or out-of-sequence
        # record. -> (offset past the last good record, True if that is the
        # end of the file, records read). Reads chunk by chunk: a record that
        # straddles the end of a chunk is read again at the start of the next.
        buf = self._chunk
        view = memoryview(buf)
        pos = 0  # file offset of the first record in buf
        count = 0
        while True:
            n = self._fs.read_into(log, pos, buf)
            if n <= 0:
                return pos, True, count
            p = 0
            while p + DELTA_OVERHEAD <= n:
                size, kind, rec_seq = struct.unpack_from(_DELTA_HDR, buf, p)
                end = p + _DELTA_HDR_SIZE + size
                if size > MAX_DELTA or rec_seq != seq:
                    return pos + p, False, count
                if end + _CRC_SIZE > n:
                    break  # continues past the chunk (or the file ends in it)
                if binascii.crc32(view[p:end]) != struct.unpack_from(_CRC, buf, end)[0]:
                    return pos + p, False, count
                on_delta(kind, view[p + _DELTA_HDR_SIZE : end])
                seq += 1
                count += 1
                p = end + _CRC_SIZE
            if p == 0:
                return pos, False, count  # bytes left that are no whole record: torn
            pos += p

    def snapshot_area(self):
        """The journal's own snapshot buffer (MAX_SNAPSHOT bytes), for a caller
        that packs its snapshot in place and passes a view of it to snapshot():
        no second copy on the heap. Valid until the next journal call."""
        return memoryview(self._sbuf)[_SNAP_HDR_SIZE : _SNAP_HDR_SIZE + MAX_SNAPSHOT]

    def snapshot(self, payload):
        """Writes a new snapshot and starts a new delta generation after it."""
        if len(payload) > MAX_SNAPSHOT:
            raise ValueError("snapshot too large")
        self._check_ready()
        self._ready = False
        self._new_generation(payload)
        self._ready = True

    def append(self, kind, payload):
        """Appends one delta record (kind 0-255, payload up to MAX_DELTA bytes)."""
        if len(payload) > MAX_DELTA or kind < 0 or kind > 255:
            raise ValueError("bad delta")
        self._check_ready()
        self._ready = False  # stays False if the adapter raises
        self._put_delta(kind, payload)
        self._ready = True

    def verify_slots(self):
        """Self-test: re-reads the current snapshot slot and its delta log
        with every CRC and the sequence chain, as recover() would. True if a
        reboot now would recover this generation whole."""
        if not self._ready:
            return False
        snap_seq = self._seq - self._deltas - 1  # 0: no snapshot yet
        if self._read_slot(self._cur) != (snap_seq if snap_seq > 0 else -1):
            return False
        end, clean, count = self._read_chain(self._log, snap_seq + 1, _ignore)
        return clean and count == self._deltas and end == self._log_bytes

    def next_seq(self):
        return self._seq

    def deltas_since_snapshot(self):
        return self._deltas

    def log_bytes(self):
        return self._log_bytes

    def wants_snapshot(self):
        return self._log_bytes >= _LOG_SNAPSHOT_BYTES

    def _check_ready(self):
        if not self._ready:
            raise JournalError("journal needs recover()")

    def _set_generation(self, slot, seq):
        self._cur = slot
        self._log = LOG_FILES[slot]
        self._seq = seq
        self._deltas = 0
        self._log_bytes = 0

    def _new_generation(self, payload):
        # Snapshot seq = next seq, into the other slot, whose log is removed
        # first; until the slot record is complete the current one wins.
        slot = 1 - self._cur
        seq = self._seq
        self._fs.remove(LOG_FILES[slot])
        self._write_slot(slot, seq, payload)
        self._set_generation(slot, seq + 1)

    def _repair(self, payload, old_log, first_seq):
        # The current log has bytes after its good chain. Copies the chain to
        # a new generation in the other slot (see the header): its log first,
        # under seqs after the new snapshot's, then the slot as commit point.
        # The chain is read again from the old log, record by record.
        slot = 1 - self._cur
        seq = self._seq  # higher than every seq of the good chain
        self._fs.remove(LOG_FILES[slot])
        self._set_generation(slot, seq + 1)
        self._read_chain(old_log, first_seq, self._put_delta)
        self._write_slot(slot, seq, payload)

    def _write_slot(self, slot, seq, payload):
        buf = self._sbuf
        if payload is None:
            flags = _SNAP_NONE
            size = 0
        else:
            flags = 0
            size = len(payload)
            buf[_SNAP_HDR_SIZE : _SNAP_HDR_SIZE + size] = payload
        struct.pack_into(_SNAP_HDR, buf, 0, _SNAP_MAGIC, _SNAP_VERSION, flags, seq, size)
        end = _SNAP_HDR_SIZE + size
        view = memoryview(buf)
        struct.pack_into(_CRC, buf, end, binascii.crc32(view[:end]))
        self._fs.write(SLOT_FILES[slot], view[: end + _CRC_SIZE])

    def _put_delta(self, kind, payload):
        buf = self._dbuf
        size = len(payload)
        struct.pack_into(_DELTA_HDR, buf, 0, size, kind, self._seq)
        end = _DELTA_HDR_SIZE + size
        buf[_DELTA_HDR_SIZE:end] = payload
        struct.pack_into(_CRC, buf, end, binascii.crc32(self._dviews[end]))
        end += _CRC_SIZE
        self._fs.append(self._log, self._dviews[end])
        self._seq += 1
        self._deltas += 1
        self._log_bytes += end

    # --- event log ---------------------------------------------------------------
    def log_event(self, time_s, code, a, b):
        """Appends an event (u32 device seconds, u16 code, two i32); -> its index."""
        ring = self._events
        struct.pack_into(_EVENT_BODY, ring.buf, 0, 0, time_s, code, a, b)
        return ring.append()

    def event_count(self):
        """The index the next event gets (= events ever logged, if none was torn)."""
        return self._events.next_index()

    def oldest_event(self):
        """Index of the oldest event still kept (event_count() if none)."""
        return self._events.oldest()

    def events(self, start, count):
        """Up to count (index, time_s, code, a, b), oldest first, from index start."""
        return _page(self._events, start, count)

    def read_buffer(self):
        """The journal's read buffer, for a Ring outside it (pump/once.py)."""
        return self._chunk

    def log_access(self, time_s, code, a, b):
        """Appends an access-log record (the event layout); -> its index."""
        ring = self.access
        struct.pack_into(_EVENT_BODY, ring.buf, 0, 0, time_s, code, a, b)
        return ring.append()

    def access_events(self, start, count):
        """The same from the access log."""
        return _page(self.access, start, count)


def _page(ring, start, count):
    out: list = []

    def visit(buf, k):
        out.append(struct.unpack_from(_EVENT_BODY, buf, k))
        return len(out) >= count

    if count:
        ring.scan(visit, start)
    return out


def _ignore(_kind, _data):
    pass


class Ring:
    """Fixed-size records in two rotating files (the event log, the access log,
    the outcomes of therapy requests: pump/once.py). Each record starts with
    its index (u32) and ends with a CRC-32 of what precedes; the current file
    takes appends, a full one is rotated by replacing the older file, so the
    newest per_file to 2 * per_file records are kept. The caller packs a
    record into buf (after the index) and calls append(). Power-loss safety:
    see log_event() in the header."""

    def __init__(self, fs, files, size, per_file, chunk):
        self._fs = fs
        self._files = files
        self._size = size  # body bytes, the index included
        self._per = per_file
        self.buf = bytearray(size + 4)
        self._body = memoryview(self.buf)[:size]  # what the CRC covers (no allocation)
        self._chunk = chunk  # a read buffer, shared (a multiple of the record)
        self._first = [-1, -1]  # per file: first and last valid index (-1: none)
        self._last = [-1, -1]
        self._slots = [0, 0]  # record slots used, damaged ones included
        self._cur = 0
        self._ok = False  # loaded, and no write failed since

    def append(self):
        # -> the index the record got
        if not self._ok:
            self._load()  # a write failed: find out what landed
        index = self.next_index()
        cur = self._cur
        if self._slots[cur] >= self._per:
            # Rotate: the older file is replaced, its records age out.
            cur = 1 - cur
            self._cur = cur
            self._first[cur] = -1
            self._last[cur] = -1
            self._slots[cur] = 0
        buf = self.buf
        struct.pack_into("<I", buf, 0, index)
        struct.pack_into("<I", buf, self._size, binascii.crc32(self._body))
        self._ok = False  # until the write returns
        if self._slots[cur] == 0:
            # A new file (or one holding only garbage): replace its content.
            self._fs.write(self._files[cur], buf)
        else:
            self._fs.append(self._files[cur], buf)
        self._ok = True
        if self._first[cur] < 0:
            self._first[cur] = index
        self._last[cur] = index
        self._slots[cur] += 1
        return index

    def full(self):
        # True when the next append starts a new file (the older one goes)
        if not self._ok:
            self._load()
        return self._slots[self._cur] >= self._per

    def oldest(self):
        # the oldest index still kept (next_index() if none)
        if not self._ok:
            self._load()
        for f in (1 - self._cur, self._cur):
            if self._first[f] >= 0:
                return self._first[f]
        return self.next_index()

    def next_index(self):
        # the index the next record gets (= records ever, if none was torn)
        if not self._ok:
            self._load()
        last = self._last[self._cur]
        return last + 1 if last >= 0 else 0

    def scan(self, visit, start=0):
        # visit(view, pos) for every valid record from index start, oldest
        # first, until it returns True.
        if not self._ok:
            self._load()
        new = self._cur
        old = 1 - new
        if (self._first[old] >= 0 and start < self._first[new]) or self._first[new] < 0:
            if self._scan(old, visit, start, self._first[new]):
                return
        self._scan(new, visit, start, -1)

    def _scan(self, f, visit, start, limit):
        # Reads file f chunk by chunk; valid records (CRC) with an index
        # above the previous one count. With visit: those in [start, limit)
        # (limit -1: no end) are visited; -> True if visit stopped it. A
        # record of index i is never before slot i - first (a torn slot
        # takes a slot, never an index), so the read starts there.
        buf = self._chunk
        size = self._size
        rec = size + 4
        last = -1
        first = -1
        pos = 0
        if visit is not None and start > self._first[f] >= 0:
            pos = (start - self._first[f]) * rec
        while True:
            n = self._fs.read_into(self._files[f], pos, buf)
            k = 0
            while k + rec <= n:
                if binascii.crc32(buf[k : k + size]) == struct.unpack_from("<I", buf, k + size)[0]:
                    index = struct.unpack_from("<I", buf, k)[0]
                    if index > last:
                        last = index
                        if first < 0:
                            first = index
                        if visit is not None and index >= start:
                            if 0 <= limit <= index or visit(buf, k):
                                return True
                k += rec
            pos += k
            if n < len(buf):
                if visit is None:
                    return first, last, pos // rec, n - k
                return False

    def _load(self):
        # Scans both files. A torn tail is padded to a whole slot, so that
        # later appends stay aligned (the padded slot fails its CRC).
        for f in (0, 1):
            first, last, slots, torn = self._scan(f, None, 0, -1)
            if first < 0:
                slots = 0  # nothing valid: the next record replaces the file
            elif torn:
                self._fs.append(self._files[f], bytes(self._size + 4 - torn))
                slots += 1
            self._first[f] = first
            self._last[f] = last
            self._slots[f] = slots
        # The current file is the one with the newest record.
        self._cur = 1 if self._last[1] > self._last[0] else 0
        self._ok = True
