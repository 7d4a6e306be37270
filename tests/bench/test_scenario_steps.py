"""The therapy, fault and expectation steps of scenario files, validated without a board.

Every problem must name the file, the line and the field, and a scenario may
name an alarm or fault the schema does not have only when it is marked xfail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import vocab
from bench.scenario.load import ScenarioError, load_scenario, load_scenarios
from bench.scenario.model import (
    BolusStep,
    ExpectAlarmStep,
    ExpectStateStep,
    FlowAccuracyStep,
    InjectFaultStep,
    MeasureStep,
    PowerCycleStep,
    ProgramStep,
    RefillStep,
    Refusal,
    RepeatStep,
)
from protocol import schema

PROGRAMS = Path(__file__).resolve().parents[2] / "bench" / "programs"

BASE = """\
id: therapy
title: Therapy steps
setup:
  - refill: {volume: 20 mL}
  - program: {drug: none, concentration: 0 ug/mL, mode: continuous, rate: 1 mL/day, confirm: true}
steps:
"""


def write(tmp_path: Path, steps: str, head: str = BASE, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(head + steps)
    return path


def problem(tmp_path: Path, steps: str, head: str = BASE) -> str:
    path = write(tmp_path, steps, head)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    (message,) = caught.value.problems
    assert message.startswith(f"{path}:"), message
    return message[len(f"{path}:") :]


def test_therapy_steps_parse_to_wire_units(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - bolus: {volume: 0.1 mL, duration: 10 min}\n"
        "  - bolus: {kind: priming, catheter: 62.5cm}\n"
        "  - patient_bolus: {refused: LOCKOUT}\n"
        "  - refill: {volume: 20 mL, withdrawn: 1.5 mL, flagged: true}\n"
        "  - power_cycle: {off_for: 1min}\n",
    )
    scenario = load_scenario(path)
    refill, program = scenario.setup
    assert isinstance(refill, RefillStep) and refill.volume_nl == 20_000_000
    assert isinstance(program, ProgramStep) and program.confirm
    assert program.fields["basal_nl_day"] == 1_000_000 and program.fields["drug_id"] == 0
    bolus, priming, patient, refill2, cycle = scenario.steps
    assert isinstance(bolus, BolusStep)
    assert (bolus.volume_nl, bolus.duration_s, bolus.kind) == (100_000, 600, "clinician")
    assert isinstance(priming, BolusStep) and (priming.catheter_mm, priming.nl_per_cm) == (
        625,
        2600,
    )
    assert patient.refused == Refusal(schema.LOCKOUT)
    assert isinstance(refill2, RefillStep) and (refill2.withdrawn_nl, refill2.flagged) == (
        1_500_000,
        True,
    )
    assert isinstance(cycle, PowerCycleStep) and cycle.off_ms == 60_000
    assert scenario.needs == frozenset({"rig"})
    assert scenario.planned_ms == 60_000


def test_program_file_is_relative_to_the_scenario(tmp_path: Path) -> None:
    (tmp_path / "programs").mkdir()
    (tmp_path / "programs" / "m.toml").write_text(
        (PROGRAMS / "morphine-continuous.toml").read_text()
    )
    path = write(tmp_path, "  - program: {file: programs/m.toml}\n  - confirm: {}\n", head=BASE)
    program = load_scenario(path).steps[0]
    assert isinstance(program, ProgramStep)
    assert program.fields["conc_ug_ml"] == 10_000 and program.fields["pb_dose_nl"] == 50_000
    assert program.origin == "programs/m.toml"


def test_refusals_name_codes_and_limits(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - program:\n"
        "      drug: morphine\n"
        "      concentration: 10 mg/mL\n"
        "      mode: continuous\n"
        "      rate: 30 mg/day\n"
        "      refused: {code: HARD_LIMIT, limit: daily_hard}\n",
    )
    step = load_scenario(path).steps[0]
    assert step.refused == Refusal(schema.HARD_LIMIT, vocab.LIMITS["daily_hard"])


def test_expectations_and_measures(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - inject_fault: {fault: runaway, param: 20}\n"
        "  - expect_alarm: {alarm: DOSE_LIMIT, within: 2h, since: fault}\n"
        "  - expect_state: {state: ALARM, within: 1h, slice: 1min}\n"
        "  - measure: {name: t, from: expect_alarm.time_to_alarm_ms, unit: min, max: 60}\n"
        "  - measure: {name: v, from: tip_volume, since: fault, unit: uL, max: 0.365 mL}\n"
        "  - measure: {name: w, from: pump_volume, unit: mL, nominal: 1 mL, tolerance: 2%}\n",
    )
    fault, alarm, state, t, v, w = load_scenario(path).steps
    assert isinstance(fault, InjectFaultStep) and fault.fault == 1 and fault.param == 20
    assert isinstance(alarm, ExpectAlarmStep)
    assert (alarm.within_ms, alarm.slice_ms, alarm.since) == (7_200_000, 72_000, "fault")
    assert isinstance(state, ExpectStateStep) and state.slice_ms == 60_000
    assert isinstance(t, MeasureStep) and (t.source_unit, t.unit, t.max) == ("ms", "min", 60)
    assert isinstance(v, MeasureStep) and (v.source, v.source_field, v.max) == (
        "",
        "tip_volume",
        365,
    )
    assert isinstance(w, MeasureStep) and (w.min, w.max) == (0.98, 1.02)


def test_flow_accuracy_defaults_are_the_standard_and_add_window_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - flow_accuracy: {}\n"
        "  - measure: {name: a, from: flow_accuracy.mean_error_pct, unit: '%', min: -2, max: 2}\n"
        "  - measure: {name: e, from: flow_accuracy.ep_max_31min, unit: '%', max: 3}\n",
    )
    flow = load_scenario(path).steps[0]
    assert isinstance(flow, FlowAccuracyStep)
    assert (flow.sample_ms, flow.period_ms, flow.analysis_from_ms) == (30_000, 7_200_000, 3_600_000)
    assert flow.windows_ms == (120_000, 300_000, 660_000, 1_140_000, 1_860_000)
    assert flow.scale is None  # chosen from the rate when it runs


def test_repeat_nests_steps(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - repeat:\n"
        "      times: 3\n"
        "      steps:\n"
        "        - advance: {duration: 1d}\n"
        "        - patient_bolus: {}\n",
    )
    repeat = load_scenario(path).steps[0]
    assert isinstance(repeat, RepeatStep) and repeat.times == 3 and len(repeat.steps) == 2
    assert repeat.planned_ms == 3 * 86_400_000


@pytest.mark.parametrize(
    ("steps", "where", "text"),
    [
        (
            "  - bolus: {volume: 0.1 mL, dose: 1 mg}\n",
            "7: steps[0].bolus",
            "needs volume or dose (one of them)",
        ),
        ("  - bolus: {volume: 0.1 ml}\n", "", ""),  # unit names ignore case: valid
        (
            "  - bolus: {volume: 0.1}\n",
            "7: steps[0].bolus.volume",
            "expected a volume as text",
        ),
        (
            "  - patient_bolus: {refused: LOCKED}\n",
            "7: steps[0].patient_bolus.refused",
            "'LOCKED' is not a refusal (did you mean 'LOCKOUT'?)",
        ),
        (
            "  - patient_bolus: {refused: {code: LOCKOUT, limit: daily_hard}}\n",
            "7: steps[0].patient_bolus.refused.limit",
            "a limit goes with HARD_LIMIT or SOFT_LIMIT",
        ),
        (
            "  - program: {drug: morfine, concentration: 10 mg/mL, mode: continuous,"
            " rate: 1 mL/day}\n",
            "7: steps[0].program.drug",
            "unknown drug 'morfine'",
        ),
        (
            "  - program:\n"
            "      drug: baclofen\n"
            "      concentration: 1000 ug/mL\n"
            "      mode: flex\n"
            "      flex:\n"
            "        - {start: 7:00, rate: 600 ug/day}\n",  # YAML 1.1: 7:00 is 420
            "12: steps[0].program.flex[0].start",
            'write "7:00" in quotes',
        ),
        (
            "  - program: {file: nowhere.toml}\n",
            "7: steps[0].program.file",
            "nowhere.toml: cannot read",
        ),
        (
            "  - program: {file: x.toml, drug: none}\n",
            "7: steps[0].program.drug",
            "a program file or inline fields, not both",
        ),
        (
            "  - expect_alarm: {alarm: OCCLUSON, within: 1h}\n",
            "7: steps[0].expect_alarm.alarm",
            "unknown alarm 'OCCLUSON'",
        ),
        (
            "  - inject_fault: {fault: gremlins}\n",
            "7: steps[0].inject_fault.fault",
            "(a scenario waiting for a new fault is marked xfail)",
        ),
        (
            "  - expect_alarm: {alarm: LOW_RESERVOIR, within: 1h, since: fault}\n",
            "7: steps[0].expect_alarm.since",
            "no mark 'fault' before this step",
        ),
        (
            "  - measure: {name: v, from: tip_volume, unit: uL}\n",
            "7: steps[0].measure",
            "needs min or max",
        ),
        (
            "  - measure: {name: v, from: tip_volum, unit: uL, max: 1}\n",
            "7: steps[0].measure.from",
            "(did you mean 'tip_volume'?)",
        ),
        (
            "  - measure: {name: v, from: tip_volume, unit: min, max: 1}\n",
            "7: steps[0].measure.unit",
            "tip_volume is in nL, not convertible to 'min'; use nL, uL, mL",
        ),
        (
            "  - measure: {name: v, from: tip_volume, unit: uL, max: 2 h}\n",
            "7: steps[0].measure.max",
            "'2 h' is a duration, not a volume; use nL, uL or mL",
        ),
        (
            "  - measure: {name: v, from: tip_volume, unit: uL, min: 1,"
            " nominal: 2, tolerance: 1}\n",
            "7: steps[0].measure",
            "min/max or nominal with tolerance, not both",
        ),
        (
            "  - repeat: {times: 2, steps:"
            " [{measure: {name: v, from: tip_volume, unit: uL, max: 1}}]}\n",
            "7: steps[0].repeat.steps[0].measure",
            "a measure inside repeat",
        ),
        (
            "  - power_cycle: {off: 1min}\n",
            "7: steps[0].power_cycle",
            "keys must be plain names",  # YAML reads `off` as false
        ),
        (
            "  - flow_accuracy: {sample: 30s, windows: [45s]}\n",
            "7: steps[0].flow_accuracy",
            "window 45000 ms must be a whole number of samples",
        ),
        (
            "  - confirm: {}\n",
            "7: steps[0].confirm",
            "",  # valid: the setup programmed
        ),
    ],
)
def test_step_validation_names_file_line_and_field(
    tmp_path: Path, steps: str, where: str, text: str
) -> None:
    path = write(tmp_path, steps)
    if not text:
        load_scenario(path)  # valid
        return
    message = problem(tmp_path, steps)
    assert message.startswith(f"{where}: "), message
    assert text in message, message


def test_confirm_without_a_program_is_refused(tmp_path: Path) -> None:
    head = "id: x\ntitle: x\nsteps:\n"
    assert problem(tmp_path, "  - confirm: {}\n", head).startswith(
        "4: steps[0].confirm: no program step before this confirm"
    )


XFAIL_HEAD = """\
id: future
title: Waits for the safety issue
xfail: the rig has no such fault yet
steps:
"""


def test_an_xfail_scenario_may_name_what_does_not_exist_yet(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - inject_fault: {fault: WORMHOLE}\n"
        "  - expect_alarm: {alarm: WORMHOLE_ALARM, within: 1h, since: fault}\n",
        head=XFAIL_HEAD,
    )
    scenario = load_scenario(path)
    assert scenario.xfail == "the rig has no such fault yet"
    fault, alarm = scenario.steps
    assert fault.unavailable == "the schema has no fault 'WORMHOLE' yet"
    assert alarm.unavailable == "the schema has no alarm 'WORMHOLE_ALARM' yet"


def test_an_empty_xfail_reason_is_refused(tmp_path: Path) -> None:
    message = problem(
        tmp_path, "  - hello: {}\n", head=XFAIL_HEAD.replace("the rig has no such fault yet", "' '")
    )
    assert message.startswith("3: xfail: expected text")


def test_teardown_measures_only_what_setup_or_teardown_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - bolus: {volume: 0.1 mL}\n"
        "teardown:\n"
        "  - measure: {name: b, from: bolus.volume_nl, unit: uL, max: 100}\n",
    )
    with pytest.raises(ScenarioError, match=r"no bolus step before this measurement"):
        load_scenario(path)


def test_the_standard_suite_covers_issue_five() -> None:
    suite = load_scenarios([Path(__file__).resolve().parents[2] / "bench" / "scenarios"])
    ids = {s.id for s in suite}
    assert {
        "flow-accuracy-minimum-rate",
        "flow-accuracy-maximum-rate",
        "occlusion-minimum-rate",
        "occlusion-intermediate-rate",
        "motor-stall",
        "runaway-governor",
        "leak",
        "reservoir-low-empty-refill",
        "battery-eri-eos",
        "patient-bolus-lockout-daily-max",
        "power-loss-during-bolus",
        "hard-limit-refused",
        "soak-90-days",
    } <= ids
    # The fault scenarios were written xfail before the safety issue landed;
    # they run for real now. A scenario waiting for something says why.
    assert all(s.xfail.strip() for s in suite if s.xfail is not None)
    for scenario in suite:
        assert scenario.requirements, f"{scenario.id} traces no requirement"


def test_every_step_kind_is_one_row_of_the_table_and_of_the_readme():
    """The step table (bench/scenario/steps/) is the one list of kinds: each
    kind's model, parser and runner are in its row, and bench/README.md's step
    tables say what its row says, once per kind."""
    from bench.scenario import model
    from bench.scenario.steps import FAMILIES, KINDS, RUNNERS

    rows = [kind for family in FAMILIES for kind in family.KINDS]
    assert len({kind.name for kind in rows}) == len(rows), "a kind is in two rows"
    step_classes = {
        cls
        for cls in vars(model).values()
        if isinstance(cls, type) and issubclass(cls, model.Step) and cls.KIND
    }
    assert {kind.model for kind in rows} == step_classes
    assert set(RUNNERS) == step_classes
    for kind in rows:
        assert kind.model.KIND == kind.name
        assert callable(kind.parse) and callable(kind.run)

    readme = (Path(__file__).resolve().parents[2] / "bench" / "README.md").read_text()
    for name, kind in KINDS.items():
        row = f"| `{name}` | {kind.fields} | {kind.does} |".replace("|  |", "| |")
        assert readme.count(f"| `{name}` |") >= 1, f"bench/README.md has no row for {name}"
        assert row in readme, f"bench/README.md's row for {name} differs from the step table"
