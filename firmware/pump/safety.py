# Safety: feeds the monitors (pump/monitors/) with what the HAL measures,
# turns their findings into alarms, and keeps the watchdog fed only while
# every monitor runs on time.
#
# Samples (pressure in 0.1 mmHg, gauge):
#   "before" just before a stroke, "peak" at its end, "after" AFTER_MS later
#   with a reading PAIR_MS before and after it (the sensor's noise:
#   SensorCheck.on_triple)
#   -> the per-stroke response: occlusion (the volume stays in the line) and
#      leak (no or a weak response);
#   a burst of settled readings once a day (pulse.py): the CSF pulsation
#      seen through the catheter (tip migration);
#   once a MONITOR_MS: the level (occlusion ceiling, disconnection, sensor
#   plausibility), the battery, the encoder between strokes (runaway), and
#   once an hour the self-test of the program and journal CRCs.
# A monitor's verdict changes an alarm only on an edge (raised / gone).
# Alarms that stop delivery go through the app's one fail-stop path.

from micropython import const

from pump import alarms as alarmsmod
from pump import logcodes
from pump.drive import STROKE_STEPS
from pump.monitors import pulse as pulsemod
from pump.monitors import selftest
from pump.monitors import sensor as sensormod
from pump.monitors import stroke as strokemod
from pump.monitors.leak import DISCONNECT_READINGS, LeakMonitor
from pump.monitors.occlusion import OcclusionMonitor
from pump.monitors.response import RiseLearner
from pump.monitors.sensor import SensorCheck
from pump.monitors.supervisor import Supervisor
from pump.scheduler import Task
from pump.ticks import ticks_diff

# The "after" sample, this long after a stroke ends: a healthy line (time
# constant ~8 ms) is back at baseline; an occluded one still holds the stroke.
# Shorter than the gap between bolus strokes (250 - 20 ms).
AFTER_MS = const(200)
MONITOR_MS = const(60_000)
# The first stroke after boot has no interval: taken as long (a run of held
# strokes then counts by strokes alone).
_FIRST_INTERVAL_MS = const(60_000)
# The supervisor runs twice per watchdog period of the board (an RP2040
# watchdog is at most 8.3 s: a feed every 4 s; the virtual board's watchdog is
# slower so that lockstep time can jump, virtual/board.py says why).
SELF_TEST_S = selftest.PERIOD_S
# The clock check (docs/pump.md 14.8): 5-minute windows of the ms timer, 5 % apart
# from the RTC is a fault (crystal and RTC agree within ppm).
CLOCK_WINDOW_MS = const(300_000)
CLOCK_TOLERANCE_PCT = const(5)
# LINE_LIMITS mask: what SENSING_LIMITED is about (docs/pump.md 15, log code 29)
_LIMIT_OCCLUSION = const(1)  # a held stroke is not clear of the noise (the CUSUM finds it)
_LIMIT_LEAK = const(2)  # a weak stroke would need more than 8 in a row
_LIMIT_SLOW_LEAK = const(4)  # a 30 % leak moves the rise too little (learned rise < 12 mmHg)
_LIMIT_PULSE = const(8)  # the CSF pulsation is too weak for the noise (tip migration)

# Findings that can no longer be re-tested once delivery has stopped: they
# latch as events and are cleared by a clinician (CLEAR_ALARM).
_EVENT_ALARMS = (
    alarmsmod.LEAK,
    alarmsmod.MOTOR_STALL,
    alarmsmod.RUNAWAY,
    alarmsmod.ENCODER_FAILURE,
    alarmsmod.LOST_STEPS,
    alarmsmod.TIP_MIGRATION,
)


class Safety:
    def __init__(self, app, scheduler):
        self.app = app
        board = app.board
        self.pressure = board.pressure
        self.battery_sensor = board.battery
        self.encoder = board.encoder
        self.learner = RiseLearner()
        self.occlusion = OcclusionMonitor(learner=self.learner)
        self.leak = LeakMonitor(learner=self.learner)
        self.strokes = strokemod.StrokeCheck()
        self.battery = app.battery  # kept by the app: persist journals its ERI date
        self.sensor = SensorCheck()
        self.pulse = pulsemod.PulseMonitor()
        self._burst_at = 0  # ticks: the burst began (0: none running)
        self._next_burst_s = 0  # RTC seconds: the next burst is due
        self._pulse_last = 0  # ticks of the burst's last sample
        self.supervisor = Supervisor()
        # the clock check (docs/pump.md 14.8): ticks and RTC seconds at the start
        # of the current window
        self._clock_ticks0 = 0
        self._clock_s0 = 0
        self._watch_monitor = self.supervisor.register("monitor", MONITOR_MS)
        self._watch_stroke = self.supervisor.register("stroke", 0)
        self._before = 0
        self._peak = 0
        self._pre = 0
        self._after = 0
        self._phase = 0  # readings taken of the after triple
        self._stroke_at = 0  # ticks of the last stroke's start
        self._interval = 0  # ms between the last two strokes (0: first)
        self._learned = -1  # the learner's figures last logged (version)
        self._limits = 0  # the LINE_LIMITS mask last logged
        self._encoder_idle = 0
        self._last_self_test_s = 0
        self.after_pending = False
        self._after_task = scheduler.add(Task("pressure after", self._on_after))
        self._monitor_task = scheduler.add(Task("monitor", self._on_monitor))
        self._supervise_task = scheduler.add(Task("supervise", self._on_supervise))
        self._pulse_task = scheduler.add(Task("pulse", self._on_pulse))
        self._supervise_ms = board.watchdog_ms // 2
        # the last finding of each monitor, to act on edges only
        self._seen = {}

    def start(self, now):
        self.supervisor.start(now)
        self._clock_ticks0 = now
        self._clock_s0 = self.app.clock.seconds()
        self._encoder_idle = self.encoder.count()
        self._monitor_task.at(now)
        self._supervise_task.at(now)
        self._next_burst_s = self._clock_s0  # the first burst at the first monitor pass

    # --- strokes -----
    def before_stroke(self):
        reading = self._read()
        self._before = reading
        now = self.app.clock.ticks_ms()
        self._interval = ticks_diff(now, self._stroke_at) if self._stroke_at else 0
        self._stroke_at = now or 1
        self._check_idle_encoder()
        # The battery is sampled before every stroke too (the motor is idle:
        # no load dip), so that at high rates end of service stops delivery
        # within a few strokes, not minutes later at the monitor's pace.
        self._sample_battery()

    def line_changed(self):
        # A refill (air), a new catheter, a boot: the stroke response is
        # measured anew and every line threshold derived again from it.
        self.occlusion.reset()
        self.leak.reset()
        self._learned = -1

    def stroke_ended(self, moved, now, aborted=False):
        # Returns the StrokeCheck action (OK, RETRY, SHORT or an alarm id).
        # aborted: cut short by a fail-stop; its steps are not idle motion,
        # and it is not judged.
        if aborted:
            self._encoder_idle = self.encoder.count()
            self.supervisor.checkin(self._watch_stroke, now)
            return strokemod.OK
        self._peak = self._read(True)
        # The pressure witnesses a stroke the encoder missed only while the
        # sensor is plausible and the line answers strokes normally; else a
        # zero count is ENCODER_FAILURE (counted, stopped), never a retry.
        witness = self.sensor.alarm == 0 and self.leak.witnesses()
        seen = witness and self.leak.responded(self._before, self._peak)
        action = self.strokes.on_stroke_end(STROKE_STEPS, moved, seen, witness)
        self._encoder_idle = self.encoder.count()
        self.supervisor.checkin(self._watch_stroke, now)
        if action == strokemod.OK:
            self.after_pending = True
            self._after_task.after(now, AFTER_MS - sensormod.PAIR_MS)
        elif action > 0:
            self._edge("stroke", action)
        return action

    def set_stroke_period(self, period_ms, now):
        # 0 while nothing is scheduled; the supervisor then stops watching.
        self.supervisor.set_period(self._watch_stroke, period_ms, now)

    def _on_after(self, now):
        # three readings PAIR_MS apart: before "after", "after", and after
        # it: the sensor's own noise on a settled line (SensorCheck.on_triple)
        self._phase += 1
        if self._phase < 3:
            if self._phase == 1:
                self._pre = self._read()
            else:
                self._after = self._read()
            self._after_task.after(now, sensormod.PAIR_MS)
            return
        self._phase = 0
        after = self._after
        post = self._read()
        self._edge("sensor", self.sensor.on_triple(self._pre, after, post))
        self.learner.noise(self._pre, after, post)  # the floor of the learned sds
        self.after_pending = False
        if self.sensor.alarm:
            return  # a blind sensor says nothing about the line
        if self.sensor.suspect():
            app = self.app
            app.schedule_stroke(app.clock.ticks_ms())
            return  # a noisy sensor: the stroke is not judged
        interval = self._interval if self._interval > 0 else _FIRST_INTERVAL_MS
        occlusion = self.occlusion
        self._edge("occlusion", occlusion.on_stroke(self._before, self._peak, after, interval))
        self._edge("leak", self.leak.on_stroke(self._before, self._peak, after, interval))
        learner = self.learner
        if learner.learned() and learner.version != self._learned:
            self._learned = learner.version
            self.app.log(logcodes.LINE_LEARNED, learner.nominal_x10, learner.rise_sd_x10)
            self._limited()
        app = self.app
        app.schedule_stroke(app.clock.ticks_ms())  # a stroke waiting for this sample

    def _limited(self):
        # SENSING_LIMITED while any figure cannot be watched; LINE_LIMITS
        # logs which (a mask) and the measured noise whenever that changes.
        mask = 0
        if self.occlusion.limited():
            mask |= _LIMIT_OCCLUSION
        if self.leak.limited():
            mask |= _LIMIT_LEAK
        if self.leak.slow_limited():
            mask |= _LIMIT_SLOW_LEAK
        if self.pulse.limited():
            mask |= _LIMIT_PULSE
        if mask != self._limits:
            self._limits = mask
            self.app.log(logcodes.LINE_LIMITS, mask, self.learner.noise_floor_x10)
        self._edge("limited", alarmsmod.SENSING_LIMITED if mask else 0)

    # --- the CSF pulsation through the catheter (tip migration) -----
    def _on_pulse(self, now):
        # A burst of settled readings SAMPLE_MS apart, once a PERIOD_MS.
        pulse = self.pulse
        task = self._pulse_task
        if not self._burst_at:
            self._burst_at = now or 1
            pulse.begin()
        elif ticks_diff(now, self._burst_at) > pulsemod.BURST_MAX_MS:
            self._end_burst()  # a bolus kept the line busy: next period
            return
        since = ticks_diff(now, self._stroke_at) if self._stroke_at else pulsemod.QUIET_MS
        if self.app.drive.in_stroke or self.after_pending or since < pulsemod.QUIET_MS:
            wait = pulsemod.QUIET_MS - since
            task.after(now, wait if wait > pulsemod.SAMPLE_MS else pulsemod.SAMPLE_MS)
            return
        reading = self._read()
        if self.sensor.alarm:
            pulse.begin()  # a blind sensor: the burst starts over
        elif pulse.on_sample(reading, ticks_diff(now, self._pulse_last) < 2 * pulsemod.SAMPLE_MS):
            self._edge("pulse", pulse.end(self._line_open()))
            self._limited()
            if pulse.absent:
                self._edge("disconnect", self.leak.confirm_disconnected())
            self._end_burst()
            return
        self._pulse_last = now
        task.after(now, pulsemod.SAMPLE_MS)

    def _line_open(self):
        # A leak before the tip is known (the condition, or its latched
        # alarm): the CSF pulsation no longer reaches the sensor through the
        # split, so a burst without it says nothing of where the tip is
        # (the bursts the low level starts would otherwise name the leak
        # TIP_MIGRATION: leak-first-hour with --seed 11).
        active = self.app.alarms.active
        return bool(
            self.leak.alarm
            or active & (alarmsmod.bit(alarmsmod.LEAK) | alarmsmod.bit(alarmsmod.SLOW_LEAK))
        )

    def _end_burst(self):
        pulse = self.pulse
        learning = pulse.learned < pulsemod.LEARN_BURSTS
        period = pulsemod.LEARN_PERIOD_S if learning else pulsemod.PERIOD_S
        self._next_burst_s = self.app.clock.seconds() + period  # checked once a minute
        self._pulse_task.cancel()
        self._burst_at = 0
        self.pulse.begin()

    # --- once a minute -----
    def _on_monitor(self, now):
        app = self.app
        self.supervisor.checkin(self._watch_monitor, now)
        self._monitor_task.after(now, MONITOR_MS)
        reading = self._read()
        if not self.sensor.alarm:
            self._edge("level", self.occlusion.on_level(reading))
            self._edge("disconnect", self.leak.on_level(reading, app.delivering()))
            # the pocket's level while strokes answer: is CSF behind it? A
            # burst at once, then once an hour while it lasts
            low = self.leak.level_low
            if (low == DISCONNECT_READINGS or (low > DISCONNECT_READINGS and low % 60 == 0)) and (
                not self._burst_at and self.pulse.armed()
            ):
                self._pulse_task.at(now)
        if not app.drive.in_stroke:
            self._check_idle_encoder()
        now_s = self._sample_battery()
        # The clock check (docs/pump.md 14.8): the ms timer that times every stroke
        # against the RTC over CLOCK_WINDOW_MS of ticks; more than
        # CLOCK_TOLERANCE_PCT % + 1 s (the RTC's resolution) apart is
        # CLOCK_FAULT, a true window ends the condition.
        ticks = ticks_diff(now, self._clock_ticks0)
        if ticks >= CLOCK_WINDOW_MS:
            rtc_ms = (now_s - self._clock_s0) * 1000
            self._clock_ticks0 = now
            self._clock_s0 = now_s
            bad = abs(ticks - rtc_ms) > rtc_ms * CLOCK_TOLERANCE_PCT // 100 + 1000
            self._edge("clock", alarmsmod.CLOCK_FAULT if bad else 0)
        if not self._burst_at and now_s >= self._next_burst_s:
            self._pulse_task.at(now)  # the daily pulsation burst (pulse.py)
        if now_s - self._last_self_test_s >= SELF_TEST_S:
            self._last_self_test_s = now_s
            self.self_test()

    def _sample_battery(self):
        app = self.app
        mv = self.battery_sensor.read_mv()
        app.battery_mv = mv
        now_s = app.clock.seconds()
        self._edge("battery", self.battery.on_sample(mv, now_s))
        app.eos_days = self.battery.eos_days_left(now_s)
        return now_s

    def self_test(self):
        app = self.app
        program = app.therapy.program
        if not selftest.program_ok(program.raw, program.crc):
            app.log(logcodes.SELF_TEST_FAILED, 1, 0)
            app.fail_stop(alarmsmod.MEMORY, lasting=False)
        else:
            self.check_journal()

    def check_journal(self):
        # The stored generation (snapshot and deltas) re-read with every CRC.
        app = self.app
        if not selftest.journal_ok(app.journal):
            app.log(logcodes.SELF_TEST_FAILED, 2, 0)
            app.fail_stop(alarmsmod.MEMORY, lasting=False)

    def _check_idle_encoder(self):
        # The encoder counter wraps at 2**30 like the ticks: same arithmetic.
        count = self.encoder.count()
        delta = ticks_diff(count, self._encoder_idle)
        self._encoder_idle = count
        self._edge("idle", self.strokes.on_idle(delta))

    # --- sensor -----
    def _read(self, stroke_end=False):
        # stroke_end: the reading the HAL held when the move ended, so the
        # stroke response never depends on how late the loop got there.
        reading = self.pressure.stroke_end_x10() if stroke_end else self.pressure.read_x10()
        self.app.pressure_x10 = reading
        self._edge("sensor", self.sensor.on_sample(reading))
        return reading

    # --- watchdog -----
    def _on_supervise(self, now):
        self._supervise_task.after(now, self._supervise_ms)
        if self.supervisor.feed_ok(now):
            self.app.board.feed_watchdog()

    # --- findings to alarms -----
    def _edge(self, source, alarm_id):
        previous = self._seen.get(source, 0)
        if alarm_id == previous or alarm_id < 0:
            return
        self._seen[source] = alarm_id
        app = self.app
        if previous:
            app.alarms.condition_gone(previous)
        if not alarm_id:
            return
        lasting = alarm_id not in _EVENT_ALARMS
        if alarmsmod.stops(alarm_id):
            app.fail_stop(alarm_id, lasting)
        else:
            app.alarms.raise_alarm(alarm_id, lasting)

    def cleared_by_clinician(self, alarm_id):
        # A clinician cleared an alarm whose cause can no longer be
        # re-tested: the monitor starts afresh.
        if alarm_id in (
            alarmsmod.MOTOR_STALL,
            alarmsmod.RUNAWAY,
            alarmsmod.ENCODER_FAILURE,
            alarmsmod.LOST_STEPS,
        ):
            self.strokes.restart()
            self._seen["stroke"] = 0
            self._seen["idle"] = 0
        elif alarm_id == alarmsmod.LEAK or alarm_id == alarmsmod.SLOW_LEAK:
            self.leak.restart()
            self._seen["leak"] = 0
            self._seen["disconnect"] = 0
        elif alarm_id == alarmsmod.TIP_MIGRATION:
            self.pulse.restart()
            self._seen["pulse"] = 0
        elif alarm_id == alarmsmod.OCCLUSION:
            self.occlusion.restart()
            self._seen["occlusion"] = 0
            self._seen["level"] = 0
