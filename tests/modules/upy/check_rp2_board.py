# Runs under MicroPython with tests/modules/fakes on MICROPYPATH: the Pico
# board object (hal/rp2.Rp2Board): watchdog, idle and lightsleep, ports,
# start-up faults, device seconds across resets. Prints {case: result}.
import machine
import rp2
import rp2kit


def watchdog_fed_only_by_supervisor():
    cfg = rp2kit.config()
    b, stdin, _o, _p = rp2kit.board(cfg)
    # a busy board: moves, idles, services, ports, interrupts; no feed
    sm = rp2kit.step_sm()
    for _ in range(20):
        b.motor.start(8)
        sm.run(100_000)
        sm.fire_irq()
        b.idle(100)
        b.motor.stop()
        b.service()
        stdin.feed(b"\x00\x01\x02")
        b.pump_port.readinto(bytearray(8))
        b.idle(5000)
        b.annunciator.buzzer(3)
        machine.TIMERS[-1].fire()
    not_armed = machine.WDTS == [] and not b.watchdog.armed()
    b.feed_watchdog()  # the supervisor's call: arms and feeds
    wdt = machine.WDTS[0]
    armed = (wdt.timeout, wdt.feeds)
    for _ in range(20):
        b.motor.start(8)
        sm.run(100_000)
        sm.fire_irq()
        b.idle(100)
        b.motor.stop()
        b.idle(60_000)
    feeds_without_supervisor = wdt.feeds - armed[1]
    b.feed_watchdog()
    b.feed_watchdog()
    return {
        "not_armed_before_first_feed": not_armed,
        "armed_timeout_and_feeds": armed,
        "feeds_without_supervisor": feeds_without_supervisor,
        "feeds_after_two_calls": wdt.feeds,
        "one_wdt": len(machine.WDTS),
    }


def watchdog_timeout_checked():
    out = {}
    for chip, ms in (("rp2040", 8388), ("rp2040", 8389), ("rp2350", 16777), ("rp2350", 16778)):
        try:
            rp2kit.board(rp2kit.config(CHIP=chip, WATCHDOG_MS=ms))
            out["%s_%d" % (chip, ms)] = "ok"
        except Exception as e:
            out["%s_%d" % (chip, ms)] = type(e).__name__
    return out


def idle_never_outlasts_watchdog():
    cfg = rp2kit.config(LIGHTSLEEP=False)
    b, _i, _o, _p = rp2kit.board(cfg)
    b.feed_watchdog()
    waits = []
    for wait in (60_000, 7_000, 10):
        b.feed_watchdog()
        start = machine.ticks()
        b.idle(wait)
        waits.append(machine.ticks() - start)
    # no feed: the budget shrinks to nothing, idle() returns at once
    machine.advance(cfg.WATCHDOG_MS - cfg.WATCHDOG_MARGIN_MS)
    start = machine.ticks()
    b.idle(60_000)
    late = machine.ticks() - start
    return {"waited": waits, "waited_when_due": late}


def lightsleep_only_when_allowed():
    cfg = rp2kit.config()
    b, stdin, _o, _p = rp2kit.board(cfg)
    sm = rp2kit.step_sm()
    out = {}
    # the ports have been quiet since boot only for 0 ms: no sleep yet
    b.idle(1000)
    out["port_recent"] = len(machine.SLEEPS)
    machine.advance(cfg.PORT_QUIET_MS)
    # moving: never
    b.motor.start(8)
    sm.run(1000)  # partway
    b.idle(1000)
    out["while_moving"] = len(machine.SLEEPS)
    sm.run(1_000_000)
    sm.fire_irq()
    b.motor.stop()
    # stopped, quiet: sleeps, never longer than LIGHTSLEEP_MAX_MS
    b.idle(60_000)
    out["stopped"] = list(machine.SLEEPS)
    # short waits are not worth it
    b.idle(cfg.LIGHTSLEEP_MIN_MS - 1)
    out["short"] = len(machine.SLEEPS)
    # a sounding alarm (PWM, timer) keeps the board awake
    b.annunciator.buzzer(2)
    b.idle(60_000)
    out["alarm_sounding"] = len(machine.SLEEPS)
    b.annunciator.off()
    # a byte on the pump port keeps it awake for PORT_QUIET_MS
    stdin.feed(b"\x00")
    b.pump_port.readinto(bytearray(4))
    b.idle(60_000)
    out["after_rx"] = len(machine.SLEEPS)
    machine.advance(cfg.PORT_QUIET_MS)
    # armed watchdog: the sleep ends before it bites
    b.feed_watchdog()
    machine.advance(cfg.WATCHDOG_MS - cfg.WATCHDOG_MARGIN_MS - 100)
    machine.SLEEPS.clear()
    b.idle(60_000)
    out["near_watchdog"] = list(machine.SLEEPS)
    # disabled in the config: never
    cfg2 = rp2kit.config(LIGHTSLEEP=False)
    b2, _i, _o, _p = rp2kit.board(cfg2)
    machine.advance(cfg2.PORT_QUIET_MS)
    b2.idle(60_000)
    out["disabled"] = len(machine.SLEEPS)
    return out


def idle_wakes_on_input():
    cfg = rp2kit.config(LIGHTSLEEP=False)
    b, stdin, _o, poller = rp2kit.board(cfg)
    stdin.feed(b"\x00\x05")
    start = machine.ticks()
    b.idle(60_000)
    return {"waited": machine.ticks() - start, "registered": len(poller.registered)}


def cdc_port_bytes():
    cfg = rp2kit.config()
    b, stdin, stdout, _p = rp2kit.board(cfg)
    port = b.pump_port
    payload = bytes(range(256))  # every byte value, 0x03 included: data
    stdin.feed(payload)
    buf = bytearray(64)
    got = bytearray()
    while True:
        n = port.readinto(buf)
        if not n:
            break
        got += buf[:n]
    wrote = port.write(b"\x00abc\x03\x00")
    stdout.fail_writes = True
    failed = port.write(b"x")
    return {
        "received_all": bytes(got) == payload,
        "rx_bytes": port.rx_bytes,
        "empty_read": port.readinto(buf),
        "write_ok": wrote,
        "written": bytes(stdout.written) == b"\x00abc\x03\x00",
        "write_error": failed,
    }


def uart_ports():
    cfg = rp2kit.config(PUMP_PORT="uart")
    b, _i, _o, poller = rp2kit.board(cfg)
    uart = machine.UARTS[cfg.PUMP_UART_ID]
    uart.rx += b"\x01\x02\x03"
    buf = bytearray(2)
    first = b.pump_port.readinto(buf)
    second = b.pump_port.readinto(buf)
    third = b.pump_port.readinto(buf)
    uart.tx_room = 2
    short = b.pump_port.write(b"abc")
    out = {
        "reads": [first, second, third],
        "uart_timeout": uart.kw.get("timeout"),
        "short_write": short,
        "registered_uart": poller.registered == [uart],
        "rig_uart": cfg.RIG_UART_ID in machine.UARTS,
    }
    no_rig = rp2kit.board(rp2kit.config(RIG_UART_ID=-1))[0]
    out["no_rig_port"] = no_rig.rig_port.readinto(buf) == 0 and not no_rig.rig_port.write(b"x")
    return out


def start_failure_is_a_fault():
    from hal.rp2 import BoardFault

    out = {}
    for part in ("ADC", "PWM", "StateMachine", "UART", "Timer"):
        machine.reset_fakes()
        rp2.reset_fakes()
        rp2kit.mount()
        machine.FAIL[part] = OSError(19)
        cfg = rp2kit.config()
        try:
            rp2kit.rebuild(cfg)
            out[part] = "started"
        except BoardFault as e:
            en = machine.PINS.get(cfg.ENABLE_PIN)
            off = 1 if cfg.ENABLE_ACTIVE_LOW else 0
            out[part] = {"fault": str(e), "driver_off": en is not None and en.level == off}
    for bad in ({"ENCODER": "magic"}, {"PUMP_PORT": "wifi"}, {"CHIP": "rp2999"}):
        try:
            rp2kit.board(rp2kit.config(**bad))
            out[str(bad)] = "started"
        except BoardFault as e:
            out[str(bad)] = str(e)
    return out


def reset_cause_and_identity():
    out = {}
    for cause in (machine.PWRON_RESET, machine.WDT_RESET, machine.SOFT_RESET):
        machine.reset_fakes()
        machine.RESET_CAUSE[0] = cause
        rp2.reset_fakes()
        rp2kit.mount()
        b = rp2kit.rebuild(rp2kit.config(DEVICE_ID="PUMP-0042"))
        out[str(cause)] = b.reset_cause
    out["configured_id"] = b.device_id
    out["powered"] = b.powered
    out["orphaned"] = b.orphaned
    return out


def seconds_survive_a_reset():
    cfg = rp2kit.config()
    b, _i, _o, _p = rp2kit.board(cfg)
    machine.advance(cfg.CLOCK_SAVE_S * 1000 + 500)
    b.idle(0)  # saves the device seconds
    saved = b.clock.seconds()
    machine.advance(30_000)  # runs on, then a reset before the next save
    before_reset = b.clock.seconds()
    # "reset": a new board on the same flash; the tick counter restarts
    flash_dir = cfg.JOURNAL_DIR
    machine.NOW[0] = 0
    b2 = rp2kit.rebuild(cfg, machine.ticks)
    after = b2.clock.seconds()
    machine.advance(5_000)
    later = b2.clock.seconds()
    # a damaged clock file is ignored (device seconds start at 0)
    f = open(flash_dir + "/clock", "r+b")
    f.write(b"\xff")
    f.close()
    machine.NOW[0] = 0
    b3 = rp2kit.rebuild(cfg, machine.ticks)
    return {
        "saved": saved,
        "before_reset": before_reset,
        "after_reset": after,
        "later": later,
        "damaged": b3.clock.seconds(),
    }


def clock_wraps_like_rp2040():
    rp2kit.board()
    machine.NOW[0] = (1 << 30) - 10
    # the board's counter jumped: a fresh clock at the new origin
    from hal.rp2 import Rp2Clock

    clock = Rp2Clock(machine.ticks)
    t0 = clock.ticks_ms()
    machine.advance(25)
    t1 = clock.ticks_ms()
    return {"t0": t0, "t1": t1, "time_ms": clock.time_ms(), "seconds": clock.seconds()}


def maintenance_window():
    cfg = rp2kit.config()
    b, _i, _o, _p = rp2kit.board(cfg)
    plain = b.maintenance_requested(0)
    rp2.BOOTSEL[0] = 1
    held = b.maintenance_requested(40)
    return {"not_held": plain, "held": held}


def idle_flushes_the_journal_batch():
    cfg = rp2kit.config(LIGHTSLEEP=False)
    b, _i, _o, _p = rp2kit.board(cfg)
    sm = rp2kit.step_sm()
    b.fs.append("log.a", b"before")
    pending_at_append = b.fs.pending()
    # the motor moves only after the batch is on flash
    b.motor.start(8)
    pending_at_move = b.fs.pending()
    b.fs.append("log.a", b"after")
    sm.run(10)  # still moving: no flush from idle
    machine.advance(cfg.JOURNAL_FLUSH_MS)
    b.idle(10)
    pending_while_moving = b.fs.pending()
    sm.run(1_000_000)
    sm.fire_irq()
    b.motor.stop()
    start = machine.ticks()
    b.idle(60_000)  # due: flushed, and the wait is not stretched past it
    return {
        "pending_at_append": pending_at_append,
        "pending_at_move": pending_at_move,
        "pending_while_moving": pending_while_moving,
        "pending_after_idle": b.fs.pending(),
        "content": open(cfg.JOURNAL_DIR + "/log.a", "rb").read().decode(),
        "waited": machine.ticks() - start,
    }


def _run_true_seconds(b, true_s, crystal_pm):
    # Runs the board for true_s seconds of true time with the crystal at
    # crystal_pm per mille (the timer counts that much fast), polling as
    # idle() does once a second of ticks. -> (ticks elapsed, seconds elapsed).
    machine.CRYSTAL_PM[0] = crystal_pm
    t0 = machine.ticks()
    s0 = b.clock.seconds()
    step = crystal_pm  # ticks per true second
    for _ in range(true_s):
        machine.advance(step)
        b.clock_check.poll(b.clock.ticks_ms())
    return machine.ticks() - t0, b.clock.seconds() - s0


def clock_check_follows_the_rosc():
    # The ring oscillator counted by FC0 against the crystal (hal/rp2.py
    # RoscClockCheck): seconds() keeps true time when the crystal strays.
    result = {}
    for name, crystal_pm in (
        ("true", 1000),
        ("x1.01", 1010),
        ("x1.1", 1100),
        ("x3", 3000),
        ("x10", 10000),
        ("slow 0.9", 900),
    ):
        b, _i, _o, _p = rp2kit.board()
        ticks, seconds = _run_true_seconds(b, 600, crystal_pm)
        result[name] = {
            "available": b.clock_check.available,
            "boot_khz": b.clock_check.boot_khz,
            "ticks_ms": ticks,
            "seconds": seconds,
            "rate_pm": b.clock.rate_pm,
        }
    # a counter that fails after boot: the seconds stop after ROSC_FAILS
    b, _i, _o, _p = rp2kit.board()
    _run_true_seconds(b, 60, 1000)
    machine.FC_MODE[0] = "failed"
    ticks, seconds = _run_true_seconds(b, 600, 1000)
    result["failed later"] = {"ticks_ms": ticks, "seconds": seconds, "rate_pm": b.clock.rate_pm}
    # a counter that never works (rp2040js): no check, the crystal's seconds
    for mode in ("unimplemented", "failed"):
        machine.reset_fakes()
        rp2kit.mount()
        machine.FC_MODE[0] = mode
        b = rp2kit.rebuild(rp2kit.config(), machine.ticks)
        ticks, seconds = _run_true_seconds(b, 600, 1000)
        result["from boot " + mode] = {
            "available": b.clock_check.available,
            "ticks_ms": ticks,
            "seconds": seconds,
        }
    # idle() polls it, and the heap: a sample allocates nothing
    b, _i, _o, _p = rp2kit.board()
    machine.CRYSTAL_PM[0] = 3000
    counts = machine.FC_COUNTS[0]
    for _ in range(5):
        b.idle(2_000)
    result["idle_polls"] = machine.FC_COUNTS[0] - counts
    machine.advance(1_000)
    now = b.clock.ticks_ms()
    result["poll_irq_safe"] = rp2kit.in_irq(b.clock_check.poll, now)
    return result


rp2kit.run_cases(
    {
        "watchdog_fed_only_by_supervisor": watchdog_fed_only_by_supervisor,
        "watchdog_timeout_checked": watchdog_timeout_checked,
        "idle_never_outlasts_watchdog": idle_never_outlasts_watchdog,
        "lightsleep_only_when_allowed": lightsleep_only_when_allowed,
        "idle_wakes_on_input": idle_wakes_on_input,
        "cdc_port_bytes": cdc_port_bytes,
        "uart_ports": uart_ports,
        "start_failure_is_a_fault": start_failure_is_a_fault,
        "reset_cause_and_identity": reset_cause_and_identity,
        "seconds_survive_a_reset": seconds_survive_a_reset,
        "clock_wraps_like_rp2040": clock_wraps_like_rp2040,
        "maintenance_window": maintenance_window,
        "idle_flushes_the_journal_batch": idle_flushes_the_journal_batch,
        "clock_check_follows_the_rosc": clock_check_follows_the_rosc,
    }
)
