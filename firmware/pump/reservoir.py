# Reservoir volume accounting: what the pump believes is left, the low and
# empty states, time to empty, the next refill date, and the reconciliation
# at refill.
#
# Units: nL, nL/day, device seconds; integers only. Every stored value stays
# below 2**30 (a 40 mL reservoir is 40,000,000 nL), so consume(), called
# after every stroke, works on small ints and allocates nothing. The date
# arithmetic (volume x 86,400 s can reach 3.5e12) makes big integers on the
# RP2040; it runs when a program, a bolus or a refill changes, not per stroke.
#
# Clinical anchors (sources in brackets: docs/sources.md):
# - low-reservoir alarm level default 2 mL (SynchroMed II [20]; MiniMed 2007
#   low <= 2 mL [21]); the level is programmable (SynchroMed II);
# - empty at computed 0 mL (GIP [55]);
# - next refill date = when the reservoir reaches the alarm level assuming
#   every allotted patient bolus is taken (Prometra PTC, 3.0 mL [33]);
# - over-infusion is found at refill as withdrawn < expected; SynchroMed
#   labelling flags more than 14.5 % above programmed [7].

import struct

from micropython import const

from protocol.table import REFILL_BAD_VOLUME, REFILL_OK, REFILL_OVER_CAPACITY

# consume() / state
OK = const(0)
LOW = const(1)
EMPTY = const(2)

NEVER = const(-1)  # time_to_empty_s / refill_date_s when nothing is consumed

_DEFAULT_LOW_NL = const(2_000_000)
DEFAULT_CAPACITY_NL = const(40_000_000)
COUNTER_MAX = const((1 << 30) - 1)  # counters saturate here instead of growing

# Reconciliation at refill. A discrepancy is flagged when it exceeds the
# larger of a fixed floor and _RECONCILE_PERMILLE of the volume the pump
# believes it delivered since the last fill. The percentage is taken of the
# delivered volume, not of the expected remainder, because the labelled
# accuracy (14.5 % over programmed, SynchroMed II [7]) is about delivery: a
# pump that is 14.5 % fast over 20 mL leaves 2.9 mL less than expected,
# whatever the remainder. The 0.5 mL floor keeps small deliveries from being
# flagged for syringe-reading error (project choice; measured per-refill
# errors are +2.5 % clinical, -2.4 % bench [8]).
_RECONCILE_MIN_NL = const(500_000)
_RECONCILE_PERMILLE = const(145)

# refill() result codes: protocol/table.py REFILL_* (the RESERVOIR NACK detail)

_DAY_S = const(86_400)

# pack() layout, little-endian: version u8, 3 pad bytes, then i32 volume,
# low threshold, capacity, filled (volume at the last fill), delivered since
# the last fill, overrun (counted while already empty).
_PACK_VERSION = const(1)
_FMT = "<B3xiiiiii"
PACKED_SIZE = const(28)


class Reservoir:
    def __init__(
        self, volume_nl=0, low_threshold_nl=_DEFAULT_LOW_NL, capacity_nl=DEFAULT_CAPACITY_NL
    ):
        if not (
            0 < capacity_nl <= COUNTER_MAX
            and 0 <= low_threshold_nl < capacity_nl
            and 0 <= volume_nl <= capacity_nl
        ):
            raise ValueError("reservoir")
        self.volume_nl = volume_nl
        self.low_threshold_nl = low_threshold_nl
        self.capacity_nl = capacity_nl
        self.filled_nl = volume_nl  # volume at the last fill
        self.delivered_nl = 0  # encoder volume consumed since the last fill
        self.overrun_nl = 0  # consumed while the account was already at 0
        self.state = self._state()

    def _state(self):
        v = self.volume_nl
        if v <= 0:
            return EMPTY
        if v <= self.low_threshold_nl:
            return LOW
        return OK

    # --- hot path ------------------------------------------------------------
    def consume(self, volume_nl):
        # Takes what a stroke moved (encoder volume) out of the account.
        # Never goes below 0; what is consumed beyond 0 is counted in
        # overrun_nl. Returns the state: OK, LOW (at or below the low
        # threshold) or EMPTY (0). Non-positive volumes change nothing.
        if volume_nl > 0:
            d = self.delivered_nl
            self.delivered_nl = COUNTER_MAX if volume_nl > COUNTER_MAX - d else d + volume_nl
            v = self.volume_nl
            if volume_nl > v:
                extra = volume_nl - v
                o = self.overrun_nl
                self.overrun_nl = COUNTER_MAX if extra > COUNTER_MAX - o else o + extra
                self.volume_nl = 0
            else:
                self.volume_nl = v - volume_nl
            self.state = self._state()
        return self.state

    def is_low(self):
        # At or below the low threshold (includes empty).
        return self.volume_nl <= self.low_threshold_nl

    def is_empty(self):
        return self.volume_nl <= 0

    # --- dates ---------------------------------------------------------------
    def time_to_empty_s(self, rate_nl_day):
        # Seconds until the account reaches 0 at a constant rate, rounded
        # down (an alarm planned on it is never late); NEVER at rate <= 0.
        if rate_nl_day <= 0:
            return NEVER
        return self.volume_nl * _DAY_S // rate_nl_day

    def refill_date_s(self, now_s, basal_nl_day, pb_dose_nl, pb_max_per_day, floor_nl=0):
        # Device second at which the account reaches floor_nl (e.g. the low
        # alarm level) if every allowed patient bolus is taken each day.
        # Conservative about when in the day: each day's whole bolus
        # allotment is assumed taken at the start of that day (day 0 starts
        # now), with the basal volume spread evenly over the day, so the date
        # is never later than for any other bolus timing. Returns now_s when
        # the account is already at or below the floor, NEVER when nothing is
        # consumed. basal_nl_day is the day's basal volume (a flex program's
        # daily total).
        usable = self.volume_nl - floor_nl
        if usable <= 0:
            return now_s
        basal = basal_nl_day if basal_nl_day > 0 else 0
        boluses = pb_dose_nl * pb_max_per_day if pb_dose_nl > 0 and pb_max_per_day > 0 else 0
        daily = basal + boluses
        if daily <= 0:
            return NEVER
        # Day j is the first whose end would be at or below the floor.
        j = (usable - 1) // daily
        left = usable - j * daily - boluses  # after day j's boluses
        if left <= 0:
            return now_s + j * _DAY_S  # crossed by day j's boluses
        # Crossed during day j's basal (basal >= left > 0 here).
        return now_s + j * _DAY_S + left * _DAY_S // basal

    # --- refill --------------------------------------------------------------
    def refill(self, withdrawn_nl, added_nl, expected_nl=None):
        # Reconciles and refills. expected_nl is what the pump believes was
        # left (default: the account). Returns (code, discrepancy_nl, flagged):
        #   discrepancy_nl = withdrawn - expected: negative means less was
        #     left than expected (over-infusion, or a leak), positive means
        #     more (under-infusion, occlusion, stall);
        #   flagged = |discrepancy| > max(_RECONCILE_MIN_NL, _RECONCILE_PERMILLE
        #     per mille of the volume delivered since the last fill);
        #   code = REFILL_OK after which the account is added_nl, or
        #     REFILL_OVER_CAPACITY / REFILL_BAD_VOLUME with nothing changed
        #     (the discrepancy is still reported for the log).
        expected = self.volume_nl if expected_nl is None else expected_nl
        capacity = self.capacity_nl
        if withdrawn_nl < 0 or added_nl < 0 or expected < 0 or withdrawn_nl > capacity:
            return (REFILL_BAD_VOLUME, 0, False)
        discrepancy = withdrawn_nl - expected
        basis = self.filled_nl - expected
        if basis < 0:
            basis = 0
        tolerance = basis * _RECONCILE_PERMILLE // 1000
        if tolerance < _RECONCILE_MIN_NL:
            tolerance = _RECONCILE_MIN_NL
        magnitude = discrepancy if discrepancy >= 0 else -discrepancy
        flagged = magnitude > tolerance
        if added_nl > capacity:
            return (REFILL_OVER_CAPACITY, discrepancy, flagged)
        self.volume_nl = added_nl
        self.filled_nl = added_nl
        self.delivered_nl = 0
        self.overrun_nl = 0
        self.state = self._state()
        return (REFILL_OK, discrepancy, flagged)

    def set_low_threshold(self, low_threshold_nl):
        # The programmable low-reservoir alarm level.
        if not 0 <= low_threshold_nl < self.capacity_nl:
            raise ValueError("low threshold")
        self.low_threshold_nl = low_threshold_nl
        self.state = self._state()

    # --- persistence -----------------------------------------------------------
    def pack_into(self, buf, offset=0):
        # Writes PACKED_SIZE bytes at buf[offset:]; allocates nothing, so it
        # can be journalled around every stroke.
        struct.pack_into(
            _FMT,
            buf,
            offset,
            _PACK_VERSION,
            self.volume_nl,
            self.low_threshold_nl,
            self.capacity_nl,
            self.filled_nl,
            self.delivered_nl,
            self.overrun_nl,
        )
        return PACKED_SIZE

    def pack(self):
        buf = bytearray(PACKED_SIZE)
        self.pack_into(buf, 0)
        return bytes(buf)

    def unpack(self, data):
        # Restores what pack() wrote. Returns False and changes nothing when
        # the image is not valid (size, version, or values out of range).
        if len(data) != PACKED_SIZE:
            return False
        version, volume, low, capacity, filled, delivered, overrun = struct.unpack_from(
            _FMT, data, 0
        )
        if (
            version != _PACK_VERSION
            or not 0 < capacity <= COUNTER_MAX
            or not 0 <= low < capacity
            or not 0 <= volume <= capacity
            or not 0 <= filled <= capacity
            or delivered < 0
            or overrun < 0
        ):
            return False
        self.volume_nl = volume
        self.low_threshold_nl = low
        self.capacity_nl = capacity
        self.filled_nl = filled
        self.delivered_nl = delivered
        self.overrun_nl = overrun
        self.state = self._state()
        return True
