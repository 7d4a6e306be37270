"""The Pico HAL (firmware/hal/rp2.py, rp2fs.py, main.py's rp2 wiring) under
MicroPython, on fake ``machine`` and ``rp2`` modules (tests/modules/fakes)
that record every pin, PWM, ADC, PIO, WDT and timer call and emulate the PIO
programs; littlefs is real (``vfs.VfsLfs2`` on a RAM flash). No board needed.
Also ``bench.board.flash`` (pumpbench flash) against a virtual board and a stand-in
for mpremote.
"""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.board import flash, image
from bench.board.paths import ROOT
from protocol import codec, schema
from tests.modules import upy

FAKES = str(Path(__file__).with_name("fakes"))


def check(script: str, case: str, *args: str) -> Any:
    """Runs one case of a check_rp2_*.py script; returns its result."""
    return upy.run(script, case, *args, heap="4M", path=FAKES)[case]


def hal(case: str) -> Any:
    return check("check_rp2_hal.py", case)


def board(case: str) -> Any:
    return check("check_rp2_board.py", case)


def fs(case: str) -> Any:
    return check("check_rp2_fs.py", case)


def board_config() -> dict[str, Any]:
    """firmware/board_config.py's values, read by MicroPython."""
    code = (
        "import json, board_config as c\n"
        "print(json.dumps({k: getattr(c, k) for k in dir(c) if k.isupper()}))"
    )
    return upy.run("", code=code, path=FAKES)


# --- pins, PIO, steps --------------------------------------------------------------
def test_importing_the_board_modules_touches_no_hardware() -> None:
    assert hal("import_touches_no_hardware") == {
        "calls": [],
        "programs_assembled": ["edge_counter", "stepper"],  # data only
        "state_machines": 0,
        "timers": 0,
    }


def test_pins_are_configured_as_the_map_says() -> None:
    result = hal("pins_follow_the_map")
    assert result.pop("name") == "pico"
    assert result.pop("device_id") == "E66058388B3A5A2C"  # the fake's unique_id, in hex
    assert all(result.values()), result


def test_pio_programs_are_loaded_at_the_configured_frequencies() -> None:
    cfg = board_config()
    result = hal("pio_programs_loaded")
    assert result["step_program"] == "stepper"
    assert result["step_freq"] == cfg["STEP_PIO_HZ"] >= 1908  # the SM clock's minimum
    assert result["step_set_base"] == cfg["STEP_PIN"]
    assert result["step_active"] and result["step_irq_hard"]
    assert result["enc_program"] == "edge_counter"
    assert result["enc_freq"] == cfg["ENCODER_PIO_HZ"]
    assert result["enc_in_base"] == cfg["ENCODER_PIN"]
    assert result["enc_active"]
    assert result["program_words"] <= 32  # one PIO block's instruction memory


def test_a_move_issues_exactly_the_steps_asked_and_out_of_bounds_moves_are_refused() -> None:
    max_steps = board_config()["MAX_MOVE_STEPS"]
    result = hal("steps_bounded")
    for steps in (1, 8, max_steps):
        assert result[f"edges_{steps}"] == steps  # rising edges the PIO produced
        assert result[f"issued_{steps}"] == steps  # read back from the PIO
        assert result[f"stalled_at_pull_{steps}"]  # then it waits for the next move
        assert not result[f"moving_after_{steps}"]  # completion seen
    assert result["refused"] == [True, True, True, True]  # 0, -1, max + 1, 2**20
    assert result["nothing_queued"]
    assert result["busy_refused"]


def test_step_rate_sets_the_period_from_slow_to_fast() -> None:
    cfg = board_config()
    result = hal("step_rate_and_period")
    for rate in (cfg["STEP_RATE_HZ"], 1, cfg["MAX_STEP_RATE_HZ"]):
        got = result[str(rate)]
        assert got["edges"] == 4
        assert len(got["gaps"]) == 1  # evenly spaced steps
        period_us = got["gaps"][0] * 1_000_000 // cfg["STEP_PIO_HZ"]
        assert period_us == got["us"]
        # within one PIO cycle of the asked period; 1 step/s needs the
        # delay-counter loop (the SM clock cannot go below 1908 Hz)
        assert abs(period_us - 1_000_000 // rate) <= 2, (rate, period_us)
    assert result["too_fast_refused"]


def test_the_driver_is_disabled_between_moves_by_a_hard_irq_that_does_not_allocate() -> None:
    result = hal("driver_disabled_between_moves")
    assert result["enabled_during"]
    assert result["irq_hard"]
    assert result["irq_error"] is None  # ran under micropython.heap_lock()
    assert result["disabled_by_irq"]
    assert result["disabled_after_stop"]
    assert result["issued"] == 8


def test_stop_mid_move_disables_first_and_reads_back_the_steps_issued() -> None:
    result = hal("abort_mid_move")
    assert result["moving"]
    assert result["edges"] == 4
    assert result["issued"] == 4
    assert result["driver_off"]
    assert result["step_pin_low"] == 0
    assert result["aborts"] == 1
    assert result["next_move_edges"] == 8  # the state machine was restarted cleanly
    assert result["total_issued"] == 12


# --- motor feedback ------------------------------------------------------------------
def test_pio_encoder_counts_rising_edges_and_wraps_at_2_30() -> None:
    assert hal("encoder_pio_counts") == {"start": 0, "after8": 8, "delta_over_wrap": 5}


def test_encoder_edges_are_scaled_to_steps_with_the_remainder_carried() -> None:
    assert hal("encoder_scaled") == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]


def test_irq_encoder_counts_in_a_hard_irq_without_allocating() -> None:
    result = hal("encoder_irq_no_alloc")
    assert result == {
        "hard": True,
        "trigger_rising": True,
        "errors": [],
        "count": 8,
        "no_encoder_sm": True,
    }


def test_driver_stall_pin_halts_the_move_and_counts_only_steps_issued() -> None:
    result = hal("stall_diag_halts")
    assert result["hard"] and result["irq_error"] is None
    assert result["halted"]
    assert result["edges"] == 3  # nothing after the stall
    assert not result["moving_after_halt"]
    assert result["counted"] == 3  # short of the 8-step stroke: the drive sees it
    assert result["stalls"] == 1


# --- sensors and annunciator ---------------------------------------------------------
def test_pressure_uses_calibration_and_reads_the_sensor_now() -> None:
    result = hal("pressure_calibrated_without_memory")
    assert result["zero"] == 0
    assert result["full"] == 7756  # 90 % of supply: 775.7 mmHg (0-15 psi) at once
    assert result["spiked"] == result["full"]  # one spike per burst is dropped
    # 300 random bursts: each reading is its own burst's, never the earlier ones'
    assert result["with_history"] == 0
    assert result["recalibrated"] == 99  # 65536/10 counts at gain 1000: 9.9 mmHg
    assert result["refused"] == [True, True, True, True]
    assert result["below_offset"] < 0


def test_a_full_occlusion_read_through_the_rp2_sensor_is_occlusion_at_every_rate() -> None:
    """The emulated Pico's finding: the rp2 sensor filtered every reading
    (an IIR updated per reading, whatever the time between them), so a held
    stroke's "after" samples showed it draining: PARTIAL_OCCLUSION, then
    SENSOR_FAULT at the 517 mmHg ceiling, then LEAK at the ADC's full scale,
    never OCCLUSION. Here the monitors get the rig's plant through the rp2
    HAL as pump/safety.py samples it, at 0.048, 1 and 24 mL/day and a
    bolus's stroke interval, blocked at the catheter's tip and at the pump."""
    result = hal("occlusion_through_the_rp2_sensor")
    for interval in (360_000, 17_280, 720, 250):
        for where in ("", " at the pump"):
            occluded = result[f"{interval} occluded{where}"]
            assert occluded["alarms"] == ["OCCLUSION"], (interval, where, occluded)
            # 3 held strokes at basal rates, a few more at a bolus's pace (a
            # run must span 2.5 s or store 160 mmHg: not a strain)
            assert occluded["first"][1] <= (2 if interval > 1_000 else 5), (interval, occluded)
            assert occluded["pressure_x10"] < 5170  # before the 517 mmHg ceiling
        occluded = result[f"{interval} occluded"]
        healthy = result[f"{interval} healthy"]
        assert healthy["alarms"] == [], (interval, healthy)
        if interval >= 700:  # a bolus's strokes never settle: nothing learned
            assert healthy["learned"] and occluded["learned"]


def test_battery_reads_millivolts() -> None:
    assert hal("battery_millivolts") == {"0": 0, "26476": 3999, "65535": 9899}


def test_annunciator_plays_patterns_from_a_hard_timer_without_allocating() -> None:
    result = hal("annunciator_patterns")
    assert result["quiet_at_start"]
    assert result["timer_hard"] is True
    assert result["timer_period"] == board_config()["ALARM_TICK_MS"]
    assert result["irq_errors"] == []
    assert result["pulses"] + 1 == 10  # one high-priority burst: 10 pulses
    assert result["led_toggles"] >= 10  # the LED flashes meanwhile
    assert result["not_quiet"]
    assert result["low_done_quiet"]  # a one-shot pattern ends; the LED stays lit
    assert result["low_sounding"] == 0
    assert result["off"]


# --- the board -------------------------------------------------------------------------
def test_the_watchdog_is_armed_and_fed_only_by_the_supervisor() -> None:
    result = board("watchdog_fed_only_by_supervisor")
    assert result["not_armed_before_first_feed"]
    assert result["armed_timeout_and_feeds"] == [8000, 1]
    assert result["feeds_without_supervisor"] == 0  # idle, IRQs, moves: never
    assert result["feeds_after_two_calls"] == 3
    assert result["one_wdt"] == 1


def test_watchdog_timeout_is_checked_against_the_chip() -> None:
    assert board("watchdog_timeout_checked") == {
        "rp2040_8388": "ok",
        "rp2040_8389": "BoardFault",
        "rp2350_16777": "ok",
        "rp2350_16778": "BoardFault",
    }


def test_idle_never_waits_past_the_watchdog() -> None:
    cfg = board_config()
    result = board("idle_never_outlasts_watchdog")
    budget = cfg["WATCHDOG_MS"] - cfg["WATCHDOG_MARGIN_MS"]
    assert result["waited"] == [budget, 7000, 10]
    assert result["waited_when_due"] == 0


def test_lightsleep_only_while_stopped_quiet_and_within_the_watchdog() -> None:
    cfg = board_config()
    result = board("lightsleep_only_when_allowed")
    assert result["port_recent"] == 0
    assert result["while_moving"] == 0
    assert result["stopped"] == [cfg["LIGHTSLEEP_MAX_MS"]]
    assert result["short"] == 1  # no new sleep for a short wait
    assert result["alarm_sounding"] == 1  # nor while the buzzer plays
    assert result["after_rx"] == 1  # nor right after a byte came in
    assert result["near_watchdog"] == [100]  # capped by the watchdog
    assert result["disabled"] == 0


def test_idle_returns_at_once_when_the_pump_port_has_bytes() -> None:
    assert board("idle_wakes_on_input") == {"waited": 0, "registered": 1}


def test_usb_cdc_port_carries_every_byte_value() -> None:
    result = board("cdc_port_bytes")
    assert result == {
        "received_all": True,
        "rx_bytes": 256,
        "empty_read": 0,
        "write_ok": True,
        "written": True,
        "write_error": False,
    }


def test_uart_pump_port_and_rig_port() -> None:
    result = board("uart_ports")
    assert result == {
        "reads": [2, 1, 0],
        "uart_timeout": 0,
        "short_write": False,
        "registered_uart": True,
        "rig_uart": True,
        "no_rig_port": True,
    }


def test_a_part_that_fails_to_start_is_a_fault_with_the_driver_off() -> None:
    result = board("start_failure_is_a_fault")
    expected = {
        "ADC": "pressure sensor",
        "PWM": "annunciator",
        "Timer": "annunciator",
        "StateMachine": "motor driver",
        "UART": "rig port",
    }
    for part, where in expected.items():
        assert result[part]["fault"].startswith(where), result[part]
        assert result[part]["driver_off"]
    assert "ENCODER" in result["{'ENCODER': 'magic'}"]
    assert "PUMP_PORT" in result["{'PUMP_PORT': 'wifi'}"]
    assert "CHIP" in result["{'CHIP': 'rp2999'}"]


def test_reset_cause_and_identity() -> None:
    result = board("reset_cause_and_identity")
    assert result == {
        "1": 0,  # PWRON_RESET -> POWER_ON
        "3": 2,  # WDT_RESET -> WATCHDOG
        "5": 3,  # anything else -> SOFT
        "configured_id": "PUMP-0042",
        "powered": True,
        "orphaned": False,
    }


def test_device_seconds_survive_a_reset_without_running_ahead() -> None:
    result = board("seconds_survive_a_reset")
    assert result["saved"] == board_config()["CLOCK_SAVE_S"]
    assert result["before_reset"] == result["saved"] + 30
    assert result["after_reset"] == result["saved"]  # repeats, never jumps ahead
    assert result["later"] == result["saved"] + 5
    assert result["damaged"] == 0


def test_board_ticks_wrap_at_2_30() -> None:
    assert board("clock_wraps_like_rp2040") == {
        "t0": (1 << 30) - 10,
        "t1": 15,
        "time_ms": 25,
        "seconds": 0,
    }


# --- the clock check's second source (docs/pump.md 14.8) ------------------------------
def test_the_seconds_follow_the_ring_oscillator_when_the_crystal_strays() -> None:
    # FC0 counts the ROSC against the crystal; hal/rp2.RoscClockCheck. 600 s
    # of true time at each crystal error: seconds() keeps true time (within
    # the one-second sample that sees the change), ticks_ms does not.
    result = board("clock_check_follows_the_rosc")
    for name, factor in (("x1.1", 1.1), ("x3", 3), ("x10", 10), ("slow 0.9", 0.9)):
        case = result[name]
        assert case["available"] and case["boot_khz"] == 6_500
        assert case["ticks_ms"] == round(600_000 * factor)
        assert 599 <= case["seconds"] <= 600 + factor, (name, case)
        assert case["rate_pm"] == 1_000_000 // round(factor * 1000), (name, case)
    # within the deadband (2 %) the seconds are the crystal's, exactly
    assert result["true"]["seconds"] == 600 and result["true"]["rate_pm"] == 1000
    assert result["x1.01"]["seconds"] == 606 and result["x1.01"]["rate_pm"] == 1000
    # a counter that fails after boot stops the seconds (CLOCK_FAULT follows)
    assert result["failed later"]["rate_pm"] == 0 and result["failed later"]["seconds"] <= 3
    # one that never worked (rp2040js leaves FC0 unimplemented): no check,
    # the crystal's seconds as before
    for mode in ("unimplemented", "failed"):
        case = result["from boot " + mode]
        assert case == {"available": False, "ticks_ms": 600_000, "seconds": 600}, mode
    assert result["idle_polls"] >= 4  # idle() samples once a second of ticks
    assert result["poll_irq_safe"] is None  # a sample allocates nothing


def clock_fault(crystal_pm: int, mode: str = "ok") -> dict[str, Any]:
    return upy.run("check_rp2_main.py", "clock", str(crystal_pm), mode, heap="4M", path=FAKES)


CLOCK_FAULT = dict((name, code) for code, name, _p in schema.ALARMS)["CLOCK_FAULT"]


@pytest.mark.parametrize("crystal_pm", [1_100, 3_000, 10_000, 900])
def test_the_pump_on_the_pico_hal_raises_clock_fault_when_the_crystal_strays(
    crystal_pm: int,
) -> None:
    # The real PumpApp on Rp2Board (fakes): its once-a-minute check compares
    # ticks_ms with seconds() over 5-minute windows of ticks; with the ROSC
    # behind seconds() a 10 % error is found within two windows (10 min).
    result = clock_fault(crystal_pm)
    assert CLOCK_FAULT in result["alarms"]
    assert 0 <= result["fault_min"] <= 10


def test_a_true_crystal_raises_no_clock_fault_on_the_pico_hal() -> None:
    assert CLOCK_FAULT not in clock_fault(1_000)["alarms"]
    assert CLOCK_FAULT not in clock_fault(1_030)["alarms"]  # 3 %: within tolerance


def test_a_frequency_counter_that_dies_raises_clock_fault() -> None:
    result = clock_fault(1_000, "failed")
    assert CLOCK_FAULT in result["alarms"] and 0 <= result["fault_min"] <= 10


def test_bootsel_at_boot_requests_maintenance() -> None:
    assert board("maintenance_window") == {"not_held": False, "held": True}


def test_the_journal_batch_lands_before_the_motor_moves_and_when_due() -> None:
    result = board("idle_flushes_the_journal_batch")
    assert result["pending_at_append"] == 6
    assert result["pending_at_move"] == 0  # "before stroke" is on flash first
    assert result["pending_while_moving"] == 5  # no flash writes during a move
    assert result["pending_after_idle"] == 0
    assert result["content"] == "beforeafter"


# --- littlefs ---------------------------------------------------------------------------
def test_batched_littlefs_writes_keep_order_with_write_and_remove_as_barriers() -> None:
    result = fs("batches_in_order")
    assert result["commits_while_batched"] == 0
    assert result["pending"] == 4
    assert result["read_sees_pending"] == "124"
    assert result["after_read"] == [0, 3]  # segments a(1,2), b(3), a(4)
    assert result["after_write"] == [0, 5]
    assert result["after_remove"] == [0, ["b", "c"]]
    assert result["files"] == {
        "b": "36",
        "c": "new",
        "d": "".join(str(i) * 10 for i in range(10)),
    }
    assert result["e_in_order"]
    assert result["read_into"] == "99999"
    assert result["read_into_missing"] == 0
    assert result["read_missing"] is None


def test_batch_age() -> None:
    assert fs("age_and_due") == {
        "empty": [False, -1],
        "after_400": [False, 600],
        "after_1000": [True, 0],
        "after_flush": False,
    }


def test_batching_an_append_allocates_nothing() -> None:
    assert fs("no_allocation_when_batching") == {"error": None, "pending": 210}


def test_a_power_cut_at_any_flash_operation_leaves_a_prefix_of_what_was_issued() -> None:
    result = fs("cut_anywhere_leaves_a_prefix")
    assert result["bad"] == []
    assert result["cut_points"] >= 15
    assert result["prefix_lengths_seen"] >= 8


def test_the_journal_on_littlefs_recovers_every_flushed_delta_after_any_cut() -> None:
    result = fs("journal_on_littlefs_survives_cuts")
    assert result["bad"] == []
    assert result["tried"] == result["cut_points"] >= 30


def test_batching_halves_the_flash_wear_of_a_stroke() -> None:
    result = fs("wear_per_stroke")
    batched = result["batched"]
    unbatched = result["every_append"]
    assert batched["erases_per_100_strokes"] * 3 <= unbatched["erases_per_100_strokes"] * 2
    assert batched["bytes_programmed_per_stroke"] < unbatched["bytes_programmed_per_stroke"]


# --- main.py on the Pico ------------------------------------------------------------------
def _hello_frame() -> str:
    fields = {"protocol_version": schema.PROTOCOL_VERSION, "schema_fingerprint": schema.FINGERPRINT}
    return codec.encode("HELLO", 7, fields).hex()


def _frames(data: bytes) -> list[codec.Frame]:
    return [codec.decode(chunk) for chunk in data.split(b"\x00") if chunk]


def test_main_runs_the_pump_app_on_the_pico_and_answers_hello_over_usb() -> None:
    result = upy.run("check_rp2_main.py", "hello", _hello_frame(), heap="4M", path=FAKES)
    # the board first, then the app, booted with the chip's reset cause (Ctrl-C
    # is off from main.py's first statement: tests/pico and test_frozen_image
    # send it during a real boot)
    assert result["events"] == [["board"], ["app", 2]]
    frames = _frames(bytes.fromhex(result["out"]))
    names = [frame.name for frame in frames]
    assert names[0] == "BOOT"
    assert frames[0].fields["reset_cause"] == 2  # WATCHDOG
    hello = next(frame for frame in frames if frame.name == "HELLO")
    assert hello.seq == 7
    assert hello.fields["firmware_version"].rstrip("\x00") == flash.firmware_version()
    assert hello.fields["board"].rstrip("\x00") == "pico"
    assert hello.fields["device_id"].rstrip("\x00") == "E66058388B3A5A2C"
    assert hello.fields["schema_fingerprint"] == schema.FINGERPRINT
    assert result["driver_off_after"]
    assert "state.a" in result["journal_files"]


# The firmware's live heap on the Pico configuration (its modules as .mpy and
# what it allocates until its first idle), measured on the 64-bit host, where
# objects are about 1.5 times the RP2040's. This is a regression guard that
# runs everywhere; the budgets that bind are measured on the real 32-bit port
# of the emulated Pico (bench/board/pico.py): with .mpy files at least 64 KB of the
# 245,888 B heap stays free (tests/pico), and the frozen image (make
# firmware) uses at most 64 KB (tests/system/test_frozen_image.py).
# Measured figures of each: firmware/README.md, README's memory budget.
RP2_HEAP_BUDGET = 216 * 1024


def test_the_pico_configuration_fits_the_heap_budget() -> None:
    result = upy.run("check_rp2_main.py", "hello", _hello_frame(), heap="4M", path=FAKES)
    used = result["heap_imports"] + result["heap_boot"]
    assert used <= RP2_HEAP_BUDGET, (
        f"firmware on the Pico configuration: {used:,} B live after boot "
        f"({result['heap_imports']:,} B modules, {result['heap_boot']:,} B objects), "
        f"budget {RP2_HEAP_BUDGET:,} B"
    )


def test_a_board_that_fails_to_start_raises_and_never_falls_back_to_the_simulator() -> None:
    result = upy.run("check_rp2_main.py", "fault", heap="4M", path=FAKES)
    assert result["raised"].startswith("pressure sensor")
    assert result["events"] == []  # no app
    assert not result["sim_imported"]


def test_bootsel_at_boot_leaves_the_repl_to_the_developer() -> None:
    # the board is built (driver off), then no app: main.py returns to the REPL
    result = upy.run("check_rp2_main.py", "maintenance", heap="4M", path=FAKES)
    assert result == {"events": []}


# --- pumpbench flash ------------------------------------------------------------------------
FAKE_MPREMOTE = """#!{python}
import json, os, sys
log = os.environ["FAKE_MPREMOTE_LOG"]
with open(log, "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(),
        "files": sorted(os.path.relpath(os.path.join(d, n), os.getcwd())
                        for d, _s, ns in os.walk(os.getcwd()) for n in ns)}}) + "\\n")
if os.environ.get("FAKE_MPREMOTE_FAIL"):
    print("mpremote: failed to access " + sys.argv[2], file=sys.stderr)
    sys.exit(1)
for i, arg in enumerate(sys.argv[:-1]):
    if arg == "cp" and sys.argv[i + 1].endswith("keys.bin"):
        with open(log, "a") as f:
            f.write(json.dumps({{"keystore": open(sys.argv[i + 1], "rb").read().hex(),
                "to": sys.argv[i + 2]}}) + "\\n")
if "exec" in sys.argv and "_mpy" in sys.argv[-1]:
    print(os.environ.get("FAKE_MPY", str(6 | 3 << 8 | 4 << 10)))
"""


@pytest.fixture
def fake_mpremote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tool = tmp_path / "mpremote"
    tool.write_text(FAKE_MPREMOTE.format(python=sys.executable))
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_MPREMOTE_LOG", str(log))
    return tool


def _calls(tmp_path: Path) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


def test_flash_stages_compiled_files_and_keeps_main_py_as_source(tmp_path: Path) -> None:
    staged = flash.stage(tmp_path / "stage", "armv6m")
    names = {p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()}
    assert "main.py" in names and "main.mpy" not in names
    for item in image.board_files():
        if item.target != "main.py":
            assert item.target[:-3] + ".mpy" in names
    assert "hal/rp2.mpy" in names and "board_config.mpy" in names
    assert not any(name.endswith(".py") and name != "main.py" for name in names)


def test_the_pico_image_holds_no_simulator_or_rig_file() -> None:
    on_board = {item.target for item in image.board_files()}
    virtual = {item.target for item in image.shipped_files()}
    assert not any(t.startswith("virtual/") for t in on_board)
    # everything else the virtual board runs also ships: the manifest forgets nothing
    assert virtual - on_board == {t for t in virtual if t.startswith("virtual/")}
    assert "manifest.py" not in on_board | virtual  # build metadata, not firmware


def test_compiled_files_name_their_board_path_not_the_checkout(tmp_path: Path) -> None:
    # A traceback on the board names pump/app.py; and since MicroPython keeps
    # that name on the heap, the heap budget above must not depend on where
    # the checkout lives (CI's path is longer than a developer's).
    flashed = flash.stage(tmp_path / "stage", "armv6m")
    virtual = image.ensure_compiled()
    for built in (flashed, virtual):
        app = (built / "pump" / "app.mpy").read_bytes()
        assert b"pump/app.py" in app
        assert str(image.ROOT).encode() not in app
        assert b"firmware/" not in app


def test_flash_without_a_board_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "pump.keys"
    code = flash.main(["--port", "/dev/ttyACM-none", "--arch", "armv6m", "--key-file", str(keys)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "no board" in err and "/dev/ttyACM-none" in err
    assert not keys.exists()  # no board, no new keys


def test_flash_reports_a_board_that_does_not_answer_mpremote(
    tmp_path: Path,
    fake_mpremote: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = tmp_path / "ttyACM0"
    port.touch()
    monkeypatch.setenv("FAKE_MPREMOTE_FAIL", "1")
    keys = ["--key-file", str(tmp_path / "pump.keys")]
    code = flash.main(["--port", str(port), "--mpremote", str(fake_mpremote), "--wait", "0", *keys])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "no board answers" in err


def test_flash_refuses_the_wrong_architecture(
    tmp_path: Path,
    fake_mpremote: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = tmp_path / "ttyACM0"
    port.touch()
    monkeypatch.setenv("FAKE_MPY", str(6 | 3 << 8 | 7 << 10))  # an RP2350 (armv7emsp)
    args = ["--port", str(port), "--mpremote", str(fake_mpremote), "--arch", "armv6m"]
    code = flash.main([*args, "--key-file", str(tmp_path / "pump.keys")])
    assert code == 2
    assert "armv7emsp" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_flash_copies_resets_and_checks_hello_on_a_board(
    tmp_path: Path, fake_mpremote: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The "board" is a virtual one: mpremote is a stand-in that records what
    # it was told; the HELLO check after the reset is real.
    from bench.board.sim import BoardOptions, VirtualBoard
    from bench.link import keys

    key_file = tmp_path / "pump.keys"
    with VirtualBoard(BoardOptions()) as vb:
        assert vb.keys is not None
        # the stand-in copies nothing: the board already holds these keys
        keys.write(key_file, vb.keys)
        args = ["--port", vb.pump_port, "--mpremote", str(fake_mpremote)]
        code = flash.main([*args, "--key-file", str(key_file)])
    out = capsys.readouterr()
    assert code == 0, out.err
    calls = _calls(tmp_path)
    probe, install, copied = calls
    # the key store went to the board's state directory, from the key file
    assert copied == {"keystore": vb.keys.keystore().hex(), "to": ":/journal/keys.bin"}
    assert probe["argv"][:3] == ["connect", vb.pump_port, "exec"]
    argv = install["argv"]
    assert argv[:2] == ["connect", vb.pump_port]
    assert "cp" in argv and argv[-1] == "reset"
    # copied from the staging directory: compiled modules, main.py as source
    assert "main.py" in install["files"] and "pump/app.mpy" in install["files"]
    assert "armv6m" in out.out
    assert flash.firmware_version() in out.out and f"{schema.FINGERPRINT:#010x}" in out.out


def test_flash_parser_registers_in_one_line() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="pumpbench")
    commands = parser.add_subparsers(dest="command", required=True)
    flash.add_parser(commands)
    argv = ["flash", "--port", "/dev/ttyACM0", "--arch", "armv7emsp", "--key-file", "k.keys"]
    args = parser.parse_args(argv)
    assert args.func is flash.run
    assert args.port == "/dev/ttyACM0" and args.arch == "armv7emsp"
    assert args.key_file == Path("k.keys")


def test_the_version_string_is_written_once() -> None:
    # firmware/pump/version.py is the one place; pyproject.toml reads it
    # (dynamic), the bench, flash and the UF2's name read it from the tree.
    version = flash.firmware_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+(\S*)", version), version
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    # Not copies: a sample HELLO payload in the codec's vectors, and the
    # emulator's own npm package (pico/), whose version is its own.
    others = {"protocol/generate.py", "protocol/vectors.json", "pico/package.json"}
    others.add("pico/package-lock.json")
    copies = []
    for name in filter(None, (n.decode() for n in tracked)):
        path = ROOT / name
        if name in others or name == "firmware/pump/version.py" or not path.is_file():
            continue
        if version.encode() in path.read_bytes():
            copies.append(name)
    assert copies == [], f"the firmware version {version} is also written in {copies}"
    assert 'dynamic = ["version"]' in (ROOT / "pyproject.toml").read_text()


def test_one_version_string_names_the_bench_package_and_the_firmware() -> None:
    from bench.report.records import bench_version

    assert bench_version() == flash.firmware_version()


def test_a_frozen_image_searches_its_own_modules_before_the_filesystem() -> None:
    # MicroPython's default path on a Pico; stale .mpy files from an earlier
    # make flash live in "" and must not shadow the frozen pump.
    code = (
        "import json, main\n"
        "paths = [['', '.frozen', '/lib'], ['', '/lib']]\n"
        "for p in paths:\n"
        "    main.frozen_first(p)\n"
        "print(json.dumps({'pico': paths[0], 'no_frozen': paths[1]}))\n"
    )
    result = upy.run("", code=code)
    assert result == {"pico": [".frozen", "", "/lib"], "no_frozen": ["", "/lib"]}
