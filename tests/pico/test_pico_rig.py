"""The rig around the emulated Pico (firmware/virtual/pico_rig.py, pico/harness.mjs --rig-fd).

The pump firmware on the stock UF2, with the plant's physics (virtual/plant.py
under the unix-port MicroPython) on its pins: each STEP edge asks the plant
for the encoder edges the head made, each conversion of the pressure or
battery input for the plant's reading; the rig protocol on a pty of its own,
device time granted in lockstep by ADVANCE. Scenarios run on it unchanged
(``pumpbench run --target pico``, or ``--target <pump pty> --rig <rig pty>``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.board import pico, pico_pump
from bench.link.client import Refusal
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from bench.report.records import Outcome
from bench.scenario.load import load_scenario
from bench.scenario.runner import run_scenario
from tests.system import kit

pytestmark = [
    pytest.mark.timeout(600),
]

SCENARIOS = Path(__file__).resolve().parents[2] / "bench" / "scenarios"
NL_PER_STEP = 25  # board_config PL_PER_STEP / 1000 and the plant's nominal head


@pytest.fixture(scope="module")
def rigged() -> Iterator[pico.PicoBoard]:
    with pico.PicoBoard(rig=True, seed=7) as board:
        pico_pump.wait_hello(board)
        yield board
        assert board.alive, board.stderr_text()
        assert board.rig_process is not None and board.rig_process.poll() is None


def test_the_rig_answers_as_the_emulated_pico_s_rig(rigged: pico.PicoBoard) -> None:
    assert rigged.rig_port is not None
    with RigClient(rigged.rig_port) as rig:
        hello = rig.hello()
        assert hello["rig_kind"] == "pico-emu"
        assert hello["seed"] == 7
        start = rigged.status()["t"]
        now_ms = rig.advance(5_000)
        # ADVANCE is emulated time: the chip ran to the grant's end
        assert now_ms * 1_000_000 >= start + 5_000 * 1_000_000 - 1_000_000
        assert rigged.status()["t"] >= now_ms * 1_000_000
        # what an emulated chip cannot have done to it from outside
        for name, fields in (
            ("POWER", {"action": 2, "arg": 100}),  # cut after journal bytes
            ("HEAP", {}),
            ("INJECT_FAULT", {"fault": 13, "param": 2000, "onset_ms": 0}),  # TIMER_FAST
        ):
            with pytest.raises(Refusal, match="BAD_VALUE"):
                rig.request(name, fields)


def test_strokes_at_the_pins_move_the_plant_and_the_pump_counts_them(
    rigged: pico.PicoBoard,
) -> None:
    assert rigged.rig_port is not None
    with RigClient(rigged.rig_port) as rig, PumpClient(rigged.pump_port) as pump:
        rig.fill(20_000_000, 0)
        pump.hello()
        rigged.request("reset_pins")
        pico_pump.start_program(pump, kit.program(basal_nl_day=1_000_000))
        rig.advance(5 * 60_000)  # 17 strokes at 1 mL/day
        truth = rig.truth()
        pins = rigged.status()
        status = pump.status()
        learned = [e for e in pump.log() if e["name"] in ("LINE_LEARNED", "LINE_LIMITS")]
    strokes = pins["moves"]
    assert len(strokes) >= 16 and set(strokes[1:]) == {8}, strokes  # whole strokes only
    # the plant's head made exactly the steps counted at the STEP pin
    assert truth["steps"] == pins["step_rises_enabled"] == pins["encoder_edges"]
    assert truth["pumped_nl"] == truth["steps"] * NL_PER_STEP
    assert 0 <= status["delivered_nl"] - truth["pumped_nl"] <= 8 * NL_PER_STEP
    # the pressure the pump reads is the plant's (a still ADC would be SENSOR_FAULT,
    # a line the pump cannot sense SENSING_LIMITED)
    # The learned rise is the virtual board's (a line the pump cannot sense
    # raises SENSING_LIMITED; see board_config.STEP_RATE_HZ)
    assert not any(
        kit.alarm_active(status, a) for a in ("LOST_STEPS", "SENSING_LIMITED", "SENSOR_FAULT")
    ), (status, learned)


def test_a_power_cut_keeps_the_flash_and_the_rig_s_time_goes_on(rigged: pico.PicoBoard) -> None:
    assert rigged.rig_port is not None
    with RigClient(rigged.rig_port) as rig:
        before = rig.advance(1_000)
        assert rig.power_off() is False
        off = rig.advance(60_000)  # nothing runs; the time passes all the same
        assert off >= before + 60_000
        assert rig.truth()["powered"] == 0
        assert rig.power_on() is True
        hello = pico_pump.wait_hello(rigged)
        assert hello["board"] == "pico"
    with PumpClient(rigged.pump_port) as pump:
        status = pump.status()
    assert status["boot_count"] >= 2  # the journal on littlefs survived the cut


# The standard scenarios on the emulated Pico with its rig, unchanged. A
# device hour costs about 20 s of wall time plus 0.1-0.5 s a stroke on two
# busy cores (the emulated CPU: the pump's loop wakes at least twice a
# second, lightsleep at most 500 ms, and each stroke's work). `make test`
# runs `status` (a file of the suite as it is, through the pico target);
# the faults run below in their short forms, and MOTOR_STALL on the real
# PIO encoder in test_emulated_pico.py. `make bench` runs every standard
# scenario of up to 8 h (motor-stall among them: 60-100 s of one core),
# and leak and occlusion-minimum-rate.
def test_a_standard_scenario_passes_unchanged_on_the_emulated_pico() -> None:
    scenario = load_scenario(SCENARIOS / "status.yaml")
    record = run_scenario(scenario, pico_pump.pico_target())
    assert record.outcome is Outcome.PASS, (record.outcome, record.problems, record.log[-8:])
    assert record.device is not None and record.device.board == "pico", record.device


# A full occlusion and a large leak on the emulated Pico, the plant on its
# ADC, each in under 5 minutes of device time (about 60 strokes): what the
# standard occlusion-intermediate-rate and leak scenarios (2.5 h and a day of
# device time: `make bench`) check. The rp2 sensor once filtered every
# reading, so a held stroke looked drained: PARTIAL_OCCLUSION, SENSOR_FAULT at
# the ceiling, LEAK at the ADC's full scale, never OCCLUSION
# (tests/modules/test_rp2_hal.py sweeps the rates on the host).
SHORT_FAULT = """
id: pico-line-fault-short
title: {alarm} at 4 mL/day on the emulated Pico is raised, and the motor stops
requirements: [REQ-OCCL-001, REQ-LEAK-001]
seed: 91
setup:
  - refill: {{volume: 20 mL}}
  - program: {{drug: none, concentration: 0 ug/mL, mode: continuous, rate: 4 mL/day, confirm: true}}
  - advance: {{duration: 2min, sample: 1min}}   # the line learned (16 strokes, 4.32 s apart)
steps:
  - inject_fault: {{fault: {fault}, param: {param}}}
  - expect_alarm: {{alarm: {alarm}, within: 5min, slice: 10s, since: fault}}
  - expect_state: {{state: ALARM}}
  - mark: {{name: stopped}}
  - advance: {{duration: 2min, sample: 1min}}   # 27 stroke intervals
  - measure: {{name: pumped_after_stop, from: pumped_volume, since: stopped, unit: uL, max: 0}}
teardown:
  - clear_fault: {{}}
"""


@pytest.mark.parametrize(
    ("fault", "param", "alarm"),
    [("OCCLUSION", 0, "OCCLUSION"), ("LEAK", 80, "LEAK")],
    ids=["full-occlusion", "leak-80-percent"],
)
def test_a_line_fault_is_named_and_stops_the_motor_on_the_emulated_pico(
    tmp_path: Path, fault: str, param: int, alarm: str
) -> None:
    path = tmp_path / "short.yaml"
    path.write_text(SHORT_FAULT.format(fault=fault, param=param, alarm=alarm))
    record = run_scenario(load_scenario(path), pico_pump.pico_target())
    assert record.outcome is Outcome.PASS, (record.outcome, record.problems, record.log[-8:])
