# Exactly-once therapy commands (protocol/SPEC.md section 23).
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
#   filesystem keeps the order of writes: virtual/fs.py), so a request that
#   may have run is never run again.
#
# Records go to a journal Ring per role (a patient's flood can never push
# out a clinician's outcome; pump/journal.py). A ring keeps the newest
# PER_FILE to 2 * PER_FILE records; each request writes two, so the newest
# OUTCOMES_KEPT requests of a role are always known.
#
# Not the hot path: a therapy request is a human action. Lookups read the
# role's two files through one small buffer; nothing is kept in RAM.

import struct
from binascii import crc32

from micropython import const

from protocol import table as t
from pump.journal import Ring

NEW = const(0)  # never seen: run it
IN_DOUBT = const(1)  # its intent only: it may have run
DONE = const(2)  # answered: the reply is in payload/flags/size

PER_FILE = 2 * t.OUTCOMES_KEPT  # records per file

# index I | phase B | msg id B | reply flags B | reply size B | request crc I
# | request id | reply payload, then crc32 of all that
_BODY = "<IBBBBI%ds%ds" % (t.REQUEST_ID_SIZE, t.OUTCOME_REPLY_SIZE)
_SIZE = struct.calcsize(_BODY)
RECORD = _SIZE + 4
_ID_AT = const(12)
_REPLY_AT = _ID_AT + t.REQUEST_ID_SIZE


class Outcomes:
    """The journalled outcomes of therapy-changing requests, per role."""

    def __init__(self, fs, chunk):
        # chunk: a read buffer (a bytearray) shared with the journal
        self._fs = fs
        patient = Ring(fs, ("once.p0", "once.p1"), _SIZE, PER_FILE, chunk)
        # by role; READ_ONLY (0) never sends a therapy request: a placeholder
        self._rings = (patient, patient, Ring(fs, ("once.c0", "once.c1"), _SIZE, PER_FILE, chunk))
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
        if ring is None:
            return
        buf = ring.buf
        struct.pack_into("<IBBBBI", buf, 0, 0, phase, self._msg, flags, size, self._crc)
        buf[_ID_AT:_REPLY_AT] = self._id
        for i in range(t.OUTCOME_REPLY_SIZE):
            buf[_REPLY_AT + i] = payload[i] if i < size else 0
        ring.append()


def request_crc(msg_id, payload):
    # What identifies a request besides its id: its message and payload.
    return crc32(payload, msg_id) & 0xFFFFFFFF
