# The drug path: what lies between the reservoir and the catheter tip, and
# so what dose the patient really receives (DESIGN section 4, docs/pump.md 22).
#
# The path is the pump's internal volume (head to catheter connector) plus
# the catheter (length x volume per cm). It is a first-in-first-out column:
# every stroke pushes its volume in at the reservoir end, with the drug and
# concentration the reservoir holds, and the same volume leaves the tip,
# oldest first. The path is a ring of segments (drug, concentration, volume);
# push() returns the dose in ng of what left the tip. After a refill with a
# new concentration the old drug keeps leaving the tip until the column has
# been pushed through; after a catheter change the new catheter is empty
# (concentration 0: air or CSF, no dose) until it is filled.
#
# Integers: volumes nL (a path is at most about 0.6 mL), concentration ug/mL
# (= ng/uL, so nL x ug/mL = pg). push() keeps the picograms not yet counted
# as a whole ng in a carry below 1000, so the sum of what it returns is the
# exact dose rounded down by less than 1 ng in total, never per stroke; a
# stroke (200 nL x at most 30,000 ug/mL = 6e6 pg) stays a small int, and
# push() allocates nothing (MicroPython: arrays preallocated, small ints).
#
# A full ring (more concentration changes in the path than SEGMENTS, which
# needs several refills before a few hundred uL are delivered) merges its two
# oldest segments at the higher concentration: the governor then counts more
# dose than was given, never less.

import struct
from array import array

from micropython import const

SEGMENTS = const(8)
# Head to catheter connector (an assumed design value, as before).
INTERNAL_NL = const(20_000)
# 60 cm at 2.6 uL/cm (Prometra labelling, docs/plant.md): the default catheter.
DEFAULT_CATHETER_NL = const(156_000)
CATHETER_MAX_NL = const(520_000)  # 200 cm at 2.6 uL/cm

_PACK_VERSION = const(1)
_HDR = "<BBBBiiii"  # version, count, head, res drug, res conc, internal, catheter, carry
_HDR_SIZE = const(20)
_SEG = "<Bii"
_SEG_SIZE = const(9)
PACKED_SIZE = const(_HDR_SIZE + SEGMENTS * _SEG_SIZE)


class DrugPath:
    def __init__(self):
        self.internal_nl = INTERNAL_NL
        self.catheter_nl = DEFAULT_CATHETER_NL
        self.res_drug = 0  # what the reservoir holds (REFILL)
        self.res_conc = 0
        self._drug = bytearray(SEGMENTS)
        self._conc = array("i", [0] * SEGMENTS)
        self._vol = array("i", [0] * SEGMENTS)
        self._head = 0  # ring index of the oldest segment (at the tip)
        self._count = 0  # 0: the contents are not known (never filled)
        self._carry = 0  # pg pushed out of the tip, not yet a whole ng
        self.tip_changed = False  # set by push() when the drug at the tip changes

    def volume_nl(self):
        return self.internal_nl + self.catheter_nl

    # --- the reservoir -----------------------------------------------------
    def refill(self, drug_id, conc_ug_ml):
        # The reservoir now holds this drug. A path whose contents were never
        # known (a pump implanted and primed before the first REFILL) is
        # taken to hold it too.
        self.res_drug = drug_id
        self.res_conc = conc_ug_ml
        if not self._count:
            self._fill(drug_id, conc_ug_ml)

    def _fill(self, drug_id, conc):
        self._head = 0
        self._count = 1
        self._drug[0] = drug_id
        self._conc[0] = conc
        self._vol[0] = self.volume_nl()

    # --- hot path ------------------------------------------------------------
    def push(self, volume_nl):
        # volume_nl entered at the reservoir end (what the encoder says moved)
        # and as much left the tip: returns the dose (ng) that left the tip.
        if volume_nl <= 0:
            return 0
        if not self._count:
            self._fill(self.res_drug, self.res_conc)
        tip_drug = self._drug[self._head]
        tip_conc = self._conc[self._head]
        # in at the reservoir end
        newest = (self._head + self._count - 1) % SEGMENTS
        if self._drug[newest] == self.res_drug and self._conc[newest] == self.res_conc:
            self._vol[newest] += volume_nl
        else:
            if self._count == SEGMENTS:
                self._merge_oldest()
            newest = (self._head + self._count) % SEGMENTS
            self._count += 1
            self._drug[newest] = self.res_drug
            self._conc[newest] = self.res_conc
            self._vol[newest] = volume_nl
        pg = self._take(volume_nl) + self._carry
        ng = pg // 1000
        self._carry = pg - ng * 1000
        if self._drug[self._head] != tip_drug or self._conc[self._head] != tip_conc:
            self.tip_changed = True
        return ng

    def _take(self, volume):
        # Removes volume from the tip end; returns its dose in pg. Keeps at
        # least one segment (the column is never empty).
        pg = 0
        while volume > 0 and self._count:
            i = self._head
            v = self._vol[i]
            if v > volume:
                self._vol[i] = v - volume
                pg += volume * self._conc[i]
                break
            pg += v * self._conc[i]
            volume -= v
            if self._count == 1:
                self._vol[i] = 0
                break
            self._head = (i + 1) % SEGMENTS
            self._count -= 1
        return pg

    def _merge_oldest(self):
        # Two oldest segments become one at the higher concentration.
        a = self._head
        b = (a + 1) % SEGMENTS
        if self._conc[a] > self._conc[b]:
            self._conc[b] = self._conc[a]
            self._drug[b] = self._drug[a]
        self._vol[b] += self._vol[a]
        self._head = b
        self._count -= 1

    # --- reports (programming time: may allocate) ----------------------------
    def tip(self):
        # (drug id, concentration) now leaving the tip.
        if not self._count:
            return (self.res_drug, self.res_conc)
        return (self._drug[self._head], self._conc[self._head])

    def old_volume_nl(self):
        # Volume still to leave the tip before the reservoir's drug reaches
        # it: all but the newest segment if that is the reservoir's drug.
        if not self._count:
            return 0
        total = 0
        for k in range(self._count):
            total += self._vol[(self._head + k) % SEGMENTS]
        newest = (self._head + self._count - 1) % SEGMENTS
        if self._drug[newest] == self.res_drug and self._conc[newest] == self.res_conc:
            total -= self._vol[newest]
        return total

    # --- persistence -----------------------------------------------------------
    def pack_into(self, buf, offset):
        # Writes PACKED_SIZE bytes at buf[offset:]; returns PACKED_SIZE.
        struct.pack_into(
            _HDR,
            buf,
            offset,
            _PACK_VERSION,
            self._count,
            self._head,
            self.res_drug,
            self.res_conc,
            self.internal_nl,
            self.catheter_nl,
            self._carry,
        )
        offset += _HDR_SIZE
        for i in range(SEGMENTS):
            struct.pack_into(_SEG, buf, offset, self._drug[i], self._conc[i], self._vol[i])
            offset += _SEG_SIZE
        return PACKED_SIZE

    def unpack(self, data):
        if len(data) != PACKED_SIZE:
            return False
        version, count, head, drug, conc, internal, catheter, carry = struct.unpack_from(
            _HDR, data, 0
        )
        if (
            version != _PACK_VERSION
            or count > SEGMENTS
            or head >= SEGMENTS
            or not 0 <= carry < 1000
            or not 0 < internal
            or not 0 <= catheter <= CATHETER_MAX_NL
        ):
            return False
        for i in range(SEGMENTS):
            self._drug[i], self._conc[i], self._vol[i] = struct.unpack_from(
                _SEG, data, _HDR_SIZE + i * _SEG_SIZE
            )
        self._count = count
        self._head = head
        self.res_drug = drug
        self.res_conc = conc
        self.internal_nl = internal
        self.catheter_nl = catheter
        self._carry = carry
        return True
