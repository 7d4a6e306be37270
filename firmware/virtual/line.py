# The line between the pump outlet and the catheter tip, as physics
# (docs/plant.md section 1): what the plant's compliance, inertance and
# trapped air are for a given catheter material and geometry, and the
# closed-form evolution of the line as a damped second-order system.
#
# Derivations (SI, then converted; every figure in docs/plant.md):
#   wall compliance  Lame, thick-walled open-ended tube (no axial stress),
#                    inner radius a, outer b, Young's modulus E, Poisson nu:
#                    radial growth of the bore u/a = p/E ((b^2+a^2)/(b^2-a^2)
#                    + nu), axial strain -2 nu p a^2 / (E (b^2 - a^2)); so
#                    dV/dp per length = pi a^2 (2 u/a + e_z) / p.
#   trapped air      isothermal (Boyle): V = V0 P0 / P (absolute), so
#                    dV/dP = V / P: about 1.3 nL/mmHg per uL at 1 atm.
#   inertance        of the column, L = (4/3) rho l / (pi a^2) (the 4/3 of
#                    a Poiseuille profile at low Womersley number); with
#                    Poiseuille's R = 8 mu l / (pi a^4): L/R = rho a^2 /
#                    (6 mu), 16.7 ms for any length of a 0.53 mm bore.
# Units in the plant: nL, mmHg, ms: C in nL/mmHg, R in mmHg ms/nL, L in
# mmHg ms^2/nL. 1 Pa s/m^3 = 1e-9 / 133.322 mmHg ms/nL; 1 Pa s^2/m^3 =
# 1e-6 / 133.322 mmHg ms^2/nL; 1 m^3/Pa = 133.322e12 nL/mmHg.

import math

from micropython import const

from virtual.noise import HOUR_MS, hash_at, mix32

_PA_PER_MMHG = 133.322
ATM_MMHG = const(760)  # the sensor's calibration reference (sea level)
_RHO = 1000.0  # kg/m^3, drug solution (water-like)
_MU = 0.7e-3  # Pa s, water near 37 C (DESIGN.md 9)
BORE_MM = 0.53  # catheter ID (assumed, plant.py)
OD_MM = 1.4  # catheter OD (Medtronic Ascenda / 8709 class, 1.2-1.4 mm)
_INERTANCE_FACTOR = 4 / 3

# Catheter materials: (name, Young's modulus kPa: low, nominal, high; Poisson)
# silicone 50-65 Shore A: 2-4 MPa; polyurethane 80A: 10-25 MPa (the low-strain
# modulus); a braided (steel / aramid) catheter is held by its braid: an
# effective 100-400 MPa (assumed). Sources in docs/plant.md section 1.
SILICONE = const(1)
POLYURETHANE = const(2)
BRAIDED = const(3)
MATERIALS = (
    ("none", 0, 0, 0, 0.0),  # material 0: the PLANT compliance stands
    ("silicone", 2_000, 3_000, 4_000, 0.5),
    ("polyurethane 80A", 10_000, 15_000, 25_000, 0.48),
    ("braided", 100_000, 200_000, 400_000, 0.45),
)
# The pump outlet, sensor diaphragm and connector (the compliance at the
# sensor that an occlusion at the pump still leaves): assumed 2.5 nL/mmHg,
# range 1-5.
PUMP_COMPLIANCE = 2.5


def wall_compliance(material, length_cm, modulus_kpa=0, bore_mm=BORE_MM, od_mm=OD_MM):
    # nL/mmHg of the catheter wall (Lame, open-ended); modulus 0: nominal.
    row = MATERIALS[material]
    e = (modulus_kpa or row[2]) * 1e3
    nu = row[4]
    a2 = (bore_mm * 0.5e-3) ** 2
    b2 = (od_mm * 0.5e-3) ** 2
    hoop = (b2 + a2) / (b2 - a2) + nu  # (u/a) E / p
    axial = -2 * nu * a2 / (b2 - a2)  # e_z E / p
    per_m = math.pi * a2 * (2 * hoop + axial) / e  # m^3/Pa per metre
    return per_m * length_cm / 100 * _PA_PER_MMHG * 1e12


def air_compliance(air_nl, absolute_mmhg=ATM_MMHG):
    # nL/mmHg of trapped air at absolute pressure P (isothermal): V/P, with
    # V = air_nl (its volume at 1 atm) x 760 / P.
    if air_nl <= 0:
        return 0.0
    return air_nl * ATM_MMHG / (absolute_mmhg * absolute_mmhg)


def inertance(length_cm, bore_mm=BORE_MM):
    # mmHg ms^2/nL of the column in the catheter.
    a2 = (bore_mm * 0.5e-3) ** 2
    si = _INERTANCE_FACTOR * _RHO * length_cm / 100 / (math.pi * a2)
    return si * 1e-6 / _PA_PER_MMHG


def poiseuille(length_cm, bore_mm=BORE_MM):
    # mmHg ms/nL (the plant's own R uses its fixed bore: plant.resistance()).
    a = bore_mm * 0.5e-3
    si = 8 * _MU * length_cm / 100 / (math.pi * a**4)
    return si * 1e-9 / _PA_PER_MMHG


def damping(c, r, ll):
    # zeta of the line (C, R, L): < 1 rings. zeta = (R/2) sqrt(C/L).
    return 0.5 * r * math.sqrt(c / ll)


# --- the standard plant configurations (tests, bench campaign) ------------------
# (name, material, catheter cm, air nL, inertance on). Compliance at the sensor
# = PUMP_COMPLIANCE + wall + air; docs/plant.md lists their figures.
STANDARD = (
    ("nominal", 0, 60, 0, 0),  # the historic 5 nL/mmHg line (PLANT default)
    ("pu-60", POLYURETHANE, 60, 0, 1),
    ("silicone-60", SILICONE, 60, 0, 1),
    ("silicone-90", SILICONE, 90, 0, 1),
    ("pu-60-air10", POLYURETHANE, 60, 10_000, 1),
    ("braided-40", BRAIDED, 40, 0, 1),
)


def standard(name):
    for row in STANDARD:
        if row[0] == name:
            return row
    raise ValueError(name)


def line_compliance(material, length_cm, air_nl=0, modulus_kpa=0):
    # nL/mmHg at the sensor for a material (0: the plant's default 5 nL/mmHg).
    c = wall_compliance(material, length_cm, modulus_kpa) + PUMP_COMPLIANCE if material else 5.0
    return c + air_compliance(air_nl)


def _exp(x):
    return math.exp(x) if x > -700.0 else 0.0


class SecondOrder:
    """The line with inertance: excess pressure E at the sensor (mmHg) over
    its reference, and flow F through the catheter (nL/ms):
        C dE/dt = Q - F - g E        (g: a leak's conductance at the outlet)
        L dF/dt = E - R F
    advanced exactly over an interval of constant inflow Q: with x = (E, F),
    x' = A x + b, the deviation from the equilibrium (E*, F*) = (Q/(1/R + g),
    E*/R) evolves by exp(A t), which for a 2x2 A is
    e^(m t) [k1(t) I + k2(t) (A - m I)], m = trace/2, with cosh/sinh,
    cos/sin or 1/t by the sign of the discriminant."""

    def __init__(self):
        self.c = 5.0
        self.r = 1.0
        self.l = 0.0
        self.g = 0.0
        self.e = 0.0
        self.f = 0.0

    def set(self, c, r, ll, g):
        self.c = c
        self.r = r
        self.l = ll
        self.g = g

    def advance(self, dt, q):
        # -> (volume through the catheter, volume through the leak), nL.
        c = self.c
        r = self.r
        ll = self.l
        g = self.g
        a11 = -g / c
        a12 = -1.0 / c
        a21 = 1.0 / ll
        a22 = -r / ll
        e_eq = q / (1.0 / r + g)
        f_eq = e_eq / r
        y1 = self.e - e_eq
        y2 = self.f - f_eq
        m = (a11 + a22) / 2
        disc = ((a11 - a22) / 2) ** 2 + a12 * a21
        # sk1 = e^(m t) k1(t), sk2 = e^(m t) k2(t), written without overflow
        if disc > 1e-12:
            w = math.sqrt(disc)
            p1 = _exp((m + w) * dt)
            p2 = _exp((m - w) * dt)
            sk1 = (p1 + p2) / 2
            sk2 = (p1 - p2) / (2 * w)
        else:
            s = _exp(m * dt)
            if disc < -1e-12:
                w = math.sqrt(-disc)
                sk1 = s * math.cos(w * dt)
                sk2 = s * math.sin(w * dt) / w
            else:
                sk1 = s
                sk2 = s * dt
        z1 = sk1 * y1 + sk2 * ((a11 - m) * y1 + a12 * y2)
        z2 = sk1 * y2 + sk2 * (a21 * y1 + (a22 - m) * y2)
        # integral of y over dt: A^-1 (y(dt) - y(0))
        det = a11 * a22 - a12 * a21
        d1 = z1 - y1
        d2 = z2 - y2
        int_e = (a22 * d1 - a12 * d2) / det + e_eq * dt
        int_f = (-a21 * d1 + a11 * d2) / det + f_eq * dt
        self.e = z1 + e_eq
        self.f = z2 + f_eq
        return int_f, g * int_e


# --- daily life: the CSF of docs/plant.md section 2 (virtual/noise.py Csf) ------------
# (daily_life(): off by default, on in the standard
# configurations and the campaign; docs/plant.md section 2) -------------------
# Upright, lumbar: +20-30 mmHg over lying (the hydrostatic column; Magnaes
# 1976: lumbar pressure sitting/standing 30-40 cmH2O): 25 mmHg.
_DAILY_UPRIGHT_X1000 = const(25_000)
# A posture change overshoots: +40-60 mmHg, a half sine over the 5 s ramp.
_DAILY_POSTURE_TRANSIENT_X1000 = const(50_000)
# Coughs in bursts of up to 4, peaks 20-150 mmHg (a cough reaches 100+ mmHg
# in the lumbar sac: Williams, Lancet 1976;1:1204), 4 bursts an hour by day.
_DAILY_COUGHS_PER_HOUR = const(4)
_DAILY_COUGH_BURST = const(4)
_DAILY_COUGH_MAX_X1000 = const(150_000)
# Valsalva strains (lifting, straining at stool): rise over 0.5-2 s to +30-90
# mmHg (15-180 mmHg/s), hold 2-8 s, fall over 1 s; 2 an hour (assumed).
_DAILY_STRAINS_PER_HOUR = const(2)
STRAIN_BUCKET_MS = const(900_000)  # at most one strain per 15 min
_STRAIN_MIN_X1000 = const(30_000)
_STRAIN_MAX_X1000 = const(90_000)
_STRAIN_RISE_MIN_MS = const(500)
_STRAIN_RISE_MAX_MS = const(2_000)
_STRAIN_HOLD_MIN_MS = const(2_000)
_STRAIN_HOLD_MAX_MS = const(8_000)
_STRAIN_FALL_MS = const(1_000)
# Weather, seen by the absolute sensor only: knots every 12 h, uniform in
# +-25 mmHg (a strong low or high: 960-1050 hPa is 720-788 mmHg).
_DAILY_WEATHER_X1000 = const(25_000)
_WEATHER_KNOT_MS = const(43_200_000)


def daily_life(csf):
    # The patient of the standard configurations: upright offsets,
    # posture transients, cough bursts, strains.
    csf.strain_fn = strain
    csf.upright_x1000 = _DAILY_UPRIGHT_X1000
    csf.posture_transient_x1000 = _DAILY_POSTURE_TRANSIENT_X1000
    csf.coughs_per_hour = _DAILY_COUGHS_PER_HOUR
    csf.cough_burst = _DAILY_COUGH_BURST
    csf.cough_max_x1000 = _DAILY_COUGH_MAX_X1000
    csf.strains_per_hour = _DAILY_STRAINS_PER_HOUR


def weather(csf):
    # The ambient pressure the sealed sensor reads (+-25 mmHg): off in
    # daily_life(); the pump's level decisions assume a gauge reading
    # (docs/plant.md section 4).
    csf.weather_fn = weather_x1000
    csf.weather_amp_x1000 = _DAILY_WEATHER_X1000


def strain_in(csf, b):
    # (start ms into the bucket, rise ms, hold ms, peak 0.001 mmHg) of
    # strain bucket b; rise 0 if none.
    if b != csf._strain_b:
        csf._strain_b = b
        h = hash_at(csf._strain_key, b)
        chance = csf.strains_per_hour * STRAIN_BUCKET_MS * 65536 // HOUR_MS
        if (h & 0xFFFF) >= chance:
            csf._strain = (0, 0, 0, 0)
        else:
            g = mix32(h)
            rise = (
                _STRAIN_RISE_MIN_MS
                + (g & 0xFFFF) * (_STRAIN_RISE_MAX_MS - _STRAIN_RISE_MIN_MS) // 65536
            )
            hold = (
                _STRAIN_HOLD_MIN_MS
                + (g >> 16) * (_STRAIN_HOLD_MAX_MS - _STRAIN_HOLD_MIN_MS) // 65536
            )
            g = mix32(g)
            peak = _STRAIN_MIN_X1000 + g % (_STRAIN_MAX_X1000 - _STRAIN_MIN_X1000 + 1)
            span = STRAIN_BUCKET_MS - rise - hold - _STRAIN_FALL_MS
            start = (mix32(g) & 0xFFFF) * span // 65536
            csf._strain = (start, rise, hold, peak)
    return csf._strain


def strain(csf, t):
    b = t // STRAIN_BUCKET_MS
    start, rise, hold, peak = strain_in(csf, b)
    if not rise:
        return 0
    x = t - b * STRAIN_BUCKET_MS - start
    if x <= 0:
        return 0
    if x < rise:
        return peak * x // rise
    x -= rise
    if x < hold:
        return peak
    x -= hold
    if x < _STRAIN_FALL_MS:
        return peak * (_STRAIN_FALL_MS - x) // _STRAIN_FALL_MS
    return 0


def weather_x1000(csf, t):
    # Ambient pressure change from the calibration, 0.001 mmHg.
    span = csf.weather_amp_x1000
    if not span:
        return 0
    k = t // _WEATHER_KNOT_MS
    a = hash_at(csf._weather_key, k) % (2 * span + 1) - span
    z = hash_at(csf._weather_key, k + 1) % (2 * span + 1) - span
    return a + (z - a) * (t - k * _WEATHER_KNOT_MS) // _WEATHER_KNOT_MS


# --- the plant's line, moved here so that a board without LINE does not carry it ---
def settle2(plant, t):
    # plant._settle() with inertance (SecondOrder): E and the
    # catheter's flow F; the leak, if any, drains E at the outlet.
    line2 = plant._line2
    if line2 is None:  # never: _l is set with the line module
        return
    line2.e = plant._e
    while plant._t < t:
        start = plant._t
        end = t
        q = 0.0
        if start < plant._q_end:
            q = plant._q
            if plant._q_end < t:
                end = plant._q_end
        tip, pocket = line2.advance(end - start, q)
        plant._t = end
        plant._tip_frac += tip
        whole = math.floor(plant._tip_frac + 1e-6)
        if whole:
            plant._tip_frac -= whole
            plant._push_catheter(whole)
        if pocket:
            plant._pocket_frac += pocket
            whole = math.floor(plant._pocket_frac + 1e-6)
            if whole:
                plant._pocket_frac -= whole
                plant.pocket_nl += whole
    plant._e = line2.e
    if plant._t >= plant._q_end:
        plant._q = 0.0


def air_now(plant, t):
    # nL of air (at 1 atm) left at t.
    if not plant.air_nl or not plant.air_dissolve_ms:
        return plant.air_nl
    x = (plant._air_t0 - t) / plant.air_dissolve_ms
    return plant.air_nl * math.exp(x) if x > -40.0 else 0.0


def absolute_mmhg(plant, t):
    # Absolute pressure at the sensor (mmHg): the body follows the
    # ambient; the line adds its gauge pressure.
    return 760 + plant.ambient_x10 / 10 + plant.reference_x1000(t) / 1000 + plant._e


def check_line(material, modulus_kpa, air_nl, inertance_on, site, ambient_x10):
    # -> index of the first LINE field out of range (schema order), or -1;
    # air_dissolve_s (field 3) takes any value.
    if not 0 <= material <= 3:  # virtual/line.py MATERIALS
        return 0
    if modulus_kpa and not 500 <= modulus_kpa <= 1_000_000:
        return 1
    if not 0 <= air_nl <= 200_000:  # up to 200 uL
        return 2
    if inertance_on not in (0, 1):
        return 4
    if site not in (0, 1):
        return 5
    if not -4_000 <= ambient_x10 <= 1_000:  # -400..+100 mmHg (a cabin: -130..-200)
        return 6
    return -1
