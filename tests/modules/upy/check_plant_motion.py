# Runs under MicroPython: the plant takes the head's motion from the motor's
# commands (steps, step rate), never from the pump's stroke constants. A
# sweep of drives with other stroke lengths (the pump's Drive behind a motor
# that turns each stroke into n steps, 1..MAX_MOVE_STEPS: pump.drive's
# STROKE_STEPS is a const() folded into its code) and motors at other rates
# (SimMotor.set_rate) must give
# the plant the volume the steps pumped and the pressure rise of that volume
# flowing in over the steps' duration at that rate (closed form, computed
# here). Prints one JSON line; raises on the first failure.
import json
import math
import sys

# The plant and the virtual board's motor load without the pump's drive.
from virtual import plant as P
from virtual.board import PL_PER_STEP, SimEncoder, SimMotor

assert "pump.drive" not in sys.modules, "the plant imports the pump's drive"

from pump import drive as drivemod  # noqa: E402

MAX_MOVE_STEPS = 64  # board_config.MAX_MOVE_STEPS: a move is bounded
RATES = (1, 7, 50, 133, 400, 999, 1000, 2_500, 5_000)  # steps/s, the driver's range
CALIBRATIONS = (0, -200_000, 123_457)  # ppm


class StrokesOf:
    """A drive whose strokes are `steps` long, as the motor driver sees it."""

    def __init__(self, motor, steps):
        self.motor = motor
        self.steps = steps

    def start(self, _stroke_steps):
        self.motor.start(self.steps)

    def stop(self):
        self.motor.stop()


class Clock:
    def __init__(self):
        self.now = 0

    def time_ms(self):
        return self.now


def close(a, b, tol, what):
    assert abs(a - b) <= tol, "%s: %r vs %r" % (what, a, b)


def quiet_plant(ppm):
    p = P.Plant(1)
    p.configure(ppm, 156_000, 0, 20_000_000, 0, 50, 100, 0, 74)
    csf = p.csf
    csf.drift_x1000 = csf.upright_x1000 = csf.coughs_per_hour = 0
    csf.cardiac_x1000 = csf.resp_x1000 = 0
    return p


def one(steps, rate, ppm):
    plant = quiet_plant(ppm)
    clock = Clock()
    motor = SimMotor(plant, clock)
    motor.set_rate(rate)
    drive = drivemod.Drive(StrokesOf(motor, steps), SimEncoder(plant), PL_PER_STEP)
    t0 = 1_000
    clock.now = t0
    base = plant.pressure_mmhg(t0)
    drive.start_stroke(t0)
    # the head made the commanded steps and pumped their volume
    assert plant.steps == steps and plant.encoder == steps, (steps, plant.steps)
    volume = steps * plant.pl_per_step() // 1000
    assert plant.pumped_nl == volume, (steps, rate, ppm, plant.pumped_nl, volume)
    # ... flowing in over the steps' duration at the motor's rate
    d = (steps * 1000 + rate - 1) // rate
    tau = plant.tau_ms()
    r_eff = tau / plant.compliance_now()
    q = volume / d
    for dt in (d // 2, d):
        want = q * r_eff * (1 - math.exp(-dt / tau))
        close(plant.excess_mmhg(t0 + dt), want, 1e-6 * want + 1e-9, "rise %d/%d" % (dt, d))
    peak = q * r_eff * (1 - math.exp(-d / tau))
    later = d + 3
    close(plant.excess_mmhg(t0 + later), peak * math.exp(-3 / tau), 1e-6 * peak, "decay")
    # the sensor held its reading at the instant the move ended
    held = plant.stroke_end_x10(t0 + later + 5)
    close(held, round((base + peak) * 10), 1, "held at the end of the move")
    # the drive counts what the encoder saw (its own calibration: nominal)
    clock.now = t0 + d
    counted = drive.finish_stroke()
    assert counted == steps * PL_PER_STEP // 1000
    if ppm == 0:
        assert counted == volume
    # everything pumped leaves the tip once the line has drained
    end = t0 + d + int(60 * tau) + 1
    plant.update(end)
    close(plant.tip_nl, volume, 1, "tip volume")
    return peak


cases = 0
peaks = {}
for ppm in CALIBRATIONS:
    for steps in range(1, MAX_MOVE_STEPS + 1):
        for rate in RATES:
            peak = one(steps, rate, ppm)
            cases += 1
            if ppm == 0 and rate == 400:
                peaks[steps] = peak

# A longer stroke at the same rate rises further; the same stroke at a
# faster rate rises further too (the line drains less while it fills).
assert peaks[16] > peaks[8] > peaks[1]
slow, fast = quiet_plant(0), quiet_plant(0)
slow.move(8, 0, 100)
fast.move(8, 0, 4_000)
assert slow.excess_mmhg(80) < fast.excess_mmhg(2)

print(json.dumps({"cases": cases, "peak_8_steps_mmhg": peaks[8], "peak_16_steps_mmhg": peaks[16]}))
