# A therapy program: what the clinician prescribes, in integer units.
#
# The wire layout is the PROGRAM message of protocol/schema.py; a program is
# kept packed (its bytes are what the CRC covers, what the journal stores
# and what GET_PROGRAM reads back), and unpacked into attributes for use.
#
# Units: volumes nL, rates nL/day, concentration ug/mL, times s, minutes of
# the day for flex starts.

import struct
from binascii import crc32

from micropython import const

from protocol import table as t
from protocol.table import MODE_CONTINUOUS, MODE_FLEX, MODE_MINIMUM_RATE, MODE_STOPPED

FLEX_STEPS = const(24)
_EVERY_DAY = const(0x7F)  # day mask bit 0 = Monday .. bit 6 = Sunday
MINUTES_PER_DAY = const(1440)
# 0.048 mL/day: the lowest rate the pump runs (SynchroMed II minimum), also
# the rate of the minimum-rate mode that keeps the catheter open.
MIN_RATE_NL_DAY = const(48_000)
MAX_RATE_NL_DAY = const(24_000_000)
# The largest reservoir (SynchroMed II 40 mL); a low-reservoir threshold must
# be below it.
_RESERVOIR_CAPACITY_NL = const(40_000_000)

FORMAT = t.PROGRAM_REQUEST
SIZE = struct.calcsize(FORMAT)


def _offset(name):
    # Index of a field in the unpacked tuple (an array takes one slot per item).
    index = 0
    for field, count in t.PROGRAM_FIELDS:
        if field == name:
            return index
        index += count
    raise KeyError(name)


_O_DRUG = _offset("drug_id")
_O_CONC = _offset("conc_ug_ml")
_O_MODE = _offset("mode")
_O_BASAL = _offset("basal_nl_day")
_O_FLEX_COUNT = _offset("flex_count")
_O_FLEX_START = _offset("flex_start_min")
_O_FLEX_RATE = _offset("flex_rate_nl_day")
_O_FLEX_DAYS = _offset("flex_days")
_O_PB_DOSE = _offset("pb_dose_nl")
_O_PB_LOCKOUT = _offset("pb_lockout_s")
_O_PB_MAX = _offset("pb_max_per_day")
_O_LOW = _offset("low_reservoir_nl")
_O_OVERRIDE = _offset("override_soft")


class Program:
    """A decoded program. Build with Program.from_bytes(); keep .raw."""

    def __init__(self):
        self.raw = bytes(SIZE)
        self.crc = 0
        self.drug_id = 0
        self.conc_ug_ml = 0
        self.mode = MODE_STOPPED
        self.basal_nl_day = 0
        self.flex_count = 0
        self.flex_start_min = (0,) * FLEX_STEPS
        self.flex_rate_nl_day = (0,) * FLEX_STEPS
        self.flex_days = (0,) * FLEX_STEPS
        self.pb_dose_nl = 0
        self.pb_lockout_s = 0
        self.pb_max_per_day = 0
        self.low_reservoir_nl = 0
        self.override_soft = 0

    @staticmethod
    def from_bytes(data):
        values = struct.unpack(FORMAT, data)
        p = Program()
        p.raw = bytes(data)
        p.crc = crc32(p.raw) & 0xFFFFFFFF
        p.drug_id = values[_O_DRUG]
        p.conc_ug_ml = values[_O_CONC]
        p.mode = values[_O_MODE]
        p.basal_nl_day = values[_O_BASAL]
        p.flex_count = values[_O_FLEX_COUNT]
        p.flex_start_min = values[_O_FLEX_START : _O_FLEX_START + FLEX_STEPS]
        p.flex_rate_nl_day = values[_O_FLEX_RATE : _O_FLEX_RATE + FLEX_STEPS]
        p.flex_days = values[_O_FLEX_DAYS : _O_FLEX_DAYS + FLEX_STEPS]
        p.pb_dose_nl = values[_O_PB_DOSE]
        p.pb_lockout_s = values[_O_PB_LOCKOUT]
        p.pb_max_per_day = values[_O_PB_MAX]
        p.low_reservoir_nl = values[_O_LOW]
        p.override_soft = values[_O_OVERRIDE]
        return p

    def validate(self):
        # Structural checks (limits come from pump.limits). Returns the index
        # of the first bad field in FIELDS, or -1 when the program is sound.
        if self.mode > MODE_MINIMUM_RATE:
            return _field_index("mode")
        if self.mode == MODE_CONTINUOUS and not _rate_ok(self.basal_nl_day):
            return _field_index("basal_nl_day")
        if self.mode == MODE_FLEX:
            if self.basal_nl_day and not _rate_ok(self.basal_nl_day):
                return _field_index("basal_nl_day")
            if not 1 <= self.flex_count <= FLEX_STEPS:
                return _field_index("flex_count")
            previous = -1
            for i in range(self.flex_count):
                start = self.flex_start_min[i]
                if start >= MINUTES_PER_DAY or start <= previous:
                    return _field_index("flex_start_min")
                previous = start
                if not _rate_ok(self.flex_rate_nl_day[i]):
                    return _field_index("flex_rate_nl_day")
                if self.flex_days[i] & ~(_EVERY_DAY | t.FLEX_OVERNIGHT):
                    return _field_index("flex_days")
        if self.pb_dose_nl and (self.pb_max_per_day == 0 or self.pb_lockout_s == 0):
            return _field_index("pb_max_per_day")
        if self.pb_max_per_day > 48:
            return _field_index("pb_max_per_day")
        if self.low_reservoir_nl >= _RESERVOIR_CAPACITY_NL:
            return _field_index("low_reservoir_nl")
        return -1

    def rate_at(self, minute_of_day, weekday):
        # The basal rate (nL/day) in force at that minute of that weekday
        # (0 = Monday). Flex: the latest step that has started today and
        # applies today; before the first, the step in force at the end of
        # yesterday if it runs overnight (FLEX_OVERNIGHT), else the
        # background basal rate.
        mode = self.mode
        if mode == MODE_CONTINUOUS:
            return self.basal_nl_day
        if mode == MODE_MINIMUM_RATE:
            return MIN_RATE_NL_DAY
        if mode != MODE_FLEX:
            return 0
        step = self._step_in_force(minute_of_day, weekday)
        if step < 0:
            step = self._step_in_force(MINUTES_PER_DAY, (weekday + 6) % 7)
            if step < 0 or not self.flex_days[step] & t.FLEX_OVERNIGHT:
                return self.basal_nl_day
        return self.flex_rate_nl_day[step]

    def _step_in_force(self, minute_of_day, weekday):
        # Index of the latest step of that weekday started by that minute, or -1.
        bit = 1 << weekday
        found = -1
        for i in range(self.flex_count):
            if self.flex_start_min[i] > minute_of_day:
                break
            if (self.flex_days[i] & _EVERY_DAY or _EVERY_DAY) & bit:
                found = i
        return found

    def next_change_minute(self, minute_of_day):
        # The next minute of the day (> minute_of_day) at which the flex rate
        # may change, or MINUTES_PER_DAY (midnight) if none is left today.
        if self.mode == MODE_FLEX:
            for i in range(self.flex_count):
                if self.flex_start_min[i] > minute_of_day:
                    return self.flex_start_min[i]
        return MINUTES_PER_DAY

    def max_window_nl(self, minutes):
        # The most basal volume any window of `minutes` can hold, over a
        # week of the schedule (rounded up). For flex the worst window starts
        # or ends at a rate change, so only those alignments are tried.
        # Programming time only: products exceed 2**30 (big ints on rp2).
        if self.mode != MODE_FLEX:
            return (self.rate_at(0, 0) * minutes + MINUTES_PER_DAY - 1) // MINUTES_PER_DAY
        week = 7 * MINUTES_PER_DAY
        worst = 0
        for day in range(7):
            for i in range(-1, self.flex_count):
                change = day * MINUTES_PER_DAY + (self.flex_start_min[i] if i >= 0 else 0)
                for start in (change, (change - minutes) % week):
                    volume = self._volume_between(start, start + minutes)
                    if volume > worst:
                        worst = volume
        return worst

    def _volume_between(self, start, end):
        # nL delivered from minute-of-week start to end (end may pass a week).
        total = 0  # in nL/day x minutes
        minute = start
        while minute < end:
            day = minute // MINUTES_PER_DAY
            in_day = minute % MINUTES_PER_DAY
            following = day * MINUTES_PER_DAY + self.next_change_minute(in_day)
            if following > end:
                following = end
            total += self.rate_at(in_day, day % 7) * (following - minute)
            minute = following
        return (total + MINUTES_PER_DAY - 1) // MINUTES_PER_DAY

    def max_rate_nl_day(self):
        if self.mode != MODE_FLEX:
            return self.rate_at(0, 0)
        worst = self.basal_nl_day
        for i in range(self.flex_count):
            if self.flex_rate_nl_day[i] > worst:
                worst = self.flex_rate_nl_day[i]
        return worst


def _rate_ok(rate):
    return MIN_RATE_NL_DAY <= rate <= MAX_RATE_NL_DAY


def _field_index(name):
    # Index of a field in the schema's PROGRAM_FIELDS (a BAD_PROGRAM detail).
    for i in range(len(t.PROGRAM_FIELDS)):
        if t.PROGRAM_FIELDS[i][0] == name:
            return i
    return 0xFF


def stopped_program():
    return Program.from_bytes(bytes(SIZE))
