# The plant: what really happens outside the firmware. Shared by the virtual
# board (virtual/board binds the motor, encoder, pressure sensor and battery to
# it) and a future rig board. Every parameter, its units, value, source and
# range: docs/plant.md.
#
# Volumes that are counted (reservoir, pumped, tip, pocket) are integers in
# nL. The line between the head and the tip is physics in floats (not the
# dose path): an excess pressure E (mmHg) over a reference pressure, stored
# in the outlet and line compliance C (nL/mmHg), draining through the
# catheter resistance R with time constant tau = R x C:
#     during a stroke's inflow Q (nL/ms):  dE/dt = Q/C - E/tau
#     otherwise:                           dE/dt = -E/tau
# evaluated lazily in closed form (exponentials) from the last event to the
# time asked, never stepped. What leaves the line is what came in minus what
# the compliance now stores (C x E): that volume leaves through the catheter
# (to the tip) or through a leak (to the pocket) in proportion to their
# conductances. The pressure the sensor sees is reference + E, the reference
# being CSF pressure (virtual/noise.py) or, with a leak, a mix of CSF and the
# pocket's atmospheric pressure.
#
# Faults (schema FAULTS) start at an onset time in device time and last
# until CLEAR_FAULT; several may be active at once. update(now) applies
# onsets that fell due, in time order, each at its own instant.

import math

from micropython import const
from pump.ticks import TICKS_MAX

from virtual.noise import STREAM_NOISE, Csf, noise_x1000, stream_key

# --- pump head and reservoir -------------------------------------------------------
# 25 nL/step nominal; the real head differs by calibration_ppm (parts per
# million, signed).
_NOMINAL_PL_PER_STEP = const(25_000)
_CALIBRATION_PPM_MAX = const(200_000)
# The head turns as the motor is told: a move's steps at the driver's step
# rate (move(steps, now, rate_hz)), its volume flowing into the line over
# those steps' duration. The plant knows nothing of the pump's strokes. A
# caller that gives no rate (plant-level tests, the CPython campaigns of
# bench/board/sensing.py) turns it at the Pico's default driver rate
# (board_config.STEP_RATE_HZ).
HEAD_RATE_HZ = const(400)
# A new pump arrives empty; the rig's FILL (the clinician's syringe) fills it.
_DEFAULT_RESERVOIR_NL = const(0)

# --- catheter --------------------------------------------------------------------------
# Internal volume about 2.6 uL/cm (Prometra labelling, reference clinical.md);
# a 60 cm catheter holds 156 uL. Its length = volume / 2.6 uL/cm.
_CATHETER_NL_PER_CM = const(2_600)
_DEFAULT_CATHETER_CM = const(60)
_CATHETER_NL_MIN = const(2_600)  # 1 cm
_CATHETER_NL_MAX = const(520_000)  # 200 cm
# Between the head and the catheter connector (the pump's internal volume,
# assumed 20 uL as the firmware's model; the rig's truth of the drug path).
_INTERNAL_NL = const(20_000)
# Flow resistance by Poiseuille, R = 8 mu L / (pi r^4), for a bore of
# 0.53 mm ID (ASSUMED: 2.6 uL/cm would be 0.575 mm; the smaller bore gives
# 1.39x the resistance) and water near 37 C (viscosity 0.7 mPa s).
# 1 Pa s/m^3 = 1e-12 / 133.322 mmHg s/nL.
_VISCOSITY_PA_S = 0.7e-3
_BORE_MM = 0.53
_RADIUS_M = _BORE_MM / 2 * 1e-3
# mmHg s/nL per cm of catheter: 2.71e-5 (60 cm: 1.63e-3)
_R_PER_CM = 8 * _VISCOSITY_PA_S * 0.01 / (math.pi * _RADIUS_M**4) * 1e-12 / 133.322
_RESISTANCE_PCT = const(100)  # PLANT resistance_pct: x/100 of the Poiseuille value
_RESISTANCE_PCT_MIN = const(1)
_RESISTANCE_PCT_MAX = const(10_000)

# --- compliance of the pump outlet and line (ASSUMED nominal, swept 0.5x-2x) ----
_COMPLIANCE_X10 = const(50)  # 0.1 nL/mmHg: 5 nL/mmHg
_COMPLIANCE_X10_MIN = const(1)
_COMPLIANCE_X10_MAX = const(1_000)

# --- pressure sensor at the pump outlet (gauge, 0.1 mmHg) --------------------
_NOISE_X10 = const(5)  # standard deviation 0.5 mmHg (assumed)
_NOISE_X10_MAX = const(1_000)
# Range of the sensor (assumed): readings saturate here (int16 on the wire).
_SENSOR_MIN_X10 = const(-4_000)  # an absolute sensor reads down to 360 mmHg
_SENSOR_MAX_X10 = const(30_000)
_CSF_X10_MIN = const(-500)
_CSF_X10_MAX = const(1_500)
# LINE's ranges (trapped air, ambient) are checked in virtual/line.py check_line().
# A disconnected catheter: the outlet opens to the pocket through about 1 %
# of the catheter's resistance.
_DISCONNECT_CONDUCTANCE = const(100)

# --- battery (a lithium primary cell) -----------------------------------------------
_BATTERY_BOL_MV = const(3_000)  # beginning of life (nominal)
_BATTERY_DRAIN_UV_PER_DAY = const(150)  # linear: 55 mV a year, 3000 -> 2617 mV in 7 years (assumed)
_BATTERY_MV_MAX = const(5_000)

# --- faults (schema FAULTS; param meaning there and in docs/plant.md) -------
FAULT_RUNAWAY = const(1)  # param: extra steps per commanded step
FAULT_OCCLUSION = const(2)  # param: catheter resistance x param; 0: full
FAULT_LEAK = const(3)  # param: % lost before the tip; 100: disconnection; 101..199: a break
FAULT_STALL = const(4)
FAULT_LOST_STEPS = const(5)  # param: % of commanded steps lost
FAULT_ENCODER_FAILURE = const(6)
FAULT_SENSOR_STUCK = const(7)
FAULT_SENSOR_OFFSET = const(8)  # param: 0.1 mmHg added to the reading
FAULT_BATTERY = const(9)  # param: battery voltage, mV
FAULT_RESERVOIR_EMPTY = const(10)
FAULT_CORRUPT_JOURNAL = const(11)  # param: byte offset in the newest state slot
FAULT_CSF_PRESSURE = const(12)  # param: CSF pressure, 0.1 mmHg
# 13 is TIMER_FAST (virtual/rig.py: the board's timer, not the plant)
# param: the pressure where the tip now lies, 0.1 mmHg: the line no longer
# sees CSF (its level, posture, coughs, pulsations) behind the catheter
FAULT_TIP_MIGRATION = const(14)
FAULT_SENSOR_NOISE = const(15)  # param: the sensor's noise sd, 0.1 mmHg (replaces noise_x10)
FAULT_COUNT = const(16)  # ids 1..15; 0 in CLEAR_FAULT: every fault

# (lowest, highest) param per fault; None: param ignored
_PARAM_RANGE = (
    None,
    (0, 1_000),
    (0, 1_000_000),
    (0, 199),  # LEAK: 101..199 a break at (param - 100) % of the length
    None,
    (0, 100),
    None,
    None,
    (-30_000, 30_000),
    (0, _BATTERY_MV_MAX),
    None,
    (0, 65_535),
    (_CSF_X10_MIN, _CSF_X10_MAX),
    (1, 0),  # 13: TIMER_FAST, never the plant's
    (0, 300),  # tissue pressure 0..30 mmHg (subcutaneous 0, epidural a few mmHg)
    (0, _NOISE_X10_MAX),
)

# faults that change the line's constants or its reference pressure
_REFERENCE_FAULTS = (FAULT_OCCLUSION, FAULT_LEAK, FAULT_CSF_PRESSURE, FAULT_TIP_MIGRATION)

_OFF = const(0)
_PENDING = const(1)  # waiting for its onset (an active one keeps its old param)
_EPS = 1e-6  # nL: float rounding never loses a whole nanolitre


def fault_known(fault):
    return 1 <= fault < FAULT_COUNT and fault != 13


def param_ok(fault, param):
    bounds = _PARAM_RANGE[fault]
    return bounds is None or bounds[0] <= param <= bounds[1]


class Plant:
    def __init__(self, seed=0):
        self.seed = seed
        self.calibration_ppm = 0
        self.reservoir_nl = _DEFAULT_RESERVOIR_NL
        # By default the system is implanted and primed: the catheter is full.
        self.catheter_nl = _DEFAULT_CATHETER_CM * _CATHETER_NL_PER_CM
        self.catheter_empty_nl = 0  # how much of the catheter is still air/CSF
        self.compliance_x10 = _COMPLIANCE_X10
        self.resistance_pct = _RESISTANCE_PCT
        self.noise_x10 = _NOISE_X10
        self.csf = Csf(seed)
        self.battery_bol_mv = _BATTERY_BOL_MV
        self.battery_drain_uv_per_day = _BATTERY_DRAIN_UV_PER_DAY
        # ground truth
        self.pumped_nl = 0  # volume that left the reservoir through the head
        self.tip_nl = 0  # volume that left the catheter tip: the patient's dose
        self.tip_pg = 0  # drug dose that left the tip, pg (nL x ug/mL)
        self.reservoir_conc = 0  # ug/mL of what FILL put in the reservoir
        self._path = []  # the drug path, oldest first (see _path_in)
        self._path_known = False
        self.pocket_nl = 0  # volume lost through a leak or disconnection
        self.reservoir_lost_nl = 0  # drained by RESERVOIR_EMPTY
        self.released_nl = 0  # stored volume at the last relief of an occlusion
        self.released_at_ms = -1
        self.steps = 0  # real steps the head turned
        self.encoder = 0  # encoder counter (wraps at 2**30)
        self.corrupt_journal = None  # fn(offset), bound by the rig (virtual/rig.py)
        self._remainder_pl = 0
        self._lost_acc = 0  # LOST_STEPS: commanded steps x % carried
        self._noise_key = stream_key(seed, STREAM_NOISE)
        # faults: per id, active flag and param; pending param and onset
        self._active = bytearray(FAULT_COUNT)
        self._param = [0] * FAULT_COUNT
        self._pending = bytearray(FAULT_COUNT)
        self._pending_param = [0] * FAULT_COUNT
        self._onset = [0] * FAULT_COUNT
        self._next_onset = -1
        self._stuck_x10 = 0
        # The sensor's sample-and-hold at the end of a move (the board's
        # move-done interrupt starts a conversion): device time it is due
        # (-1: none), and the reading it held.
        self._latch_at = -1
        self.latched_x10 = 0
        self.latched = False
        # the line: excess pressure E at time _t, inflow _q until _q_end
        self._t = 0
        self._e = 0.0
        self._q = 0.0
        self._q_end = 0
        self._tip_frac = 0.0
        self._pocket_frac = 0.0
        self._c = 0.0  # nL/mmHg
        self._tau = 0.0  # ms; 0: no drain (full occlusion)
        self._decay = 0.0  # -1/tau, 1/ms
        self._r_eff = 0.0  # mmHg ms/nL: tau / C
        self._share = 1.0  # part of the outflow that reaches the tip
        self._weight = 1.0  # reference pressure = weight x CSF
        self._frozen = False  # full occlusion: the reference stays as it was
        self._ref_frozen = 0  # 0.001 mmHg
        # the line as real catheters make it (virtual/line.py; LINE message):
        # trapped air (nL at 1 atm, dissolving with a time constant), the
        # column's inertance (a second-order line), where an occlusion sits,
        # and the ambient pressure the sealed (absolute) sensor also reads
        self.air_nl = 0
        self.air_dissolve_ms = 0  # 0: the bubble stays
        self._air_t0 = 0
        self.inertance_on = 0
        self.occlusion_site = 0  # 0 at the tip (whole line upstream), 1 at the pump outlet
        self.ambient_x10 = 0  # ambient - 760 mmHg, 0.1 mmHg (weather, cabin)
        self._line = None  # virtual/line.py, imported by the first LINE (heap)
        self._line2 = None
        self._l = 0.0  # mmHg ms^2/nL; 0: first-order line
        self._derive(0)

    # --- configuration (rig PLANT, FILL) ----------------------------------------
    def configure(
        self,
        calibration_ppm,
        catheter_nl,
        catheter_empty_nl,
        reservoir_nl,
        now=0,
        compliance_x10=_COMPLIANCE_X10,
        resistance_pct=_RESISTANCE_PCT,
        noise_x10=_NOISE_X10,
        csf_x10=-32768,
    ):
        # Values are checked by the caller (check_plant()). The compliance
        # keeps the volume it stores: E scales by C_old / C_new.
        self.update(now)
        self.calibration_ppm = calibration_ppm
        self.catheter_nl = catheter_nl
        self.catheter_empty_nl = (
            catheter_empty_nl if catheter_empty_nl < catheter_nl else catheter_nl
        )
        self._reshape_path()
        self.reservoir_nl = reservoir_nl
        self._e = self._e * self.compliance_x10 / compliance_x10
        self.compliance_x10 = compliance_x10
        self.resistance_pct = resistance_pct
        self.noise_x10 = noise_x10
        if csf_x10 != -32768:
            self.csf.base_x10 = csf_x10
        self._derive(now)

    def configure_line(
        self, material, modulus_kpa, air_nl, air_dissolve_ms, inertance_on, site, now=0
    ):
        # The line as real catheters make it (rig message LINE; virtual/line.py):
        # material 0 keeps compliance_x10 (PLANT), otherwise the catheter
        # wall (Lame, modulus_kpa 0: the material's nominal) plus the pump
        # outlet. Trapped air (nL at 1 atm) adds V/P; it dissolves with
        # air_dissolve_ms (0: it stays). Checked by the caller (check_line()).
        self.update(now)
        linemod = self.line_module()
        if material:
            cm = self.catheter_nl // _CATHETER_NL_PER_CM
            c = linemod.wall_compliance(material, cm, modulus_kpa) + linemod.PUMP_COMPLIANCE
            self.compliance_x10 = int(c * 10 + 0.5)
        self.air_nl = air_nl
        self.air_dissolve_ms = air_dissolve_ms
        self._air_t0 = now
        self.inertance_on = inertance_on
        self.occlusion_site = site
        self._derive(now)

    def line_module(self):
        # virtual/line.py, imported at the first LINE (it stays off the heap of
        # a board that never uses it).
        if self._line is None:
            from virtual import line as linemod

            self._line = linemod
            self._line2 = linemod.SecondOrder()
        return self._line

    def compliance_now(self):
        # nL/mmHg at the sensor now (wall, pump outlet and air).
        return self._c

    def pl_per_step(self):
        # 25 000 x (1e6 + ppm) / 1e6 done in two steps to stay in small ints.
        return _NOMINAL_PL_PER_STEP + _NOMINAL_PL_PER_STEP * self.calibration_ppm // 1_000_000

    def resistance(self):
        # mmHg s/nL of the catheter as implanted (no fault).
        return _R_PER_CM * self.catheter_nl / _CATHETER_NL_PER_CM * self.resistance_pct / 100

    def tau_ms(self):
        # Time constant of the line now (0: it does not drain).
        return self._tau

    # --- the head -----------------------------------------------------------------
    def move(self, commanded_steps, now=0, rate_hz=HEAD_RATE_HZ):
        # The head turns commanded_steps at rate_hz steps/s (what the motor
        # driver was told); returns the steps it really made. The encoder
        # counts them at once; their volume flows into the line over their
        # duration at that rate (whole ms, rounded up).
        self.update(now)
        self.latched = False  # a new move: what was held is stale
        self._latch_at = -1
        active = self._active
        if active[FAULT_STALL]:
            return 0
        steps = commanded_steps
        if active[FAULT_LOST_STEPS]:
            self._lost_acc += commanded_steps * self._param[FAULT_LOST_STEPS]
            lost = self._lost_acc // 100
            self._lost_acc -= lost * 100
            steps -= lost if lost < steps else steps
        if active[FAULT_RUNAWAY]:
            steps += commanded_steps * self._param[FAULT_RUNAWAY]
        if steps <= 0:
            return 0
        self.steps += steps
        if not active[FAULT_ENCODER_FAILURE]:
            self.encoder = (self.encoder + steps) & TICKS_MAX
        part = steps * self.pl_per_step() + self._remainder_pl
        volume = part // 1000
        self._remainder_pl = part % 1000
        if active[FAULT_RESERVOIR_EMPTY]:
            volume = 0  # the head turns, nothing moves
        elif volume > self.reservoir_nl:
            volume = self.reservoir_nl  # an empty reservoir delivers nothing
        if volume <= 0:
            return steps
        self.reservoir_nl -= volume
        self.pumped_nl += volume
        if self.air_nl:
            self._derive(now)  # the bubble's compliance at today's size and pressure
        duration = (steps * 1000 + rate_hz - 1) // rate_hz
        end = now + duration
        left = 0.0
        if self._q_end > now:
            left = self._q * (self._q_end - now)  # the previous inflow goes on
            if self._q_end > end:
                end = self._q_end
        self._q = (volume + left) / (end - now)
        self._q_end = end
        self._latch_at = now + duration
        return steps

    # --- the line -------------------------------------------------------------------
    def update(self, now):
        # Applies fault onsets that fell due (each at its own instant), then
        # brings the line to now.
        while 0 <= self._next_onset <= now:
            fault = 0
            for f in range(1, FAULT_COUNT):
                if self._pending[f] and (fault == 0 or self._onset[f] < self._onset[fault]):
                    fault = f
            if 0 <= self._latch_at <= self._onset[fault]:
                self._take_latch()
            self._settle(self._onset[fault])
            self._pending[fault] = _OFF
            self._activate(fault, self._pending_param[fault], self._onset[fault])
            self._find_next_onset()
        if 0 <= self._latch_at <= now:
            self._take_latch()
        self._settle(now)

    def _take_latch(self):
        # The reading at the instant the move ended, whenever it is asked for.
        t = self._latch_at
        self._latch_at = -1
        self._settle(t)
        self.latched_x10 = self._sensor_at(t)
        self.latched = True

    def _settle(self, t):
        # Closed-form evolution of E from _t to t: with inflow up to _q_end,
        # then without. (Written to allocate few floats: each is a heap
        # object in MicroPython.)
        linemod = self._line
        if self._l and linemod is not None:
            linemod.settle2(self, t)
            return
        while self._t < t:
            start = self._t
            end = t
            q = self._q if start < self._q_end else 0.0
            e0 = self._e
            if q:
                if self._q_end < t:
                    end = self._q_end
                dt = end - start
                if self._tau:
                    e_inf = q * self._r_eff
                    e1 = e_inf + (e0 - e_inf) * math.exp(dt * self._decay)
                else:
                    e1 = e0 + q * dt / self._c
                out = q * dt - self._c * (e1 - e0)
            else:
                if not e0 or not self._tau:
                    self._t = t  # nothing flows: nothing changes
                    break
                x = (end - start) * self._decay
                # exp(-40) = 4e-18: what is left counts as gone
                e1 = e0 * math.exp(x) if x > -40.0 else 0.0
                out = self._c * (e0 - e1)
            self._e = e1
            self._t = end
            self._outflow(out)
        if self._t >= self._q_end:
            self._q = 0.0

    def _outflow(self, out):
        # Splits what left the line between the tip and the pocket; whole
        # nanolitres go to the counters, fractions are carried.
        share = self._share
        if share != 1.0:
            pocket = out * (1.0 - share)
            out -= pocket
            self._pocket_frac += pocket
            whole = math.floor(self._pocket_frac + _EPS)
            if whole:
                self._pocket_frac -= whole
                self.pocket_nl += whole
            if not share:
                return
        self._tip_frac += out
        whole = math.floor(self._tip_frac + _EPS)
        if whole:
            self._tip_frac -= whole
            self._push_catheter(whole)

    def _push_catheter(self, volume):
        # Drug first fills what is empty of the catheter; the rest leaves
        # the tip (an incompressible column: what goes in comes out), and
        # the drug that leaves is the oldest in the path (the dose truth).
        self._path_in(volume)
        if volume > 0 and self.catheter_empty_nl:
            filled = volume if volume < self.catheter_empty_nl else self.catheter_empty_nl
            self.catheter_empty_nl -= filled
            volume -= filled
        self.tip_nl += volume
        self._path_out(volume)

    # --- the drug path (truth of the dose at the tip) ------------------------------
    # The pump's internal volume and the filled part of the catheter, as a
    # list of [concentration ug/mL, nL], oldest (at the tip) first. Dose is
    # counted in pg (nL x ug/mL) and reported in whole ng.
    def _path_volume(self):
        return _INTERNAL_NL + self.catheter_nl - self.catheter_empty_nl

    def fill(self, reservoir_nl, conc_ug_ml):
        # The rig's FILL: the reservoir emptied and filled with drug of
        # conc_ug_ml. Returns what was left. The first fill also primes the
        # path (an implanted, primed system holds the drug it was given).
        withdrawn = self.reservoir_nl
        self.reservoir_nl = reservoir_nl
        self.reservoir_conc = conc_ug_ml
        if not self._path_known:
            self._path_known = True
            self._path = [[conc_ug_ml, self._path_volume()]]
        return withdrawn

    def _path_in(self, volume):
        if volume <= 0:
            return
        path = self._path
        if path and path[-1][0] == self.reservoir_conc:
            path[-1][1] += volume
        else:
            path.append([self.reservoir_conc, volume])

    def _path_out(self, volume):
        path = self._path
        while volume > 0 and path:
            seg = path[0]
            take = seg[1] if seg[1] < volume else volume
            self.tip_pg += take * seg[0]
            seg[1] -= take
            volume -= take
            if not seg[1]:
                path.pop(0)
        # (a path emptier than its volume: never filled; nothing is counted)

    def _reshape_path(self):
        # After a new catheter configuration: the newest drug stays, up to
        # the volume the path now holds (a longer path repeats the oldest).
        want = self._path_volume()
        kept = []  # type: list[list[int]]
        total = 0
        for seg in reversed(self._path):
            take = seg[1] if seg[1] < want - total else want - total
            if take <= 0:
                break
            kept.insert(0, [seg[0], take])
            total += take
        if kept and total < want:
            kept[0][1] += want - total
        self._path = kept

    def tip_ng(self):
        return self.tip_pg // 1000

    def tip_conc(self):
        # The concentration now at the tip (0: saline, air, unknown).
        if self.catheter_empty_nl or not self._path:
            return 0
        return self._path[0][0]

    def _derive(self, t):
        # The line's constants from the configuration and the active faults.
        # Called after _settle(t): E is kept; the reference may change.
        reference = self.reference_x1000(t)
        self._c = self.compliance_x10 / 10
        linemod = self._line  # None until a LINE: the lumped line alone
        if linemod is not None:
            if self._active[FAULT_OCCLUSION] and self.occlusion_site:
                self._c = linemod.PUMP_COMPLIANCE  # the catheter is cut off
            if self.air_nl:
                self._c += linemod.air_compliance(
                    linemod.air_now(self, t), linemod.absolute_mmhg(self, t)
                )
        g_nominal = 1 / (self.resistance() * 1000)  # nL/(mmHg ms)
        g_tip = g_nominal
        g_leak = 0.0
        if self._active[FAULT_OCCLUSION]:
            factor = self._param[FAULT_OCCLUSION]
            g_tip = g_nominal / factor if factor else 0.0
        if self._active[FAULT_LEAK]:
            pct = self._param[FAULT_LEAK]
            if pct > 100:
                # a break at (pct - 100) % of the catheter's length from the
                # pump: the tip path is gone, the outlet opens to the pocket
                # through the catheter up to the break
                g_tip = 0.0
                g_leak = g_nominal * 100 / (pct - 100)
            elif pct == 100:
                g_tip = 0.0
                g_leak = g_nominal * _DISCONNECT_CONDUCTANCE
            else:
                g_leak = g_nominal * pct / (100 - pct)
        g_total = g_tip + g_leak
        if g_total:
            self._tau = self._c / g_total
            self._decay = -1 / self._tau
            self._r_eff = 1 / g_total
            self._share = g_tip / g_total
            self._weight = self._share
            self._frozen = False
            line2 = self._line2
            if self.inertance_on and g_tip and linemod is not None and line2 is not None:
                if not self._l:
                    line2.f = self._e * g_tip  # the flow a resistive line had
                self._l = linemod.inertance(self.catheter_nl / _CATHETER_NL_PER_CM)
                line2.set(self._c, 1 / g_tip, self._l, g_leak)
            elif self._l and line2 is not None:
                self._l = 0.0
                line2.f = 0.0
        else:
            # Nothing drains: the line keeps the pressure it had, and no
            # longer sees CSF pressure.
            self._tau = 0.0
            self._share = 0.0
            line2 = self._line2
            if self._l and line2 is not None:
                self._l = 0.0
                line2.f = 0.0  # the column stops
            if not self._frozen:
                self._frozen = True
                self._ref_frozen = reference

    # --- pressures (0.001 mmHg integers, or mmHg floats for tests) ------------
    def csf_x1000(self, t):
        csf = self.csf
        if self._active[FAULT_TIP_MIGRATION]:
            return self._param[FAULT_TIP_MIGRATION] * 100  # tissue: no CSF at all
        if self._active[FAULT_CSF_PRESSURE]:
            return self._param[FAULT_CSF_PRESSURE] * 100 + csf.fast_x1000(t)
        return csf.x1000(t)

    def reference_x1000(self, t):
        if self._frozen:
            return self._ref_frozen
        weight = self._weight
        if weight == 1.0:
            return self.csf_x1000(t)
        if not weight:
            return 0
        return int(weight * self.csf_x1000(t))

    def excess_mmhg(self, now):
        self.update(now)
        return self._e

    def stored_nl(self, now):
        # Volume the compliance holds above the reference pressure.
        self.update(now)
        return self._c * self._e

    def pressure_mmhg(self, now):
        # True gauge pressure at the sensor (the pump outlet).
        self.update(now)
        return self.reference_x1000(now) / 1000 + self._e

    def pressure_x10(self, now):
        # The true pressure in 0.1 mmHg, within an int16.
        self.update(now)
        x10 = (self.reference_x1000(now) + int(self._e * 1000) + 50) // 100
        return -32768 if x10 < -32768 else 32767 if x10 > 32767 else x10

    def sensor_x10(self, now):
        # What the sensor reports now (0.1 mmHg): it converts once a ms, so
        # every read within a ms returns the same value.
        self.update(now)
        return self._sensor_at(now)

    def _sensor_at(self, t):
        if self._active[FAULT_SENSOR_STUCK]:
            return self._stuck_x10
        return self._read_x10(t)

    def stroke_end_x10(self, now):
        # What the sensor held at the end of the last move, if that move has
        # ended and nothing was held since; else the reading now.
        self.update(now)
        if self.latched:
            self.latched = False
            return self.latched_x10
        return self._sensor_at(now)

    def _read_x10(self, t):
        value = self.reference_x1000(t) + 50
        if self._e:
            value += int(self._e * 1000)
        noise = (
            self._param[FAULT_SENSOR_NOISE] if self._active[FAULT_SENSOR_NOISE] else self.noise_x10
        )
        if noise:
            value += noise_x1000(self._noise_key, t, noise)
        if self._active[FAULT_SENSOR_OFFSET]:
            value += self._param[FAULT_SENSOR_OFFSET] * 100
        # a sealed sensor reads absolute pressure less its 760 mmHg
        # calibration: the weather and a cabin move every reading alike
        value += self.ambient_x10 * 100
        csf = self.csf
        if csf.weather_fn is not None:
            value += csf.weather_fn(csf, t)
        return _clamp(value // 100)

    # --- battery ------------------------------------------------------------------------
    def battery_mv(self, now):
        self.update(now)
        if self._active[FAULT_BATTERY]:
            return self._param[FAULT_BATTERY]
        return self.battery_bol_mv - self.battery_drain_uv_per_day * now // 86_400_000_000

    # --- faults ---------------------------------------------------------------------
    def inject(self, fault, param, onset_at=0, now=0):
        # The fault begins at device time onset_at (now if earlier); an
        # active fault of the same id keeps its old param until then.
        self.update(now)
        if onset_at <= now:
            self._pending[fault] = _OFF
            self._activate(fault, param, now)
        else:
            self._pending[fault] = _PENDING
            self._pending_param[fault] = param
            self._onset[fault] = onset_at
        self._find_next_onset()

    def clear_fault(self, fault=0, now=0):
        # Ends fault (0: every fault), pending or active.
        self.update(now)
        for f in range(1, FAULT_COUNT):
            if fault == 0 or f == fault:
                self._pending[f] = _OFF
                if self._active[f]:
                    self._deactivate(f, now)
        self._find_next_onset()

    def active(self, fault):
        return self._active[fault] != 0

    def param(self, fault):
        return self._param[fault]

    def next_onset_ms(self):
        # Device time of the next pending onset, -1 if none.
        return self._next_onset

    def _find_next_onset(self):
        soonest = -1
        for f in range(1, FAULT_COUNT):
            if self._pending[f] and (soonest < 0 or self._onset[f] < soonest):
                soonest = self._onset[f]
        self._next_onset = soonest

    def _activate(self, fault, param, t):
        # The line is settled at t.
        active = self._active
        if fault == FAULT_SENSOR_STUCK and not active[fault]:
            self._stuck_x10 = self._read_x10(t)  # frozen at its value at onset
        if fault == FAULT_OCCLUSION and active[fault]:
            old = self._param[fault]
            if param and (old == 0 or param < old):
                self._relief(t)  # eased: what the line stored starts to flow
        active[fault] = 1
        self._param[fault] = param
        if fault in _REFERENCE_FAULTS:
            self._derive(t)
        elif fault == FAULT_RESERVOIR_EMPTY:
            self.reservoir_lost_nl += self.reservoir_nl
            self.reservoir_nl = 0
        elif fault == FAULT_CORRUPT_JOURNAL:
            active[fault] = 0  # a one-off: the flipped byte stays flipped
            if self.corrupt_journal is not None:
                self.corrupt_journal(param)
        elif fault == FAULT_LOST_STEPS:
            self._lost_acc = 0

    def _deactivate(self, fault, t):
        if fault == FAULT_OCCLUSION:
            self._relief(t)
        self._active[fault] = 0
        if fault in _REFERENCE_FAULTS:
            self._derive(t)

    def _relief(self, t):
        # What the line stores when an occlusion is relieved or eased flows
        # out to the patient within a few tau: the volume released after
        # relief (C x E at that instant).
        stored = self._c * self._e
        self.released_nl = int(stored + 0.5) if stored > 0 else 0
        self.released_at_ms = t


def _clamp(x10):
    if x10 < _SENSOR_MIN_X10:
        return _SENSOR_MIN_X10
    if x10 > _SENSOR_MAX_X10:
        return _SENSOR_MAX_X10
    return x10


def check_plant(calibration_ppm, catheter_nl, compliance_x10, resistance_pct, noise_x10, csf_x10):
    # -> index of the first PLANT field out of range (schema order), or -1.
    if not -_CALIBRATION_PPM_MAX <= calibration_ppm <= _CALIBRATION_PPM_MAX:
        return 0
    if not _CATHETER_NL_MIN <= catheter_nl <= _CATHETER_NL_MAX:
        return 1
    if not _COMPLIANCE_X10_MIN <= compliance_x10 <= _COMPLIANCE_X10_MAX:
        return 4
    if not _RESISTANCE_PCT_MIN <= resistance_pct <= _RESISTANCE_PCT_MAX:
        return 5
    if not 0 <= noise_x10 <= _NOISE_X10_MAX:
        return 6
    if not _CSF_X10_MIN <= csf_x10 <= _CSF_X10_MAX:
        return 7
    return -1
