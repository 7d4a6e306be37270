# The drive: a peristaltic head turned by a stepper, in bounded strokes.
#
# A stroke is a fixed, small number of steps (STROKE_STEPS): the motor is
# never told to "run until stopped". The volume counted as delivered is what
# the encoder says moved, converted with the calibration (picolitres per
# step) and a remainder carried from stroke to stroke, so no fraction of a
# nanolitre is ever lost or invented.
#
# HAL objects: motor.start(steps) begins a bounded move and returns at once;
# motor.stop() de-energises at once; encoder.count() is a step counter that
# wraps at 2**30 (as a PIO/IRQ counter would be masked).

from micropython import const

from pump.ticks import TICKS_MAX

STROKE_STEPS = const(8)
# 8 steps at 400 steps/s. The stroke ends (and is checked) this long after
# it started; on the board the PIO reports completion earlier or later.
STROKE_MS = const(20)
# Nominal calibration: 25 nL per step, so 200 nL per stroke (a stroke every
# 6 min at the 0.048 mL/day minimum, 1.4 strokes/s at 24 mL/day).
_DEFAULT_PL_PER_STEP = const(25_000)


class Drive:
    def __init__(self, motor, encoder, pl_per_step=_DEFAULT_PL_PER_STEP):
        self.motor = motor
        self.encoder = encoder
        self.pl_per_step = pl_per_step
        self.in_stroke = False
        self.stroke_started_ms = 0  # ticks
        self._encoder_at_start = 0
        self._remainder_pl = 0
        self.last_moved = 0  # encoder steps of the last finished stroke
        self.strokes = 0
        # the stroke in progress was cut short by abort(): its end still
        # counts what the encoder saw, but it is no evidence of a fault
        self.aborted = False

    def nominal_stroke_nl(self):
        return STROKE_STEPS * self.pl_per_step // 1000

    def start_stroke(self, now_ticks):
        self._encoder_at_start = self.encoder.count()
        self.stroke_started_ms = now_ticks
        self.in_stroke = True
        self.motor.start(STROKE_STEPS)

    def finish_stroke(self):
        # Ends the stroke and returns the delivered volume in nL, counted
        # from the encoder (what actually moved, not what was asked).
        self.motor.stop()
        self.in_stroke = False
        self.aborted = False
        moved = (self.encoder.count() - self._encoder_at_start) & TICKS_MAX
        self.last_moved = moved
        self.strokes += 1
        return self.account(moved)

    def account(self, moved_steps):
        # moved_steps x pl_per_step stays under 2**30 for any bounded stroke
        # (a runaway of 40 000 steps at 25 000 pL would not): the product is
        # split to keep the dose path in small integers.
        whole_nl = moved_steps * (self.pl_per_step // 1000)
        part_pl = moved_steps * (self.pl_per_step % 1000) + self._remainder_pl
        whole_nl += part_pl // 1000
        self._remainder_pl = part_pl % 1000
        return whole_nl

    def abort(self):
        # Fail-stop: motor off first, whatever else happens next. A stroke
        # in progress stays open until finish_stroke(): the steps it made
        # before the stop moved drug and are counted, and the encoder
        # between strokes starts after them (else an aborted stroke's steps
        # would look like a runaway).
        self.motor.stop()
        if self.in_stroke:
            self.aborted = True
