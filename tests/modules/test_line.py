"""The plant's line as real catheters make it (firmware/virtual/line.py):
wall compliance from material and geometry, trapped air, inertance (a damped
second-order line), occlusion site, the absolute sensor, daily-life CSF.

The rig modules are MicroPython that CPython also runs (with a stand-in for
``micropython.const``); the figures here are checked against independent
arithmetic and numerical integration, not against the code's own constants.
"""

from __future__ import annotations

import importlib
import math
import sys
import types
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.board.paths import FIRMWARE_DIR


@pytest.fixture(scope="module")
def rig() -> Iterator[SimpleNamespace]:
    saved_path = list(sys.path)
    shim = "micropython" not in sys.modules
    if shim:
        mp = types.ModuleType("micropython")
        mp.const = lambda x: x  # type: ignore[attr-defined]
        sys.modules["micropython"] = mp
    sys.path[:0] = [str(FIRMWARE_DIR)]
    try:
        mods = SimpleNamespace(
            line=importlib.import_module("virtual.line"),
            plant=importlib.import_module("virtual.plant"),
            noise=importlib.import_module("virtual.noise"),
        )
    finally:
        sys.path[:] = saved_path
    yield mods
    for name in list(sys.modules):
        if name in ("pump", "virtual") or name.startswith(("pump.", "virtual.")):
            del sys.modules[name]
    if shim:
        del sys.modules["micropython"]


def quiet_plant(rig: SimpleNamespace, cm: int = 60, seed: int = 1) -> object:
    p = rig.plant.Plant(seed)
    p.configure(0, cm * 2600, 0, 10**8, 0, 50, 100, 0, 74)
    csf = p.csf
    csf.coughs_per_hour = csf.cardiac_x1000 = csf.resp_x1000 = 0
    csf.drift_x1000 = csf.upright_x1000 = 0
    return p


# --- derivations against independent figures (docs/plant.md 1b) -----------------------------
def test_silicone_wall_compliance_matches_the_independent_lame_figures(rig) -> None:
    line = rig.line
    # independent figures: silicone 2-4 MPa, ID 0.53 / OD 1.4 mm: 15-30 nL/mmHg for 60 cm,
    # 23-44 for 90 cm (within 10 %); polyurethane 80A about 4 at 60 cm
    lo60, hi60 = (line.wall_compliance(line.SILICONE, 60, k) for k in (4000, 2000))
    lo90, hi90 = (line.wall_compliance(line.SILICONE, 90, k) for k in (4000, 2000))
    assert lo60 == pytest.approx(15, rel=0.1) and hi60 == pytest.approx(30, rel=0.1)
    assert lo90 == pytest.approx(23, rel=0.1) and hi90 == pytest.approx(44, rel=0.1)
    assert line.wall_compliance(line.POLYURETHANE, 60) == pytest.approx(4, rel=0.1)
    # linear in length, inverse in modulus
    assert line.wall_compliance(line.SILICONE, 90) == pytest.approx(
        1.5 * line.wall_compliance(line.SILICONE, 60)
    )
    # the thin-walled limit: hoop strain p a / (E h), axial -nu p a / (E h)
    # (open ends), so dV/dp = (2 - nu) pi a^3 / (E h) per length
    a, h, e = 0.265e-3, 0.001e-3, 3e6
    thin = (2 - 0.5) * math.pi * a**3 / (e * h) * 133.322e12 * 0.6
    got = line.wall_compliance(line.SILICONE, 60, 3000, 0.53, 0.53 + 0.002)
    assert got == pytest.approx(thin, rel=0.02)


def test_air_adds_about_1_3_nl_per_mmhg_per_microlitre_and_grows_at_altitude(rig) -> None:
    line = rig.line
    assert line.air_compliance(1000) == pytest.approx(1.3, abs=0.02)
    # Boyle: V/P at P; a cabin at 610 mmHg: (760/610)^2 = 1.55x
    assert line.air_compliance(10_000, 610) / line.air_compliance(10_000) == pytest.approx(
        (760 / 610) ** 2
    )


def test_inertance_time_constant_is_about_17_ms_for_any_length(rig) -> None:
    line = rig.line
    for cm in (10, 40, 60, 90, 200):
        assert line.inertance(cm) / line.poiseuille(cm) == pytest.approx(16.7, abs=0.1)
    # the line rings (zeta < 1) below about 40 nL/mmHg at 60 cm
    r, ll = line.poiseuille(60), line.inertance(60)
    assert line.damping(35.0, r, ll) < 1 < line.damping(45.0, r, ll)


@settings(max_examples=60, deadline=None)
@given(
    c=st.floats(1.0, 80.0),
    cm=st.floats(10.0, 150.0),
    g=st.floats(0.0, 3.0),
    q=st.sampled_from([0.0, 10.0]),
    e0=st.floats(-20.0, 60.0),
    f0=st.floats(-10.0, 30.0),
    dt=st.floats(0.5, 80.0),
)
def test_second_order_closed_form_matches_numerical_integration(
    rig, c: float, cm: float, g: float, q: float, e0: float, f0: float, dt: float
) -> None:
    line = rig.line
    r, ll = line.poiseuille(cm), line.inertance(cm)
    s = line.SecondOrder()
    s.set(c, r, ll, g)
    s.e, s.f = e0, f0
    tip, pocket = s.advance(dt, q)
    # RK4 on the same ODE
    e, f, vt, vp = e0, f0, 0.0, 0.0
    n = 4000
    h = dt / n

    def d(e: float, f: float) -> tuple[float, float]:
        return (q - f - g * e) / c, (e - r * f) / ll

    for _ in range(n):
        k1 = d(e, f)
        k2 = d(e + h / 2 * k1[0], f + h / 2 * k1[1])
        k3 = d(e + h / 2 * k2[0], f + h / 2 * k2[1])
        k4 = d(e + h * k3[0], f + h * k3[1])
        vt += h / 6 * (f + 2 * (f + h / 2 * k1[1]) + 2 * (f + h / 2 * k2[1]) + f + h * k3[1])
        vp += h / 6 * g * (e + 2 * (e + h / 2 * k1[0]) + 2 * (e + h / 2 * k2[0]) + e + h * k3[0])
        e += h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        f += h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
    scale = 1 + abs(e0) + abs(f0) + q
    assert s.e == pytest.approx(e, abs=1e-3 * scale)
    assert s.f == pytest.approx(f, abs=1e-3 * scale)
    assert tip == pytest.approx(vt, abs=1e-2 * scale * dt)
    assert pocket == pytest.approx(vp, abs=1e-2 * scale * dt)


# --- the plant with the line --------------------------------------------------------
@pytest.mark.parametrize("name", ["nominal", "pu-60", "silicone-90", "pu-60-air10", "braided-40"])
@pytest.mark.parametrize("leak", [0, 30, 100])
def test_every_standard_line_conserves_volume(rig, name: str, leak: int) -> None:
    _, material, cm, air, inertance = rig.line.standard(name)
    p = quiet_plant(rig, cm)
    p.configure_line(material, 0, air, 0, inertance, 0, 0)
    if leak:
        p.inject(rig.plant.FAULT_LEAK, leak, 0, 0)
    t = 1000
    for _ in range(50):
        p.move(8, t)
        t += 250
    p.update(t + 60_000)
    assert p.pumped_nl == 50 * 200
    # everything pumped is at the tip or in the pocket, within the carried fractions
    assert p.pumped_nl - 2 <= p.tip_nl + p.pocket_nl <= p.pumped_nl
    if leak and leak < 100:
        assert p.pocket_nl == pytest.approx(p.pumped_nl * leak / 100, rel=0.02)


def test_silicone_90_rings_slower_and_lower_than_the_nominal_line(rig) -> None:
    def response(name: str) -> list[int]:
        _, material, cm, air, inertance = rig.line.standard(name)
        p = quiet_plant(rig, cm)
        p.noise_x10 = 0
        p.configure_line(material, 0, air, 0, inertance, 0, 0)
        base = p.sensor_x10(1000)
        p.move(8, 1000)
        return [p.sensor_x10(1000 + k) - base for k in range(0, 600, 5)]

    nominal, silicone, braided = (
        response("nominal"),
        response("silicone-90"),
        response("braided-40"),
    )
    assert max(silicone) < max(nominal) / 2  # a soft wall swallows the stroke
    # the compliant line drains for longer: still above 1.5 mmHg at 100 ms
    assert silicone[100 // 5] > 15 and abs(nominal[100 // 5]) <= 1
    # a stiff line rings: it undershoots the CSF pressure after the stroke
    assert min(braided) < -50


def test_occlusion_at_the_pump_sees_only_the_outlet_compliance(rig) -> None:
    line = rig.line
    steps = {}
    for site in (0, 1):
        p = quiet_plant(rig, 90)
        p.noise_x10 = 0
        p.configure_line(line.SILICONE, 0, 0, 0, 1, site, 0)
        p.inject(rig.plant.FAULT_OCCLUSION, 0, 0, 0)
        base = p.sensor_x10(1000)
        p.move(8, 1000)
        steps[site] = (p.sensor_x10(2000) - base) / 10
    c_tip = line.wall_compliance(line.SILICONE, 90) + line.PUMP_COMPLIANCE
    assert steps[0] == pytest.approx(200 / c_tip, abs=0.2)
    assert steps[1] == pytest.approx(200 / line.PUMP_COMPLIANCE, abs=0.2)


def test_air_dissolves_and_the_line_stiffens(rig) -> None:
    p = quiet_plant(rig)
    p.configure_line(rig.line.POLYURETHANE, 0, 30_000, 3_600_000, 1, 0, 0)
    p.move(8, 1000)
    fresh = p.compliance_now()
    p.move(8, 1000 + 4 * 3_600_000)  # 4 time constants later
    later = p.compliance_now()
    c0 = rig.line.wall_compliance(rig.line.POLYURETHANE, 60) + rig.line.PUMP_COMPLIANCE
    assert fresh == pytest.approx(c0 + 30 * 1.3, rel=0.05)
    assert later == pytest.approx(c0 + 30 * 1.3 * math.exp(-4), rel=0.05)


def test_the_absolute_sensor_reads_the_cabin_and_the_weather(rig) -> None:
    p = quiet_plant(rig)
    p.noise_x10 = 0
    ground = p.sensor_x10(1000)
    p.ambient_x10 = -1700
    assert p.sensor_x10(1001) - ground == -1700
    assert p.pressure_x10(1001) == ground  # the line itself is gauge: unchanged
    p.ambient_x10 = 0
    rig.line.weather(p.csf)
    weather = [rig.line.weather_x1000(p.csf, h * 3_600_000) for h in range(0, 24 * 20)]
    assert max(weather) <= 25_000 and min(weather) >= -25_000
    assert max(weather) - min(weather) > 20_000


def test_daily_life_has_upright_offsets_cough_bursts_and_strains(rig) -> None:
    csf = rig.noise.Csf(11)
    rig.line.daily_life(csf)
    csf.drift_x1000 = csf.cardiac_x1000 = csf.resp_x1000 = 0
    peaks, slopes, coughs_over_100 = [], [], 0
    for b in range(400):  # 400 strain buckets of 15 min
        _start, rise, _hold, peak = rig.line.strain_in(csf, b)
        if rise:
            peaks.append(peak)
            slopes.append(peak / rise)  # mmHg/s
    for b in range(2000):
        _start, ms, peak = csf.cough_in(b)
        if ms and peak >= 100_000:
            coughs_over_100 += 1
    assert 0.4 < len(peaks) / 400 < 0.6  # 2 an hour: half the 15 min buckets
    assert min(peaks) >= 30_000 and max(peaks) <= 90_000
    assert min(slopes) >= 15 and max(slopes) <= 180
    assert coughs_over_100 > 50
    # upright: +25 mmHg, with an overshoot of 40-60 mmHg while changing posture
    levels = [csf.posture(t) for t in range(0, 48 * 3_600_000, 500)]
    assert max(levels) >= 25_000 + 40_000 * 0.8 - 1
    assert 25_000 in levels and 0 in levels
