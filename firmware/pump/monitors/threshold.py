# The plain occlusion detector the benchmark and the tests compare the
# pump's monitor with (pump/monitors/occlusion.py): not imported by the pump.

from pump.monitors import OCCLUSION
from pump.monitors.occlusion import CEILING_X10


class ThresholdDetector:
    # The plain detector the benchmark compares against: OCCLUSION as soon as
    # `samples` readings in a row are at or above a fixed limit. Default limit
    # 517 mmHg (about 10 psi), ECRI's value for epidural lines
    # (docs/sources.md [46]), not the 20 psi (1034 mmHg) general maximum: the lower limit is the
    # one an intrathecal pump would use, and it makes the plain detector as
    # fast as it can be, so the comparison does not flatter the monitor.
    def __init__(self, limit_x10=CEILING_X10, samples=1):
        if limit_x10 <= 0 or samples <= 0:
            raise ValueError("threshold detector")
        self.limit_x10 = limit_x10
        self.samples = samples
        self.alarm = 0
        self._run = 0

    def reset(self):
        self.alarm = 0
        self._run = 0

    def cleared(self):
        return self.alarm == 0

    def on_level(self, reading_x10):
        if reading_x10 >= self.limit_x10:
            self._run += 1
            if self._run >= self.samples:
                self.alarm = OCCLUSION
        else:
            self._run = 0
            self.alarm = 0
        return self.alarm

    def on_stroke(self, before_x10, peak_x10, after_x10):
        # The same three samples the monitor sees, in time order; OCCLUSION
        # if any of them completed a run.
        a = self.on_level(before_x10)
        b = self.on_level(peak_x10)
        c = self.on_level(after_x10)
        return a or b or c
