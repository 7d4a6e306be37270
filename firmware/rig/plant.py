# The plant: what really happens outside the firmware. Shared by the virtual
# board (hal/sim binds the motor and encoder to it) and a future rig board.
#
# First part (therapy issue): a pump head that delivers the real volume per
# step, with a calibration error; the real reservoir; the catheter's dead
# volume, which must fill before anything leaves the tip. Parameters carry
# units and where their values come from. Everything is integer.

from pump.ticks import TICKS_MAX

# 25 nL/step nominal (pump/drive.py); the real head differs by
# calibration_ppm (parts per million, signed).
NOMINAL_PL_PER_STEP = 25_000
# Catheter internal volume: about 2.6 uL/cm (Prometra labelling, reference
# clinical.md); a 60 cm catheter holds 156 uL.
CATHETER_NL_PER_CM = 2_600
DEFAULT_CATHETER_CM = 60
# Pump-side dead volume between the head and the catheter connector
# (assumed; the bridge bolus pushes it together with the catheter volume).
PUMP_DEAD_NL = 20_000
# A new pump arrives empty; the rig's FILL (the clinician's syringe) fills it.
DEFAULT_RESERVOIR_NL = 0

FAULT_NONE = 0
FAULT_RUNAWAY = 1  # the motor moves extra steps the firmware did not ask for


class Plant:
    def __init__(self, seed=0):
        self.seed = seed
        self.calibration_ppm = 0
        self.reservoir_nl = DEFAULT_RESERVOIR_NL
        # By default the system is implanted and primed: the catheter is full.
        self.catheter_nl = DEFAULT_CATHETER_CM * CATHETER_NL_PER_CM
        self.catheter_empty_nl = 0  # how much of the catheter is still air/CSF
        self.pumped_nl = 0  # volume that left the reservoir through the head
        self.tip_nl = 0  # volume that left the catheter tip: the patient's dose
        self.steps = 0  # real steps the head turned
        self.encoder = 0  # encoder counter (wraps at 2**30)
        self._remainder_pl = 0
        self.fault = FAULT_NONE
        self.fault_param = 0

    def configure(self, calibration_ppm, catheter_nl, catheter_empty_nl, reservoir_nl):
        self.calibration_ppm = calibration_ppm
        self.catheter_nl = catheter_nl
        self.catheter_empty_nl = (
            catheter_empty_nl if catheter_empty_nl < catheter_nl else catheter_nl
        )
        self.reservoir_nl = reservoir_nl

    def pl_per_step(self):
        # 25 000 x (1e6 + ppm) / 1e6 done in two steps to stay in small ints.
        return NOMINAL_PL_PER_STEP + NOMINAL_PL_PER_STEP * self.calibration_ppm // 1_000_000

    def move(self, commanded_steps):
        # The head turns; returns the steps it really made.
        steps = commanded_steps
        if self.fault == FAULT_RUNAWAY:
            steps += commanded_steps * self.fault_param
        self.steps += steps
        self.encoder = (self.encoder + steps) & TICKS_MAX
        part = steps * self.pl_per_step() + self._remainder_pl
        volume = part // 1000
        self._remainder_pl = part % 1000
        if volume > self.reservoir_nl:
            volume = self.reservoir_nl  # an empty reservoir delivers nothing
        self.reservoir_nl -= volume
        self.pumped_nl += volume
        self._push_catheter(volume)
        return steps

    def _push_catheter(self, volume):
        # Drug first fills what is empty of the catheter; the rest leaves
        # the tip (an incompressible column: what goes in comes out).
        if self.catheter_empty_nl:
            filled = volume if volume < self.catheter_empty_nl else self.catheter_empty_nl
            self.catheter_empty_nl -= filled
            volume -= filled
        self.tip_nl += volume

    def inject(self, fault, param):
        self.fault = fault
        self.fault_param = param

    def clear_fault(self):
        self.fault = FAULT_NONE
        self.fault_param = 0
