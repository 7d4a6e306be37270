# Runs under MicroPython with tests/modules/fakes on MICROPYPATH: the Pico
# HAL (hal/rp2.py) against fake machine and rp2 modules. One case per name
# on the command line (all when none); prints {case: result} as JSON.
import machine
import rp2
import rp2kit

MOVE_CYCLES = 1_000_000  # PIO cycles: more than any test move needs


def import_touches_no_hardware():
    # Run first in its process: the firmware's modules are not imported yet.
    machine.reset_fakes()
    rp2.reset_fakes()
    import board_config  # noqa: F401
    import hal.rp2  # noqa: F401
    import main  # noqa: F401

    return {
        "calls": [e for e in machine.LOG if e[0] != "asm_pio"],
        "programs_assembled": sorted(e[1] for e in machine.LOG if e[0] == "asm_pio"),
        "state_machines": len(rp2.MACHINES),
        "timers": len(machine.TIMERS),
    }


def pins_follow_the_map():
    cfg = rp2kit.config()
    b, _i, _o, _p = rp2kit.board(cfg)
    pins = machine.PINS
    off = 1 if cfg.ENABLE_ACTIVE_LOW else 0
    en = pins[cfg.ENABLE_PIN]
    # the driver is disabled before anything else is configured
    first_pin = next(e for e in machine.LOG if e[0] == "Pin")
    out = {
        "enable_first": first_pin[1] == cfg.ENABLE_PIN and first_pin[4] == off,
        "enable_out_disabled": en.mode == machine.Pin.OUT and en.level == off,
        "dir_out_forward": pins[cfg.DIR_PIN].mode == machine.Pin.OUT
        and pins[cfg.DIR_PIN].level == cfg.DIR_FORWARD,
        "step_pio": pins[cfg.STEP_PIN].pio,
        "encoder_in_pullup": pins[cfg.ENCODER_PIN].mode == machine.Pin.IN
        and pins[cfg.ENCODER_PIN].pull == machine.Pin.PULL_UP,
        "adc_pressure": cfg.PRESSURE_ADC_PIN in machine.ADCS,
        "adc_battery": cfg.BATTERY_ADC_PIN in machine.ADCS,
        "buzzer_pwm": machine.PWMS[cfg.BUZZER_PIN].freq() == cfg.BUZZER_HZ
        and machine.PWMS[cfg.BUZZER_PIN].duty == 0,
        "led_off": pins[cfg.LED_PIN].level == (0 if cfg.LED_ACTIVE_HIGH else 1),
        "rig_uart": machine.LOG.count(
            ("UART", cfg.RIG_UART_ID, cfg.RIG_UART_BAUD, cfg.RIG_UART_TX, cfg.RIG_UART_RX)
        )
        == 1,
        "no_watchdog_yet": machine.WDTS == [],
        "name": b.name,
        "device_id": b.device_id,
    }
    return out


def pio_programs_loaded():
    cfg = rp2kit.config()
    rp2kit.board(cfg)
    step = rp2.MACHINES[cfg.STEP_SM]
    enc = rp2.MACHINES[cfg.ENCODER_SM]
    return {
        "step_program": step.program.name,
        "step_freq": step.freq,
        "step_set_base": step.kw["set_base"].id,
        "step_active": step.running,
        "step_irq_hard": step.hard,
        "enc_program": enc.program.name,
        "enc_freq": enc.freq,
        "enc_in_base": enc.kw["in_base"].id,
        "enc_active": enc.running,
        "program_words": len(step.program) + len(enc.program),
    }


def _move(b, steps):
    sm = rp2kit.step_sm()
    b.motor.start(steps)
    sm.run(MOVE_CYCLES)
    return sm


def steps_bounded():
    cfg = rp2kit.config()
    b, _i, _o, _p = rp2kit.board(cfg)
    sm = rp2kit.step_sm()
    out = {}
    for steps in (1, 8, cfg.MAX_MOVE_STEPS):
        before = len(sm.rising)
        _move(b, steps)
        out["edges_%d" % steps] = len(sm.rising) - before
        out["stalled_at_pull_%d" % steps] = sm.stalled and sm.pc == 0
        out["moving_after_%d" % steps] = b.motor.moving()
        b.motor.stop()
        out["issued_%d" % steps] = b.motor.last_steps
    refused = []
    for steps in (0, -1, cfg.MAX_MOVE_STEPS + 1, 1 << 20):
        try:
            b.motor.start(steps)
            refused.append(False)
        except ValueError:
            refused.append(True)
    out["refused"] = refused
    out["nothing_queued"] = sm.tx == []
    # a second start while a move runs is refused too
    b.motor.start(8)
    try:
        b.motor.start(8)
        out["busy_refused"] = False
    except RuntimeError:
        out["busy_refused"] = True
    b.motor.stop()
    return out


def step_rate_and_period():
    cfg = rp2kit.config()
    b, _i, _o, _p = rp2kit.board(cfg)
    sm = rp2kit.step_sm()
    out = {}
    for rate in (cfg.STEP_RATE_HZ, 1, cfg.MAX_STEP_RATE_HZ):
        b.motor.set_rate(rate)
        start = len(sm.rising)
        b.motor.start(4)
        # slow rates need many cycles (1 step/s = 10**6 cycles at 1 MHz)
        sm.run(20_000_000)
        edges = sm.rising[start:]
        b.motor.stop()
        gaps = [edges[i + 1] - edges[i] for i in range(len(edges) - 1)]
        out[str(rate)] = {"edges": len(edges), "gaps": sorted(set(gaps)), "us": b.motor.period_us()}
    try:
        b.motor.set_rate(cfg.MAX_STEP_RATE_HZ + 1)
        out["too_fast_refused"] = False
    except ValueError:
        out["too_fast_refused"] = True
    return out


def driver_disabled_between_moves():
    cfg = rp2kit.config()
    b, _i, _o, _p = rp2kit.board(cfg)
    en = machine.PINS[cfg.ENABLE_PIN]
    on = 0 if cfg.ENABLE_ACTIVE_LOW else 1
    sm = rp2kit.step_sm()
    b.motor.start(8)
    enabled_during = en.level == on
    sm.run(MOVE_CYCLES)
    # the completion interrupt disables the driver at once
    error = rp2kit.in_irq(sm.handler, sm) if sm.irq_pending else "no irq"
    disabled_by_irq = en.level != on
    b.motor.stop()
    return {
        "enabled_during": enabled_during,
        "irq_error": error,
        "irq_hard": sm.hard,
        "disabled_by_irq": disabled_by_irq,
        "disabled_after_stop": en.level != on,
        "issued": b.motor.last_steps,
        "levels": en.levels()[-4:],
    }


def abort_mid_move():
    cfg = rp2kit.config()
    b, _i, _o, _p = rp2kit.board(cfg)
    sm = rp2kit.step_sm()
    en = machine.PINS[cfg.ENABLE_PIN]
    period = 2 * b.motor._delay + 7
    b.motor.start(8)
    sm.run(3 * period + period // 4)  # into the 4th step's high phase
    edges = len(sm.rising)
    moving = b.motor.moving()
    b.motor.stop()
    out = {
        "edges": edges,
        "moving": moving,
        "issued": b.motor.last_steps,
        "step_pin_low": machine.PINS[cfg.STEP_PIN].level,
        "driver_off": en.level == (1 if cfg.ENABLE_ACTIVE_LOW else 0),
        "aborts": b.motor.aborts,
        "reinit": sm.inits,
    }
    # the machine is ready for the next move: exactly 8 edges
    before = len(sm.rising)
    _move(b, 8)
    b.motor.stop()
    out["next_move_edges"] = len(sm.rising) - before
    out["total_issued"] = b.motor.issued
    return out


def encoder_pio_counts():
    cfg = rp2kit.config()
    b, _i, _o, _p = rp2kit.board(cfg)
    enc_sm = rp2.MACHINES[cfg.ENCODER_SM]
    pin = machine.PINS[cfg.ENCODER_PIN]
    start = b.encoder.count()
    for _ in range(8):
        pin.value(0)
        enc_sm.run(10)
        pin.value(1)
        enc_sm.run(10)
    after8 = b.encoder.count()
    # wraps at 2**30 like every counter the drive reads
    enc_sm.x = (-((1 << 30) - 3)) & 0xFFFFFFFF
    near = b.encoder.count()
    for _ in range(5):
        pin.value(0)
        enc_sm.run(10)
        pin.value(1)
        enc_sm.run(10)
    wrapped = b.encoder.count()
    return {"start": start, "after8": after8, "delta_over_wrap": (wrapped - near) & 0x3FFFFFFF}


def encoder_scaled():
    cfg = rp2kit.config(ENCODER_STEPS_NUM=1, ENCODER_EDGES_DEN=4)  # 4 edges per step
    b, _i, _o, _p = rp2kit.board(cfg)
    enc_sm = rp2.MACHINES[cfg.ENCODER_SM]
    pin = machine.PINS[cfg.ENCODER_PIN]
    counts = []
    for _ in range(10):
        pin.value(0)
        enc_sm.run(10)
        pin.value(1)
        enc_sm.run(10)
        counts.append(b.encoder.count())
    return counts


def encoder_irq_no_alloc():
    cfg = rp2kit.config(ENCODER="irq")
    b, _i, _o, _p = rp2kit.board(cfg)
    pin = machine.PINS[cfg.ENCODER_PIN]
    errors = [rp2kit.in_irq(pin.handler, pin) for _ in range(8)]
    return {
        "hard": pin.hard,
        "trigger_rising": pin.trigger == machine.Pin.IRQ_RISING,
        "errors": [e for e in errors if e],
        "count": b.encoder.count(),
        "no_encoder_sm": cfg.ENCODER_SM not in rp2.MACHINES,
    }


def stall_diag_halts():
    cfg = rp2kit.config(ENCODER="diag")
    b, _i, _o, _p = rp2kit.board(cfg)
    sm = rp2kit.step_sm()
    diag = machine.PINS[cfg.DIAG_PIN]
    en = machine.PINS[cfg.ENABLE_PIN]
    period = 2 * b.motor._delay + 7
    start = b.encoder.count()
    b.motor.start(8)
    sm.run(2 * period + period // 2)  # 3 edges out
    error = rp2kit.in_irq(diag.handler, diag)
    halted = not sm.running and en.level == (1 if cfg.ENABLE_ACTIVE_LOW else 0)
    sm.run(MOVE_CYCLES)  # frozen: nothing more comes out
    edges = len(sm.rising)
    b.motor.stop()
    return {
        "hard": diag.hard,
        "irq_error": error,
        "halted": halted,
        "edges": edges,
        "moving_after_halt": b.motor.moving(),
        "counted": (b.encoder.count() - start) & 0x3FFFFFFF,
        "stalls": b.encoder.stalls(),
    }


def pressure_calibrated_without_memory():
    cfg = rp2kit.config()
    b, _i, _o, _p = rp2kit.board(cfg)
    adc = machine.ADCS[cfg.PRESSURE_ADC_PIN]
    p = b.pressure
    adc.samples = [cfg.PRESSURE_OFFSET_RAW]
    zero = p.read_x10()
    # full scale of the default sensor: 90 % of supply = 775.7 mmHg (0-15 psi)
    adc.samples = [58982]
    full = p.read_x10()
    # one spike per burst is dropped by the oversampling
    adc.samples = [58982] * 7 + [65535]
    spiked = p.read_x10()
    # a sweep of random levels (steps, ramps, spikes inside a burst): every
    # reading is its own burst's trimmed mean through the calibration, never
    # anything of the readings before it (the monitors compare readings 20
    # ms to minutes apart, each taken as the pressure at that instant)
    x = 0x2545F491
    history = 0
    for _case in range(300):
        burst = []
        for _i in range(cfg.PRESSURE_OVERSAMPLE):
            x ^= (x << 13) & 0xFFFFFFFF
            x ^= x >> 17
            x ^= (x << 5) & 0xFFFFFFFF
            burst.append(x & 0xFFFF)
        trimmed = (sum(burst) - min(burst) - max(burst)) // (len(burst) - 2)
        adc.samples = burst
        adc._next = 0
        if p.read_x10() != p.to_x10(trimmed) or p.stroke_end_x10() != p.to_x10(trimmed):
            history += 1
    p.calibrate(1000, 1000)
    adc.samples = [1000 + 65536 // 10]
    fresh = p.to_x10(p.read_raw())
    refused = []
    for offset, gain in ((-1, 100), (70000, 100), (0, 0), (0, 16384)):
        try:
            p.calibrate(offset, gain)
            refused.append(False)
        except ValueError:
            refused.append(True)
    adc.samples = [0]
    p.calibrate(cfg.PRESSURE_OFFSET_RAW, cfg.PRESSURE_GAIN)
    negative = p.to_x10(0)
    return {
        "zero": zero,
        "full": full,
        "spiked": spiked,
        "with_history": history,
        "recalibrated": fresh,
        "refused": refused,
        "below_offset": negative,
        "reads_per_sample": cfg.PRESSURE_OVERSAMPLE,
    }


def _u16_of_x10(x10):
    # What the ADC reads for the plant's pressure: rig/pico.py's 12-bit level
    # (the emulated Pico's rig answers each conversion with it), scaled to
    # 16 bits as the rp2 port's read_u16() does.
    from rig.pico import pressure_raw12

    raw = pressure_raw12(x10)
    return (raw << 4) | (raw >> 8)


# Stroke intervals, ms: 0.048, 1 and 24 mL/day, and a bolus's strokes.
SWEEP_INTERVALS = (360_000, 17_280, 720, 250)


def _occlusion_run(adc, hal_sensor, interval, fault, site):
    # One run (see occlusion_through_the_rp2_sensor): -> its result.
    from pump.drive import STROKE_MS, STROKE_STEPS
    from pump.monitors import LEAK, OCCLUSION, PARTIAL_OCCLUSION, SENSOR_FAULT, SLOW_LEAK
    from pump.monitors.leak import LeakMonitor
    from pump.monitors.occlusion import OcclusionMonitor
    from pump.monitors.response import LEARN_STROKES, RiseLearner
    from pump.monitors.sensor import PAIR_MS, SensorCheck
    from pump.safety import AFTER_MS, MONITOR_MS
    from rig import plant as plantmod

    names = {
        OCCLUSION: "OCCLUSION",
        PARTIAL_OCCLUSION: "PARTIAL_OCCLUSION",
        SENSOR_FAULT: "SENSOR_FAULT",
        LEAK: "LEAK",
        SLOW_LEAK: "SLOW_LEAK",
    }
    plant = plantmod.Plant(seed=interval)
    plant.fill(20_000_000, 0)  # 20 mL
    if site:
        plant.configure_line(0, 0, 0, 0, 0, site)  # the occlusion at the pump outlet
    learner = RiseLearner()
    occlusion = OcclusionMonitor(learner=learner)
    leak = LeakMonitor(learner=learner)
    sensor = SensorCheck()
    alarms = []

    def read(at, end=False):
        adc.samples = [_u16_of_x10(plant.sensor_x10(at))]
        x = hal_sensor.stroke_end_x10() if end else hal_sensor.read_x10()
        if sensor.on_sample(x):
            alarms.append(names[SENSOR_FAULT])
        return x

    next_level = MONITOR_MS
    onset = LEARN_STROKES + 4
    first = None
    at = 0
    for k in range(onset + 40):
        at = 1_000 + k * interval
        while next_level < at:
            level = read(next_level)
            for a in (occlusion.on_level(level), leak.on_level(level, True)):
                if a:
                    alarms.append(names.get(a, a))
            next_level += MONITOR_MS
        if fault and k == onset:
            plant.inject(plantmod.FAULT_OCCLUSION, 0, at, at)  # full, at the tip
        before = read(at)
        plant.move(STROKE_STEPS, at)
        end = at + STROKE_MS
        peak = read(end, True)
        pre = read(end + AFTER_MS - PAIR_MS)
        after = read(end + AFTER_MS)
        post = read(end + AFTER_MS + PAIR_MS)
        sensor.on_triple(pre, after, post)
        if not sensor.alarm and not sensor.suspect():
            gap = interval if k else 60_000
            for a in (
                occlusion.on_stroke(before, peak, after, gap),
                leak.on_stroke(before, peak, after, gap),
            ):
                if a:
                    alarms.append(names.get(a, a))
        if alarms and first is None:
            first = [alarms[0], k - onset]
        if names[OCCLUSION] in alarms:
            break
    return {
        "first": first,
        "alarms": sorted(set(alarms)),
        "learned": learner.learned(),
        "pressure_x10": plant.pressure_x10(at),
    }


def occlusion_through_the_rp2_sensor():
    # The monitors fed through the rp2 HAL's PressureSensor exactly as
    # pump/safety.py samples a stroke (before; the stroke's end; three
    # readings PAIR_MS apart around AFTER_MS after it; a level reading a
    # minute) on the rig's plant (rig/plant.py, the emulated Pico's physics),
    # its pressure on the fake ADC. A full occlusion at the catheter's tip
    # (and one at the pump's outlet) after LEARN_STROKES + 4 strokes: the
    # first alarm and the stroke it came at, for each stroke interval; and
    # the same run without the fault.
    cfg = rp2kit.config()
    b, _i, _o, _p = rp2kit.board(cfg)
    adc = machine.ADCS[cfg.PRESSURE_ADC_PIN]
    out = {}
    for interval in SWEEP_INTERVALS:
        for fault in (True, False):
            key = str(interval) + (" occluded" if fault else " healthy")
            out[key] = _occlusion_run(adc, b.pressure, interval, fault, 0)
        key = str(interval) + " occluded at the pump"
        out[key] = _occlusion_run(adc, b.pressure, interval, True, 1)
    return out


def battery_millivolts():
    cfg = rp2kit.config()
    b, _i, _o, _p = rp2kit.board(cfg)
    adc = machine.ADCS[cfg.BATTERY_ADC_PIN]
    out = {}
    for raw in (0, 26476, 65535):  # 26476 counts = 1.333 V at the pin = 4.0 V VSYS
        adc.samples = [raw]
        out[str(raw)] = b.battery.read_mv()
    return out


def annunciator_patterns():
    cfg = rp2kit.config()
    b, _i, _o, _p = rp2kit.board(cfg)
    a = b.annunciator
    pwm = machine.PWMS[cfg.BUZZER_PIN]
    led = machine.PINS[cfg.LED_PIN]
    timer = machine.TIMERS[-1]
    lit = 1 if cfg.LED_ACTIVE_HIGH else 0
    out = {"quiet_at_start": a.quiet()}
    a.buzzer(3)
    a.led(3)
    out["timer_hard"] = timer.hard
    out["timer_period"] = timer.period
    # one high-priority burst: sounding ticks and LED toggles, in the IRQ
    errors = []
    sounding = 0
    toggles = 0
    last_led = led.level
    for _ in range(sum((6, 4, 6, 4, 6, 14, 6, 4, 6, 40)) * 2):
        err = rp2kit.in_irq(timer.callback, timer)
        if err:
            errors.append(err)
        if pwm.duty:
            sounding += 1
        if led.level != last_led:
            toggles += 1
            last_led = led.level
    out["irq_errors"] = errors[:3]
    out["pulses"] = sum(pwm.sounding[i] for i in range(1, min(pwm.changes, 256)))
    out["sounding_ticks"] = sounding
    out["led_toggles"] = toggles
    out["not_quiet"] = not a.quiet()
    # low priority: two pulses once, then the timer stops; the LED stays lit
    a.buzzer(1)
    a.led(1)
    for _ in range(100):
        timer.fire()
    a.service()
    out["low_done_quiet"] = a.quiet() and pwm.duty == 0 and led.level == lit
    out["low_sounding"] = a.sounding()
    a.off()
    out["off"] = a.quiet() and pwm.duty == 0 and led.level != lit
    return out


rp2kit.run_cases(
    {
        "import_touches_no_hardware": import_touches_no_hardware,
        "pins_follow_the_map": pins_follow_the_map,
        "pio_programs_loaded": pio_programs_loaded,
        "steps_bounded": steps_bounded,
        "step_rate_and_period": step_rate_and_period,
        "driver_disabled_between_moves": driver_disabled_between_moves,
        "abort_mid_move": abort_mid_move,
        "encoder_pio_counts": encoder_pio_counts,
        "encoder_scaled": encoder_scaled,
        "encoder_irq_no_alloc": encoder_irq_no_alloc,
        "stall_diag_halts": stall_diag_halts,
        "pressure_calibrated_without_memory": pressure_calibrated_without_memory,
        "occlusion_through_the_rp2_sensor": occlusion_through_the_rp2_sensor,
        "battery_millivolts": battery_millivolts,
        "annunciator_patterns": annunciator_patterns,
    }
)
