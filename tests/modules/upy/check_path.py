# Runs under MicroPython: the drug path (pump/path.py) against a plain
# reference model of the same first-in-first-out column, over seeded random
# refills, strokes, boluses and catheter changes.
import json

import micropython
from pump import dosecheck as D
from pump import path as P
from pump.path import DrugPath

_seed = [12345]


def rand(n):
    # a small LCG: the same sequence on every interpreter
    _seed[0] = (_seed[0] * 1103515245 + 12345) & 0x7FFFFFFF
    return _seed[0] % n


class Reference:
    # [conc, volume] oldest first; dose in pg; only equal neighbours merge
    def __init__(self, volume, conc):
        self.column = [[conc, volume]]
        self.res = conc
        self.pg = 0

    def push(self, volume):
        if self.column[-1][0] == self.res:
            self.column[-1][1] += volume
        else:
            self.column.append([self.res, volume])
        while volume:
            seg = self.column[0]
            take = seg[1] if seg[1] < volume else volume
            self.pg += take * seg[0]
            seg[1] -= take
            volume -= take
            if not seg[1]:
                self.column.pop(0)

    def tip(self):
        for conc, volume in self.column:
            if volume:
                return conc
        return self.res


CONCS = (500, 1_000, 2_000)
p = DrugPath()
assert p.volume_nl() == P.INTERNAL_NL + P.DEFAULT_CATHETER_NL == 176_000
# a path never filled takes the first drug recorded for the reservoir
p.refill(4, 500)
assert p.tip() == (4, 500) and p.old_volume_nl() == 0
ref = Reference(176_000, 500)
ng = 0
merged = False
exact = 0
for step in range(3_000):
    r = rand(200)
    if r < 2:
        conc = CONCS[rand(3)]
        p.refill(4, conc)
        ref.res = conc
    elif r < 8:
        v = 1_000 + rand(100_000)  # a bolus
        ng += p.push(v)
        ref.push(v)
    else:
        ng += p.push(200)
        ref.push(200)
    if p._count == P.SEGMENTS:
        merged = True
    if not merged:
        exact += 1
        # exact: the whole ng of everything that left, the rest carried
        assert ng == ref.pg // 1000, (step, ng, ref.pg)
        assert p.tip() == (4, ref.tip()), step
        old = sum(v for c, v in ref.column)
        if ref.column[-1][0] == ref.res:
            old -= ref.column[-1][1]
        assert p.old_volume_nl() == old, (step, p.old_volume_nl(), old)
    else:
        assert ng >= ref.pg // 1000  # merged at the higher concentration: never less
    # the dose of the next volume and the volume of a dose agree
    d = 1 + rand(400_000)
    v = D.path_volume_for_dose_nl(p, d)
    assert D.path_dose_of_next_ng(p, v) <= d, (step, d, v)
    assert D.path_dose_of_next_ng(p, v + 1) > d, (step, d, v)  # and it is the largest

assert exact >= 1_000, exact  # most of the run is compared exactly

# --- the tip dose of a whole column at once --------------------------------------
q = DrugPath()
q.refill(4, 2_000)
q.refill(4, 500)  # the reservoir now holds 500; the path still 2000
assert q.old_volume_nl() == 176_000 and q.tip() == (4, 2_000)
assert D.path_dose_of_next_ng(q, 176_000) == 352_000  # 176 uL of 2000 ug/mL
assert D.path_dose_of_next_ng(q, 186_000) == 357_000  # then 10 uL of the new 500
assert D.path_volume_for_dose_nl(q, 352_000) == 176_000
total = 0
for _ in range(880):
    total += q.push(200)
assert total == 352_000 and q.tip() == (4, 500) and q.tip_changed
assert q.old_volume_nl() == 0

# --- a new catheter: empty at the tip end, the pump keeps its drug ---------------
D.path_set_catheter(q, 100_000, 1)
assert q.volume_nl() == 120_000 and q.tip() == (0, 0)
assert D.path_prime_volume_nl(q) == 100_000 and D.path_dose_of_next_ng(q, 100_000) == 0
total = 0
for _ in range(500):
    total += q.push(200)
assert total == 0 and q.tip() == (4, 500) and D.path_prime_volume_nl(q) == 0
# a correction: longer, extended with what is at the tip
D.path_set_catheter(q, 150_000, 0)
assert q.volume_nl() == 170_000 and q.old_volume_nl() == 0

# --- a full ring merges at the higher concentration ------------------------------
m = DrugPath()
m.refill(4, 50)
for k in range(20):
    m.refill(4, 50 + 10 * k)
    m.push(200)
assert m._count <= P.SEGMENTS
assert m.tip()[1] >= 50

# --- persistence ---------------------------------------------------------------------
buf = bytearray(P.PACKED_SIZE)
assert p.pack_into(buf, 0) == P.PACKED_SIZE
copy = DrugPath()
assert copy.unpack(bytes(buf))
assert copy.tip() == p.tip() and copy.old_volume_nl() == p.old_volume_nl()
assert copy.push(12_345) == p.push(12_345)
bad = bytearray(buf)
bad[0] = 99  # version
assert not DrugPath().unpack(bytes(bad))
assert not DrugPath().unpack(bytes(buf[:-1]))

# --- push allocates nothing ------------------------------------------------------------
h = DrugPath()
h.refill(4, 2_000)
h.refill(4, 500)
micropython.heap_lock()
try:
    for _ in range(1_000):
        h.push(200)
finally:
    micropython.heap_unlock()
assert h.tip() == (4, 500)

print(json.dumps({"ok": True}))
