# Therapy: when the next stroke is due and what it is for.
#
# Basal delivery follows the active program's rate (continuous, flex step,
# minimum rate); boluses (clinician, priming, bridge, patient) run as
# strokes on a fixed cadence, never closer than MIN_BOLUS_INTERVAL_MS, interleaved
# with basal strokes. This module only decides; the app runs the drive,
# counts what the encoder says moved and tells stroke_done().
#
# Parameters change only at defined boundaries: a new program takes effect
# between strokes (the app confirms it only when no stroke is running); a
# flex step switches at its start minute; a bolus starts between strokes.

from micropython import const

from protocol.table import BOLUS_NONE
from pump.program import MAX_RATE_NL_DAY, MINUTES_PER_DAY, stopped_program
from pump.ticks import ticks_add, ticks_diff

DAY_MS = const(86_400_000)
DAY_S = const(86_400)

KIND_BASAL = const(0)
KIND_BOLUS = const(1)


# Fastest bolus: a 200 nL stroke every 250 ms = 2.9 mL/h. A bolus never
# runs the motor continuously; each stroke is bounded and checked.
MIN_BOLUS_INTERVAL_MS = const(250)
# A clock change (SET_CLOCK) and the flex schedule (docs/pump.md 11.3): for this
# long after an offset stops being current, the basal rate is the lowest the
# schedule gives under it and under the current offset, so that no window up
# to the governor's longest (24 h 15 min) holds more than the checked worst
# case of either clock. Up to _HELD_OFFSETS earlier offsets are held; a change
# when all are still held is refused.
_CLOCK_HOLD_S = const(24 * 3600 + 900)
_HELD_OFFSETS = const(3)
# Patient boluses remembered for the daily maximum (the schema allows at
# most 48 a day; the ring holds one day's worth at that maximum).
_PB_HISTORY = const(48)

# Why a patient bolus was refused (also NACK details).
PB_OK = const(0)
PB_DISABLED = const(1)
PB_LOCKOUT = const(2)
PB_DAILY_MAX = const(3)
PB_BUSY = const(4)
PB_STOPPED = const(5)


class Therapy:
    def __init__(self, stroke_nl):
        self.stroke_nl = stroke_nl  # nominal volume of one stroke
        self.program = stopped_program()
        self.path = None  # the drug path (pump/path.py), set by the app
        self.running = False  # START/STOP; also false after a fail-stop
        self.clock_offset_s = 0  # device seconds -> local time (0: Monday 00:00)
        # earlier offsets still binding after a clock change, and the device
        # second each one stops binding (0: the slot is free)
        self.held_offset_s = [0] * _HELD_OFFSETS
        self.held_until_s = [0] * _HELD_OFFSETS
        # basal: Bresenham over the stroke interval, all small integers
        self.rate_nl_day = 0
        self._interval_ms = 0
        self._interval_rem = 0  # (stroke_nl x DAY_MS) mod rate
        self._err = 0
        self._last_basal = 0  # ticks of the last basal stroke start
        self._basal_armed = False
        self.basal_next = 0
        # the bolus in progress (one at a time)
        self.bolus_kind = BOLUS_NONE
        self.bolus_id = 0
        self.bolus_target_nl = 0
        self.bolus_delivered_nl = 0
        self.bolus_interval_ms = 0
        self.bolus_next = 0
        # patient-bolus history: device seconds of the last _PB_HISTORY
        self.pb_times = [0] * _PB_HISTORY
        self.pb_count = 0  # total ever granted (index into the ring)
        self.delivered_nl = 0  # since manufacture: basal + boluses
        self.basal_delivered_nl = 0
        self.bolus_total_nl = 0

    # --- time of day -----
    def set_clock(self, offset_s, now_s):
        # A new local-time offset. The one it replaces stays binding for
        # _CLOCK_HOLD_S. False (nothing changed) when every slot still holds
        # an offset: too many changes within a day.
        if offset_s == self.clock_offset_s:
            return True
        for i in range(_HELD_OFFSETS):
            if self.held_until_s[i] <= now_s:
                self.held_offset_s[i] = self.clock_offset_s
                self.held_until_s[i] = now_s + _CLOCK_HOLD_S
                self.clock_offset_s = offset_s
                return True
        return False

    def _offset(self, i, now_s):
        # Offset i (-1: the current one), or -1 if it no longer binds.
        if i < 0:
            return self.clock_offset_s
        return self.held_offset_s[i] if self.held_until_s[i] > now_s else -1

    def seconds_to_next_change(self, now_s):
        # Device seconds until the flex rate may change: a step start or
        # local midnight under any binding offset, or a hold ending.
        wait = DAY_S
        for i in range(-1, _HELD_OFFSETS):
            offset = self._offset(i, now_s)
            if offset < 0:
                continue
            if i >= 0 and self.held_until_s[i] - now_s < wait:
                wait = self.held_until_s[i] - now_s
            local = now_s + offset
            minute = (local // 60) % MINUTES_PER_DAY
            left = (self.program.next_change_minute(minute) - minute) * 60 - local % 60
            if left < wait:
                wait = left
        return wait

    # --- basal -----
    def basal_rate(self, now_s):
        # The schedule's rate now: the lowest under any binding offset.
        if not self.running:
            return 0
        rate = -1
        for i in range(-1, _HELD_OFFSETS):
            offset = self._offset(i, now_s)
            if offset >= 0:
                local = now_s + offset
                held = self.program.rate_at((local // 60) % MINUTES_PER_DAY, (local // DAY_S) % 7)
                if rate < 0 or held < rate:
                    rate = held
        return self.at_tip(rate)

    def at_tip(self, rate):
        # The bridge (docs/pump.md 22.3): while another concentration of the
        # program's drug is leaving the tip, the volume rate that gives the
        # program's dose rate with it (rounded down, at most the mechanism's
        # maximum). Saline or an empty catheter at the tip, or another drug:
        # the programmed volume rate. Replan time only (big ints on rp2).
        path = self.path
        program = self.program
        if path is None or rate <= 0 or program.conc_ug_ml <= 0:
            return rate
        drug, conc = path.tip()
        if drug != program.drug_id or conc <= 0 or conc == program.conc_ug_ml:
            return rate
        rate = rate * program.conc_ug_ml // conc
        return rate if rate < MAX_RATE_NL_DAY else MAX_RATE_NL_DAY

    def replan(self, now_ticks, now_s):
        # Called when the rate may have changed (program, flex step, start).
        # Keeps the last stroke as the phase reference, so that a change of
        # rate moves the next stroke to the new cadence at once; the
        # accounting error of a switch is below one stroke.
        rate = self.basal_rate(now_s)
        if rate == self.rate_nl_day and self._basal_armed == (rate > 0):
            return
        self.rate_nl_day = rate
        if rate <= 0:
            self._basal_armed = False
            return
        # stroke_nl x DAY_MS exceeds 2**30: a big integer on the board, but
        # only here, once per rate change, never per stroke.
        span = self.stroke_nl * DAY_MS
        self._interval_ms = span // rate
        self._interval_rem = span % rate
        self._err = 0
        if not self._basal_armed:
            self._last_basal = now_ticks
            self._basal_armed = True
        due = ticks_add(self._last_basal, self._interval_ms)
        self.basal_next = due if ticks_diff(due, now_ticks) > 0 else now_ticks

    def _after_basal_stroke(self, started_ticks):
        # The cadence follows the schedule, not the loop: a stroke the loop
        # started late (a busy pass, a slow host) does not push every later
        # one back, which would under-deliver by the lateness at each
        # stroke. A stroke later than a whole interval (delivery was held)
        # restarts the cadence from now: missed strokes are never rushed.
        late = ticks_diff(started_ticks, self.basal_next)
        if 0 <= late < self._interval_ms:
            started_ticks = self.basal_next
        self._last_basal = started_ticks
        step = self._interval_ms
        self._err += self._interval_rem
        if self._err >= self.rate_nl_day:
            self._err -= self.rate_nl_day
            step += 1
        self.basal_next = ticks_add(started_ticks, step)

    def stroke_period_ms(self):
        # The longest gap the schedule leaves between two strokes now (the
        # supervisor expects a stroke at least this often).
        if self._basal_armed:
            return self._interval_ms + 1
        if self.bolus_kind != BOLUS_NONE:
            return self.bolus_interval_ms
        return 0

    # --- what runs next -----
    def next_due(self):
        # (kind, ticks) of the next stroke, or (-1, 0) when nothing is due.
        if not self.running:
            return -1, 0
        if self.bolus_kind != BOLUS_NONE:
            if not self._basal_armed or ticks_diff(self.bolus_next, self.basal_next) <= 0:
                return KIND_BOLUS, self.bolus_next
        if self._basal_armed:
            return KIND_BASAL, self.basal_next
        return -1, 0

    def stroke_started(self, kind, started_ticks):
        if kind == KIND_BASAL:
            self._after_basal_stroke(started_ticks)
        else:
            self._after_bolus_stroke(started_ticks)

    def _after_bolus_stroke(self, started_ticks):
        # As for basal, the cadence follows the schedule: a bolus stroke the
        # loop started late (behind a basal stroke, a busy pass, a slow host)
        # does not push the rest of the bolus back (each lag would add to
        # the bolus's duration and lower its rate). The catch-up never brings
        # two strokes closer than MIN_BOLUS_INTERVAL_MS, and a stroke later
        # than a whole interval restarts the cadence from now, so no window
        # holds more strokes than the schedule gives it, plus one.
        due = ticks_add(self.bolus_next, self.bolus_interval_ms)
        earliest = ticks_add(started_ticks, MIN_BOLUS_INTERVAL_MS)
        late = ticks_diff(started_ticks, self.bolus_next)
        if late < 0 or late >= self.bolus_interval_ms:
            due = ticks_add(started_ticks, self.bolus_interval_ms)
        elif ticks_diff(earliest, due) > 0:
            due = earliest
        self.bolus_next = due

    def stroke_done(self, kind, volume_nl):
        # Adds what the encoder says moved; returns True when a bolus ended.
        self.delivered_nl += volume_nl
        if kind == KIND_BASAL:
            self.basal_delivered_nl += volume_nl
            # Lost steps: the encoder says a part of the stroke
            # did not move; the next basal stroke comes that much of an
            # interval sooner, so the rate is kept. A stroke that moved
            # nothing is a stall (StrokeCheck retries, then stops); the
            # governor still bounds every window, and LOST_STEPS still says
            # the head is wearing.
            short = self.stroke_nl - volume_nl
            if 0 < short < self.stroke_nl and self._basal_armed:
                self.basal_next = ticks_add(
                    self.basal_next, -(self._interval_ms * short // self.stroke_nl)
                )
            return False
        self.bolus_total_nl += volume_nl
        self.bolus_delivered_nl += volume_nl
        # A bolus ends at the stroke that brings it nearest its target.
        if self.bolus_delivered_nl * 2 + self.stroke_nl > self.bolus_target_nl * 2:
            self.bolus_kind = BOLUS_NONE
            return True
        return False

    # --- boluses -----
    def start_bolus(self, kind, bolus_id, volume_nl, duration_ms, now_ticks):
        strokes = (volume_nl + self.stroke_nl // 2) // self.stroke_nl
        if strokes < 1:
            strokes = 1
        interval = duration_ms // strokes
        if interval < MIN_BOLUS_INTERVAL_MS:
            interval = MIN_BOLUS_INTERVAL_MS
        self.bolus_kind = kind
        self.bolus_id = bolus_id
        self.bolus_target_nl = volume_nl
        self.bolus_delivered_nl = 0
        self.bolus_interval_ms = interval
        self.bolus_next = now_ticks

    def cancel_bolus(self):
        self.bolus_kind = BOLUS_NONE

    def bolus_remaining_nl(self):
        if self.bolus_kind == BOLUS_NONE:
            return 0
        left = self.bolus_target_nl - self.bolus_delivered_nl
        return left if left > 0 else 0

    # --- patient bolus -----
    def patient_bolus_refusal(self, now_s):
        # PB_OK or why not; the second value is a NACK detail (seconds of
        # lockout left, or the daily maximum).
        program = self.program
        if program.pb_dose_nl == 0:
            return PB_DISABLED, 0
        if not self.running:
            return PB_STOPPED, 0
        if self.bolus_kind != BOLUS_NONE:
            return PB_BUSY, 0
        if self.pb_count:
            last = self.pb_times[(self.pb_count - 1) % _PB_HISTORY]
            wait = last + program.pb_lockout_s - now_s
            if wait > 0:
                return PB_LOCKOUT, wait if wait < 0xFFFF else 0xFFFF
        if self.patient_boluses_last_day(now_s) >= program.pb_max_per_day:
            return PB_DAILY_MAX, program.pb_max_per_day
        return PB_OK, 0

    def patient_boluses_last_day(self, now_s):
        count = 0
        newest = self.pb_count
        oldest = newest - _PB_HISTORY if newest > _PB_HISTORY else 0
        for index in range(oldest, newest):
            if now_s - self.pb_times[index % _PB_HISTORY] < DAY_S:
                count += 1
        return count

    def record_patient_bolus(self, now_s):
        self.pb_times[self.pb_count % _PB_HISTORY] = now_s
        self.pb_count += 1
