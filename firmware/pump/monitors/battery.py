# Battery: elective replacement indicator (ERI) and end of service (EOS).
#
# SynchroMed II (docs/sources.md [9][18][19]): ERI is non-critical (an
# hourly beep), and the pump stops 90 days after ERI; a battery too low to
# run the pump is critical. So:
#   BATTERY_ERI  the mean of the last _AVERAGE samples is at or below eri_mv:
#                latched for good (a primary cell does not recover), and the
#                device second of the first ERI starts a countdown of
#                EOS_AFTER_ERI_S;
#   BATTERY_EOS  the mean is at or below eos_mv, or the countdown has run
#                out: delivery stops; latched for good.
# Debounce: decisions use the mean of the last _AVERAGE samples (GIP [55]:
# "battery every 3 min (mean of 10)"); none is taken before
# _AVERAGE samples have arrived, so a single low reading under motor load
# never raises ERI (the app should sample between strokes). The ERI date
# survives reboots through pack()/unpack() (the journal keeps it); after a
# reboot the countdown goes on from that date, and a battery already past
# EOS is found again after _AVERAGE samples.
#
# Units: mV, device seconds (monotonic across reboots: the app restores its
# clock from the journal). Integers only; on_sample() and eos_days_left()
# allocate nothing.

import struct
from array import array

from micropython import const

from pump.monitors import BATTERY_EOS, BATTERY_ERI

# Defaults for a 3.0-3.2 V lithium primary cell (the implant chemistry and
# its ERI voltage are not public: UNCONFIRMED): ERI at 2.60 V,
# EOS at 2.40 V. The app passes the cell's own values.
_DEFAULT_ERI_MV = const(2_600)
_DEFAULT_EOS_MV = const(2_400)
_AVERAGE = const(10)  # samples in the mean (GIP: mean of 10)
EOS_AFTER_ERI_S = const(90 * 86_400)  # SynchroMed: the pump stops 90 days after ERI
DAY_S = const(86_400)
NO_ERI = const(0xFFFF)  # eos_days_left() before any ERI (STATUS eos_days: 0xFFFF)
NOT_SET = const(-1)  # eri_s before any ERI

# pack() layout, little-endian: version u8, flags u8 (bit 0: EOS reached),
# 2 pad bytes, eri_s i32 (-1: no ERI yet).
_PACK_VERSION = const(1)
_FMT = "<BBxxi"
PACKED_SIZE = const(8)
_EOS_FLAG = const(1)


class BatteryMonitor:
    def __init__(self, eri_mv=_DEFAULT_ERI_MV, eos_mv=_DEFAULT_EOS_MV, average=_AVERAGE):
        if not (0 < eos_mv < eri_mv and 0 < average):
            raise ValueError("battery monitor")
        self.eri_mv = eri_mv
        self.eos_mv = eos_mv
        self._ring = array("i", [0] * average)
        self._n = 0  # samples in the ring (up to average)
        self._i = 0  # next slot
        self._sum = 0
        self.mean_mv = 0  # mean of the ring (0 until the first sample)
        self.eri_s = NOT_SET  # device second of the first ERI
        self.eos = False
        self.alarm = 0  # BATTERY_EOS, BATTERY_ERI or 0: the condition now
        self._buf = bytearray(PACKED_SIZE)

    def cleared(self):
        return self.alarm == 0

    def _update(self, now_s):
        if not self.eos and self.eri_s != NOT_SET and now_s - self.eri_s >= EOS_AFTER_ERI_S:
            self.eos = True
        if self.eos:
            self.alarm = BATTERY_EOS
        elif self.eri_s != NOT_SET:
            self.alarm = BATTERY_ERI
        else:
            self.alarm = 0
        return self.alarm

    # --- hot path ------------------------------------------------------------
    def on_sample(self, mv, now_s):
        # One battery reading; returns BATTERY_EOS, BATTERY_ERI or 0.
        ring = self._ring
        size = len(ring)
        if self._n == size:
            self._sum -= ring[self._i]
        else:
            self._n += 1
        ring[self._i] = mv
        self._sum += mv
        self._i += 1
        if self._i == size:
            self._i = 0
        self.mean_mv = self._sum // self._n
        if self._n == size:
            if self.mean_mv <= self.eri_mv and self.eri_s == NOT_SET:
                self.eri_s = now_s
            if self.mean_mv <= self.eos_mv:
                self.eos = True
                if self.eri_s == NOT_SET:
                    self.eri_s = now_s
        return self._update(now_s)

    def check(self, now_s):
        # The countdown alone (no sample): EOS once 90 days after ERI.
        return self._update(now_s)

    def eos_days_left(self, now_s):
        # Whole days left before end of service, rounded up (0 at EOS);
        # NO_ERI before any ERI.
        if self.eos:
            return 0
        if self.eri_s == NOT_SET:
            return NO_ERI
        left = self.eri_s + EOS_AFTER_ERI_S - now_s
        if left <= 0:
            return 0
        return (left + DAY_S - 1) // DAY_S

    # --- persistence -----------------------------------------------------------
    def pack_into(self, buf, offset=0):
        struct.pack_into(_FMT, buf, offset, _PACK_VERSION, _EOS_FLAG if self.eos else 0, self.eri_s)
        return PACKED_SIZE

    def pack(self):
        self.pack_into(self._buf, 0)
        return bytes(self._buf)

    def unpack(self, data):
        # Restores the ERI date and EOS; False (nothing changed) if invalid.
        # The samples are not kept: the mean starts again. Call check(now_s)
        # next: the countdown may have run out while the pump was off.
        if len(data) != PACKED_SIZE:
            return False
        version, flags, eri_s = struct.unpack_from(_FMT, data, 0)
        if version != _PACK_VERSION or flags & ~_EOS_FLAG or eri_s < NOT_SET:
            return False
        if flags & _EOS_FLAG and eri_s == NOT_SET:
            return False
        self.eri_s = eri_s
        self.eos = bool(flags & _EOS_FLAG)
        self._update(eri_s if eri_s != NOT_SET else 0)
        return True
