# Runs under MicroPython: the drug library and the program limit checks.
import json

from pump import limits as L
from pump.limits import (
    ALLOWED,
    DRUG_BACLOFEN,
    DRUG_MORPHINE,
    DRUG_NONE,
    DRUG_ZICONOTIDE,
    NEEDS_OVERRIDE,
    REFUSED_HARD,
    SOFT_BOLUS_BIT,
    SOFT_DAILY_BIT,
    check_patient_bolus,
    check_program,
    check_rate,
    dose_ng,
    governor_limits,
    volume_nl,
)

SMALL = 1 << 30  # RP2040 small ints are below this

# --- every row is sane ---------------------------------------------------------
ids = []
for row in L.DRUGS:
    assert len(row) == 9, row
    did, name, cmin, cmax, dsoft, dhard, bsoft, bhard, hhard = row
    assert did not in ids, did
    ids.append(did)
    assert isinstance(name, str) and name, row
    for value in row[2:]:
        assert 0 <= value < SMALL, row
    if did == DRUG_NONE:
        assert row[2:] == (0,) * 7, row
        continue
    assert 0 < cmin <= cmax, row
    assert 0 < dsoft <= dhard, row
    assert 0 < bsoft <= bhard <= dhard, row
    assert bsoft <= dsoft, row
    # one maximal bolus on top of 61 min of the hard daily dose fits the hour
    assert hhard >= bhard + (dhard * 61 + 1439) // 1440, row
    # two maximal boluses in one hour do not
    assert hhard < 2 * bhard, row
    assert hhard <= dhard, row
    # the slowest rate at the strongest concentration needs no override
    assert dose_ng(L.RATE_MIN_NL_DAY, cmax) <= dsoft, row
    assert check_program(did, cmax, L.RATE_MIN_NL_DAY, 0, 0, False) == (ALLOWED, 0), row
for needed in (0, 1, 2, 3, 4, 5, 6):
    assert needed in ids, needed
names = [row[1] for row in L.DRUGS]
for n in ("none", "morphine", "hydromorphone", "ziconotide", "baclofen", "bupivacaine"):
    assert n in names, n
assert "clonidine" in names
assert L.drug(99) is None
assert L.drug(DRUG_ZICONOTIDE)[L.D_DAILY_HARD] == 19_200  # labelled 19.2 ug/day

# reason codes index their names
# the limit ids are the schema's (NACK details the bench names)
import schema  # noqa: E402

for code, name in schema.LIMITS:
    assert getattr(L, "LIMIT_" + name.upper()) == code, name
assert SOFT_DAILY_BIT == 1 << L.LIMIT_DAILY_SOFT and SOFT_BOLUS_BIT == 1 << L.LIMIT_BOLUS_SOFT

# --- conversions and their rounding ----------------------------------------------
assert dose_ng(1000, 25) == 25  # 1 uL of 25 ug/mL = 25 ng
assert dose_ng(800_000, 25_000) == 20_000_000  # 0.8 mL of 25 mg/mL = 20 mg
assert dose_ng(0, 25_000) == 0
assert dose_ng(1, 1) == 1  # 0.001 ng rounds up
assert dose_ng(999, 1) == 1  # 0.999 ng rounds up
assert dose_ng(1001, 1) == 2  # 1.001 ng rounds up
assert volume_nl(19_200, 25) == 768_000  # 19.2 ug at 25 ug/mL = 0.768 mL
assert volume_nl(1, 3) == 333  # 333.3 nL rounds down
assert volume_nl(2, 3) == 666  # 666.7 nL rounds down: never over-allows
assert volume_nl(0, 3) == 0
for d in (1, 2, 7, 999, 19_200, 2_500_000, 25_000_000):
    for c in (1, 3, 7, 25, 100, 999, 2_000, 25_000, 30_000):
        v = volume_nl(d, c)
        assert dose_ng(v, c) <= d, (d, c, v)  # the limit volume is within
        assert dose_ng(v + 1, c) > d, (d, c, v)  # one nL more is not
try:
    volume_nl(100, 0)
    raise AssertionError("volume_nl at concentration 0")
except ValueError:
    pass

# --- refusals, each with an example from the drug library's sources --------------
# Ziconotide 25 ug/mL at 1 mL/day = 25 ug/day > 19.2 ug/day labelled maximum:
# hard, and an override does not help.
r = check_program(DRUG_ZICONOTIDE, 25, 1_000_000, 42_362, 0, False)
assert r == (REFUSED_HARD, L.LIMIT_DAILY_HARD), r
r = check_program(DRUG_ZICONOTIDE, 25, 1_000_000, 42_362, 0, True)
assert r == (REFUSED_HARD, L.LIMIT_DAILY_HARD), r
# ... at exactly 19.2 ug/day (0.768 mL) the hard limit holds, the soft one
# (9.6 ug/day) needs the override; one nL more is hard
r = check_program(DRUG_ZICONOTIDE, 25, 768_000, 32_534, 0, False)
assert r == (NEEDS_OVERRIDE, L.LIMIT_DAILY_SOFT), r
r = check_program(DRUG_ZICONOTIDE, 25, 768_000, 32_534, 0, True)
assert r == (ALLOWED, SOFT_DAILY_BIT), r
r = check_program(DRUG_ZICONOTIDE, 25, 768_001, 32_534, 0, True)
assert r == (REFUSED_HARD, L.LIMIT_DAILY_HARD), r
# ziconotide start dose 2.4 ug/day at 25 ug/mL (0.096 mL/day): plain yes
assert check_program(DRUG_ZICONOTIDE, 25, 96_000, 4_067, 0, False) == (ALLOWED, 0)

# Morphine 25 mg/mL at 0.8 mL/day = 20 mg/day: above the 15 mg/day soft
# limit (PACC, UNCONFIRMED), within the 25 mg/day hard: needs the override.
r = check_program(DRUG_MORPHINE, 25_000, 800_000, 33_889, 0, False)
assert r == (NEEDS_OVERRIDE, L.LIMIT_DAILY_SOFT), r
r = check_program(DRUG_MORPHINE, 25_000, 800_000, 33_889, 0, True)
assert r == (ALLOWED, SOFT_DAILY_BIT), r
# ... 1 mL/day = 25 mg/day is exactly the hard limit; 1 nL more is refused
assert check_program(DRUG_MORPHINE, 25_000, 1_000_000, 42_362, 0, True) == (
    ALLOWED,
    SOFT_DAILY_BIT,
)
r = check_program(DRUG_MORPHINE, 25_000, 1_000_001, 42_362, 0, True)
assert r == (REFUSED_HARD, L.LIMIT_DAILY_HARD), r
# tolerant-range dose, 10 mg/mL at 0.5 mL/day = 5 mg/day: plain yes
assert check_program(DRUG_MORPHINE, 10_000, 500_000, 21_181, 0, False) == (ALLOWED, 0)

# Both soft limits overridden: morphine 25 mg/mL, 0.8 mL/day with an 80 uL
# (2 mg) patient bolus: mask has both bits, for the log
r = check_program(DRUG_MORPHINE, 25_000, 800_000, 113_889, 80_000, False)
assert r == (NEEDS_OVERRIDE, L.LIMIT_DAILY_SOFT), r
r = check_program(DRUG_MORPHINE, 25_000, 800_000, 113_889, 80_000, True)
assert r == (ALLOWED, SOFT_DAILY_BIT | SOFT_BOLUS_BIT), r
# only the bolus soft limit: 10 mg/mL, 0.5 mL/day, 200 uL (2 mg) bolus
r = check_program(DRUG_MORPHINE, 10_000, 700_000, 221_181, 200_000, False)
assert r == (NEEDS_OVERRIDE, L.LIMIT_BOLUS_SOFT), r
r = check_program(DRUG_MORPHINE, 10_000, 700_000, 221_181, 200_000, True)
assert r == (ALLOWED, SOFT_BOLUS_BIT), r

# Hourly hard (basal + boluses in any hour; the Open PCA lesson): morphine
# 25 mg/mL, 0.5 mL/day basal and two 80 uL (2 mg) boluses within one hour =
# 4.53 mg in 61 min > 3.6 mg; daily and single bolus are within hard.
r = check_program(DRUG_MORPHINE, 25_000, 660_000, 181_181, 80_000, True)
assert r == (REFUSED_HARD, L.LIMIT_HOURLY_HARD), r
# one of those boluses in the hour passes (with the bolus override)
r = check_program(DRUG_MORPHINE, 25_000, 660_000, 101_181, 80_000, True)
assert r == (ALLOWED, SOFT_DAILY_BIT | SOFT_BOLUS_BIT), r
# ziconotide: two maximal 1.92 ug boluses in one hour > 2.8 ug
r = check_program(DRUG_ZICONOTIDE, 100, 96_000 + 38_400, 4_067 + 38_400, 19_200, True)
assert r == (REFUSED_HARD, L.LIMIT_HOURLY_HARD), r

# Bolus limits, baclofen (screening boluses 50/75/100 ug, docs/sources.md [67][68]):
# at 500 ug/mL a 200 uL bolus is 100 ug: the largest screening dose, allowed
assert check_program(DRUG_BACLOFEN, 500, 1_400_000, 250_834, 200_000, False) == (ALLOWED, 0)
# 240 uL = 120 ug: above the 100 ug soft bolus limit
r = check_program(DRUG_BACLOFEN, 500, 1_400_000, 290_834, 240_000, False)
assert r == (NEEDS_OVERRIDE, L.LIMIT_BOLUS_SOFT), r
# at 2000 ug/mL a 100 uL bolus = 200 ug > 150 ug hard
r = check_program(DRUG_BACLOFEN, 2_000, 300_000, 112_709, 100_000, True)
assert r == (REFUSED_HARD, L.LIMIT_BOLUS_HARD), r
# maintenance 600 ug/day at 500 ug/mL: plain yes
assert check_program(DRUG_BACLOFEN, 500, 1_200_000, 50_834, 0, False) == (ALLOWED, 0)

# Concentration outside the range: morphine 30 mg/mL (above the 25 mg/mL
# product), ziconotide 200 ug/mL (above 100), a drug at 0, saline at 25
for args in (
    (DRUG_MORPHINE, 30_000),
    (DRUG_MORPHINE, 499),
    (DRUG_ZICONOTIDE, 200),
    (DRUG_ZICONOTIDE, 0),
    (DRUG_NONE, 25),
):
    r = check_program(args[0], args[1], 100_000, 4_237, 0, True)
    assert r == (REFUSED_HARD, L.LIMIT_CONCENTRATION), (args, r)

# Unknown drug
assert check_program(99, 25, 100_000, 4_237, 0, True) == (REFUSED_HARD, L.LIMIT_UNKNOWN_DRUG)

# Rate: the mechanism's range 0.048..24 mL/day, or 0 (stopped)
assert check_rate(0) == (ALLOWED, 0)
assert check_rate(48_000) == (ALLOWED, 0)
assert check_rate(24_000_000) == (ALLOWED, 0)
assert check_rate(47_999) == (REFUSED_HARD, L.LIMIT_RATE)
assert check_rate(24_000_001) == (REFUSED_HARD, L.LIMIT_RATE)
assert check_rate(-1) == (REFUSED_HARD, L.LIMIT_RATE)
assert L.MAX_1H_NL == 1_016_667 and L.MAX_24H_NL == 24_250_000
# saline at the mechanical maxima: volume limits only
assert check_program(DRUG_NONE, 0, L.MAX_24H_NL, L.MAX_1H_NL, 1_000_000, False) == (ALLOWED, 0)
r = check_program(DRUG_NONE, 0, L.MAX_24H_NL + 1, 1_000_000, 0, True)
assert r == (REFUSED_HARD, L.LIMIT_RATE), r
r = check_program(DRUG_NONE, 0, 1_000_000, L.MAX_1H_NL + 1, 0, True)
assert r == (REFUSED_HARD, L.LIMIT_RATE), r
r = check_program(DRUG_MORPHINE, 10_000, -1, 0, 0, True)
assert r == (REFUSED_HARD, L.LIMIT_RATE), r

# Patient bolus sanity (lockout / max per day)
ok = (ALLOWED, 0)
bad = (REFUSED_HARD, L.LIMIT_PATIENT_BOLUS)
assert check_patient_bolus(0, 0, 0) == ok  # disabled
assert check_patient_bolus(50_000, 3_600, 6) == ok
assert check_patient_bolus(50_000, 600, 24) == ok
assert check_patient_bolus(50_000, 3_600, 24) == ok  # 24 x 1 h = one day
assert check_patient_bolus(50_000, 599, 4) == bad  # lockout under 10 min
assert check_patient_bolus(50_000, 86_401, 1) == bad
assert check_patient_bolus(50_000, 600, 25) == bad  # more than 24 a day
assert check_patient_bolus(50_000, 7_201, 12) == bad  # 12 x 2 h > one day
assert check_patient_bolus(0, 3_600, 4) == bad  # no dose
assert check_patient_bolus(50_000, 3_600, -1) == bad

# Every drug, at both ends of its range: the hard daily limit turned into a
# volume is accepted (with override if soft) and one nL more is refused.
for row in L.DRUGS:
    did = row[L.D_ID]
    if did == DRUG_NONE:
        continue
    for c in (row[L.D_CONC_MIN], row[L.D_CONC_MAX]):
        v = volume_nl(row[L.D_DAILY_HARD], c)
        if v + 1 > L.MAX_24H_NL:
            continue
        r = check_program(did, c, v, 0, 0, True)
        assert r[0] == ALLOWED, (did, c, r)
        r = check_program(did, c, v + 1, 0, 0, True)
        assert r == (REFUSED_HARD, L.LIMIT_DAILY_HARD), (did, c, r)

# --- governor limits -------------------------------------------------------------
# In dose at the tip (ng), the drug's hard hourly and daily doses whatever the
# concentration: a concentration change never changes them.
assert governor_limits(DRUG_ZICONOTIDE, 25) == (2_800, 19_200)
assert governor_limits(DRUG_ZICONOTIDE, 100) == (2_800, 19_200)
assert governor_limits(DRUG_MORPHINE, 25_000) == (3_600_000, 25_000_000)
assert governor_limits(DRUG_BACLOFEN, 50) == governor_limits(DRUG_BACLOFEN, 2_000)
assert governor_limits(DRUG_BACLOFEN, 500) == (210_000, 1_200_000)
assert governor_limits(DRUG_NONE, 0) is None  # saline: no dose limit
assert governor_limits(99, 25) == (0, 0)  # unknown drug: stop at once
assert governor_limits(DRUG_MORPHINE, 30_000) == (0, 0)  # outside range
for row in L.DRUGS:
    if row[L.D_ID] == DRUG_NONE:
        continue
    for c in (row[L.D_CONC_MIN], row[L.D_CONC_MAX]):
        assert governor_limits(row[L.D_ID], c) == (row[L.D_HOUR_HARD], row[L.D_DAILY_HARD])
        # every limit fits the governor's small-int windows
        assert row[L.D_HOUR_HARD] < (1 << 23) and row[L.D_DAILY_HARD] < (1 << 30)

# --- bolus dose ---------------------------------------------------------------------
assert L.check_bolus_dose(DRUG_BACLOFEN, 150_000, False) == (L.NEEDS_OVERRIDE, L.LIMIT_BOLUS_SOFT)
assert L.check_bolus_dose(DRUG_BACLOFEN, 150_000, True) == (ALLOWED, 0)
assert L.check_bolus_dose(DRUG_BACLOFEN, 150_001, True) == (REFUSED_HARD, L.LIMIT_BOLUS_HARD)
assert L.check_bolus_dose(DRUG_BACLOFEN, 100_000, False) == (ALLOWED, 0)
assert L.check_bolus_dose(DRUG_NONE, 10**9, False) == (ALLOWED, 0)
assert L.check_bolus_dose(99, 1, True) == (REFUSED_HARD, L.LIMIT_UNKNOWN_DRUG)

print(json.dumps({"ok": True, "drugs": len(L.DRUGS)}))
