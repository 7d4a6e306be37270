# The independent over-delivery guard: counts what the encoder
# says moved, never what the scheduler asked for, over a 1-hour and a 24-hour
# window that include basal and boluses alike, and tells the caller to
# fail-stop the pump as soon as either window holds more than its limit.
#
# Unit: DOSE in ng of the drug that left the catheter tip (the app turns the
# encoder's volume into tip dose through the drug path, pump/path.py). The
# history is the patient's, so a change of concentration neither resets it
# nor, by itself, trips it: the limits are the drug's hard doses, the same
# whatever the concentration. (Names below still say _nl where the layout is
# unit-free; every value is ng.)
#
# Windows. Deliveries go into fixed buckets keyed by device time:
#   1 h:  one-minute buckets; the window is the current (partial) minute plus
#         the 60 previous full minutes: 61 buckets, spanning 60-61 minutes;
#   24 h: fifteen-minute buckets; the current quarter plus the 96 previous
#         full quarters: 97 buckets, spanning 24 h to 24 h 15 min.
# Why one bucket more than the nominal length: a delivery at time s with
# t - 3600 <= s <= t (inside a true sliding hour ending at t) lies in minute
# floor(s / 60) >= floor(t / 60) - 60, so it is always among the 61 buckets
# counted. With 60 buckets the oldest part of a true hour would fall out and
# the guard could under-count. So a window sum is never less than the true
# sliding-window volume of the nominal length; it may be up to one bucket
# longer (more), which errs on the side of stopping. pump/limits.py checks
# programs over the same 61-minute and 24 h 15 min spans, so an accepted
# program does not trip the guard.
#
# Time: now_s is device seconds, monotonic across reboots (the app restores
# its clock from the journal). If it ever goes backwards, deliveries are
# added to the newest bucket and nothing expires: still conservative.
#
# Integers: every bucket is capped at BUCKET_MAX_NL (2**23 ng, 8.4 mg: above
# what the mechanism moves in a quarter hour of the strongest drug, 250 uL x
# 30 mg/mL = 7.5 mg, and above every hourly hard limit), so each window sum
# stays below 97 * 2**23 < 2**30 and record() never makes a big integer on
# the RP2040. A capped bucket alone exceeds any allowed hourly limit, so
# capping can only make the guard trip, never hide a delivery.
#
# record() and advance() allocate nothing: buckets live in arrays created in
# __init__, the running sums are small ints on the instance.

import struct
from array import array

from micropython import const

_MINUTE_S = const(60)
_QUARTER_S = const(900)
N_1H = const(61)  # current minute + 60 full minutes
N_24H = const(97)  # current quarter + 96 full quarters

BUCKET_MAX_NL = const(1 << 23)
LIMIT_1H_MAX_NL = const(BUCKET_MAX_NL - 1)  # see set_limits
LIMIT_24H_MAX_NL = const((1 << 30) - 1)

# exceeded values
WITHIN = const(0)
HOURLY = const(1)
DAILY = const(2)

# pack() layout, little-endian: version u8, N_1H u8, N_24H u8, exceeded u8,
# current minute i32, current quarter i32, then the 61 minute buckets and the
# 97 quarter buckets as i32, oldest slot first in ring order (slot index =
# absolute bucket number modulo the ring size).
# The limits and the stroke grain follow the buckets, so a boot restores
# them with the windows, without the drug library. A change of this layout
# changes _PACK_VERSION: restore() refuses a pack of any other version.
_PACK_VERSION = const(3)
_HDR_FMT = "<BBBBiiiii"
_HDR_SIZE = const(24)
PACKED_SIZE = const(_HDR_SIZE + 4 * (N_1H + N_24H))


class _Window:
    """One window: a ring of buckets of period_s seconds and their sum."""

    def __init__(self, buckets, period_s):
        self.n = buckets
        self.period_s = period_s
        self.buckets = array("i", [0] * buckets)
        self.current = 0  # absolute number of the current bucket
        self.total = 0

    def roll(self, now_s):
        # Every bucket that has left the window is subtracted and zeroed. A
        # gap longer than the window clears it in one pass of the ring.
        number = now_s // self.period_s
        steps = number - self.current
        if steps <= 0:
            return
        b = self.buckets
        n = self.n
        if steps >= n:
            i = 0
            while i < n:
                b[i] = 0
                i += 1
            self.total = 0
        else:
            i = self.current % n
            while steps > 0:
                i += 1
                if i == n:
                    i = 0
                self.total -= b[i]
                b[i] = 0
                steps -= 1
        self.current = number

    def add(self, volume_nl):
        b = self.buckets
        i = self.current % self.n
        room = BUCKET_MAX_NL - b[i]
        added = volume_nl if volume_nl < room else room
        b[i] += added
        self.total += added

    def pack_into(self, buf, offset):
        b = self.buckets
        i = 0
        while i < self.n:
            struct.pack_into("<i", buf, offset, b[i])
            offset += 4
            i += 1
        return offset

    def unpack_from(self, data, offset, current):
        # Values were checked by the caller.
        total = 0
        b = self.buckets
        i = 0
        while i < self.n:
            value = struct.unpack_from("<i", data, offset)[0]
            b[i] = value
            total += value
            offset += 4
            i += 1
        self.total = total
        self.current = current
        return offset


class Governor:
    def __init__(self, limit_1h_nl, limit_24h_nl):
        self._hour = _Window(N_1H, _MINUTE_S)
        self._day = _Window(N_24H, _QUARTER_S)
        self.limit_1h_nl = 0
        self.limit_24h_nl = 0
        self.exceeded = WITHIN  # first window that tripped since clear_exceeded()
        self.grain_ng = 0  # one stroke's dose: how unevenly a spread bolus may land
        self.set_limits(limit_1h_nl, limit_24h_nl)

    def set_limits(self, limit_1h_nl, limit_24h_nl):
        # New limits (a new program or drug); the delivery history stays, as
        # the windows are about the patient, not the program. The hourly limit
        # must stay below one full bucket so that a capped bucket always trips.
        if not 0 <= limit_1h_nl <= LIMIT_1H_MAX_NL or not 0 <= limit_24h_nl <= LIMIT_24H_MAX_NL:
            raise ValueError("governor limit")
        self.limit_1h_nl = limit_1h_nl
        self.limit_24h_nl = limit_24h_nl

    def clear_exceeded(self):
        # Forget the latched trip (explicit clear after a fail-stop).
        self.exceeded = WITHIN

    # --- hot path ------------------------------------------------------------
    def advance(self, now_s):
        # Rolls both windows forward to now_s with no delivery (at most
        # 61 + 97 steps, whatever the gap).
        self._hour.roll(now_s)
        self._day.roll(now_s)

    def record(self, now_s, volume_nl):
        # Adds volume_nl (what the encoder says moved) at device second now_s.
        # Returns True when both windows are within their limits (a window
        # exactly at its limit is within), False when either holds more: the
        # caller then fail-stops. Negative volumes (encoder saw reverse
        # motion) are ignored: subtracting them could hide an earlier
        # over-delivery.
        self.advance(now_s)
        if volume_nl > 0:
            if volume_nl > BUCKET_MAX_NL:
                volume_nl = BUCKET_MAX_NL
            self._hour.add(volume_nl)
            self._day.add(volume_nl)
        if self._hour.total > self.limit_1h_nl:
            if self.exceeded == WITHIN:
                self.exceeded = HOURLY
            return False
        if self._day.total > self.limit_24h_nl:
            if self.exceeded == WITHIN:
                self.exceeded = DAILY
            return False
        return True

    # --- reports -------------------------------------------------------------
    def totals(self, now_s):
        # (sum_1h_nl, sum_24h_nl) after rolling the windows to now_s.
        self.advance(now_s)
        return (self._hour.total, self._day.total)

    # --- persistence -----------------------------------------------------------
    def pack_into(self, buf, offset=0):
        # Writes PACKED_SIZE bytes at buf[offset:]; allocates nothing.
        struct.pack_into(
            _HDR_FMT,
            buf,
            offset,
            _PACK_VERSION,
            N_1H,
            N_24H,
            self.exceeded,
            self._hour.current,
            self._day.current,
            self.limit_1h_nl,
            self.limit_24h_nl,
            self.grain_ng,
        )
        offset = self._hour.pack_into(buf, offset + _HDR_SIZE)
        self._day.pack_into(buf, offset)
        return PACKED_SIZE

    def pack(self):
        # The bucket state as bytes (the app's snapshot uses pack_into, in
        # place: no copy of the 644 bytes stays on the heap).
        buf = bytearray(PACKED_SIZE)
        self.pack_into(buf, 0)
        return bytes(buf)

    def unpack(self, data):
        # Restores what pack() wrote. Returns False and changes nothing when
        # the data is not a valid image (wrong size, version or ring sizes, a
        # bucket outside 0..BUCKET_MAX_NL, limits out of range). The limits
        # are the active program's, set when it was made active. Call advance(now_s) or
        # record() afterwards to roll the windows to the present.
        if len(data) != PACKED_SIZE:
            return False
        header = struct.unpack_from(_HDR_FMT, data, 0)
        version, n1, n24, exceeded, minute, quarter, limit_1h, limit_24h, grain = header
        if version != _PACK_VERSION or n1 != N_1H or n24 != N_24H or exceeded > DAILY:
            return False
        if not 0 <= limit_1h <= LIMIT_1H_MAX_NL or not 0 <= limit_24h <= LIMIT_24H_MAX_NL:
            return False
        if grain < 0:
            return False
        if minute < 0 or quarter < 0:
            return False
        o = _HDR_SIZE
        while o < PACKED_SIZE:
            v = struct.unpack_from("<i", data, o)[0]
            if v < 0 or v > BUCKET_MAX_NL:
                return False
            o += 4
        o = self._hour.unpack_from(data, _HDR_SIZE, minute)
        self._day.unpack_from(data, o, quarter)
        self.exceeded = exceeded
        self.limit_1h_nl = limit_1h
        self.limit_24h_nl = limit_24h
        self.grain_ng = grain
        return True
