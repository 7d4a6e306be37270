# Exactly-once therapy commands (protocol/SPEC.md section 22).
#
# Every therapy-changing request carries a request id chosen by the client
# (8 bytes in its auth trailer). Before the request runs, an "intent"
# record (its id, message and a CRC of its payload) is journalled; once its
# reply is known, a "done" record with that reply is journalled and flushed,
# and only then is the reply sent. A request whose id is found again, in any
# session, with any seq, after any number of resets, is not run: it is
# answered with the journalled reply, or, when only its intent is there (a
# reset came while it ran, before anyone saw a reply), refused IN_DOUBT.
# Invariants:
# - a reply the client can have seen is journalled (done before sending);
# - an effect that landed has its intent journalled before it (the
#   filesystem keeps the order of writes: hal/simfs.py), so a request that
#   may have run is never run again.
#
# Records go to a Ring per role (a patient's flood can never push out a
# clinician's outcome): two files of fixed-size CRC-protected records,
# written like the event log (pump/journal.py): the current file takes
# appends, a full one is rotated by replacing the older file. A ring keeps
# the newest PER_FILE to 2 * PER_FILE records; each request writes two, so
# the newest OUTCOMES_KEPT requests of a role are always known.
#
# Not the hot path: a therapy request is a human action. Lookups read the
# role's two files through one small buffer; nothing is kept in RAM.

import struct
from binascii import crc32

from protocol import table as t

NEW = 0  # never seen: run it
IN_DOUBT = 1  # its intent only: it may have run
DONE = 2  # answered: the reply is in payload/flags/size

PER_FILE = 2 * t.OUTCOMES_KEPT  # records per file

# index I | phase B | msg id B | reply flags B | reply size B | request crc I
# | request id | reply payload, then crc32 of all that
_BODY = "<IBBBBI%ds%ds" % (t.REQUEST_ID_SIZE, t.OUTCOME_REPLY_SIZE)
_SIZE = struct.calcsize(_BODY)
RECORD = _SIZE + 4
_ID_AT = 12
_REPLY_AT = _ID_AT + t.REQUEST_ID_SIZE


class Ring:
    """Fixed-size records in two rotating files; each starts with its index (u32)
    and ends with a CRC-32 of what precedes. The caller packs a record into
    buf (from byte 4) and calls append()."""

    def __init__(self, fs, files, size, per_file, chunk):
        self._fs = fs
        self._files = files
        self._size = size  # body bytes, the index included
        self._per = per_file
        self.buf = bytearray(size + 4)
        self._chunk = chunk  # a read buffer, shared (a multiple of the record)
        self._last = [-1, -1]  # per file: last valid index (-1: none)
        self._slots = [0, 0]  # record slots used, damaged ones included
        self._cur = 0
        self._ok = False

    def append(self):
        # -> the index the record got
        if not self._ok:
            self._load()
        cur = self._cur
        if self._slots[cur] >= self._per:
            cur = 1 - cur
            self._cur = cur
            self._last[cur] = -1
            self._slots[cur] = 0
        index = self.next_index()
        buf = self.buf
        struct.pack_into("<I", buf, 0, index)
        struct.pack_into("<I", buf, self._size, crc32(memoryview(buf)[: self._size]))
        self._ok = False  # until the write returns
        if self._slots[cur] == 0:
            self._fs.write(self._files[cur], buf)
        else:
            self._fs.append(self._files[cur], buf)
        self._ok = True
        self._last[cur] = index
        self._slots[cur] += 1
        return index

    def next_index(self):
        if not self._ok:
            self._load()
        other = self._last[1 - self._cur]
        last = self._last[self._cur]
        return (last if last > other else other) + 1

    def scan(self, visit):
        # visit(view, pos) for every valid record, oldest first.
        if not self._ok:
            self._load()
        self._scan(1 - self._cur, visit)
        self._scan(self._cur, visit)

    def _scan(self, f, visit):
        # -> (last valid index, record slots, bytes of a torn tail)
        buf = self._chunk
        size = self._size
        rec = size + 4
        last = -1
        pos = 0
        while True:
            n = self._fs.read_into(self._files[f], pos, buf)
            k = 0
            while k + rec <= n:
                if crc32(buf[k : k + size]) == struct.unpack_from("<I", buf, k + size)[0]:
                    index = struct.unpack_from("<I", buf, k)[0]
                    if index > last:
                        last = index
                        if visit is not None:
                            visit(buf, k)
                k += rec
            pos += k
            if n < len(buf):
                return last, pos // rec, n - k

    def _load(self):
        # A torn tail is padded to a whole slot, so later appends stay aligned.
        for f in (0, 1):
            last, slots, torn = self._scan(f, None)
            if last < 0:
                slots = 0  # nothing valid: the next record replaces the file
            elif torn:
                self._fs.append(self._files[f], bytes(self._size + 4 - torn))
                slots += 1
            self._last[f] = last
            self._slots[f] = slots
        self._cur = 1 if self._last[1] > self._last[0] else 0
        self._ok = True


class Outcomes:
    """The journalled outcomes of therapy-changing requests, per role."""

    def __init__(self, fs):
        self._fs = fs
        chunk = bytearray(4 * RECORD)
        self._rings = (
            None,
            Ring(fs, ("once.p0", "once.p1"), _SIZE, PER_FILE, chunk),
            Ring(fs, ("once.c0", "once.c1"), _SIZE, PER_FILE, chunk),
        )
        # what find() found (the newest record of the id)
        self.state = NEW
        self.msg_id = 0
        self.request_crc = 0
        self.flags = 0
        self.size = 0
        self.reply = bytearray(t.OUTCOME_REPLY_SIZE)
        self._want = None  # the id find() looks for
        # the request running now (begin() .. done())
        self._ring = None
        self._id = None
        self._msg = 0
        self._crc = 0

    def find(self, role, request_id):
        # -> NEW, IN_DOUBT or DONE for this id of this role
        self.state = NEW
        self._want = request_id
        self._rings[role].scan(self._visit)
        return self.state

    def _visit(self, buf, k):
        if buf[k + _ID_AT : k + _REPLY_AT] != self._want:
            return
        _i, phase, self.msg_id, self.flags, self.size, self.request_crc = struct.unpack_from(
            "<IBBBBI", buf, k
        )
        self.state = DONE if phase == DONE else IN_DOUBT
        self.reply[:] = buf[k + _REPLY_AT : k + _REPLY_AT + t.OUTCOME_REPLY_SIZE]

    def begin(self, role, request_id, msg_id, request_crc):
        # The intent, journalled before the request runs.
        self._ring = self._rings[role]
        self._id = request_id
        self._msg = msg_id
        self._crc = request_crc
        self._put(IN_DOUBT, 0, b"", 0)

    def done(self, flags, payload, size):
        # The reply, journalled (and flushed) before it is sent.
        if self._ring is None:
            return
        self._put(
            DONE, flags, payload, size if size < t.OUTCOME_REPLY_SIZE else t.OUTCOME_REPLY_SIZE
        )
        self._ring = None
        flush = getattr(self._fs, "flush", None)
        if flush is not None:
            flush()

    def _put(self, phase, flags, payload, size):
        ring = self._ring
        buf = ring.buf
        struct.pack_into("<IBBBBI", buf, 0, 0, phase, self._msg, flags, size, self._crc)
        buf[_ID_AT:_REPLY_AT] = self._id
        for i in range(t.OUTCOME_REPLY_SIZE):
            buf[_REPLY_AT + i] = payload[i] if i < size else 0
        ring.append()


def request_crc(msg_id, payload):
    # What identifies a request besides its id: its message and payload.
    return crc32(payload, msg_id) & 0xFFFFFFFF
