"""The line monitors on the rig's plant, in CPython.

The firmware's monitors (firmware/pump/monitors/) and the rig's plant
(firmware/virtual/plant.py, line.py, noise.py) are plain MicroPython that CPython
also runs; here they are wired together the way pump/safety.py wires them on
the pump: before a stroke, at its end (peak), AFTER_MS later with a reading
20 ms on either side, every sample
through the sensor check, the level once a minute. No virtual board, no
link: fast enough to sweep lines, rates, CSF activity and faults over
patient-months (tests/modules/test_sensing.py, the `make bench` campaign).
"""

from __future__ import annotations

import importlib
import sys
import types
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from bench.board.paths import FIRMWARE_DIR

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
STROKE_NL = 200
AFTER_MS = 200  # pump/safety.py
STROKE_MS = 20
# The four standard rates (stroke interval, ms): 0.048, 0.5, 24 mL/day and a bolus.
RATES_MS = {"0.048 mL/day": 360_000, "0.5 mL/day": 34_560, "24 mL/day": 720, "bolus": 250}

_MODULES: SimpleNamespace | None = None


def modules() -> SimpleNamespace:
    """The rig and monitor modules, imported once from firmware/ (with a
    stand-in for ``micropython.const``); they stay out of sys.modules."""
    global _MODULES
    if _MODULES is not None:
        return _MODULES
    saved_path = list(sys.path)
    saved_modules = dict(sys.modules)
    if "micropython" not in sys.modules:
        mp = types.ModuleType("micropython")
        mp.const = lambda x: x  # type: ignore[attr-defined]
        sys.modules["micropython"] = mp
    sys.path[:0] = [str(FIRMWARE_DIR)]
    for name in list(sys.modules):
        if name in ("pump", "virtual") or name.startswith(("pump.", "virtual.")):
            del sys.modules[name]
    try:
        _MODULES = SimpleNamespace(
            plant=importlib.import_module("virtual.plant"),
            line=importlib.import_module("virtual.line"),
            noise=importlib.import_module("virtual.noise"),
            ids=importlib.import_module("pump.monitors"),
            response=importlib.import_module("pump.monitors.response"),
            occlusion=importlib.import_module("pump.monitors.occlusion"),
            threshold=importlib.import_module("pump.monitors.threshold"),
            leak=importlib.import_module("pump.monitors.leak"),
            sensor=importlib.import_module("pump.monitors.sensor"),
            pulse=importlib.import_module("pump.monitors.pulse"),
        )
    finally:
        sys.path[:] = saved_path
        for name in list(sys.modules):
            if name not in saved_modules:
                del sys.modules[name]
        sys.modules.update(saved_modules)
    return _MODULES


@dataclass
class LineSpec:
    """One line and patient: a standard line (virtual/line.py STANDARD) or the
    lumped one with a given compliance; air, noise, CSF, daily life."""

    name: str = "nominal"
    compliance_x10: int = 0  # 0: the material's (or 50 for the lumped line)
    cm: int = 0  # 0: the standard line's length
    air_nl: int = 0
    air_dissolve_s: int = 0
    modulus_kpa: int = 0
    noise_x10: int = 5
    csf_x10: int = 74
    daily_life: bool = True
    inertance: int = -1  # -1: as the standard line says
    site: int = 0

    def label(self) -> str:
        parts = [self.name]
        if self.compliance_x10:
            parts.append(f"C={self.compliance_x10 / 10:g}")
        if self.cm:
            parts.append(f"{self.cm} cm")
        if self.air_nl:
            parts.append(f"air {self.air_nl / 1000:g} uL")
        return " ".join(parts)


@dataclass
class Outcome:
    """What the monitors said over a run: each alarm's first stroke and
    device time (ms since the run started), and every raise counted."""

    strokes: int = 0
    first: dict[int, tuple[int, int]] = field(default_factory=dict)
    raised: dict[int, int] = field(default_factory=dict)

    def alarm(self, alarm_id: int) -> tuple[int, int] | None:
        return self.first.get(alarm_id)


class Rig:
    """A plant and the pump's line monitors, sampled as pump/safety.py does."""

    def __init__(self, spec: LineSpec, seed: int, pulse: bool = False) -> None:
        m = modules()
        self.m = m
        self.spec = spec
        _, material, cm, air, inertance = m.line.standard(spec.name)
        cm = spec.cm or cm
        plant = m.plant.Plant(seed)
        # the line module the plant imports at the first LINE (here it is
        # out of sys.modules: hand it over)
        plant._line = m.line
        plant._line2 = m.line.SecondOrder()
        plant.configure(0, cm * 2600, 0, 10**9, 0, 50, 100, spec.noise_x10, spec.csf_x10)
        if spec.daily_life:
            m.line.daily_life(plant.csf)
        if spec.inertance >= 0:
            inertance = spec.inertance
        plant.configure_line(
            material,
            spec.modulus_kpa,
            spec.air_nl or air,
            spec.air_dissolve_s * 1000,
            inertance,
            spec.site,
            0,
        )
        if spec.compliance_x10:
            plant.configure(
                0, cm * 2600, 0, 10**9, 0, spec.compliance_x10, 100, spec.noise_x10, spec.csf_x10
            )
        self.plant = plant
        self.t = 1_000
        self.next_level = self.t + MINUTE_MS
        self.out = Outcome()
        self.t0 = self.t
        self.running = True
        self.last_stroke = -(10**9)  # device time the last stroke began
        # the pulsation bursts (pump/safety.py _on_pulse): off unless asked
        # (a sample every 20 ms for 20 s a day costs CPython time)
        self.pulse_on = pulse
        self.burst_at = -1  # the running burst began (-1: none)
        self.pulse_next = self.t  # the next burst sample (or burst start)
        self.pulse_last = -(10**9)
        self.make_monitors()

    def make_monitors(self) -> None:
        m = self.m
        self.learner = m.response.RiseLearner()
        self.occlusion = m.occlusion.OcclusionMonitor(learner=self.learner)
        self.leak = m.leak.LeakMonitor(learner=self.learner)
        self.sensor = m.sensor.SensorCheck()
        self.pulse = m.pulse.PulseMonitor()
        self.seen: dict[str, int] = {}

    # --- the pump's samples ----------------------------------------------------------
    def read(self, t: int) -> int:
        r = self.plant.sensor_x10(t)
        self._edge("sensor", self.sensor.on_sample(r))
        return r

    def _edge(self, source: str, alarm: int) -> None:
        previous = self.seen.get(source, 0)
        if alarm == previous or alarm < 0:
            return
        self.seen[source] = alarm
        if alarm:
            self.out.raised[alarm] = self.out.raised.get(alarm, 0) + 1
            if alarm not in self.out.first:
                self.out.first[alarm] = (self.out.strokes, self.t - self.t0)

    def levels_until(self, t: int) -> None:
        # The level once a minute and the pulsation bursts, in time order
        # (the plant is never asked about an earlier time).
        while True:
            if self.pulse_on and self.pulse_next < t and self.pulse_next < self.next_level:
                self.pulse_sample(self.pulse_next)
                continue
            if self.next_level >= t:
                return
            self.t = self.next_level
            r = self.read(self.t)
            if not self.sensor.alarm:
                self._edge("level", self.occlusion.on_level(r))
                self._edge("disconnect", self.leak.on_level(r, self.running))
                low = self.leak.level_low
                first = self.m.leak.DISCONNECT_READINGS
                if self.pulse_on and (low == first or (low > first and low % 60 == 0)):
                    if self.burst_at < 0 and self.pulse.armed():  # is CSF behind it?
                        self.pulse_next = min(self.pulse_next, self.t + 1)
            self.next_level += MINUTE_MS

    def pulse_sample(self, s: int) -> None:
        # One wake-up of pump/safety.py _on_pulse at device time s.
        pm = self.m.pulse
        pulse = self.pulse
        if self.burst_at < 0:
            self.burst_at = s
            pulse.begin()
        elif s - self.burst_at > pm.BURST_MAX_MS:
            self.end_burst()
            return
        since = s - self.last_stroke
        if since < pm.QUIET_MS:
            self.pulse_next = s + max(pm.QUIET_MS - since, pm.SAMPLE_MS)
            return
        self.t = s
        r = self.read(s)
        if self.sensor.alarm:
            pulse.begin()
        elif pulse.on_sample(r, s - self.pulse_last < 2 * pm.SAMPLE_MS):
            self._edge("pulse", pulse.end())
            if pulse.absent:
                self._edge("disconnect", self.leak.confirm_disconnected())
            self.end_burst()
            return
        self.pulse_last = s
        self.pulse_next = s + pm.SAMPLE_MS

    def end_burst(self) -> None:
        pm = self.m.pulse
        learning = self.pulse.learned < pm.LEARN_BURSTS
        # (the pump counts the period on its RTC from the burst's end and
        # starts at its next minute pass)
        period_ms = 1000 * (pm.LEARN_PERIOD_S if learning else pm.PERIOD_S)
        self.pulse_next = self.t + period_ms
        self.burst_at = -1
        self.pulse.begin()

    def stroke(self, interval_ms: int, steps: int = 8) -> tuple[int, int, int]:
        self.levels_until(self.t + 1)
        t = self.t
        self.last_stroke = t
        b = self.read(t)
        self.plant.move(steps, t)
        p = self.read(t + STROKE_MS)
        gap = self.m.sensor.PAIR_MS
        pre = self.read(t + STROKE_MS + AFTER_MS - gap)
        a = self.read(t + STROKE_MS + AFTER_MS)
        post = self.read(t + STROKE_MS + AFTER_MS + gap)
        self._edge("sensor", self.sensor.on_triple(pre, a, post))
        self.learner.noise(pre, a, post)
        self.out.strokes += 1
        if not self.sensor.alarm and not self.sensor.suspect():
            self._edge("occlusion", self.occlusion.on_stroke(b, p, a, interval_ms))
            self._edge("leak", self.leak.on_stroke(b, p, a, interval_ms))
        self.levels_until(t + interval_ms)
        self.t = t + interval_ms
        return b, p, a

    def run(self, interval_ms: int, strokes: int, stop_on: tuple[int, ...] = ()) -> Outcome:
        """``strokes`` strokes every ``interval_ms``; stops at the first alarm
        in ``stop_on``. Delivery runs (the leak monitor knows it)."""
        self.running = True
        self.out = Outcome()
        self.t0 = self.t
        for _ in range(strokes):
            self.stroke(interval_ms)
            if any(a in self.out.first for a in stop_on):
                break
        return self.out

    def idle(self, ms: int) -> Outcome:
        """Delivery stopped for ``ms``: only the level readings."""
        self.running = False
        self.out = Outcome()
        self.t0 = self.t
        self.levels_until(self.t + ms)
        self.t += ms
        return self.out

    def relearn(self) -> None:
        """What the pump does after a refill (pump/safety.py line_changed)."""
        self.occlusion.reset()
        self.leak.reset()

    def add_csf(self, extra: Any) -> None:
        """Adds ``extra(t_ms)`` (0.001 mmHg) to the CSF pressure: scripted
        coughs and strains on top of the patient's own."""
        csf = self.plant.csf
        own = csf.fast_x1000
        csf.fast_x1000 = lambda t: own(t) + extra(t)

    def inject(self, fault: str, param: int = 0) -> None:
        self.plant.inject(getattr(self.m.plant, "FAULT_" + fault), param, self.t, self.t)

    def clear(self, fault: str = "") -> None:
        code = getattr(self.m.plant, "FAULT_" + fault) if fault else 0
        self.plant.clear_fault(code, self.t)


def ids() -> Any:
    return modules().ids


# --- the fault campaign (make bench) -------------------------------------------------------
# (name, plant fault, param, alarms that count as found, stroke budget)
FAULTS: tuple[tuple[str, str, int, tuple[str, ...], int], ...] = (
    ("full occlusion at the tip", "OCCLUSION", 0, ("OCCLUSION",), 300),
    ("full occlusion at the pump", "OCCLUSION_PUMP", 0, ("OCCLUSION",), 300),
    ("partial occlusion R x 50", "OCCLUSION", 50, ("PARTIAL_OCCLUSION", "OCCLUSION"), 300),
    ("disconnection", "LEAK", 100, ("LEAK",), 300),
    ("break at mid-length", "LEAK", 150, ("LEAK",), 300),
    ("leak 50 %", "LEAK", 50, ("LEAK", "SLOW_LEAK"), 1_200),
    ("leak 30 %", "LEAK", 30, ("LEAK", "SLOW_LEAK"), 1_200),
    ("sensor offset +600 mmHg", "SENSOR_OFFSET", 6_000, ("SENSOR_FAULT",), 300),
    ("sensor stuck", "SENSOR_STUCK", 0, ("SENSOR_FAULT",), 300),
    ("sensor noise 2 mmHg", "SENSOR_NOISE", 20, ("SENSOR_FAULT",), 600),
    ("sensor noise 10 mmHg", "SENSOR_NOISE", 100, ("SENSOR_FAULT",), 300),
    # at the pocket's pressure a migrated tip reads like a break: LEAK
    ("tip migration (to 0 mmHg)", "TIP_MIGRATION", 0, ("TIP_MIGRATION", "LEAK"), 0),
    ("tip migration (to 5 mmHg)", "TIP_MIGRATION", 50, ("TIP_MIGRATION",), 0),
)
# A disconnection while delivery is stopped: the level alone (5 readings a
# minute apart), no strokes: one case per line, not per rate.
STOPPED_FAULTS: tuple[tuple[str, str, int, tuple[str, ...], int], ...] = (
    ("disconnection while stopped", "LEAK", 100, ("LEAK",), 0),
)
STOPPED_BUDGET_MS = 15 * MINUTE_MS
# The pulsation monitor (pump/monitors/pulse.py) learns over its first 3
# bursts (20 minutes apart) and needs 2 low bursts in a row (a day apart):
# its faults run with the bursts on, learn for this long and get this long
# to be found.
PULSE_LEARN_MS = HOUR_MS
PULSE_BUDGET_MS = 49 * HOUR_MS
# Leaks under 100 %: the slow window compares with its reference, set 256
# settled strokes after learning; they start once it is (README: a leak that
# begins inside the first window is found later, or on noisy lines not).
SLOW_WINDOW_STROKES = 16 + 256 + 40
LINES = ("nominal", "pu-60", "silicone-60", "silicone-90", "pu-60-air10", "braided-40")
# the basal rate of the false-alarm patients: 1 mL/day (17.28 s a stroke)
PATIENT_INTERVAL_MS = 17_280


def random_line(rng: Any) -> LineSpec:
    """A line from the whole documented range (docs/plant.md): material and
    modulus, length 40-90 cm, air 0-30 uL, sensor noise 0.3-0.8 mmHg, lying
    CSF 4-15 mmHg, daily life (posture, coughs, strains)."""
    name = rng.choice(LINES)
    return LineSpec(
        name,
        compliance_x10=rng.choice((0, 0, 25, 100, 300, 500)) if name == "nominal" else 0,
        cm=rng.choice((0, 0, 40, 60, 90)),
        modulus_kpa=rng.choice((0, 2_000, 4_000)) if name.startswith("silicone") else 0,
        air_nl=rng.choice((0, 0, 10_000, 30_000)),
        noise_x10=rng.choice((3, 5, 8)),
        csf_x10=rng.randint(40, 150),
    )


@dataclass
class FaultRow:
    fault: str
    cases: int = 0
    found: int = 0
    wrong: int = 0  # a stopping alarm of another kind first (a misnamed fault)
    limited: int = 0  # not found, on a line that said so (SENSING_LIMITED)
    times_ms: list[int] = field(default_factory=list)
    volumes_nl: list[int] = field(default_factory=list)


def fault_case(
    spec: LineSpec, interval: int, fault: tuple[str, str, int, tuple[str, ...], int], seed: int
) -> tuple[bool, bool, int, int, bool]:
    """One fault on one line at one rate (interval 0: delivery stopped):
    (found, misnamed, ms and nL from onset, the line said it cannot see it)."""
    _, plant_fault, param, wanted, budget = fault
    migration = plant_fault == "TIP_MIGRATION"
    pulse = migration or (plant_fault == "LEAK" and param > 100)  # a break
    rig = Rig(spec, seed, pulse=pulse)
    settled = max(interval, 720)
    rig.run(settled, SLOW_WINDOW_STROKES if plant_fault == "LEAK" and param < 100 else 40)
    if pulse:
        rig.run(settled, PULSE_LEARN_MS // settled)
    if plant_fault == "OCCLUSION_PUMP":
        rig.plant.occlusion_site = 1
        plant_fault = "OCCLUSION"
    rig.inject(plant_fault, param)
    want = tuple(getattr(rig.m.ids, name) for name in wanted)
    stops = tuple(a for a in (rig.m.ids.OCCLUSION, rig.m.ids.LEAK) if a not in want)
    if interval == 0:
        out = rig.idle(STOPPED_BUDGET_MS)
    else:
        # the stroke budget, and at least 10 minutes (the level is read once a minute)
        strokes = max(budget, (PULSE_BUDGET_MS if migration else 600_000) // interval)
        out = rig.run(interval, strokes, stop_on=want + stops)
    # what the line said it cannot see (SENSING_LIMITED with LINE_LIMITS)
    limited = {
        "LEAK": rig.leak.slow_limited() if 0 < param < 100 else False,
        "TIP_MIGRATION": rig.pulse.limited(),
    }.get(plant_fault, False)
    hits = [out.first[a] for a in want if a in out.first]
    if not hits:
        return False, any(a in out.first for a in stops), 0, 0, limited
    n, ms = min(hits)
    return True, False, ms, n * STROKE_NL, limited


def campaign(
    patients: int, days: int, lines_per_fault: int, seed: int
) -> tuple[list[FaultRow], dict[str, Any]]:
    """Every fault of FAULTS on ``lines_per_fault`` random lines at each of the
    four rates (STOPPED_FAULTS while delivery is stopped), and ``patients`` x
    ``days`` of nominal therapy at 1 mL/day with daily-life CSF activity
    (every alarm raised there is a false one; the pulsation bursts run
    there)."""
    import random

    rng = random.Random(seed)
    rows = []
    for fault in FAULTS + STOPPED_FAULTS:
        row = FaultRow(fault[0])
        for _ in range(lines_per_fault):
            spec = random_line(rng)
            rates = (0,) if fault in STOPPED_FAULTS else tuple(RATES_MS.values())
            for interval in rates:
                if fault[1] == "LEAK" and fault[2] < 100 and interval == 250:
                    continue  # the slow window runs on settled strokes only
                if fault[1] == "TIP_MIGRATION" and interval <= 720:
                    continue  # 2 days of strokes at 24 mL/day: CPython time
                found, wrong, ms, nl, limited = fault_case(
                    spec, interval, fault, rng.randrange(1 << 30)
                )
                row.cases += 1
                row.found += found
                row.wrong += wrong
                row.limited += limited and not found
                if found:
                    row.times_ms.append(ms)
                    row.volumes_nl.append(nl)
        rows.append(row)
    false: dict[str, int] = {}
    strokes_per_day = DAY_MS // PATIENT_INTERVAL_MS
    for _ in range(patients):
        rig = Rig(random_line(rng), rng.randrange(1 << 30), pulse=True)
        out = rig.run(PATIENT_INTERVAL_MS, strokes_per_day * days)
        for alarm, count in out.raised.items():
            name = _alarm_name(alarm)
            false[name] = false.get(name, 0) + count
    return rows, {"false": false, "patient_years": patients * days / 365}


def _alarm_name(alarm_id: int) -> str:
    for name, value in vars(modules().ids).items():
        if name.isupper() and value == alarm_id:
            return name
    return str(alarm_id)
