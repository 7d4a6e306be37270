# The pump application: the delivery loop, the fail-stop path, and the
# state the pump-port commands (pump/commands.py) act on. Hardware comes in
# through `board` (a HAL object); nothing here knows whether it runs on a
# Pico or on the unix port.
#
# A stroke, start to end:
#   stroke task due -> journal "before" -> drive.start_stroke
#   STROKE_MS later -> drive.finish_stroke (encoder count) -> journal "after"
#   -> reservoir, governor, therapy totals -> next stroke scheduled.
# The governor counts what the encoder says moved, never what was asked.

import gc
import struct

from micropython import const

from protocol import table as t
from protocol.table import RESET_CAUSE_WATCHDOG, STATE_ALARM, STATE_IDLE, STATE_RUNNING
from pump import alarms as alarmsmod
from pump import auth as authmod
from pump import commands, logcodes
from pump import link as linkmod
from pump import program as programmod
from pump import reservoir as reservoirmod
from pump.drive import STROKE_MS, STROKE_STEPS, Drive
from pump.governor import LIMIT_1H_MAX_NL, LIMIT_24H_MAX_NL, Governor
from pump.journal import Journal
from pump.monitors.battery import BatteryMonitor
from pump.monitors.stroke import RETRY, RETRY_DELAY_MS
from pump.once import Outcomes
from pump.path import DrugPath
from pump.persist import Persist
from pump.safety import Safety
from pump.scheduler import Scheduler, Task
from pump.therapy import BOLUS_NONE, KIND_BOLUS, Therapy
from pump.ticks import ticks_diff

_BOOT_FMT = t.BOOT_EVENT
_BOOT_ID = t.BOOT
_ALARM_FMT = t.ALARM_EVENT
_ALARM_ID = t.ALARM
_BOLUS_FMT = t.BOLUS_EVENT_EVENT
_BOLUS_ID = t.BOLUS_EVENT
_PROGRAM_FMT = t.PROGRAM_CHANGED_EVENT
_PROGRAM_ID = t.PROGRAM_CHANGED


BOLUS_STARTED = const(1)
BOLUS_FINISHED = const(2)
BOLUS_CANCELLED = const(3)

# Housekeeping period: governor windows, pending-program timeout, snapshots.
_HOUSEKEEPING_MS = const(60_000)
# A program sent but not confirmed within this time is dropped; the old one
# keeps running (an abandoned programming session never stops the pump).
_PENDING_TIMEOUT_MS = const(600_000)
# A full snapshot at least this often, so recovery replays a bounded log.
_SNAPSHOT_EVERY_S = const(3600)
# STROKE_MISMATCH entries: the first mismatched stroke after a quiet period
# is logged at once; the ones that follow within this time are tallied and
# logged together, at most one entry per period (a worn head would otherwise
# log every stroke and push everything else out of the 256-512-entry log).
MISMATCH_LOG_S = const(3600)
_MISMATCH_MAX = const(0x3FFFFFFF)


class PumpApp:
    def __init__(self, board, reset_cause):
        # A reset or power cut in the middle of a command may have left the
        # drug library loaded: released before this boot builds anything
        commands.release_library()
        self.board = board
        self.clock = board.clock
        self.reset_cause = reset_cause
        self._boot_time_ms = self.clock.time_ms()
        self.drive = Drive(board.motor, board.encoder, board.pl_per_step)
        self.therapy = Therapy(self.drive.nominal_stroke_nl())
        self.reservoir = reservoirmod.Reservoir()
        self.governor = Governor(0, 0)
        self.path = DrugPath()
        self.therapy.path = self.path
        self.journal = Journal(board.fs)
        # refusals ever (patient boluses, session rules): the access log's
        # PB_REFUSED and AUTH_REFUSED entries carry them (docs/pump.md section 15)
        self.tallies = [0, 0]
        self._restore_tallies()
        self.battery = BatteryMonitor()
        self.persist = Persist(
            self.journal,
            self.therapy,
            self.reservoir,
            self.governor,
            self.drive,
            self.battery,
            self.path,
        )
        self.alarms = alarmsmod.Alarms(self._on_alarm_change)
        # Who may change therapy (SPEC section 21); the key store is
        # provisioned at flash time beside the journal.
        # Therapy-changing requests run at most once per request id (SPEC
        # section 23): their outcomes are journalled beside the state.
        self.outcomes = Outcomes(board.fs, self.journal.read_buffer())
        self.sessions = authmod.Sessions(
            self.clock, self.log, board.fs.read(t.KEYSTORE_FILE), self.outcomes
        )
        self.link = linkmod.Link(
            board.pump_port, t.PUMP_REQUESTS, commands.handlers(self), self.sessions
        )
        self.scheduler = Scheduler()
        self._stroke_task = self.scheduler.add(Task("stroke", self._on_stroke_due))
        self._stroke_end_task = self.scheduler.add(Task("stroke end", self._on_stroke_end))
        self._flex_task = self.scheduler.add(Task("flex switch", self._on_flex_switch))
        self._housekeeping = self.scheduler.add(Task("housekeeping", self._on_housekeeping))
        self._annunciate_task = self.scheduler.add(Task("annunciate", self._on_annunciate))
        self._sound = -1  # the patterns the annunciator plays now (-1: not set yet)
        self._light = -1
        # last readings, for STATUS (the monitors sample them)
        self.pressure_x10 = 0
        self.battery_mv = 0
        self.eos_days = 0xFFFF
        self._stroke_kind = 0
        self._retry_kind = -1  # a stroke to try again after a stall
        self._retries = 0
        # mismatched strokes not logged yet (steps seen, steps commanded),
        # and when the last STROKE_MISMATCH entry was written
        self._mismatch_moved = 0
        self._mismatch_commanded = 0
        self._mismatch_logged = False
        self._mismatch_logged_s = 0
        self.safety = Safety(self, self.scheduler)
        # programming session: the pending program and when it was sent
        self.pending = None
        self.pending_soft_mask = 0
        self._pending_since = 0
        self._last_snapshot_s = 0
        # While booting, alarm changes are logged but not yet announced: the
        # BOOT event comes first, then one ALARM event per active alarm.
        self._booting = True
        self._boot()
        if self.sessions.keystore_damaged:
            self.log(logcodes.SELF_TEST_FAILED, authmod.SELF_TEST_KEYS, 0)

    # --- boot and recovery -----
    def _boot(self):
        now_s = self.clock.seconds()
        # the governor's limits come back with its windows (the snapshot):
        # a boot needs no drug library, only the program's reservoir level
        found = self.persist.recover(self._set_low_level)
        if found is None:
            # Unreadable state: deliver nothing until a clinician reprograms.
            self.therapy.program = programmod.stopped_program()
            self.therapy.running = False
            self.persist.boot_count += 1
            self.alarms.raise_alarm(alarmsmod.MEMORY, lasting=False)
            self.persist.snapshot()
            self.log(logcodes.BOOT, self.reset_cause, 1)
            commands.release_library()
            return
        self.persist.boot_count += 1
        # Latching alarms survive a reset; the others come back by themselves
        # if their condition is still there (the monitors look again).
        self.alarms.active = self.persist.alarms_mask & alarmsmod.LATCHING_MASK
        self.governor.advance(now_s)
        unexpected = 1 if found.had_state else 0
        self.log(logcodes.BOOT, self.reset_cause, unexpected)
        if found.unlogged_program:
            # the program was made active (journalled) before the cut, its
            # PROGRAM_ACTIVE entry did not land: the log must name it
            persist = self.persist
            persist.program_index = self.journal.event_count()
            persist.snapshot()
            self.log(logcodes.PROGRAM_ACTIVE, self.therapy.program.crc, persist.program_mask)
        if found.unlogged_end is not None:
            # a bolus ended (journalled) before the cut, its entry did not land
            code, bolus_id, delivered = found.unlogged_end
            self.log(code, bolus_id, delivered)
        if found.interrupted_bolus_id >= 0:
            bolus_id = found.interrupted_bolus_id
            delivered = found.interrupted_bolus_nl
            self.persist.bolus_end(
                bolus_id, delivered, logcodes.BOLUS_INTERRUPTED, self.journal.event_count()
            )
            self.log(logcodes.BOLUS_INTERRUPTED, bolus_id, delivered)
        if unexpected:
            self.alarms.raise_alarm(alarmsmod.UNEXPECTED_RESET, lasting=False)
        if self.reset_cause == RESET_CAUSE_WATCHDOG:
            self.alarms.raise_alarm(alarmsmod.WATCHDOG_RESET, lasting=False)
        self._check_reservoir_alarms()
        if self.governor.exceeded:
            self.fail_stop(alarmsmod.DOSE_LIMIT, lasting=False)
        self.persist.snapshot()
        self._last_snapshot_s = now_s
        now = self.clock.ticks_ms()
        self.therapy.replan(now, now_s)
        self.safety.start(now)
        self.schedule_stroke(now)
        self._arm_flex(now, now_s)
        self._housekeeping.after(now, _HOUSEKEEPING_MS)
        commands.release_library()

    # --- main loop -----
    def run(self):
        # Returns the reset cause when a reset is requested (the caller then
        # boots a fresh application, as the hardware would), or -1 when the
        # board powers off or shuts down.
        board = self.board
        clock = self.clock
        scheduler = self.scheduler
        # Boot's temporaries (recovery, the key store, the logs' scans) go
        # now, in one collection, before the loop allocates anything lasting.
        gc.collect()
        self.link.event(
            _BOOT_ID, _BOOT_FMT, (self._boot_time_ms, self.reset_cause, self.persist.boot_count)
        )
        self._booting = False
        for row in alarmsmod.TABLE:
            if self.alarms.active & alarmsmod.bit(row[0]):
                self._announce_alarm(row[0], alarmsmod.ACTION_RAISED)
        self._drive_annunciator()
        while True:
            scheduler.run_due(clock.ticks_ms())
            self.link.service()
            board.service()
            cause = board.take_reset_request()
            if cause >= 0:
                self.drive.abort()
                return cause
            if board.orphaned or not board.powered:
                self.drive.abort()
                return -1
            board.idle(scheduler.wait_ms(clock.ticks_ms()))

    # --- state for STATUS ----------------------------------------------------------------
    def state(self):
        if self.alarms.stopping():
            return STATE_ALARM
        if self.delivering():
            return STATE_RUNNING
        return STATE_IDLE

    def delivering(self):
        return self.therapy.running and not self.alarms.stopping()

    def uptime_ms(self):
        return self.clock.time_ms() - self._boot_time_ms

    def log(self, code, a, b):
        # Therapy history to the event log; sessions and refusals to the
        # access log (docs/pump.md section 15), with the refusal tallies in b.
        now_s = self.clock.seconds()
        if code not in logcodes.ACCESS:
            self.journal.log_event(now_s, code, a, b)
            return
        tallies = self.tallies
        if self.journal.access.full():
            # The access file about to go may hold the newest tallies: the
            # new file starts with them (a = 0), so a reset never loses one.
            self.journal.log_access(now_s, logcodes.PB_REFUSED, 0, tallies[0])
            self.journal.log_access(now_s, logcodes.AUTH_REFUSED, 0, tallies[1])
        if code == logcodes.PB_REFUSED:
            tallies[0] += 1
            b = tallies[0]
        elif code == logcodes.AUTH_REFUSED:
            tallies[1] += 1
            b = tallies[1]
        self.journal.log_access(now_s, code, a, b)

    def _restore_tallies(self):
        # The newest PB_REFUSED and AUTH_REFUSED entries carry the tallies.
        tallies = self.tallies

        def visit(buf, k):
            code = buf[k + 8] | buf[k + 9] << 8
            if code == logcodes.PB_REFUSED:
                tallies[0] = struct.unpack_from("<i", buf, k + 14)[0]
            elif code == logcodes.AUTH_REFUSED:
                tallies[1] = struct.unpack_from("<i", buf, k + 14)[0]

        self.journal.access.scan(visit)

    # --- strokes -----
    def schedule_stroke(self, now):
        # Arms the stroke task for the next due stroke (or disarms it), and
        # tells the supervisor how often strokes should come.
        if self.drive.in_stroke:
            return  # the stroke end reschedules
        kind, due = self.therapy.next_due()
        if self._retry_kind >= 0:
            return  # a retry is armed
        if kind < 0 or not self.delivering():
            self._stroke_task.cancel()
            self.safety.set_stroke_period(0, now)
            return
        self._stroke_task.at(due if ticks_diff(due, now) > 0 else now)
        self.safety.set_stroke_period(self.therapy.stroke_period_ms() + STROKE_MS, now)

    def _on_stroke_due(self, now):
        if self.drive.in_stroke or not self.delivering() or self.safety.after_pending:
            return  # the "after" sample of the last stroke reschedules
        kind = self._retry_kind
        if kind < 0:
            kind, due = self.therapy.next_due()
            if kind < 0:
                return
            if ticks_diff(due, now) > 0:
                self._stroke_task.at(due)
                return
            self.therapy.stroke_started(kind, now)
        self._retry_kind = -1
        self.safety.before_stroke()
        if not self.delivering():
            return  # the checks before the stroke stopped delivery
        self.persist.stroke_begin(kind, self.clock.seconds())  # before: it may move
        self._stroke_kind = kind
        # The stroke's time runs from the move's start, after the journal
        # flush that precedes it: on a Pico a littlefs write takes
        # milliseconds, and a deadline counted from the loop's `now` cut the
        # move short (found on the emulated Pico: a 1-step stroke, a retry).
        self.drive.start_stroke(now)
        self._stroke_end_task.after(self.clock.ticks_ms(), STROKE_MS)

    def _on_stroke_end(self, now):
        kind = self._stroke_kind
        aborted = self.drive.aborted
        volume = self.drive.finish_stroke()
        moved = self.drive.last_moved
        # cut short by a fail-stop: what moved is counted, nothing judged
        action = self.safety.stroke_ended(moved, now, aborted)
        if action == alarmsmod.ENCODER_FAILURE:
            # the pressure shows the stroke happened; the encoder saw nothing:
            # count the nominal volume (never under-count the patient's dose)
            volume = self.drive.nominal_stroke_nl()
        now_s = self.clock.seconds()
        self.persist.stroke_end(kind, moved, volume, now_s)  # after: what moved
        if volume:
            self._account(kind, volume, now_s)
        if aborted:
            self.schedule_stroke(now)
            return
        if action == RETRY:
            self._retries += 1
            self.log(logcodes.STALL_RETRY, self._retries, moved)
            self._retry_kind = kind
            self._stroke_task.after(now, RETRY_DELAY_MS)
            return
        self._retries = 0
        if moved != STROKE_STEPS:
            self._mismatch_moved += moved
            if self._mismatch_moved > _MISMATCH_MAX:  # a runaway's count: the entry is an i32
                self._mismatch_moved = _MISMATCH_MAX
            self._mismatch_commanded += STROKE_STEPS
            if (
                not self._mismatch_logged
                or now_s - self._mismatch_logged_s >= MISMATCH_LOG_S
                or (action > 0 and alarmsmod.stops(action))  # beside the alarm
            ):
                self._log_mismatches(now_s)
        self.schedule_stroke(now)

    def _log_mismatches(self, now_s):
        # One STROKE_MISMATCH entry for the strokes tallied since the last:
        # a = steps the encoder saw, b = steps commanded, over all of them
        # (b // STROKE_STEPS strokes; a single stroke gives the steps it moved
        # and 8).
        if self._mismatch_commanded:
            self.log(logcodes.STROKE_MISMATCH, self._mismatch_moved, self._mismatch_commanded)
            self._mismatch_moved = 0
            self._mismatch_commanded = 0
            self._mismatch_logged = True
            self._mismatch_logged_s = now_s

    def _account(self, kind, volume, now_s):
        therapy = self.therapy
        bolus_id = therapy.bolus_id
        bolus_kind = therapy.bolus_kind
        if therapy.stroke_done(kind, volume) and kind == KIND_BOLUS:
            self.bolus_finished(bolus_id, bolus_kind, therapy.bolus_delivered_nl)
        self.reservoir.consume(volume)
        self._check_reservoir_alarms()
        path = self.path
        dose = path.push(volume)  # what left the tip, ng
        if path.tip_changed:
            path.tip_changed = False
            drug, conc = path.tip()
            self.log(logcodes.TIP_DRUG, drug, conc)
            self.replan()  # the bridge rate follows the drug at the tip
        if not self.governor.record(now_s, dose):
            window_1h, window_24h = self.governor.totals(now_s)
            self.log(
                logcodes.GOVERNOR_STOP,
                self.governor.exceeded,
                window_1h if self.governor.exceeded == 1 else window_24h,
            )
            self.fail_stop(alarmsmod.DOSE_LIMIT, lasting=False)

    def _check_reservoir_alarms(self):
        # Only a program that delivers needs drug: a stopped pump with an
        # empty reservoir (new, or emptied for an MRI) raises nothing.
        reservoir = self.reservoir
        if self.therapy.program.mode == t.MODE_STOPPED:
            self.alarms.condition_gone(alarmsmod.EMPTY_RESERVOIR)
            self.alarms.condition_gone(alarmsmod.LOW_RESERVOIR)
            return
        if reservoir.is_empty():
            if not self.alarms.active & alarmsmod.bit(alarmsmod.EMPTY_RESERVOIR):
                self.fail_stop(alarmsmod.EMPTY_RESERVOIR)
        else:
            self.alarms.condition_gone(alarmsmod.EMPTY_RESERVOIR)
        if reservoir.is_low():
            self.alarms.raise_alarm(alarmsmod.LOW_RESERVOIR)
        else:
            self.alarms.condition_gone(alarmsmod.LOW_RESERVOIR)

    # --- the one fail-stop path -----
    def fail_stop(self, alarm_id, lasting=True):
        # Motor off first, then everything else: the bolus is cancelled, the
        # reason latched as an alarm that stops delivery, and journalled.
        # lasting=False: an event that cannot be re-tested once stopped (a
        # governor trip, a stall); a clinician clears it.
        self.drive.abort()
        self._stroke_task.cancel()
        self._retry_kind = -1
        if self.therapy.bolus_kind != BOLUS_NONE:
            self.cancel_bolus()
        # the raise re-plans (_on_alarm_change): the supervisor stops
        # expecting strokes (a stroke cut short ends, and is counted, first)
        self.alarms.raise_alarm(alarm_id, lasting)

    # --- boluses -----
    def start_bolus(self, kind, volume_nl, duration_ms):
        # Journalled (with a patient-bolus grant, persist.patient_bolus) before
        # the log names it, and logged before any stroke or the ACK: the
        # BOLUS_START entry is its commit point (persist.py, recovery).
        bolus_id = self.persist.next_bolus_id
        self.persist.next_bolus_id = (bolus_id + 1) & 0xFFFF or 1
        self.persist.bolus_start(bolus_id, kind, volume_nl, self.journal.event_count())
        now = self.clock.ticks_ms()
        self.therapy.start_bolus(kind, bolus_id, volume_nl, duration_ms, now)
        self.log(logcodes.BOLUS_START, bolus_id | kind << 16, volume_nl)
        self._bolus_event(bolus_id, kind, BOLUS_STARTED, volume_nl)
        self.schedule_stroke(now)
        return bolus_id

    def cancel_bolus(self):
        therapy = self.therapy
        if therapy.bolus_kind == BOLUS_NONE:
            return 0
        delivered = therapy.bolus_delivered_nl
        kind = therapy.bolus_kind
        therapy.cancel_bolus()
        self._bolus_end(therapy.bolus_id, delivered, logcodes.BOLUS_CANCELLED)
        self._bolus_event(therapy.bolus_id, kind, BOLUS_CANCELLED, delivered)
        return delivered

    def bolus_finished(self, bolus_id, kind, delivered):
        self._bolus_end(bolus_id, delivered, logcodes.BOLUS_DONE)
        self._bolus_event(bolus_id, kind, BOLUS_FINISHED, delivered)

    def _bolus_end(self, bolus_id, delivered, code):
        # journalled with the index of its entry, then logged
        self.persist.bolus_end(bolus_id, delivered, code, self.journal.event_count())
        self.log(code, bolus_id, delivered)

    def _bolus_event(self, bolus_id, kind, action, volume):
        self.link.event(
            _BOLUS_ID, _BOLUS_FMT, (self.clock.time_ms(), bolus_id, kind, action, volume)
        )

    # --- delivery on/off and programs -----
    def set_running(self, running):
        therapy = self.therapy
        if therapy.running == running:
            return
        if not running:
            self.cancel_bolus()
        therapy.running = running
        self.persist.running(running)
        self.log(logcodes.START if running else logcodes.STOP, 0, 0)
        self.replan()

    def replan(self):
        now = self.clock.ticks_ms()
        now_s = self.clock.seconds()
        self.therapy.replan(now, now_s)
        self.schedule_stroke(now)
        self._arm_flex(now, now_s)

    def activate(self, program, soft_mask):
        # A stroke in flight is not touched; the schedule changes after it.
        # One journal step: the snapshot carries the new program together
        # with its running state (a STOPPED program stops delivery, any
        # other runs), so a cut leaves the old program with its state or
        # the new one with its own; it is logged (PROGRAM_ACTIVE only, not
        # START or STOP: docs/pump.md 15) once it is durable.
        therapy = self.therapy
        therapy.program = program
        therapy.running = program.mode != t.MODE_STOPPED
        if program.drug_id and not self.path.res_drug:
            commands.drug_library().path_adopt(self.path, program.drug_id, program.conc_ug_ml)
        self._apply_program_limits(program)
        self.pending = None
        # the snapshot names the index its PROGRAM_ACTIVE entry gets: a cut
        # before the entry lands is finished at boot (persist.py)
        self.persist.program_index = self.journal.event_count()
        self.persist.program_mask = soft_mask
        self.snapshot()
        self.log(logcodes.PROGRAM_ACTIVE, program.crc, soft_mask)
        if soft_mask:
            self.log(logcodes.SOFT_OVERRIDE, soft_mask, 0)
        if not therapy.running:
            self.cancel_bolus()  # stopped with the program, as STOP does
        self.link.event(_PROGRAM_ID, _PROGRAM_FMT, (self.clock.time_ms(), program.crc))
        self.replan()
        self._check_reservoir_alarms()

    def _set_low_level(self, program):
        if program.low_reservoir_nl:
            self.reservoir.set_low_threshold(program.low_reservoir_nl)

    def _apply_program_limits(self, program):
        governor = self.governor
        # the drug library alone (not the bolus-time checks), at CONFIRM or
        # REFILL; released by housekeeping (commands.release_library)
        from pump import limits

        found = limits.governor_limits(program.drug_id, program.conc_ug_ml)
        # One stroke of margin: the governor counts whole strokes, so a
        # program exactly at a hard limit may end a window one stroke over.
        # A stroke's dose is taken at the drug's strongest concentration (the
        # path may still hold a stronger one than the program's).
        grain = limits.dose_ng(self.drive.nominal_stroke_nl(), limits.max_conc(program.drug_id))
        governor.grain_ng = grain
        if found is None:  # saline: no dose limit
            governor.set_limits(LIMIT_1H_MAX_NL, LIMIT_24H_MAX_NL)
        else:
            governor.set_limits(found[0] + grain, found[1] + grain)
        if program.low_reservoir_nl:
            self.reservoir.set_low_threshold(program.low_reservoir_nl)

    def _arm_flex(self, now, now_s):
        if self.therapy.program.mode == t.MODE_FLEX and self.therapy.running:
            wait_s = self.therapy.seconds_to_next_change(now_s)
            self._flex_task.after(now, wait_s * 1000 if wait_s > 0 else 0)
        else:
            self._flex_task.cancel()

    def _on_flex_switch(self, _now):
        self.replan()  # new rate, next stroke, and the following switch

    # --- housekeeping -----
    def _on_housekeeping(self, now):
        now_s = self.clock.seconds()
        self.governor.advance(now_s)
        commands.release_library()  # the drug library, if a command loaded it
        if self.pending is not None and ticks_diff(now, self._pending_since) >= _PENDING_TIMEOUT_MS:
            self.log(logcodes.PROGRAM_ABANDONED, self.pending.crc, 0)
            self.pending = None
        if self._mismatch_commanded and now_s - self._mismatch_logged_s >= MISMATCH_LOG_S:
            self._log_mismatches(now_s)
        if now_s - self._last_snapshot_s >= _SNAPSHOT_EVERY_S or self.journal.wants_snapshot():
            if not self.drive.in_stroke:
                self.snapshot()
                self._last_snapshot_s = now_s
        self._housekeeping.after(now, _HOUSEKEEPING_MS)

    def snapshot(self):
        # A new snapshot supersedes the stored generation: check that one
        # first, so that flash corruption is reported, not silently replaced
        # (the new snapshot, written from RAM, then heals it).
        self.safety.check_journal()
        self.persist.snapshot()

    def refilled(self):
        # After REFILL: the reservoir alarms follow the new volume and
        # delivery resumes if it may. The new account was made durable
        # before the REFILL entry (commands.py); the alarm changes since are
        # journalled as they happen.
        self._check_reservoir_alarms()
        # a refill may leave air in the line: the monitors measure it anew
        self.safety.line_changed()
        # the refill is the clinician's answer to an empty reservoir
        self.alarms.clear(alarmsmod.EMPTY_RESERVOIR)
        self.replan()

    def set_pending(self, program, soft_mask):
        if self.pending is not None:
            self.log(logcodes.PROGRAM_ABANDONED, self.pending.crc, 2)  # replaced
        self.pending = program
        self.pending_soft_mask = soft_mask
        self._pending_since = self.clock.ticks_ms()
        self.log(logcodes.PROGRAM_PENDING, program.crc, soft_mask)

    # --- alarms -----
    def _on_alarm_change(self, alarm_id, action):
        # the new mask is journalled before the entry that reports it
        if action in (alarmsmod.ACTION_RAISED, alarmsmod.ACTION_CLEARED):
            self.persist.alarms(self.alarms.active)
        if action == alarmsmod.ACTION_RAISED:
            self.log(logcodes.ALARM_RAISED, alarm_id, alarmsmod.priority(alarm_id))
        elif action == alarmsmod.ACTION_CLEARED:
            self.log(logcodes.ALARM_CLEARED, alarm_id, 0)
        elif action == alarmsmod.ACTION_ACKNOWLEDGED:
            self.log(logcodes.ALARM_ACKNOWLEDGED, alarm_id, 0)
        if not self._booting:
            self._announce_alarm(alarm_id, action)
            self._drive_annunciator()
            if action == alarmsmod.ACTION_RAISED or action == alarmsmod.ACTION_CLEARED:
                # delivery may have stopped or resumed: the stroke task and
                # the supervisor's expectation follow the pump's state
                self.schedule_stroke(self.clock.ticks_ms())

    def _announce_alarm(self, alarm_id, action):
        self.link.event(
            _ALARM_ID,
            _ALARM_FMT,
            (
                self.clock.time_ms(),
                alarm_id,
                action,
                alarmsmod.priority(alarm_id),
                self.alarms.active,
            ),
        )

    def acknowledge(self, alarm_id):
        now = self.clock.ticks_ms()
        count = self.alarms.acknowledge(alarm_id, now)
        self._on_annunciate(now)
        return count

    def _on_annunciate(self, now):
        # Ends silences that ran out (the alarm sounds again) and waits for
        # the next one.
        following = self.alarms.resound_due(now)
        if following >= 0:
            self._annunciate_task.at(following)
        else:
            self._annunciate_task.cancel()
        self._drive_annunciator()

    def _drive_annunciator(self):
        # The HAL plays the pattern of a priority on its own (PWM, timer):
        # the app only says which, when it changes.
        sound = self.alarms.sounding()
        light = self.alarms.showing()
        annunciator = self.board.annunciator
        if sound != self._sound:
            self._sound = sound
            annunciator.buzzer(sound)
        if light != self._light:
            self._light = light
            annunciator.led(light)
