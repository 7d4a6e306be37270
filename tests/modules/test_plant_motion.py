"""The plant's head follows the motor's commands, not the pump's stroke constants.

firmware/virtual/plant.py turns the head as the virtual board's motor
(firmware/virtual/board.py SimMotor) is told: a move's steps at the driver's
step rate. A drive with other strokes (pump.drive.STROKE_STEPS patched) or a
motor at another rate still gives the plant the right volume and pressure
rise: upy/check_plant_motion.py sweeps them under MicroPython against the
closed form.
"""

from __future__ import annotations

from tests.modules import upy


def test_the_plant_follows_the_motor_not_the_pump_drive() -> None:
    # Every stroke length a bounded move allows (1..64 steps), nine driver
    # rates from 1 to 5000 steps/s, three head calibrations.
    figures = upy.run("check_plant_motion.py", heap="512k")
    assert figures["cases"] == 64 * 9 * 3
    assert figures["peak_16_steps_mmhg"] > figures["peak_8_steps_mmhg"] > 0
