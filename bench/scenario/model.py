"""The steps a scenario is made of: one frozen dataclass per step kind.

This module is the scenario *model*: what each step means, with its values
already converted to wire units (nL, ms, ids). Parsing (bench/scenario/load.py)
makes these from YAML; executing (bench/scenario/executor.py) runs them on a board.
Keeping the model apart lets both grow one kind at a time.

``line`` and ``field`` place a step in its file for every message.
``unavailable`` is set on a step that names something the schema does not
have yet (an alarm, a fault, a message): only an ``xfail`` scenario may hold
one, and running it fails with that text as the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from protocol import schema

NEED_RIG = "rig"
NEED_HARDWARE = "hardware"
KNOWN_NEEDS = (NEED_RIG, NEED_HARDWARE)
RIG_ONLY = frozenset({NEED_RIG})


@dataclass(frozen=True)
class Step:
    """One step of a scenario."""

    KIND: ClassVar[str] = ""
    NEEDS: ClassVar[frozenset[str]] = frozenset()

    line: int
    field: str

    @property
    def needs(self) -> frozenset[str]:
        return self.NEEDS

    @property
    def planned_ms(self) -> int:
        """The device time this step means to run (progress bar, scheduling)."""
        return 0

    @property
    def unavailable(self) -> str | None:
        return None

    def describe(self) -> str:
        return self.KIND


@dataclass(frozen=True)
class Refusal:
    """A NACK a step expects: the code, and for limit refusals the limit."""

    code: int
    limit: int | None = None

    def describe(self) -> str:
        text = str(schema.error_name(self.code))
        if self.limit is not None:
            text += f" ({schema.limit_name(self.limit)})"
        return text


@dataclass(frozen=True)
class CommandStep(Step):
    """A pump command that may be expected to be refused (``refused: CODE``)."""

    refused: Refusal | None = None
    # The session role it is sent in (schema ROLE_*); None: the client's own.
    role: int | None = None

    def describe(self) -> str:
        text = self.KIND
        if self.role is not None:
            text += f" as {schema.role_name(self.role).lower()}"
        if self.refused is not None:
            text += f" (expect refusal {self.refused.describe()})"
        return text


# --- the link ---------------------------------------------------------------------


@dataclass(frozen=True)
class HelloStep(Step):
    """Pump HELLO; the client refuses a protocol version or schema mismatch."""

    KIND: ClassVar[str] = "hello"


@dataclass(frozen=True)
class RigHelloStep(Step):
    """Rig RIG_HELLO; same version and schema check as the pump's."""

    KIND: ClassVar[str] = "rig_hello"
    NEEDS: ClassVar[frozenset[str]] = RIG_ONLY


@dataclass(frozen=True)
class PingStep(Step):
    """PING on one port: proves the link answers, measures the round trip."""

    KIND: ClassVar[str] = "ping"
    port: str = schema.PORT_PUMP

    @property
    def needs(self) -> frozenset[str]:
        return RIG_ONLY if self.port == schema.PORT_RIG else frozenset()

    def describe(self) -> str:
        return f"ping {self.port}"


@dataclass(frozen=True)
class StatusStep(Step):
    """STATUS, optionally checking field values (state by name)."""

    KIND: ClassVar[str] = "status"
    expect: dict[str, int] = field(default_factory=dict)


# --- device time, resets, power ------------------------------------------------------


@dataclass(frozen=True)
class AdvanceStep(Step):
    """Rig ADVANCE: runs device time forward (lockstep on a virtual board).

    ``sample_ms`` slices the advance and records the rig's truth after each
    slice, for the delivered-volume plot.
    """

    KIND: ClassVar[str] = "advance"
    NEEDS: ClassVar[frozenset[str]] = RIG_ONLY
    duration_ms: int = 0
    text: str = ""
    sample_ms: int = 0

    @property
    def planned_ms(self) -> int:
        return self.duration_ms

    def describe(self) -> str:
        return f"advance {self.text}"


@dataclass(frozen=True)
class ResetStep(Step):
    """Rig RESET, then the pump's BOOT event with cause RIG_RESET."""

    KIND: ClassVar[str] = "reset"
    NEEDS: ClassVar[frozenset[str]] = RIG_ONLY


@dataclass(frozen=True)
class PowerOffStep(Step):
    """Rig POWER off: the pump stops at once; device time and the plant go on."""

    KIND: ClassVar[str] = "power_off"
    NEEDS: ClassVar[frozenset[str]] = RIG_ONLY


@dataclass(frozen=True)
class PowerOnStep(Step):
    """Rig POWER on, then the pump's BOOT event with cause POWER_ON."""

    KIND: ClassVar[str] = "power_on"
    NEEDS: ClassVar[frozenset[str]] = RIG_ONLY


@dataclass(frozen=True)
class PowerCutStep(Step):
    """Arms a power cut: after ``after_ms`` of device time or ``after_bytes`` of journal."""

    KIND: ClassVar[str] = "power_cut"
    NEEDS: ClassVar[frozenset[str]] = RIG_ONLY
    after_ms: int | None = None
    after_bytes: int | None = None

    def describe(self) -> str:
        if self.after_bytes is not None:
            return f"power_cut after {self.after_bytes} journal bytes"
        return f"power_cut in {self.after_ms} ms"


@dataclass(frozen=True)
class PowerCycleStep(Step):
    """Power off, ``off_ms`` of device time unpowered, power on, BOOT."""

    KIND: ClassVar[str] = "power_cycle"
    NEEDS: ClassVar[frozenset[str]] = RIG_ONLY
    off_ms: int = 0

    @property
    def planned_ms(self) -> int:
        return self.off_ms


# --- therapy ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProgramStep(CommandStep):
    """PROGRAM (then read back, and CONFIRM when ``confirm``); fields in wire units."""

    KIND: ClassVar[str] = "program"
    fields: dict[str, Any] = field(default_factory=dict)
    origin: str = "inline"  # the program file, or "inline"
    confirm: bool = False

    def describe(self) -> str:
        what = f"program {self.origin}" + (" and confirm" if self.confirm else "")
        return what + super().describe()[len(self.KIND) :]


@dataclass(frozen=True)
class ConfirmStep(CommandStep):
    """CONFIRM the program the last ``program`` step left pending."""

    KIND: ClassVar[str] = "confirm"


@dataclass(frozen=True)
class CancelProgramStep(Step):
    KIND: ClassVar[str] = "cancel_program"


@dataclass(frozen=True)
class StartStep(CommandStep):
    KIND: ClassVar[str] = "start"


@dataclass(frozen=True)
class StopStep(Step):
    KIND: ClassVar[str] = "stop"


@dataclass(frozen=True)
class BolusStep(CommandStep):
    """A clinician, priming or bridge bolus (BOLUS)."""

    KIND: ClassVar[str] = "bolus"
    kind: str = "clinician"
    volume_nl: int = 0
    dose_ng: int = 0
    duration_s: int = 0
    catheter_mm: int = 0
    nl_per_cm: int = 0
    override_soft: bool = False


@dataclass(frozen=True)
class PatientBolusStep(CommandStep):
    """The patient's button (PATIENT_BOLUS)."""

    KIND: ClassVar[str] = "patient_bolus"


@dataclass(frozen=True)
class CancelBolusStep(Step):
    KIND: ClassVar[str] = "cancel_bolus"


@dataclass(frozen=True)
class RefillStep(CommandStep):
    """A refill: the rig's FILL sets the real reservoir, then the pump's REFILL.

    ``withdrawn_nl`` None: the clinician withdraws exactly what FILL says was
    left. ``flagged`` None: no expectation about the discrepancy flag.
    ``drug_id``/``conc_ug_ml`` None: the active program's drug (docs/pump.md 22.2);
    ``with_program``: the pending program is committed with the refill.
    """

    KIND: ClassVar[str] = "refill"
    NEEDS: ClassVar[frozenset[str]] = RIG_ONLY
    volume_nl: int = 0
    withdrawn_nl: int | None = None
    flagged: bool | None = None
    drug_id: int | None = None
    conc_ug_ml: int | None = None
    with_program: bool = False


@dataclass(frozen=True)
class ClearAlarmStep(CommandStep):
    KIND: ClassVar[str] = "clear_alarm"
    alarm: int = 0
    alarm_name: str = ""

    def describe(self) -> str:
        return f"clear_alarm {self.alarm_name}"


@dataclass(frozen=True)
class SetClockStep(Step):
    """SET_CLOCK: local time = device time + ``offset_s`` (flex steps follow it)."""

    KIND: ClassVar[str] = "set_clock"
    offset_s: int = 0


# --- faults --------------------------------------------------------------------------


@dataclass(frozen=True)
class NewCatheterStep(Step):
    """The rig's plant gets a new, empty catheter of ``volume_nl`` (PLANT, the
    real reservoir kept): what a priming bolus must fill (docs/pump.md 22.3)."""

    KIND: ClassVar[str] = "new_catheter"
    NEEDS: ClassVar[frozenset[str]] = RIG_ONLY
    volume_nl: int = 0


@dataclass(frozen=True)
class InjectFaultStep(Step):
    """INJECT_FAULT; sets the mark ``fault`` at its onset."""

    KIND: ClassVar[str] = "inject_fault"
    NEEDS: ClassVar[frozenset[str]] = RIG_ONLY
    fault: int | None = None  # None: the schema has no such fault yet
    fault_name: str = ""
    param: int = 0
    onset_ms: int = 0
    missing: str | None = None

    @property
    def unavailable(self) -> str | None:
        return self.missing

    def describe(self) -> str:
        return f"inject_fault {self.fault_name} (param {self.param})"


@dataclass(frozen=True)
class ClearFaultStep(Step):
    """CLEAR_FAULT of one fault, or of every fault (0); sets the mark ``fault_cleared``."""

    KIND: ClassVar[str] = "clear_fault"
    NEEDS: ClassVar[frozenset[str]] = RIG_ONLY
    fault: int = 0
    fault_name: str = "every fault"

    def describe(self) -> str:
        return f"clear_fault {self.fault_name}"


# --- expectations -----------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectAlarmStep(Step):
    """Advances in slices until the alarm is raised, at most ``within_ms`` of device time."""

    KIND: ClassVar[str] = "expect_alarm"
    alarm: int | None = None
    alarm_name: str = ""
    within_ms: int = 0
    slice_ms: int = 0
    since: str | None = None  # a mark: time to alarm counts from there
    missing: str | None = None

    @property
    def needs(self) -> frozenset[str]:
        return RIG_ONLY if self.within_ms else frozenset()

    @property
    def planned_ms(self) -> int:
        return self.within_ms

    @property
    def unavailable(self) -> str | None:
        return self.missing

    def describe(self) -> str:
        return f"expect_alarm {self.alarm_name}"


@dataclass(frozen=True)
class ExpectNoAlarmStep(Step):
    """No alarm (or none of ``alarms``) raised over ``for_ms`` of device time, none active after."""

    KIND: ClassVar[str] = "expect_no_alarm"
    alarms: tuple[int, ...] = ()  # empty: any alarm
    ignore: tuple[int, ...] = ()
    for_ms: int = 0
    slice_ms: int = 0

    @property
    def needs(self) -> frozenset[str]:
        return RIG_ONLY if self.for_ms else frozenset()

    @property
    def planned_ms(self) -> int:
        return self.for_ms


@dataclass(frozen=True)
class ExpectStateStep(Step):
    """STATUS state (by name), and optionally exactly which alarms are active.

    With ``within_ms`` it advances in slices until STATUS matches (for
    "delivery has stopped within 1 h", whichever alarm stopped it).
    """

    KIND: ClassVar[str] = "expect_state"
    state: int | None = None
    alarms: tuple[int, ...] | None = None
    mode: int | None = None
    bolus: int | None = None  # STATUS bolus_kind
    within_ms: int = 0
    slice_ms: int = 0
    since: str | None = None

    @property
    def needs(self) -> frozenset[str]:
        return RIG_ONLY if self.within_ms else frozenset()

    @property
    def planned_ms(self) -> int:
        return self.within_ms

    def describe(self) -> str:
        return "expect_state" + (f" {schema.state_name(self.state)}" if self.state else "")


@dataclass(frozen=True)
class ExpectLogStep(Step):
    """The pump's event log holds ``event`` (since a mark), ``count`` times if given."""

    KIND: ClassVar[str] = "expect_log"
    event: int = 0
    event_name: str = ""
    since: str | None = None
    count: int | None = None
    min_count: int = 1

    def describe(self) -> str:
        return f"expect_log {self.event_name}"


@dataclass(frozen=True)
class MarkStep(Step):
    """Names this instant: device time, the rig's truth and the pump's STATUS."""

    KIND: ClassVar[str] = "mark"
    name: str = ""

    def describe(self) -> str:
        return f"mark {self.name}"


# --- measurement ------------------------------------------------------------------------

# Quantities a measure step can read at the moment it runs, and their wire units.
QUANTITIES: dict[str, str] = {
    "tip_volume": "nL",  # rig TRUTH tip_nl: what left the catheter (the patient's dose)
    "pumped_volume": "nL",  # rig TRUTH pumped_nl: what left the reservoir
    "reservoir_volume": "nL",  # rig TRUTH reservoir_nl: what the reservoir really holds
    "pump_volume": "nL",  # STATUS delivered_nl: what the pump says it delivered
    "pump_reservoir": "nL",  # STATUS reservoir_nl: the pump's account of its reservoir
    "device_time": "ms",
    "pressure": "0.1 mmHg",  # STATUS pressure_x10 (safety issue)
    "tip_dose": "ng",  # rig TRUTH tip_ng: the drug dose that left the catheter tip
    # over the samples taken since the mark (``since`` required): the most
    # tip dose in any 1 h / 24 h between samples, and the longest time the
    # tip dose did not grow (docs/pump.md 22: dose at the tip)
    "tip_dose_max_1h": "ng",
    "tip_dose_max_24h": "ng",
    "tip_dose_gap": "ms",
}
RIG_QUANTITIES = frozenset(
    {
        "tip_volume",
        "pumped_volume",
        "reservoir_volume",
        "tip_dose",
        "tip_dose_max_1h",
        "tip_dose_max_24h",
        "tip_dose_gap",
    }
)
# Quantities over the samples since a mark, not a difference of two values.
WINDOW_QUANTITIES = frozenset({"tip_dose_max_1h", "tip_dose_max_24h", "tip_dose_gap"})


@dataclass(frozen=True)
class MeasureStep(Step):
    """A named value, judged against limits in ``unit``.

    ``source`` is a step kind (the value comes from the last reply of that
    kind, field ``source_field``) or "" for a quantity read when the step
    runs. ``since``: the difference from the value at that mark.
    ``source_unit`` is the wire unit; ``unit`` the one it is judged in.
    """

    KIND: ClassVar[str] = "measure"
    name: str = ""
    source: str = ""
    source_field: str = ""
    unit: str = ""
    source_unit: str = ""
    min: int | float | None = None
    max: int | float | None = None
    since: str | None = None
    missing: str | None = None

    @property
    def source_path(self) -> str:
        return f"{self.source}.{self.source_field}" if self.source else self.source_field

    @property
    def needs(self) -> frozenset[str]:
        rig = self.source_field in RIG_QUANTITIES and not self.source
        return RIG_ONLY if rig or self.since else frozenset()

    @property
    def unavailable(self) -> str | None:
        return self.missing

    def describe(self) -> str:
        return f"measure {self.name}"


# --- IEC 60601-2-24 flow accuracy --------------------------------------------------------

STANDARD_SAMPLE_MS = 30_000  # gravimetric sample interval, 0.5 min
STANDARD_PERIOD_MS = 2 * 3_600_000  # T = 120 min
STANDARD_ANALYSIS_FROM_MS = 3_600_000  # trumpets from the second hour
STANDARD_WINDOWS_MS = tuple(m * 60_000 for m in (2, 5, 11, 19, 31))


@dataclass(frozen=True)
class FlowAccuracyStep(Step):
    """The IEC 60601-2-24 flow test, time-scaled by ``scale`` (None: chosen from the rate)."""

    KIND: ClassVar[str] = "flow_accuracy"
    NEEDS: ClassVar[frozenset[str]] = RIG_ONLY
    sample_ms: int = STANDARD_SAMPLE_MS
    period_ms: int = STANDARD_PERIOD_MS
    analysis_from_ms: int = STANDARD_ANALYSIS_FROM_MS
    windows_ms: tuple[int, ...] = STANDARD_WINDOWS_MS
    scale: int | None = None
    strokes_per_window: int = 20

    @property
    def planned_ms(self) -> int:
        return self.period_ms * (self.scale or 1)


def window_label(window_ms: int) -> str:
    """A trumpet window as a field-name suffix: 2 min -> ``2min``, 90 s -> ``90s``."""
    if window_ms % 60_000 == 0:
        return f"{window_ms // 60_000}min"
    return f"{window_ms // 1000}s" if window_ms % 1000 == 0 else f"{window_ms}ms"


# --- structure ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RepeatStep(Step):
    """``times`` runs of the nested steps (a daily routine over a long soak)."""

    KIND: ClassVar[str] = "repeat"
    times: int = 1
    steps: tuple[Step, ...] = ()

    @property
    def needs(self) -> frozenset[str]:
        needs: frozenset[str] = frozenset()
        for step in self.steps:
            needs |= step.needs
        return needs

    @property
    def planned_ms(self) -> int:
        return self.times * sum(step.planned_ms for step in self.steps)

    @property
    def unavailable(self) -> str | None:
        return next((s.unavailable for s in self.steps if s.unavailable), None)

    def describe(self) -> str:
        return f"repeat x{self.times}"


def walk(steps: tuple[Step, ...]) -> list[Step]:
    """Every step, nested ones included, in order."""
    found: list[Step] = []
    for step in steps:
        found.append(step)
        if isinstance(step, RepeatStep):
            found.extend(walk(step.steps))
    return found
