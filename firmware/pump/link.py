# Serial link: frames in, dispatch to handlers, exactly one reply out per
# request, events out. One Link per port (pump port, rig port).
#
# Rules (protocol/SPEC.md, "Requests and replies"):
# - every well-formed request gets exactly one reply echoing its seq: an ACK
#   with the message's reply payload, or a NACK (code, detail);
# - a request repeated with the same seq and the same CRC is answered from
#   the reply cache and not executed again: a lost ACK never doubles a bolus;
#   a plain query (table.QUERIES: it changes nothing) is answered afresh and
#   never cached, so no flood of queries evicts the reply of an effect;
# - damaged frames are counted and NACKed when their seq is readable; the
#   next good frame is served as if nothing had happened.

import struct

from micropython import const

from protocol import table as t
from protocol.wire import FRAME_OK, GARBAGE, NOTHING, FrameReader, FrameWriter

# What a handler returns.
DONE = const(0)  # it has called link.ack() or link.nack()
DEFERRED = const(1)  # it will call link.ack_deferred() later (e.g. ADVANCE)

_SLOT_EMPTY = const(0)
_SLOT_PENDING = const(1)
_SLOT_DONE = const(2)

# Link work per main-loop pass: at most RX_BUDGET bytes are read, and no
# further read starts once FRAME_BUDGET frames were handled. A flood on a
# port then costs each pass a bounded slice of time; the scheduler (strokes,
# monitors, the watchdog feed) runs between slices; the board's idle wakes
# at once while the port holds more (its poll sees the bytes).
RX_BUDGET = const(128)
FRAME_BUDGET = const(4)

# Cached replies kept per link. The bench has one request in flight per port,
# so a handful covers reordered retransmissions with room to spare.
_REPLY_CACHE_SLOTS = const(4)

# Counter indexes, in LINK_STATS field order.
_FRAMES_OK = const(0)
_GARBAGE_COUNT = const(1)
_BAD_CRC_COUNT = const(2)
_BAD_FRAME_COUNT = const(3)
_OVERSIZE_COUNT = const(4)
_REJECTED = const(5)
_DUPLICATES = const(6)
_TX_DROPPED = const(7)
_N_COUNTERS = const(8)


class _CachedReply:
    def __init__(self):
        self.state = _SLOT_EMPTY
        self.seq = 0
        self.request_crc = 0
        self.msg_id = 0
        self.flags = 0
        self.size = 0
        self.payload = bytearray(t.MAX_PAYLOAD)
        self.once = False  # its reply is journalled before it is sent (pump/once.py)
        self.signed = False  # its reply ends with a reply MAC (SPEC 21.6)


class Link:
    """Protocol endpoint on one port.

    port: object with readinto(buf) -> int (non-blocking, 0 when idle) and
          write(buf) -> bool (False when the bytes could not be sent).
    requests: the port's table of requests (table.PUMP_REQUESTS or
          table.RIG_REQUESTS): msg_id -> request payload size.
    handlers: dict msg_id -> fn(link, payload memoryview) -> DONE | DEFERRED.
    guard: None (the rig port: no sessions), or an object whose
          admit(msg_id, reader, authenticated) returns 0 to run the request
          or a NACK code (detail in guard.detail): pump.auth.Sessions.
    """

    def __init__(self, port, requests, handlers, guard=None):
        self._port = port
        # Payload sizes are checked before the handler runs, so that
        # handlers can trust their payload.
        self._request_size = requests
        self._handlers = handlers
        self._guard = guard
        self._reader = FrameReader()
        self._writer = FrameWriter()
        self._rx = bytearray(64)
        self._cache = [_CachedReply() for _ in range(_REPLY_CACHE_SLOTS)]
        self._query = _CachedReply()  # a plain query's reply: built here, never looked up
        self._next_slot = 0
        self._current = None  # the cache slot of the request being handled
        self._event_seq = 0
        self._nack = bytearray(3)  # a signed refusal's payload
        self.counters = [0] * _N_COUNTERS

    # --- receive -------------------------------------------------------
    def service(self):
        # Reads what the port has, within the pass's budget, and handles
        # every completed frame. Returns the number of bytes read (0 when
        # the port was idle).
        total = 0
        frames = 0
        rx = self._rx
        while total < RX_BUDGET and frames < FRAME_BUDGET:
            count = self._port.readinto(rx)
            if not count:
                return total
            total += count
            for i in range(count):
                result = self._reader.feed(rx[i])
                if result != NOTHING:
                    frames += 1
                    self._frame_done(result)
        return total

    def _frame_done(self, result):
        reader = self._reader
        counters = self.counters
        if result == FRAME_OK:
            self._request(reader)
            return
        if result == GARBAGE:
            counters[_GARBAGE_COUNT] += 1
            return
        if result == t.BAD_CRC:
            counters[_BAD_CRC_COUNT] += 1
        elif result == t.OVERSIZE:
            counters[_OVERSIZE_COUNT] += 1
        else:
            counters[_BAD_FRAME_COUNT] += 1
        if reader.seq_valid:
            self._send_nack(reader.msg_id, reader.seq, result, 0)

    def _request(self, reader):
        counters = self.counters
        msg_id = reader.msg_id
        seq = reader.seq
        if reader.version != t.PROTOCOL_VERSION:
            return self._reject(msg_id, seq, t.BAD_VERSION, reader.version)
        if reader.flags & (t.FLAG_REPLY | t.FLAG_EVENT):
            return self._reject(msg_id, seq, t.NOT_A_REQUEST, reader.flags)
        size = self._request_size.get(msg_id)
        if size is None:
            if msg_id not in t.ALL_IDS:
                return self._reject(msg_id, seq, t.UNKNOWN_MESSAGE, msg_id)
            return self._reject(msg_id, seq, t.WRONG_PORT, msg_id)
        authenticated = reader.flags & t.FLAG_AUTH
        if authenticated and self._guard is None:
            return self._reject(msg_id, seq, t.NOT_A_REQUEST, reader.flags)
        if authenticated:
            size += t.AUTH_TRAILER_SIZE
        if reader.payload_size != size:
            return self._reject(msg_id, seq, t.BAD_PAYLOAD, size)
        # A plain query runs again rather than hold a cache slot. (Sent with
        # FLAG_AUTH it carries a counter, so its copy must be recognised.)
        query = not authenticated and msg_id in t.QUERIES
        # A retransmission is answered from the cache before the session
        # rules: its first copy passed them (or it would not be cached), and
        # its counter is no longer above the session's.
        slot = None if query else self._find_cached(seq, reader.crc)
        if slot is not None:
            counters[_DUPLICATES] += 1
            if slot.state == _SLOT_DONE:
                self._send(slot.msg_id, slot.seq, slot.flags, slot.payload, slot.size)
            return None  # still pending: its one reply is yet to come
        payload = reader.payload
        if self._guard is not None:
            guard = self._guard
            refusal = guard.admit(msg_id, reader, authenticated)
            if refusal < 0:
                # It ran before (exactly once, SPEC section 23): its reply again.
                counters[_DUPLICATES] += 1
                kept = guard.outcomes
                self._send_signed(msg_id, seq, kept.flags, kept.reply, kept.size)
                return None
            if refusal:
                if guard.signing():  # refused after its MAC was checked: signed
                    counters[_REJECTED] += 1
                    struct.pack_into(_NACK_FMT, self._nack, 0, refusal, guard.detail)
                    flags = t.FLAG_REPLY | t.FLAG_ERROR
                    return self._send_signed(msg_id, seq, flags, self._nack, 3)
                return self._reject(msg_id, seq, refusal, guard.detail)
            if authenticated:
                payload = payload[: size - t.AUTH_TRAILER_SIZE]
        slot = self._query if query else self._free_slot()
        if slot is None:
            # Every slot holds a deferred request still running: refuse
            # rather than evict one, whose reply would then be lost.
            return self._reject(msg_id, seq, t.BUSY, _REPLY_CACHE_SLOTS)
        counters[_FRAMES_OK] += 1
        slot.state = _SLOT_PENDING
        slot.seq = seq
        slot.request_crc = reader.crc
        slot.msg_id = msg_id
        slot.once = self._guard is not None and self._guard.begin_once(msg_id)
        slot.signed = self._guard is not None and self._guard.signing()
        self._current = slot
        outcome = self._handlers[msg_id](self, payload)
        self._current = None
        if outcome != DEFERRED and slot.state != _SLOT_DONE:
            # A handler that forgot to answer is a firmware bug; the request
            # still gets its one reply rather than a silent timeout.
            self.counters[_REJECTED] += 1
            self._finish(slot, t.FLAG_REPLY | t.FLAG_ERROR, _NACK_FMT, (t.BUSY, 0xFFFF))
        return None

    def _free_slot(self):
        # The oldest slot that is not waiting for a deferred reply (round
        # robin); a pending slot is never reused before it is answered.
        for _ in range(_REPLY_CACHE_SLOTS):
            slot = self._cache[self._next_slot]
            self._next_slot = (self._next_slot + 1) % _REPLY_CACHE_SLOTS
            if slot.state != _SLOT_PENDING:
                return slot
        return None

    def _find_cached(self, seq, crc):
        for slot in self._cache:
            if slot.state != _SLOT_EMPTY and slot.seq == seq and slot.request_crc == crc:
                return slot
        return None

    def _reject(self, msg_id, seq, code, detail):
        self.counters[_REJECTED] += 1
        self._send_nack(msg_id, seq, code, detail)

    # --- reply (called by handlers) --------------------------------------
    def ack(self, fmt, values):
        # Replies to the request being handled. fmt is the struct format of
        # the message's reply fields (None for an empty reply).
        self._finish(self._current, t.FLAG_REPLY, fmt, values)

    def ack_bytes(self, payload):
        # Replies with an already packed payload (GET_PROGRAM's stored bytes).
        self._finish_raw(self._current, t.FLAG_REPLY, payload, len(payload))

    def nack(self, code, detail):
        self.counters[_REJECTED] += 1
        self._finish(self._current, t.FLAG_REPLY | t.FLAG_ERROR, _NACK_FMT, (code, detail))

    def defer(self):
        # Returns a token for ack_deferred(); the handler returns DEFERRED.
        return self._current

    def ack_deferred(self, token, fmt, values):
        self._finish(token, t.FLAG_REPLY, fmt, values)

    def _finish_raw(self, slot, flags, payload, size):
        slot.flags = flags
        for i in range(size):
            slot.payload[i] = payload[i]
        slot.size = size
        slot.state = _SLOT_DONE
        self._journal_reply(slot)
        if self._sign(slot):
            return self._send(slot.msg_id, slot.seq, slot.flags, slot.payload, slot.size)
        self._send(slot.msg_id, slot.seq, flags, slot.payload, size)

    def _finish(self, slot, flags, fmt, values):
        slot.flags = flags
        writer = self._writer
        frame = writer.frame(slot.msg_id, slot.seq, flags, fmt, values)
        # keep the packed payload so that a retransmission is answered as is
        size = writer.payload_size
        body = writer.body
        for i in range(size):
            slot.payload[i] = body[t.HEADER_SIZE + i]
        slot.size = size
        slot.state = _SLOT_DONE
        self._journal_reply(slot)
        if self._sign(slot):
            frame = self._writer.frame_raw(
                slot.msg_id, slot.seq, slot.flags, slot.payload, slot.size
            )
        self._write(frame)

    def _sign(self, slot):
        # A reply to a request whose MAC was checked ends with its own MAC
        # (SPEC 21.6); the cache keeps it signed, so a retransmission gets
        # the same bytes. -> True if signed.
        if not slot.signed:
            return False
        slot.signed = False
        slot.flags |= t.FLAG_AUTH
        size = slot.size
        header = struct.pack(
            t.HEADER_FORMAT,
            t.PROTOCOL_VERSION,
            slot.msg_id,
            slot.seq,
            slot.flags,
            size + t.REPLY_MAC_SIZE,
        )
        mac = self._guard.reply_mac(header + bytes(slot.payload[:size]))
        slot.payload[size : size + t.REPLY_MAC_SIZE] = mac
        slot.size = size + t.REPLY_MAC_SIZE
        return True

    def _send_signed(self, msg_id, seq, flags, payload, size):
        # A reply outside the cache (an outcome again, a signed refusal).
        flags |= t.FLAG_AUTH
        header = struct.pack(
            t.HEADER_FORMAT, t.PROTOCOL_VERSION, msg_id, seq, flags, size + t.REPLY_MAC_SIZE
        )
        body = bytes(payload[:size])
        signed = body + self._guard.reply_mac(header + body)
        self._write(self._writer.frame_raw(msg_id, seq, flags, signed, len(signed)))

    def _journal_reply(self, slot):
        # The reply of a therapy-changing request is journalled before it is
        # sent: a reply the client may have seen is never forgotten.
        if slot.once:
            slot.once = False
            self._guard.outcomes.done(slot.flags, slot.payload, slot.size)

    # --- events ------------------------------------------------------------
    def event(self, msg_id, fmt, values):
        self._event_seq = (self._event_seq + 1) & 0xFFFF
        self._write(self._writer.frame(msg_id, self._event_seq, t.FLAG_EVENT, fmt, values))

    # --- transmit ------------------------------------------------------------
    def _send(self, msg_id, seq, flags, payload, size):
        self._write(self._writer.frame_raw(msg_id, seq, flags, payload, size))

    def _send_nack(self, msg_id, seq, code, detail):
        self._write(
            self._writer.frame(msg_id, seq, t.FLAG_REPLY | t.FLAG_ERROR, _NACK_FMT, (code, detail))
        )

    def _write(self, frame):
        if not self._port.write(frame):
            self.counters[_TX_DROPPED] += 1


_NACK_FMT = t.NACK_REPLY


_HELLO_REQUEST_FMT = t.HELLO_REQUEST


def hello_matches(link, payload):
    # HELLO and RIG_HELLO carry the sender's protocol version and schema
    # fingerprint: a bench built from another schema is refused loudly
    # (NACK SCHEMA_MISMATCH), never half-understood.
    version, fingerprint = struct.unpack_from(_HELLO_REQUEST_FMT, payload, 0)
    if version == t.PROTOCOL_VERSION and fingerprint == t.FINGERPRINT:
        return True
    link.nack(t.SCHEMA_MISMATCH, version)
    return False
