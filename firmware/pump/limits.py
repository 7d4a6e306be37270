# Drug library and program limit checks (hard and soft limits).
#
# Units, as everywhere in the dose path (all integers, no floats):
#   volume nL, rate nL/day, concentration ug/mL (= ng/uL), dose ng, time s.
#   1 nL of a C ug/mL solution holds C/1000 ng.
#
# A program is checked once, when it is proposed, against the row of its drug:
# hard limits refuse it (an override never helps), soft limits refuse it
# unless the clinician confirms (override), and the overridden soft limits are
# reported as a bit mask for the event log (GIP: "hard -> reject, soft -> warn
# + confirm; log library version", docs/sources.md [55]). The independent
# dose governor (pump/governor.py) then enforces the hard hourly and daily
# limits on the dose that left the catheter tip (what the encoder says moved,
# through the drug path model); governor_limits() gives it its limits in ng.
#
# Nothing here is on a hot path: checks run at programming time, so the big
# integers that volume x concentration can produce (24,000,000 nL x 30,000
# ug/mL is about 7.2e11, above the RP2040's 31-bit small ints) only cost a
# short-lived allocation there. Every value stored in the table is below 2**30.

from micropython import const

from protocol.table import (
    DRUG_BACLOFEN,
    DRUG_BUPIVACAINE,
    DRUG_CLONIDINE,
    DRUG_HYDROMORPHONE,
    DRUG_MORPHINE,
    DRUG_NONE,
    DRUG_SUFENTANIL,
    DRUG_ZICONOTIDE,
)

# --- library -----------------------------------------------------------------
LIBRARY_VERSION = const(1)  # reported with every program check that reaches the log

# Pump mechanism (SynchroMed II [6]): minimum programmable rate
# 0.048 mL/day; maximum UNCONFIRMED ("often quoted 24 mL/day"), used here as
# this pump's mechanical maximum. 0 is allowed: the pump is stopped.
RATE_MIN_NL_DAY = const(48_000)
RATE_MAX_NL_DAY = const(24_000_000)

# The governor's conservative windows (pump/governor.py): one hour is counted
# as the current minute plus the 60 previous full minutes, so it spans up to
# 61 minutes; one day is the current quarter hour plus the 96 previous full
# quarters, up to 24 h 15 min. A program's worst-case volumes passed to
# check_program() should be taken over the same spans, so that a program the
# library accepts can never trip the governor.
WINDOW_1H_S = const(61 * 60)
WINDOW_24H_S = const(97 * 15 * 60)

# Most the mechanism can move in each window at RATE_MAX_NL_DAY (rounded up):
# 1,016,667 nL and 24,250,000 nL. Used for the saline/no-drug governor
# limits, to cap every drug's governor limits, and to reject programs that
# claim volumes the pump cannot deliver.
MAX_1H_NL = const((RATE_MAX_NL_DAY * WINDOW_1H_S + 86_399) // 86_400)
MAX_24H_NL = const((RATE_MAX_NL_DAY * WINDOW_24H_S + 86_399) // 86_400)

# Patient bolus sanity (no public source gives the lockout range or the most
# activations a day of an implanted pump: UNCONFIRMED). The lockout floor is
# the upper end of the external PCA lockouts (5-10 min [61]);
# intrathecal onset is slower, so nothing shorter is plausible. 24 per day is
# a project choice (one an hour on average), not a sourced figure.
PB_LOCKOUT_MIN_S = const(600)
PB_LOCKOUT_MAX_S = const(86_400)
PB_MAX_PER_DAY = const(24)

# Row fields.
D_ID = const(0)
D_NAME = const(1)
D_CONC_MIN = const(2)  # ug/mL, inclusive
D_CONC_MAX = const(3)  # ug/mL, inclusive
D_DAILY_SOFT = const(4)  # ng/day
D_DAILY_HARD = const(5)  # ng/day
D_BOLUS_SOFT = const(6)  # ng per single bolus
D_BOLUS_HARD = const(7)  # ng per single bolus
D_HOUR_HARD = const(8)  # ng in any 60 min (basal + boluses)

# How the values were chosen (source numbers in brackets: docs/sources.md;
# the "PACC 2012 maxima" are UNCONFIRMED, no primary source, and are used
# only as the line between soft and hard, never as established fact):
# - daily soft: the top of the usual maintenance range, or the UNCONFIRMED
#   PACC maximum where that is lower: above it the clinician must confirm;
# - daily hard: the highest daily dose the sources mention at all (a labelled
#   maximum, the top of a published range, or the label's caution level plus
#   a margin); nothing above it is programmable;
# - bolus: the sources give no intrathecal bolus maxima except baclofen's
#   screening doses, so a single bolus is limited to 10 % of the daily soft
#   (soft) and daily hard (hard) dose, i.e. about 2.4 h of the day's dose;
# - hourly hard: one largest bolus on top of 61 minutes of basal at the hard
#   daily dose, rounded up to a round figure: a maximal basal plus one
#   maximal bolus passes, two maximal boluses within an hour do not (the
#   CADD-Solis style window that counts basal and boluses [38]; the PCA
#   model's lesson that the window must include basal [60]).
# - concentration: the commercial strengths listed, up to the UNCONFIRMED
#   PACC maximum where one is given; the lower bound is the weakest dilution
#   considered plausible (project choice).
#
# fmt: off
DRUGS = (
    # id, name, conc min..max ug/mL, daily soft/hard ng, bolus soft/hard ng, 1 h hard ng
    # Saline or no drug: concentration must be 0, no dose limits (the
    # governor still caps volume at the mechanism's maximum).
    (DRUG_NONE, "none", 0, 0, 0, 0, 0, 0, 0),
    # Morphine PF: 10 and 25 mg/mL products [62]; naive 0.2-1 mg/day, tolerant
    # 1-10 mg/day, caution > 20 mg/day [62][63]. UNCONFIRMED PACC 2012: 20
    # mg/mL, 15 mg/day. Soft 15 mg/day (PACC, above the tolerant range); hard
    # 25 mg/day (the label's 20 mg/day caution level + 25 %). Concentration up
    # to the 25 mg/mL product (granuloma risk at >= 20-25 mg/mL [63] is the
    # clinician's call); 0.5 mg/mL lower bound. Bolus 1.5 / 2.5 mg (10 %).
    # 1 h hard 3.6 mg >= 2.5 mg + 61 min of 25 mg/day (1.059 mg).
    (DRUG_MORPHINE, "morphine", 500, 25_000,
     15_000_000, 25_000_000, 1_500_000, 2_500_000, 3_600_000),
    # Hydromorphone (compounded, no US IT label [64]): 0.5-15 (or 0.5-25)
    # mg/day [64]. UNCONFIRMED PACC 2012: 15 mg/mL, 10 mg/day. Soft 10 mg/day
    # (PACC); hard 15 mg/day (top of the narrower published range; the 25 mg
    # figure is not used). Concentration 0.5-15 mg/mL (PACC max). Bolus 1 /
    # 1.5 mg (10 %). 1 h hard 2.2 mg >= 1.5 mg + 61 min of 15 mg/day (0.635 mg).
    (DRUG_HYDROMORPHONE, "hydromorphone", 500, 15_000,
     10_000_000, 15_000_000, 1_000_000, 1_500_000, 2_200_000),
    # Ziconotide: 25 ug/mL undiluted, 100 ug/mL diluted; start <= 2.4
    # ug/day, steps <= 2.4 ug 2-3x/week, labelled max 19.2 ug/day (0.8 ug/h)
    # by day 21 [65][6][66]; UNCONFIRMED PACC 2012: 100 ug/mL, 19.2 ug/day.
    # Hard 19.2 ug/day (label). Soft 9.6 ug/day: the 2.4 ug/day start plus
    # three maximal steps, i.e. more than about a week of titration, so a
    # higher dose needs confirmation. Concentration 1-100 ug/mL: below 0.8
    # ug/mL the labelled maximum would need more than 24 mL/day. Bolus 0.96 /
    # 1.92 ug (10 %; ziconotide is normally not bolused). 1 h hard 2.8 ug >=
    # 1.92 ug + 61 min of 19.2 ug/day (0.814 ug).
    (DRUG_ZICONOTIDE, "ziconotide", 1, 100,
     9_600, 19_200, 960, 1_920, 2_800),
    # Baclofen: 50, 500, 1000, 2000 ug/mL; screening boluses 50/75/100 ug;
    # maintenance 300-800 ug/day spinal, 90-700 cerebral [67][68]; no source
    # gives a maximum. Soft 800 ug/day (top of spinal maintenance); hard 1,200
    # ug/day (1.5 x that; a project choice, UNCONFIRMED, no source gives a
    # ceiling). Concentration 50-2000 ug/mL (the products). Bolus soft 100 ug
    # (largest screening dose), hard 150 ug (1.5 x). 1 h hard 210 ug >= 150 ug
    # + 61 min of 1,200 ug/day (50.8 ug). Abrupt withdrawal is
    # life-threatening [67][68]: the reservoir alarms matter more than these.
    (DRUG_BACLOFEN, "baclofen", 50, 2_000,
     800_000, 1_200_000, 100_000, 150_000, 210_000),
    # Bupivacaine (compounded): 6-20 mg/day [64]; UNCONFIRMED PACC 2012: 30
    # mg/mL, 15-20 mg/day. Soft 15 mg/day (lower PACC figure); hard 20 mg/day
    # (top of the range and of PACC). Concentration 0.5-30 mg/mL (PACC max).
    # Bolus 1.5 / 2 mg (10 %). 1 h hard 2.9 mg >= 2 mg + 61 min of 20 mg/day
    # (0.847 mg).
    (DRUG_BUPIVACAINE, "bupivacaine", 500, 30_000,
     15_000_000, 20_000_000, 1_500_000, 2_000_000, 2_900_000),
    # Clonidine: 100 and 500 ug/mL; 250-2,000 ug/day [64][69]; UNCONFIRMED
    # PACC 2012: 1,000 ug/mL, 40-600 ug/day. Soft 600 ug/day (PACC); hard
    # 2,000 ug/day (top of the published range). Concentration 50-1,000 ug/mL
    # (PACC max). Bolus 60 / 200 ug (10 %). 1 h hard 290 ug >= 200 ug + 61 min
    # of 2,000 ug/day (84.7 ug).
    (DRUG_CLONIDINE, "clonidine", 50, 1_000,
     600_000, 2_000_000, 60_000, 200_000, 290_000),
    # Sufentanil (compounded): 10-100 ug/day [64]; no PACC figure
    # found. Soft 50 ug/day (mid-range, project choice); hard 100 ug/day
    # (top of the range). Concentration 1-50 ug/mL: UNCONFIRMED, no source found
    # (50 ug/mL is the usual injection strength; verify). Bolus 5
    # / 10 ug (10 %). 1 h hard 15 ug >= 10 ug + 61 min of 100 ug/day (4.2 ug).
    (DRUG_SUFENTANIL, "sufentanil", 1, 50,
     50_000, 100_000, 5_000, 10_000, 15_000),
)
# fmt: on

# --- results and reasons -----------------------------------------------------
# First element of every check result.
ALLOWED = const(0)
REFUSED_HARD = const(1)  # a hard limit is exceeded; override does not help
NEEDS_OVERRIDE = const(2)  # a soft limit is exceeded and override was not given

# Limit (reason) codes, second element of a refusal. Soft limits are also
# reported as bits (1 << code) in the mask of an overridden program.
# Ids and names are protocol/schema.py LIMITS (NACK details); a test checks.
LIMIT_NONE = const(0)
LIMIT_UNKNOWN_DRUG = const(1)  # drug id not in the library
LIMIT_CONCENTRATION = const(2)  # concentration outside the drug's range
LIMIT_RATE = const(3)  # rate or volume outside what the mechanism can do
LIMIT_DAILY_HARD = const(4)
LIMIT_BOLUS_HARD = const(5)
LIMIT_HOURLY_HARD = const(6)
LIMIT_DAILY_SOFT = const(7)
LIMIT_BOLUS_SOFT = const(8)
LIMIT_PATIENT_BOLUS = const(9)  # lockout / max per day not sane


SOFT_DAILY_BIT = const(1 << LIMIT_DAILY_SOFT)
SOFT_BOLUS_BIT = const(1 << LIMIT_BOLUS_SOFT)


# --- conversions ---------------------------------------------------------------
def dose_ng(volume_nl, conc_ug_ml):
    # Dose in ng of volume_nl at conc_ug_ml, rounded UP. With an integer limit
    # L, dose_ng(v, c) > L exactly when the true dose v*c/1000 > L, so a limit
    # comparison on the rounded value is exact (rounding down would let up
    # to 0.999 ng through).
    return -((-volume_nl * conc_ug_ml) // 1000)


def volume_nl(dose, conc_ug_ml):
    # Largest volume in nL whose dose does not exceed `dose` ng at conc_ug_ml
    # (rounded DOWN), so a dose limit turned into a volume never over-allows:
    # dose_ng(volume_nl(d, c), c) <= d. conc_ug_ml must be > 0 (ValueError).
    if conc_ug_ml <= 0:
        raise ValueError("concentration")
    return (dose * 1000) // conc_ug_ml


def drug(drug_id):
    # The library row of drug_id, or None.
    for row in DRUGS:
        if row[D_ID] == drug_id:
            return row
    return None


def _over(volume, conc, limit_ng):
    # True when volume nL at conc ug/mL holds more than limit_ng (exact).
    return volume * conc > limit_ng * 1000


# --- checks --------------------------------------------------------------------
def check_rate(rate_nl_day):
    # A basal or flex-step rate: 0 (stopped) or within the mechanism's range.
    if rate_nl_day == 0 or RATE_MIN_NL_DAY <= rate_nl_day <= RATE_MAX_NL_DAY:
        return (ALLOWED, LIMIT_NONE)
    return (REFUSED_HARD, LIMIT_RATE)


def check_patient_bolus(dose_nl, lockout_s, max_per_day):
    # Sanity of a patient-bolus setting (its dose is checked against the drug
    # by check_program through max_bolus_nl). max_per_day 0 disables patient
    # boluses and then nothing else is checked. Otherwise the dose must be
    # positive, the lockout within PB_LOCKOUT_MIN_S..PB_LOCKOUT_MAX_S, the
    # count within 1..PB_MAX_PER_DAY, and the count reachable with that
    # lockout (max_per_day * lockout_s <= one day; a larger count is a typing
    # error that would also inflate the daily worst case).
    if max_per_day == 0:
        return (ALLOWED, LIMIT_NONE)
    if (
        dose_nl <= 0
        or max_per_day < 0
        or max_per_day > PB_MAX_PER_DAY
        or lockout_s < PB_LOCKOUT_MIN_S
        or lockout_s > PB_LOCKOUT_MAX_S
        or max_per_day * lockout_s > 86_400
    ):
        return (REFUSED_HARD, LIMIT_PATIENT_BOLUS)
    return (ALLOWED, LIMIT_NONE)


def check_program(drug_id, conc_ug_ml, max_daily_nl, max_hourly_nl, max_bolus_nl, override_soft):
    # Checks a program's worst cases against the drug library.
    #   max_daily_nl: most volume in any day (highest flex day with every
    #     allowed patient bolus taken); to match the governor exactly, take it
    #     over WINDOW_24H_S (24 h 15 min) rather than a calendar day;
    #   max_hourly_nl: most volume in any WINDOW_1H_S (61 min) window, basal
    #     and boluses together;
    #   max_bolus_nl: the largest single bolus (clinician or patient).
    # Returns (result, detail):
    #   (ALLOWED, 0)               within every limit;
    #   (REFUSED_HARD, limit)      a hard limit (or drug, concentration,
    #                              mechanism) is violated; first one found;
    #   (NEEDS_OVERRIDE, limit)    a soft limit is exceeded and override_soft
    #                              is false; first one found;
    #   (ALLOWED, soft_mask)       override_soft given: soft_mask has bit
    #                              (1 << LIMIT_..._SOFT) per soft limit
    #                              exceeded (0 if none), for the log.
    row = drug(drug_id)
    if row is None:
        return (REFUSED_HARD, LIMIT_UNKNOWN_DRUG)
    if conc_ug_ml < row[D_CONC_MIN] or conc_ug_ml > row[D_CONC_MAX]:
        return (REFUSED_HARD, LIMIT_CONCENTRATION)
    if (
        max_daily_nl < 0
        or max_hourly_nl < 0
        or max_bolus_nl < 0
        or max_daily_nl > MAX_24H_NL
        or max_hourly_nl > MAX_1H_NL
    ):
        return (REFUSED_HARD, LIMIT_RATE)
    if drug_id == DRUG_NONE:
        return (ALLOWED, LIMIT_NONE)
    c = conc_ug_ml
    if _over(max_daily_nl, c, row[D_DAILY_HARD]):
        return (REFUSED_HARD, LIMIT_DAILY_HARD)
    if _over(max_bolus_nl, c, row[D_BOLUS_HARD]):
        return (REFUSED_HARD, LIMIT_BOLUS_HARD)
    if _over(max_hourly_nl, c, row[D_HOUR_HARD]):
        return (REFUSED_HARD, LIMIT_HOURLY_HARD)
    mask = 0
    if _over(max_daily_nl, c, row[D_DAILY_SOFT]):
        mask |= SOFT_DAILY_BIT
    if _over(max_bolus_nl, c, row[D_BOLUS_SOFT]):
        mask |= SOFT_BOLUS_BIT
    if mask and not override_soft:
        return (NEEDS_OVERRIDE, LIMIT_DAILY_SOFT if mask & SOFT_DAILY_BIT else LIMIT_BOLUS_SOFT)
    return (ALLOWED, mask)


def check_bolus_dose(drug_id, dose, override_soft):
    # A single bolus of `dose` ng at the tip against the drug's bolus limits:
    # (ALLOWED, 0), (REFUSED_HARD, LIMIT_BOLUS_HARD) or (NEEDS_OVERRIDE,
    # LIMIT_BOLUS_SOFT) as check_program.
    row = drug(drug_id)
    if row is None:
        return (REFUSED_HARD, LIMIT_UNKNOWN_DRUG)
    if drug_id == DRUG_NONE:
        return (ALLOWED, LIMIT_NONE)
    if dose > row[D_BOLUS_HARD]:
        return (REFUSED_HARD, LIMIT_BOLUS_HARD)
    if dose > row[D_BOLUS_SOFT] and not override_soft:
        return (NEEDS_OVERRIDE, LIMIT_BOLUS_SOFT)
    return (ALLOWED, LIMIT_NONE)


def governor_limits(drug_id, conc_ug_ml):
    # (limit_1h_ng, limit_24h_ng) for the dose governor: the drug's hard
    # hourly and daily doses, whatever the concentration (the governor counts
    # dose at the tip, pump/governor.py). Saline / no drug: no dose limit
    # (None: the caller uses the governor's largest limits). An unknown drug
    # or a concentration outside the drug's range gives (0, 0): a governor
    # with zero limits stops the pump on its first dose (fail-safe; such a
    # program is refused by check_program anyway).
    row = drug(drug_id)
    if row is None or conc_ug_ml < row[D_CONC_MIN] or conc_ug_ml > row[D_CONC_MAX]:
        return (0, 0)
    if drug_id == DRUG_NONE:
        return None
    return (row[D_HOUR_HARD], row[D_DAILY_HARD])


def max_conc(drug_id):
    # The strongest concentration of a drug the library allows (0: unknown).
    row = drug(drug_id)
    return row[D_CONC_MAX] if row is not None else 0
