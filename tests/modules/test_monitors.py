"""The monitors (firmware/pump/monitors/): occlusion, leak, stroke check,
battery, sensor plausibility, watchdog supervisor and self-test.

The check scripts run each monitor under the real MicroPython interpreter,
on synthetic strokes from the plant physics (upy/check_monitors_plant.py),
with every per-stroke call under ``micropython.heap_lock()``. The modules are
plain MicroPython that CPython also runs, so a wider randomised sweep of the
physical ranges runs here on CPython, where it is faster.
"""

from __future__ import annotations

import importlib
import math
import random
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench.board.paths import FIRMWARE_DIR
from protocol import schema
from tests.modules import upy
from tests.modules.integer_only import assert_integer_only

HEAP = "128k"
UPY = Path(__file__).with_name("upy")
MODULES = (
    "__init__",
    "response",
    "occlusion",
    "threshold",
    "leak",
    "stroke",
    "battery",
    "sensor",
    "supervisor",
    "selftest",
    "pulse",
)


def run_upy(script: str, *args: str) -> dict:
    return upy.run(script, *args, heap=HEAP)


# --- under MicroPython ----------------------------------------------------------------------
def test_occlusion_detects_full_and_partial_without_false_alarms() -> None:
    r = run_upy("check_monitors_occlusion.py")
    assert r["ok"] is True
    # 150,000 nominal strokes (every rate, extreme corners, cough storms,
    # upright with double noise): not one alarm (asserted in the script)
    assert r["nominal_strokes"] == 150_000
    # full occlusion: 3 strokes from onset at every rate and corner (a cough
    # may add 2); the plain 517 mmHg detector needs 7-26
    assert r["full_cases"] == 36 and r["full_strokes_worst"] <= 5
    assert r["plain_strokes"][0] >= 7
    # partial occlusion (R x 20-200): found within 12 strokes at basal rates
    assert r["partial_cases"] == 81 and r["partial_strokes_worst"] <= 24


def test_leak_detects_weak_responses_and_disconnection() -> None:
    r = run_upy("check_monitors_leak.py")
    assert r["ok"] is True
    assert r["nominal_strokes"] == 130_000 and r["level_minutes"] == 7 * 1440
    assert r["leak_cases"] == 60 and r["leak_strokes_worst"] <= 5
    assert r["disconnect_readings"] == 5
    assert r["leak_30_found"][0] == 0  # a 30 % leak is below what strokes show


def test_stroke_check_stall_retries_lost_steps_runaway_encoder() -> None:
    assert run_upy("check_monitors_stroke.py") == {"ok": True}


def test_battery_eri_countdown_eos_and_persistence() -> None:
    assert run_upy("check_monitors_battery.py") == {"ok": True}


def test_sensor_stuck_and_range_without_false_faults() -> None:
    r = run_upy("check_monitors_sensor.py")
    assert r["ok"] is True and r["samples"] > 250_000
    assert r["noise_longest_run"] < 11


def test_supervisor_and_selftest(tmp_path: Path) -> None:
    assert run_upy("check_monitors_supervisor.py", str(tmp_path)) == {"ok": True}


# --- static checks ----------------------------------------------------------------------------
def test_alarm_ids_match_the_schema() -> None:
    source = (FIRMWARE_DIR / "pump" / "monitors" / "__init__.py").read_text()
    ids: dict[str, int] = {}
    exec(compile(source, "monitors/__init__.py", "exec"), ids)
    names = {row[0]: row[1] for row in schema.ALARMS}  # (id, name, ...)
    declared = {k: v for k, v in ids.items() if k.isupper()}
    assert declared and all(names[v] == k for k, v in declared.items()), declared


@pytest.mark.parametrize("module", MODULES)
def test_module_is_integer_only_and_micropython_only(module: str) -> None:
    assert_integer_only(FIRMWARE_DIR / "pump" / "monitors" / f"{module}.py")


def test_stuck_count_follows_from_the_noise(pure: SimpleNamespace) -> None:
    # P(two readings equal) for Gaussian noise of sigma counts on a steady
    # pressure, readings rounded to whole counts, summed over the offset of
    # the true value within a count; a run of N equal readings needs N - 1
    # equal pairs. At 4e8 readings a year, the expected false faults must
    # stay under 1e-3 a year, and one sample fewer must not.
    sensor = pure.sensor

    def p_equal(sigma: float) -> float:
        def phi(x: float) -> float:
            return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))

        total = 0.0
        offsets = 20
        for j in range(offsets):
            mu = (j + 0.5) / offsets
            probs = [
                phi((k + 0.5 - mu) / sigma) - phi((k - 0.5 - mu) / sigma) for k in range(-60, 61)
            ]
            total += sum(q * q for q in probs)
        return total / offsets

    p = p_equal(sensor.NOISE_X10)
    assert 0.05 < p < 0.06
    per_year = 4e8
    n = sensor.STUCK_SAMPLES
    assert per_year * p ** (n - 1) < 1e-3
    assert per_year * p ** (n - 2) > 1e-3  # not more conservative than needed
    # a quieter sensor (sigma 2 counts) would need 15
    q = p_equal(2.0)
    assert per_year * q**13 > 1e-3 > per_year * q**14


# --- CPython: the same modules, imported from firmware/ ------------------------------------
@pytest.fixture(scope="module")
def pure() -> Iterator[SimpleNamespace]:
    # firmware/ and the check scripts on sys.path while importing; the
    # firmware's `pump` package is dropped from sys.modules afterwards.
    saved = list(sys.path)
    shim = "micropython" not in sys.modules
    if shim:  # the monitors fold their constants with micropython.const
        mp = types.ModuleType("micropython")
        mp.const = lambda x: x  # type: ignore[attr-defined]
        sys.modules["micropython"] = mp
    sys.path[:0] = [str(FIRMWARE_DIR), str(UPY)]
    try:
        mods = SimpleNamespace(
            plant=importlib.import_module("check_monitors_plant"),
            occlusion=importlib.import_module("pump.monitors.occlusion"),
            leak=importlib.import_module("pump.monitors.leak"),
            sensor=importlib.import_module("pump.monitors.sensor"),
            ids=importlib.import_module("pump.monitors"),
        )
    finally:
        sys.path[:] = saved
    yield mods
    for name in list(sys.modules):
        if name in ("pump", "check_monitors_plant") or name.startswith("pump."):
            del sys.modules[name]
    if shim:
        del sys.modules["micropython"]


def _random_line(plant: Any, rng: random.Random, seed: int) -> Any:
    return plant.Line(
        seed,
        c=rng.uniform(2.5, 10.0),
        cm=rng.uniform(40.0, 90.0),
        baseline=rng.uniform(3.7, 20.0),
        noise=rng.uniform(0.3, 1.0),
        coughs_per_h=rng.uniform(0.0, 30.0),
        postures_per_h=rng.uniform(0.0, 4.0),
    )


def _strokes(line: Any, interval: float, n: int, *monitors: Any) -> list[int]:
    # Feeds n strokes; -> per monitor, the 1-based stroke of its first alarm (0: none).
    first = [0] * len(monitors)
    for i in range(n):
        b, p, a = line.stroke(interval)
        for j, m in enumerate(monitors):
            if m.on_stroke(b, p, a) and not first[j]:
                first[j] = i + 1
    return first


def test_sweep_no_false_alarms_across_random_lines(pure: SimpleNamespace) -> None:
    # 80 random lines (compliance, catheter length, CSF pressure, noise 0.3-1
    # mmHg, up to 30 coughs an hour, posture changes) x 2,500 strokes at the
    # four rates: 200,000 strokes, no occlusion or leak alarm.
    rng = random.Random(4)
    rates = (pure.plant.MIN_RATE_S, pure.plant.HALF_ML_S, pure.plant.MAX_RATE_S, pure.plant.BOLUS_S)
    for case in range(80):
        line = _random_line(pure.plant, rng, 9000 + case)
        rate = rates[case % 4]
        occ = pure.occlusion.OcclusionMonitor()
        leak = pure.leak.LeakMonitor()
        assert _strokes(line, rate, 2_500, occ, leak) == [0, 0], (case, vars(line))


def test_sweep_detection_across_random_lines(pure: SimpleNamespace) -> None:
    # Full occlusion and leaks of 80-100 % on random lines at the four rates:
    # found within 5 strokes; partial occlusion (R x 20-200) within 12 at
    # the basal rates.
    rng = random.Random(5)
    plant = pure.plant
    rates = (plant.MIN_RATE_S, plant.HALF_ML_S, plant.MAX_RATE_S, plant.BOLUS_S)
    ids = pure.ids
    for case in range(120):
        kind = case % 3
        rate = rates[(case // 3) % 4]
        if kind == 2 and rate == plant.BOLUS_S:
            rate = plant.MAX_RATE_S
        line = _random_line(plant, rng, 7000 + case)
        occ = pure.occlusion.OcclusionMonitor()
        leak = pure.leak.LeakMonitor()
        assert _strokes(line, rate, 40, occ, leak) == [0, 0], case
        if kind == 0:
            line.occlude(0)
            found = _strokes(line, rate, 5, occ)[0]
            assert found and occ.alarm == ids.OCCLUSION, (case, vars(line))
        elif kind == 1:
            line.leak_fraction(rng.uniform(0.8, 1.0))
            found = _strokes(line, rate, 5, leak)[0]
            assert found and leak.alarm == ids.LEAK, (case, vars(line))
        else:
            line.occlude(rng.uniform(20.0, 200.0))
            found = _strokes(line, rate, 12, occ)[0]
            assert found, (case, vars(line))


def test_pulsation_monitor_finds_tip_migration_without_allocating() -> None:
    r = run_upy("check_monitors_pulse.py")
    assert r["ok"] is True and r["cases"] == 4, r
    # the rig's +-0.5 mmHg cardiac and breathing sines: 0.25 mmHg^2 = 400 x16;
    # migrated: the noise's own scatter around 0 (sd v / 32)
    assert all(300 < p < 500 for p in r["learned_x16"]), r
    assert all(abs(p) < 100 for p in r["migrated_x16"]), r
