# Programming- and bolus-time dose checks (docs/pump.md 22):
# the worst case of a program, the headroom of a bolus over every future
# window of the governor, and the drug path's reports used to size and check
# boluses. Nothing here runs per stroke. The module is imported when a
# command needs it and released again (commands.drug_library()), with
# pump/limits.py, so neither stays on the heap between uses; its functions
# take the pump's objects (path, governor, program) as their first argument.

from protocol import table as t
from pump import limits, logcodes
from pump import program as programmod
from pump import therapy as therapymod
from pump.path import CATHETER_MAX_NL, SEGMENTS

_REFUSAL = {limits.REFUSED_HARD: t.HARD_LIMIT, limits.NEEDS_OVERRIDE: t.SOFT_LIMIT}


# --- the drug path (pump/path.py) --------------------------------------------
def path_adopt(p, drug_id, conc_ug_ml):
    # A program for a drug is made active while no drug is recorded for
    # the reservoir (filled before drugs were recorded, or saline): the
    # reservoir and the whole path are taken to hold the program's drug,
    # so the governor counts its dose rather than none.
    p._count = 0
    p.refill(drug_id, conc_ug_ml)


def path_set_catheter(p, catheter_nl, empty):
    # A catheter of catheter_nl fitted (empty: new, it holds no drug) or
    # its volume corrected (the column keeps what it holds, trimmed or
    # extended at the tip end with what is at the tip).
    if not p._count:
        p._fill(p.res_drug, p.res_conc)
    old = p.volume_nl()
    p.catheter_nl = catheter_nl
    if empty:
        # what was in the old catheter is gone with it; the pump's
        # internal volume keeps the newest drug
        p._take(old - p.internal_nl if old > p.internal_nl else 0)
        _path_add_oldest(p, 0, 0, catheter_nl)
        return
    new = p.volume_nl()
    if new < old:
        p._take(old - new)
    elif new > old:
        _path_add_oldest(p, p._drug[p._head], p._conc[p._head], new - old)


def _path_add_oldest(p, drug_id, conc, volume):
    if volume <= 0:
        return
    if p._count and p._drug[p._head] == drug_id and p._conc[p._head] == conc:
        p._vol[p._head] += volume
        return
    if p._count == SEGMENTS:
        p._merge_oldest()
    p._head = (p._head - 1) % SEGMENTS
    p._count += 1
    p._drug[p._head] = drug_id
    p._conc[p._head] = conc
    p._vol[p._head] = volume


def path_prime_volume_nl(p):
    # Volume of saline/air at the tip end (a new catheter): what a
    # priming bolus pushes before drug reaches the tip.
    volume = 0
    for k in range(p._count):
        i = (p._head + k) % SEGMENTS
        if p._conc[i]:
            break
        volume += p._vol[i]
    return volume


def path_dose_of_next_ng(p, volume):
    # Dose (ng, rounded up) of the next `volume` nL to leave the tip,
    # reservoir drug after the path.
    pg = 0
    for k in range(p._count):
        i = (p._head + k) % SEGMENTS
        v = p._vol[i] if p._vol[i] < volume else volume
        pg += v * p._conc[i]
        volume -= v
        if volume <= 0:
            break
    if volume > 0:
        pg += volume * p.res_conc
    return -(-pg // 1000)


def path_volume_for_dose_nl(p, dose_ng):
    # The largest volume whose tip dose is at most dose_ng (walks the path
    # like dose_of_next_ng). 0 when nothing but saline or air is ahead.
    pg_left = dose_ng * 1000
    volume = 0
    for k in range(p._count + 1):
        if k < p._count:
            i = (p._head + k) % SEGMENTS
            v, c = p._vol[i], p._conc[i]
        else:
            v, c = -1, p.res_conc  # the reservoir: unbounded
        if c <= 0:
            if v < 0:
                return volume
            volume += v
            continue
        if v < 0 or v * c > pg_left:
            return volume + pg_left // c
        volume += v
        pg_left -= v * c
    return volume


# --- the governor's windows (pump/governor.py) ----------------------------------
def governor_fits(g, now_s, extra_ng, spread_s, basal):
    # Whether extra_ng given from now (a bolus spread over spread_s, 0:
    # at once) on top of the basal ahead keeps every future window of
    # both windows within its limit: exactly the windows record() will
    # count, so a bolus granted here never trips the governor later, and
    # no basal is counted twice (what is in the buckets is the past,
    # basal(a, b) the scheduled basal dose in ng from now+a to now+b).
    # Programming/bolus time only (may make big ints).
    g.advance(now_s)
    return _window_fits(g, g._hour, g.limit_1h_nl, now_s, extra_ng, spread_s, basal) and (
        _window_fits(g, g._day, g.limit_24h_nl, now_s, extra_ng, spread_s, basal)
    )


def _window_fits(g, window, limit, now_s, extra, spread_s, basal):
    n = window.n
    period = window.period_s
    b = window.buckets
    past = window.total
    current = window.current
    steps = n + (spread_s + period - 1) // period
    if steps > 2 * n:
        steps = 2 * n
    for k in range(steps):
        if k:
            # the oldest bucket of the last window has left this one
            if k < n:
                past -= b[(current + k) % n]
            else:
                past = 0
        start = (current + k - n + 1) * period - now_s
        end = (current + k + 1) * period - now_s
        part = extra
        if spread_s > 0:
            overlap = end - (start if start > 0 else 0)
            bound = extra * overlap // spread_s + g.grain_ng
            if bound < part:
                part = bound
        if past + part + basal(start if start > 0 else 0, end) > limit:
            return False
    return True


# --- the program's schedule (pump/program.py) ---------------------------------
def basal_units(prog, start_s, end_s):
    # Basal scheduled from local second start_s to end_s (seconds since
    # Monday 00:00; may pass the week), in nL/day x s (divide by 86,400
    # for nL): exact, for the governor's headroom rule. Bolus time only.
    if prog.mode != t.MODE_FLEX:
        return prog.rate_at(0, 0) * (end_s - start_s)
    total = 0
    at = start_s
    while at < end_s:
        minute = (at // 60) % programmod.MINUTES_PER_DAY
        day = (at // 86_400) % 7
        following = (at // 86_400) * 86_400 + prog.next_change_minute(minute) * 60
        if following > end_s:
            following = end_s
        total += prog.rate_at(minute, day) * (following - at)
        at = following
    return total


# --- programs and boluses -------------------------------------------------------
def program_refusal(candidate, stroke_nl):
    # -> (NACK code or 0, detail or soft mask, worst 24 h volume, worst 1 h)
    # The worst cases are taken over the governor's own windows (61 min and
    # 24 h 15 min), patient boluses as the strokes they deliver: the same
    # rule as the headroom of a bolus (bolus_refusal), docs/pump.md 22.4.
    rates = [candidate.basal_nl_day] if candidate.basal_nl_day else []
    if candidate.mode == t.MODE_FLEX:
        rates += list(candidate.flex_rate_nl_day[: candidate.flex_count])
    for rate in rates:
        result, limit = limits.check_rate(rate)
        if result:
            return _REFUSAL[result], limit, 0, 0
    if candidate.pb_dose_nl:
        result, limit = limits.check_patient_bolus(
            candidate.pb_dose_nl, candidate.pb_lockout_s, candidate.pb_max_per_day
        )
        if result:
            return _REFUSAL[result], limit, 0, 0
    pb = delivered_nl(candidate.pb_dose_nl, stroke_nl)
    worst_day = candidate.max_window_nl(limits.WINDOW_24H_S // 60) + pb * patient_boluses_in(
        candidate, limits.WINDOW_24H_S
    )
    worst_hour = candidate.max_window_nl(limits.WINDOW_1H_S // 60) + pb * patient_boluses_in(
        candidate, limits.WINDOW_1H_S
    )
    result, detail = limits.check_program(
        candidate.drug_id,
        candidate.conc_ug_ml,
        worst_day,
        worst_hour,
        pb,
        candidate.override_soft,
    )
    if result:
        return _REFUSAL[result], detail, 0, 0
    return 0, detail, worst_day, worst_hour


def delivered_nl(volume, stroke_nl):
    # What a bolus of `volume` really moves: whole strokes, the count nearest
    # its target, at least one (therapy.stroke_done ends it so).
    if volume <= 0:
        return 0
    strokes = (volume + stroke_nl // 2) // stroke_nl
    return (strokes if strokes > 1 else 1) * stroke_nl


def drug_matches(app, candidate):
    # A program may only run the drug the reservoir holds (docs/pump.md 22.2): when
    # a drug is recorded for the reservoir, a delivering program must name
    # it at its concentration; a new one comes with REFILL.
    path = app.path
    return (
        not path.res_drug
        or candidate.mode == t.MODE_STOPPED
        or (candidate.drug_id == path.res_drug and candidate.conc_ug_ml == path.res_conc)
    )


def set_catheter(app, catheter_mm, nl_per_cm, empty):
    # Records the catheter fitted; False when its volume is out of range.
    volume = catheter_mm * nl_per_cm // 10
    if volume <= 0 or volume > CATHETER_MAX_NL:
        return False
    path_set_catheter(app.path, volume, empty)
    app.snapshot()
    app.log(logcodes.CATHETER, app.path.volume_nl(), 1 if empty else 0)
    app.replan()  # the bridge rate follows the drug at the tip
    return True


def patient_boluses_in(candidate, window_s):
    # The most patient boluses that can land in a window of window_s: the
    # lockout spaces them, and no 24 h holds more than the daily maximum.
    if not candidate.pb_dose_nl:
        return 0
    by_lockout = window_s // candidate.pb_lockout_s + 1
    days = (window_s + therapymod.DAY_S - 1) // therapymod.DAY_S
    by_day = candidate.pb_max_per_day * days
    return by_lockout if by_lockout < by_day else by_day


def bolus_refusal(app, volume, duration_s, override):
    # Checks shared by every bolus: delivery on, no bolus running, the drug's
    # bolus limits on the dose it pushes out of the tip (the drug path), and
    # room for it in every future window of the governor (docs/pump.md 22.4).
    if not app.delivering():
        alarm = app.alarms.stopping()
        return (t.ALARM_ACTIVE, alarm) if alarm else (t.NOT_DELIVERING, 0)
    if app.therapy.bolus_kind != t.BOLUS_NONE:
        return t.BOLUS_ACTIVE, 0
    prog = app.therapy.program
    dose = path_dose_of_next_ng(app.path, delivered_nl(volume, app.drive.nominal_stroke_nl()))
    result, detail = limits.check_bolus_dose(prog.drug_id, dose, override)
    if result:
        return _REFUSAL[result], detail
    now_s = app.clock.seconds()
    local = now_s + app.therapy.clock_offset_s
    conc = prog.conc_ug_ml

    def basal(a, b):
        # scheduled basal dose (ng, rounded up) from now + a to now + b
        return -(-basal_units(prog, local + a, local + b) * conc // 86_400_000)

    if not governor_fits(app.governor, now_s, dose, duration_s, basal):
        return t.HARD_LIMIT, limits.LIMIT_DAILY_HARD
    return 0, 0
