# Pump-port commands: decode the request, check it, act through the app,
# reply. A refused command changes nothing: every check comes before the
# first change.
#
# Programming is atomic (DESIGN section 4): PROGRAM only stores a pending
# program and answers with its CRC; GET_PROGRAM reads it back; CONFIRM with
# that CRC makes it active: the stroke in flight, if any, ends unchanged and
# the next one follows the new program. A session that is
# abandoned (no CONFIRM, CANCEL_PROGRAM, timeout, reset) leaves the old
# program running.

import struct
import sys

from protocol import table as t
from pump import alarms as alarmsmod
from pump import auth, limits, logcodes
from pump import link as linkmod
from pump import program as programmod
from pump import therapy as therapymod
from pump.version import FIRMWARE_VERSION

DONE = linkmod.DONE


WEEK_S = 7 * 86_400
NEVER = 0xFFFFFFFF  # a refill date or time that never comes
LOG_PAGE = 12  # entries per GET_LOG reply (the schema's array size)

# limits.check_* results -> NACK codes
_REFUSAL = {limits.REFUSED_HARD: t.HARD_LIMIT, limits.NEEDS_OVERRIDE: t.SOFT_LIMIT}

_PB_REFUSAL = {
    therapymod.PB_DISABLED: t.NOT_DELIVERING,
    therapymod.PB_STOPPED: t.NOT_DELIVERING,
    therapymod.PB_LOCKOUT: t.LOCKOUT,
    therapymod.PB_DAILY_MAX: t.DAILY_MAX,
    therapymod.PB_BUSY: t.BOLUS_ACTIVE,
}

# Pump-internal volume pushed by a bridge bolus together with the catheter
# (between the head and the catheter connector; an assumed design value).
PUMP_INTERNAL_NL = 20_000


# The interpreter this firmware runs on (HELLO): the image identifies itself.
MICROPYTHON_VERSION = ("%d.%d.%d" % sys.implementation.version[:3]).encode()


def handlers(app):
    """The pump port's dispatch table: msg id -> fn(link, payload)."""

    def hello(link, payload):
        if linkmod.hello_matches(link, payload):
            board = app.board
            link.ack(
                t.HELLO_REPLY,
                (
                    t.PROTOCOL_VERSION,
                    FIRMWARE_VERSION.encode(),
                    board.name.encode(),
                    board.device_id.encode(),
                    t.FINGERPRINT,
                    MICROPYTHON_VERSION,
                ),
            )
        return DONE

    def ping(link, payload):
        link.ack(t.PING_REPLY, struct.unpack_from("<I", payload, 0))
        return DONE

    def link_stats(link, _payload):
        link.ack(t.LINK_STATS_REPLY, link.counters)
        return DONE

    def status(link, _payload):
        link.ack(t.STATUS_REPLY, status_values(app))
        return DONE

    def program(link, payload):
        candidate = programmod.Program.from_bytes(payload)
        bad_field = candidate.validate()
        if bad_field >= 0:
            link.nack(t.BAD_PROGRAM, bad_field)
            return DONE
        code, detail, worst_day, worst_hour = check_program(candidate)
        if code:
            link.nack(code, detail)
            return DONE
        app.set_pending(candidate, detail)
        link.ack(t.PROGRAM_REPLY, (candidate.crc, detail, worst_day, worst_hour))
        return DONE

    def get_program(link, payload):
        which = payload[0]
        chosen = app.therapy.program if which == 0 else app.pending
        if chosen is None:
            link.nack(t.NO_PENDING, 0)
            return DONE
        link.ack_bytes(struct.pack("<I", chosen.crc) + chosen.raw)
        return DONE

    def confirm(link, payload):
        crc = struct.unpack_from("<I", payload, 0)[0]
        if app.pending is None:
            link.nack(t.NO_PENDING, 0)
            return DONE
        if crc != app.pending.crc:
            link.nack(t.CRC_MISMATCH, 0)
            return DONE
        # A stroke already moving finishes unchanged (strokes are bounded and
        # never altered in flight), so the switch lands between two strokes.
        pending = app.pending
        app.activate(pending, app.pending_soft_mask)
        link.ack(t.CONFIRM_REPLY, (pending.crc,))
        return DONE

    def cancel_program(link, _payload):
        if app.pending is not None:
            app.log(logcodes.PROGRAM_ABANDONED, app.pending.crc, 1)
            app.pending = None
        link.ack(None, ())
        return DONE

    def start(link, _payload):
        alarm = app.alarms.stopping()
        if alarm:
            link.nack(t.ALARM_ACTIVE, alarm)
            return DONE
        if app.therapy.program.mode == programmod.MODE_STOPPED:
            link.nack(t.NOT_DELIVERING, 0)
            return DONE
        app.set_running(True)
        link.ack(t.START_REPLY, (app.state(),))
        return DONE

    def stop(link, _payload):
        app.set_running(False)
        link.ack(t.START_REPLY, (app.state(),))
        return DONE

    def bolus(link, payload):
        (kind, volume, dose, duration_s, catheter_mm, nl_per_cm, override) = struct.unpack_from(
            t.BOLUS_REQUEST, payload, 0
        )
        prog = app.therapy.program
        if kind == therapymod.BOLUS_CLINICIAN:
            if volume == 0 and dose and prog.conc_ug_ml:
                volume = limits.volume_nl(dose, prog.conc_ug_ml)
        elif kind == therapymod.BOLUS_PRIMING:
            volume = catheter_mm * nl_per_cm // 10
        elif kind == therapymod.BOLUS_BRIDGE:
            volume = catheter_mm * nl_per_cm // 10 + PUMP_INTERNAL_NL
        else:
            link.nack(t.BAD_VALUE, 0)
            return DONE
        if volume <= 0:
            link.nack(t.BAD_VALUE, 1)
            return DONE
        if duration_s > t.BOLUS_MAX_DURATION_S:
            # its strokes are timed on wrapping ms ticks: a day at most
            link.nack(t.DURATION, t.BOLUS_MAX_DURATION_S // 60)
            return DONE
        code, detail = bolus_refusal(app, volume, duration_s, override)
        if code:
            link.nack(code, detail)
            return DONE
        bolus_id = app.start_bolus(kind, volume, duration_s * 1000)
        link.ack(t.BOLUS_REPLY, (bolus_id, volume))
        return DONE

    def patient_bolus(link, _payload):
        now_s = app.clock.seconds()
        reason, detail = app.therapy.patient_bolus_refusal(now_s)
        code = _PB_REFUSAL.get(reason, 0)
        if not code and app.alarms.stopping():
            code, detail = t.ALARM_ACTIVE, app.alarms.stopping()
        volume = app.therapy.program.pb_dose_nl
        if not code:
            code, detail = bolus_refusal(app, volume, 0, 1)
        if code:
            app.log(logcodes.PB_REFUSED, code, detail)
            link.nack(code, detail)
            return DONE
        app.therapy.record_patient_bolus(now_s)
        app.persist.patient_bolus(now_s)
        bolus_id = app.start_bolus(therapymod.BOLUS_PATIENT, volume, 0)
        link.ack(t.BOLUS_REPLY, (bolus_id, volume))
        return DONE

    def cancel_bolus(link, _payload):
        link.ack(t.CANCEL_BOLUS_REPLY, (app.cancel_bolus(),))
        return DONE

    def refill(link, payload):
        withdrawn, added = struct.unpack_from(t.REFILL_REQUEST, payload, 0)
        expected = app.reservoir.volume_nl
        code, discrepancy, flagged = app.reservoir.refill(withdrawn, added)
        if code:
            link.nack(t.RESERVOIR, code)
            return DONE
        # the new account is durable before the entry that claims it
        app.snapshot()
        app.log(logcodes.REFILL, added, discrepancy)
        if flagged:
            app.alarms.raise_alarm(alarmsmod.REFILL_DISCREPANCY, lasting=False)
        app.refilled()
        link.ack(t.REFILL_REPLY, (expected, discrepancy, 1 if flagged else 0, refill_date(app)))
        return DONE

    def get_log(link, payload):
        start, count = struct.unpack_from("<IB", payload, 0)
        if count > LOG_PAGE:
            count = LOG_PAGE
        entries = app.journal.events(start, count)
        indexes = [0] * LOG_PAGE
        times = [0] * LOG_PAGE
        codes = [0] * LOG_PAGE
        a_values = [0] * LOG_PAGE
        b_values = [0] * LOG_PAGE
        first = entries[0][0] if entries else start
        for i in range(len(entries)):
            indexes[i], times[i], codes[i], a_values[i], b_values[i] = entries[i]
            a_values[i] &= 0xFFFFFFFF  # stored as i32 in the journal
        link.ack(
            t.GET_LOG_REPLY,
            [first, len(entries), app.journal.event_count()]
            + indexes
            + times
            + codes
            + a_values
            + b_values,
        )
        return DONE

    def clear_alarm(link, payload):
        alarm = payload[0]
        if not alarmsmod.known(alarm):
            link.nack(t.BAD_VALUE, 0)
            return DONE
        if not app.alarms.clear(alarm):
            link.nack(t.ALARM_ACTIVE, alarm)
            return DONE
        if alarm == alarmsmod.DOSE_LIMIT:  # it trips again at once if still over
            app.governor.clear_exceeded()
        app.safety.cleared_by_clinician(alarm)
        app.replan()
        link.ack(t.CLEAR_ALARM_REPLY, (app.alarms.active,))
        return DONE

    def ack_alarm(link, payload):
        alarm = payload[0]
        if alarm and not alarmsmod.known(alarm):
            link.nack(t.BAD_VALUE, 0)
            return DONE
        app.acknowledge(alarm)
        alarms = app.alarms
        if alarm:
            silence_ms = alarms.silence_left_ms(alarm, app.clock.ticks_ms())
        else:
            silence_ms = alarmsmod.ACK_SILENCE_MS if alarms.acknowledged else 0
        link.ack(t.ACK_ALARM_REPLY, (alarms.active, alarms.acknowledged, silence_ms // 1000))
        return DONE

    def set_clock(link, payload):
        offset = struct.unpack_from("<I", payload, 0)[0]
        if offset >= WEEK_S:  # local time repeats weekly: a week covers every offset
            link.nack(t.BAD_VALUE, 0)
            return DONE
        if not app.therapy.set_clock(offset, app.clock.seconds()):
            # three changes within a day are still bounding the schedule
            link.nack(t.BUSY, 0)
            return DONE
        app.snapshot()  # durable before the entry that claims it
        app.log(logcodes.CLOCK_SET, offset, 0)
        app.replan()
        link.ack(None, ())
        return DONE

    def provision(link, payload):
        # First use only (schema PROVISION): never replaces a key store, so a
        # peer on the link cannot take over a provisioned pump.
        if app.board.fs.read(t.KEYSTORE_FILE) is not None:
            link.nack(t.PROVISIONED, 0)
            return DONE
        blob = bytes(payload[: t.KEYSTORE_SIZE])
        roles = app.sessions.provision(blob)
        if not roles:
            link.nack(t.BAD_VALUE, 0)
            return DONE
        app.board.fs.write(t.KEYSTORE_FILE, blob)
        app.log(logcodes.KEYS_PROVISIONED, roles, 0)
        link.ack(None, ())
        return DONE

    table = {
        t.HELLO: hello,
        t.PING: ping,
        t.STATUS: status,
        t.LINK_STATS: link_stats,
        t.PROGRAM: program,
        t.GET_PROGRAM: get_program,
        t.CONFIRM: confirm,
        t.CANCEL_PROGRAM: cancel_program,
        t.START: start,
        t.STOP: stop,
        t.BOLUS: bolus,
        t.PATIENT_BOLUS: patient_bolus,
        t.CANCEL_BOLUS: cancel_bolus,
        t.REFILL: refill,
        t.GET_LOG: get_log,
        t.CLEAR_ALARM: clear_alarm,
        t.SET_CLOCK: set_clock,
        t.ACK_ALARM: ack_alarm,
        t.PROVISION: provision,
    }
    table.update(auth.handlers(app.sessions, DONE))
    return table


def check_program(candidate):
    # -> (NACK code or 0, detail or soft mask, worst 24 h volume, worst 1 h)
    rates = [candidate.basal_nl_day] if candidate.basal_nl_day else []
    if candidate.mode == programmod.MODE_FLEX:
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
    worst_day = candidate.max_window_nl(
        limits.WINDOW_24H_S // 60
    ) + candidate.pb_dose_nl * patient_boluses_in(candidate, limits.WINDOW_24H_S)
    worst_hour = candidate.max_window_nl(
        limits.WINDOW_1H_S // 60
    ) + candidate.pb_dose_nl * patient_boluses_in(candidate, limits.WINDOW_1H_S)
    result, detail = limits.check_program(
        candidate.drug_id,
        candidate.conc_ug_ml,
        worst_day,
        worst_hour,
        candidate.pb_dose_nl,
        candidate.override_soft,
    )
    if result:
        return _REFUSAL[result], detail, 0, 0
    return 0, detail, worst_day, worst_hour


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
    # bolus limits, and room in the governor's windows for it.
    if not app.delivering():
        alarm = app.alarms.stopping()
        return (t.ALARM_ACTIVE, alarm) if alarm else (t.NOT_DELIVERING, 0)
    if app.therapy.bolus_kind != therapymod.BOLUS_NONE:
        return t.BOLUS_ACTIVE, 0
    prog = app.therapy.program
    result, detail = limits.check_program(prog.drug_id, prog.conc_ug_ml, 0, 0, volume, override)
    if result:
        return _REFUSAL[result], detail
    now_s = app.clock.seconds()
    in_1h, in_24h = app.governor.totals(now_s)
    hourly_part = volume if duration_s <= 3600 else volume * 3600 // duration_s + 1
    stroke = app.drive.nominal_stroke_nl()
    rate_hour = prog.max_rate_nl_day() // 24 + stroke
    if in_1h + hourly_part + rate_hour > app.governor.limit_1h_nl:
        return t.HARD_LIMIT, limits.LIMIT_HOURLY_HARD
    if in_24h + volume + prog.max_window_nl(1440) > app.governor.limit_24h_nl:
        return t.HARD_LIMIT, limits.LIMIT_DAILY_HARD
    return 0, 0


def refill_date(app):
    prog = app.therapy.program
    if prog.mode == programmod.MODE_STOPPED:
        return NEVER
    return app.reservoir.refill_date_s(
        app.clock.seconds(),
        prog.max_rate_nl_day(),
        prog.pb_dose_nl,
        prog.pb_max_per_day,
        app.reservoir.low_threshold_nl,
    )


def status_values(app):
    therapy = app.therapy
    reservoir = app.reservoir
    now_s = app.clock.seconds()
    rate = therapy.rate_nl_day if app.delivering() else 0
    in_1h, in_24h = app.governor.totals(now_s)
    return (
        app.clock.time_ms(),
        app.uptime_ms(),
        app.state(),
        app.persist.boot_count,
        therapy.program.mode,
        rate,
        reservoir.volume_nl,
        therapy.delivered_nl & 0xFFFFFFFF,
        therapy.bolus_kind,
        therapy.bolus_remaining_nl(),
        app.alarms.active,
        therapy.program.crc,
        1 if app.pending is not None else 0,
        reservoir.time_to_empty_s(rate),
        refill_date(app),
        therapy.patient_boluses_last_day(now_s),
        in_1h,
        in_24h,
        app.alarms.acknowledged,
        app.pressure_x10,
        app.battery_mv,
        app.eos_days,
    )
