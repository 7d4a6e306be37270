# Stroke check: did the motor do what it was told? Compares the steps
# commanded with the steps the encoder saw, per stroke and between strokes,
# and uses the pressure response as a witness when the encoder saw nothing.
#
# on_stroke_end() returns an action. The ones that raise an alarm ARE the
# alarm id (positive); the others are 0 or negative:
#   OK               the stroke moved as commanded
#   RETRY            neither the encoder nor the pressure saw the stroke: the
#                    rotor may be stuck; the app tries the stroke again (after
#                    RETRY_DELAY_MS), at most MAX_RETRIES times in a row. Only
#                    while the pressure is a witness to trust (the sensor
#                    plausible, recent strokes answered normally): a blind
#                    witness cannot tell a stall from a blind encoder
#   STALL            the retries are exhausted: MOTOR_STALL, critical
#                    (SynchroMed: motor stall is a critical alarm; stall and
#                    recovery are logged)
#   SHORT            the encoder saw fewer steps than commanded, but some:
#                    counted (the head is wearing: SynchroMed returned pumps,
#                    shaft wear 59 %)
#   LOST_STEPS       the alarm: _LOST_STROKES short strokes in a row, or more
#                    than _LOST_PCT % of the steps commanded over the last
#                    WINDOW strokes lost (an intermittent loss never makes a
#                    long run: 5 % lost is a short stroke in 2 of 5)
#   RUNAWAY          the encoder saw more steps than commanded: stop at once
#   ENCODER_FAILURE  the encoder saw nothing but the pressure shows the
#                    stroke happened, or cannot show whether it did (no
#                    witness): delivery can no longer be counted (the
#                    governor is blind), stop. Never retried: the drug may
#                    have been delivered, a retry would deliver it twice. The
#                    app counts the stroke as nominal (never under-counts).
# on_idle() returns RUNAWAY if the encoder moved while no stroke was
# commanded, else OK.
#
# `alarm` holds the condition: LOST_STEPS until a stroke moves fully again
# and the window is back under its limit;
# MOTOR_STALL until a stroke moves at all; RUNAWAY and ENCODER_FAILURE until
# restart() (they stop delivery, so nothing shows them gone).
#
# Integers only; nothing allocates.

from micropython import const

from pump.monitors import ENCODER_FAILURE, LOST_STEPS, MOTOR_STALL, RUNAWAY

OK = const(0)
RETRY = const(-1)
SHORT = const(-2)
STALL = MOTOR_STALL
# LOST_STEPS, RUNAWAY and ENCODER_FAILURE are actions too (their alarm ids).

# 3 retries after the first attempt: a particle or a sticky gear gets 4 tries
# in all; a permanent stall (SynchroMed 2019 recall) is declared within a few
# seconds, with no drug lost (nothing moved).
MAX_RETRIES = const(3)
# Suggested pause before a retry (the app's scheduler waits it).
RETRY_DELAY_MS = const(1_000)
# 3 short strokes in a row raise LOST_STEPS (one short stroke can be a missed
# encoder edge) ...
_LOST_STROKES = const(3)
# ... and so does losing more than 10 % of the steps over the last 32
# strokes (GIP [55]: under 90 % of the rate for 15 min is an
# under-infusion alarm; 32 strokes are 3.2 h at the minimum rate, 23 s at
# the maximum).
_LOST_PCT = const(10)
WINDOW = const(32)
# Encoder steps above the commanded count tolerated in a stroke, and encoder
# steps tolerated while idle: 0, the encoder counts motor steps exactly
# (a stepper holding position does not move).
_RUNAWAY_TOLERANCE_STEPS = const(0)
_IDLE_TOLERANCE_STEPS = const(0)
_COUNT_MAX = const((1 << 30) - 1)


class StrokeCheck:
    def __init__(
        self,
        max_retries=MAX_RETRIES,
        lost_strokes=_LOST_STROKES,
        lost_pct=_LOST_PCT,
        window=WINDOW,
        runaway_tolerance_steps=_RUNAWAY_TOLERANCE_STEPS,
        idle_tolerance_steps=_IDLE_TOLERANCE_STEPS,
    ):
        if max_retries < 0 or lost_strokes <= 0 or not 0 < lost_pct < 100 or window <= 0:
            raise ValueError("stroke check")
        if runaway_tolerance_steps < 0 or idle_tolerance_steps < 0:
            raise ValueError("stroke check")
        self.max_retries = max_retries
        self.lost_strokes = lost_strokes
        self.lost_pct = lost_pct
        self._window = bytearray(window)  # steps lost per stroke (capped at 255)
        self._slot = 0
        self.window_lost = 0  # steps lost over the window
        self.runaway_tolerance_steps = runaway_tolerance_steps
        self.idle_tolerance_steps = idle_tolerance_steps
        self.alarm = 0
        self.retries = 0  # retries of the current stroke so far
        self.short = 0  # short strokes in a row
        self.stalls = 0  # strokes that needed a retry (for the log)
        self.lost_steps = 0  # steps commanded but not seen, since restart()

    def restart(self):
        # After a clinician's clear: forget the conditions and counts.
        self.alarm = 0
        self.retries = 0
        self.short = 0
        self.stalls = 0
        self.lost_steps = 0
        w = self._window
        i = 0
        while i < len(w):
            w[i] = 0
            i += 1
        self._slot = 0
        self.window_lost = 0

    def cleared(self):
        return self.alarm == 0

    # --- hot path ------------------------------------------------------------
    def on_stroke_end(self, commanded, moved, response_seen, witness=True):
        # commanded: steps asked for; moved: steps the encoder saw (signed,
        # from ticks_diff on the wrapping counter); response_seen: whether
        # the pressure rose as for a stroke (LeakMonitor.responded());
        # witness: whether the pressure can tell (False when the sensor is
        # not trusted or the line answers strokes weakly).
        if moved > commanded + self.runaway_tolerance_steps or moved < 0:
            self.alarm = RUNAWAY
            return RUNAWAY
        if moved == 0:
            if response_seen or not witness:
                self.alarm = ENCODER_FAILURE
                return ENCODER_FAILURE
            if self.retries == 0:
                self.stalls += 1
            if self.retries >= self.max_retries:
                self.alarm = MOTOR_STALL
                return STALL
            self.retries += 1
            return RETRY
        self.retries = 0
        if self.alarm == MOTOR_STALL:
            self.alarm = 0  # it turns again
        lost = commanded - moved if moved < commanded else 0
        # the window: this stroke's loss replaces the oldest one
        w = self._window
        i = self._slot
        self.window_lost += (lost if lost < 255 else 255) - w[i]
        w[i] = lost if lost < 255 else 255
        i += 1
        self._slot = i if i < len(w) else 0
        too_many = self.window_lost * 100 > commanded * len(w) * self.lost_pct
        if lost:
            if self.lost_steps < _COUNT_MAX - 255:  # saturates: stays a small int
                self.lost_steps += lost
            self.short += 1
        else:
            self.short = 0
        if self.short >= self.lost_strokes or too_many:
            if self.alarm == 0:
                self.alarm = LOST_STEPS
            return LOST_STEPS
        if self.alarm == LOST_STEPS:
            self.alarm = 0
        return SHORT if lost else OK

    def on_idle(self, encoder_delta):
        # encoder_delta: signed steps since the last look (ticks_diff on the
        # wrapping counter) while no stroke was commanded.
        if encoder_delta > self.idle_tolerance_steps or -encoder_delta > self.idle_tolerance_steps:
            self.alarm = RUNAWAY
            return RUNAWAY
        return OK
