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

from micropython import const

from protocol import table as t
from pump import alarms as alarmsmod
from pump import auth, logcodes, once
from pump import link as linkmod
from pump import program as programmod
from pump import therapy as therapymod
from pump.version import FIRMWARE_VERSION, MICROPYTHON_VERSION

DONE = linkmod.DONE


_WEEK_S = const(7 * 86_400)
NEVER = 0xFFFFFFFF  # a refill date or time that never comes
LOG_PAGE = const(12)  # entries per GET_LOG reply (the schema's array size)


def drug_library():
    # The drug library (pump/limits.py: its table and checks) and the
    # programming- and bolus-time dose checks (pump/dosecheck.py) are needed
    # only when a program, a bolus, a refill or a catheter is checked and
    # when a program is applied: imported then, and released by
    # release_library() (each housekeeping minute and after boot), so they do
    # not stay on the heap between uses (about 13 KB on the 64-bit host).
    from pump import dosecheck

    return dosecheck


_PB_REFUSAL = {
    therapymod.PB_DISABLED: t.NOT_DELIVERING,
    therapymod.PB_STOPPED: t.NOT_DELIVERING,
    therapymod.PB_LOCKOUT: t.LOCKOUT,
    therapymod.PB_DAILY_MAX: t.DAILY_MAX,
    therapymod.PB_BUSY: t.BOLUS_ACTIVE,
}


def release_library():
    modules = sys.modules
    if "pump.dosecheck" in modules or "pump.limits" in modules:
        import pump

        for name in ("dosecheck", "limits"):
            modules.pop("pump." + name, None)
            if name in pump.__dict__:
                del pump.__dict__[name]


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
        code, detail, worst_day, worst_hour = drug_library().program_refusal(
            candidate, app.drive.nominal_stroke_nl()
        )
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
        if not drug_library().drug_matches(app, app.pending):
            link.nack(t.DRUG_MISMATCH, 2)
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
        if app.therapy.program.mode == t.MODE_STOPPED:
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
        # Priming and bridge volumes are the pump's, from its drug path (docs/pump.md
        # 22.3): typed catheter fields only say which catheter is fitted.
        (kind, volume, dose, duration_s, catheter_mm, nl_per_cm, override) = struct.unpack_from(
            t.BOLUS_REQUEST, payload, 0
        )
        path = app.path
        dc = drug_library()
        if kind == t.BOLUS_CLINICIAN:
            if volume == 0 and dose:
                volume = dc.path_volume_for_dose_nl(path, dose)
        elif kind == t.BOLUS_PRIMING or kind == t.BOLUS_BRIDGE:
            if catheter_mm and not dc.set_catheter(app, catheter_mm, nl_per_cm, kind == 2):
                link.nack(t.BAD_VALUE, 4)
                return DONE
            if kind == t.BOLUS_PRIMING:
                # the air/saline at the tip end, at most a catheter's worth
                volume = dc.path_prime_volume_nl(path)
                if volume > path.catheter_nl:
                    volume = path.catheter_nl
            else:
                volume = path.old_volume_nl()
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
        code, detail = dc.bolus_refusal(app, volume, duration_s, override)
        if code:
            link.nack(code, detail)
            return DONE
        bolus_id = app.start_bolus(kind, volume, duration_s * 1000)
        link.ack(t.BOLUS_REPLY, (bolus_id, volume))
        return DONE

    def catheter(link, payload):
        catheter_mm, nl_per_cm, empty = struct.unpack_from(t.CATHETER_REQUEST, payload, 0)
        if empty > 1 or not drug_library().set_catheter(app, catheter_mm, nl_per_cm, empty):
            link.nack(t.BAD_VALUE, 0)
            return DONE
        link.ack(t.CATHETER_REPLY, (app.path.volume_nl(),))
        return DONE

    def patient_bolus(link, _payload):
        now_s = app.clock.seconds()
        reason, detail = app.therapy.patient_bolus_refusal(now_s)
        code = _PB_REFUSAL.get(reason, 0)
        if not code and app.alarms.stopping():
            code, detail = t.ALARM_ACTIVE, app.alarms.stopping()
        volume = app.therapy.program.pb_dose_nl
        if not code:
            code, detail = drug_library().bolus_refusal(app, volume, 0, 1)
        if code:
            app.log(logcodes.PB_REFUSED, code | detail << 8, 0)
            link.nack(code, detail)
            return DONE
        app.therapy.record_patient_bolus(now_s)
        app.persist.patient_bolus(now_s)
        bolus_id = app.start_bolus(t.BOLUS_PATIENT, volume, 0)
        link.ack(t.BOLUS_REPLY, (bolus_id, volume))
        return DONE

    def cancel_bolus(link, _payload):
        link.ack(t.CANCEL_BOLUS_REPLY, (app.cancel_bolus(),))
        return DONE

    def refill(link, payload):
        limits = drug_library().limits
        # The drug put in is recorded; a new drug or concentration needs the
        # confirmed program for it, committed with the refill (docs/pump.md 22.2).
        withdrawn, added, drug_id, conc, crc = struct.unpack_from(t.REFILL_REQUEST, payload, 0)
        prog = app.therapy.program
        pending = None
        if crc:
            pending = app.pending
            if pending is None:
                link.nack(t.NO_PENDING, 0)
                return DONE
            if crc != pending.crc:
                link.nack(t.CRC_MISMATCH, 0)
                return DONE
            if pending.drug_id != drug_id or pending.conc_ug_ml != conc:
                link.nack(t.DRUG_MISMATCH, 3)
                return DONE
        elif (
            prog.mode != t.MODE_STOPPED
            and prog.drug_id
            and (prog.drug_id != drug_id or prog.conc_ug_ml != conc)
        ):
            link.nack(t.DRUG_MISMATCH, 1)
            return DONE
        result, detail = limits.check_program(drug_id, conc, 0, 0, 0, 1)
        if result:
            link.nack(t.HARD_LIMIT, detail)
            return DONE
        expected = app.reservoir.volume_nl
        code, discrepancy, flagged = app.reservoir.refill(withdrawn, added)
        if code:
            link.nack(t.RESERVOIR, code)
            return DONE
        app.path.refill(drug_id, conc)
        # the new account (and program) is durable before the entries
        if pending is not None:
            app.activate(pending, app.pending_soft_mask)
        else:
            app.snapshot()
        app.log(logcodes.REFILL, added, discrepancy)
        app.log(logcodes.REFILL_DRUG, drug_id, conc)
        if flagged:
            app.alarms.raise_alarm(alarmsmod.REFILL_DISCREPANCY, lasting=False)
        app.refilled()
        link.ack(t.REFILL_REPLY, (expected, discrepancy, 1 if flagged else 0, refill_date(app)))
        return DONE

    def outcome(link, payload):
        # The outcome of a request id (SPEC section 23), read-only.
        role, request_id = struct.unpack_from(t.OUTCOME_REQUEST, payload, 0)
        if role not in (t.ROLE_PATIENT, t.ROLE_CLINICIAN):
            link.nack(t.BAD_VALUE, 0)
            return DONE
        kept = app.outcomes
        state = kept.find(role, request_id)
        if state == once.NEW:
            link.ack(t.OUTCOME_REPLY, (state, 0, 0, 0, b""))
        else:
            link.ack(t.OUTCOME_REPLY, (state, kept.msg_id, kept.flags, kept.size, kept.reply))
        return DONE

    def get_log(link, payload):
        return log_page(link, payload, app.journal.events, app.journal.event_count())

    def get_access_log(link, payload):
        return log_page(link, payload, app.journal.access_events, app.journal.access.next_index())

    def log_page(link, payload, read, total):
        start, count = struct.unpack_from("<IB", payload, 0)
        if count > LOG_PAGE:
            count = LOG_PAGE
        entries = read(start, count)
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
            [first, len(entries), total] + indexes + times + codes + a_values + b_values,
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
        if offset >= _WEEK_S:  # local time repeats weekly: a week covers every offset
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
        t.CATHETER: catheter,
        t.GET_LOG: get_log,
        t.GET_ACCESS_LOG: get_access_log,
        t.OUTCOME: outcome,
        t.CLEAR_ALARM: clear_alarm,
        t.SET_CLOCK: set_clock,
        t.ACK_ALARM: ack_alarm,
        t.PROVISION: provision,
    }
    table.update(auth.handlers(app.sessions, DONE))
    return table


def refill_date(app):
    prog = app.therapy.program
    if prog.mode == t.MODE_STOPPED:
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
    path = app.path
    tip_drug, tip_conc = path.tip()
    old = path.old_volume_nl()
    if not old:
        new_at_tip = 0
    elif therapy.rate_nl_day > 0 and app.delivering():
        new_at_tip = old * 86_400 // therapy.rate_nl_day
    else:
        new_at_tip = NEVER
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
        tip_drug,
        tip_conc,
        new_at_tip,
    )
