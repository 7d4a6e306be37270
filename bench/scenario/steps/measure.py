"""Step kinds that measure: measure (a named value against limits), flow_accuracy (IEC 60601-2-24).

Each kind: its parser (YAML to bench/scenario/model.py), its runner (on the board,
through the Executor) and its row of bench/README.md, in ``KINDS``.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from bench import units
from bench.report.records import FlowRecord, MeasurementOutcome, Outcome
from bench.scenario import flow
from bench.scenario.context import CapabilityMissing, Snapshot, StepFailed, fmt_ms, step_where
from bench.scenario.steps.kind import StepKind

if TYPE_CHECKING:
    from bench.scenario.executor import Executor

from fractions import Fraction

from bench.scenario.model import (
    QUANTITIES,
    WINDOW_QUANTITIES,
    FlowAccuracyStep,
    MeasureStep,
    Step,
    window_label,
)
from bench.scenario.parse import (
    _NAME,
    _SOURCE,
    _Context,
    _duration,
    _since,
)
from bench.scenario.yamlnode import Node, did_you_mean, listing


def _parse_flow_accuracy(node: Node, line: int, ctx: _Context) -> Step:
    values = node.mapping(
        optional=("sample", "period", "analysis_from", "windows", "scale", "strokes_per_window")
    )
    defaults = FlowAccuracyStep(line, node.path)
    sample = _duration(values["sample"]) if "sample" in values else defaults.sample_ms
    period = _duration(values["period"]) if "period" in values else defaults.period_ms
    start = (
        _duration(values["analysis_from"])
        if "analysis_from" in values
        else defaults.analysis_from_ms
    )
    windows = (
        tuple(_duration(item) for item in values["windows"].sequence())
        if "windows" in values
        else defaults.windows_ms
    )
    scale: int | None = None
    if "scale" in values and values["scale"].scalar() != "auto":
        scale = values["scale"].integer(1, 10_000)
    strokes = (
        values["strokes_per_window"].integer(1, 10_000)
        if "strokes_per_window" in values
        else defaults.strokes_per_window
    )
    if sample <= 0 or period % sample:
        raise node.fail(f"the period ({period} ms) must be a whole number of samples ({sample} ms)")
    if not 0 <= start < period or start % sample:
        raise node.fail("analysis_from must be a whole number of samples inside the period")
    for window in windows:
        if window <= 0 or window % sample or window > period - start:
            raise node.fail(
                f"window {window} ms must be a whole number of samples within the analysis period"
            )
    fields = ctx.measurable["flow_accuracy"]
    for window in windows:
        label = window_label(window)
        fields[f"ep_max_{label}"] = "%"
        fields[f"ep_min_{label}"] = "%"
    return FlowAccuracyStep(
        line,
        node.path,
        sample_ms=sample,
        period_ms=period,
        analysis_from_ms=start,
        windows_ms=windows,
        scale=scale,
        strokes_per_window=strokes,
    )


def _tidy(value: int | float) -> int | float:
    return round(value, 9) if isinstance(value, float) else value


def _number(value: Fraction) -> int | float:
    """An exact value as the step holds it: an int, or a float when it has a fraction."""
    return value.numerator if value.denominator == 1 else float(value)


def _limit(node: Node, unit: str) -> int | float:
    value = node.scalar()
    if isinstance(value, bool):
        raise node.fail(f"expected a number or a quantity in {unit}, got {node.kind_name()}")
    if isinstance(value, int | float):
        return value
    try:
        return _number(units.parse(str(value), unit, bare=True, signed=True))
    except ValueError as exc:
        raise node.fail(str(exc)) from None


def _measure_source(values: dict[str, Node], ctx: _Context) -> tuple[str, str, str, str | None]:
    """(step kind or "", field or quantity, wire unit, missing) of ``from``."""
    source_node = values["from"]
    text = source_node.string()
    match = _SOURCE.fullmatch(text)
    if match is None:
        if text not in QUANTITIES:
            raise source_node.fail(
                f"{text!r} is neither step.field nor a quantity{did_you_mean(text, QUANTITIES)}; "
                f"quantities: {listing(QUANTITIES)}; steps with fields: {listing(ctx.measurable)}"
            )
        return "", text, QUANTITIES[text], None
    source, source_field = match.groups()
    if "since" in values:
        raise values["since"].fail("since goes with a quantity (tip_volume, ...), not step.field")
    if source not in ctx.measurable:
        raise source_node.fail(
            f"{text!r}: {source!r} is no step with measurable fields; "
            f"steps: {listing(ctx.measurable)}"
        )
    fields = ctx.measurable[source]
    if source_field not in fields:
        raise source_node.fail(
            f"{source} has no measurable field {source_field!r}"
            f"{did_you_mean(source_field, fields)}; fields: {listing(fields)}"
        )
    if source not in ctx.kinds_seen:
        raise source_node.fail(f"no {source} step before this measurement to take the value from")
    return source, source_field, fields[source_field], None


def _parse_measure(node: Node, line: int, ctx: _Context) -> Step:
    values = node.mapping(
        required=("name", "from", "unit"), optional=("min", "max", "nominal", "tolerance", "since")
    )
    if ctx.in_repeat:
        raise node.fail("a measure inside repeat would be taken many times; measure after it")
    name = values["name"].string(_NAME, "a name (lower case, digits, _)")
    if name in ctx.measure_names:
        raise values["name"].fail(
            f"measurement {name!r} already defined on line {ctx.measure_names[name]}"
        )
    source, source_field, source_unit, missing = _measure_source(values, ctx)
    since = _since(values, ctx)
    if source_field in WINDOW_QUANTITIES and not source and since is None:
        raise values["from"].fail(f"{source_field} is taken over the samples since a mark: since:")
    unit = values["unit"].string()
    if not units.convertible(source_unit, unit):
        known = units.unit(source_unit)
        choices = units.known_units(known.dimension) if known else [source_unit]
        raise values["unit"].fail(
            f"{source_field} is in {source_unit}, not convertible to {unit!r}; "
            f"use {listing(choices)}"
        )
    limits: dict[str, int | float] = {}
    for key in ("min", "max"):
        if key in values:
            limits[key] = _limit(values[key], unit)
    if "nominal" in values or "tolerance" in values:
        if limits:
            raise node.fail("give min/max or nominal with tolerance, not both")
        if "nominal" not in values or "tolerance" not in values:
            raise node.fail("nominal and tolerance go together")
        nominal = _limit(values["nominal"], unit)
        tol_node = values["tolerance"]
        tol_text = str(tol_node.scalar()).strip()
        if tol_text.endswith("%"):
            try:
                share = units.parse(tol_text, "%")
            except ValueError as exc:
                raise tol_node.fail(str(exc)) from None
            tolerance = _number(share * abs(Fraction(nominal)) / 100)
        else:
            tolerance = _limit(tol_node, unit)
        if tolerance < 0:
            raise tol_node.fail("a tolerance is not negative")
        # rounded: 49.083 - 0.02 should read 49.063, not 49.062999999999995
        limits = {"min": _tidy(nominal - tolerance), "max": _tidy(nominal + tolerance)}
    if not limits:
        raise node.fail(
            "needs min or max (or nominal and tolerance): "
            "a measurement without limits checks nothing"
        )
    if "min" in limits and "max" in limits and limits["min"] > limits["max"]:
        raise values["max"].fail(f"max {limits['max']} is below min {limits['min']}")
    ctx.measure_names[name] = line
    return MeasureStep(
        line,
        node.path,
        name=name,
        source=source,
        source_field=source_field,
        unit=unit,
        source_unit=source_unit,
        min=limits.get("min"),
        max=limits.get("max"),
        since=since,
        missing=missing,
    )


def _quantity(ex: Executor, name: str, snap: Snapshot | None = None) -> int:
    """A quantity now (or as ``snap`` recorded it), in its wire unit."""
    if snap is None:
        snap = (
            ex.snapshot() if name != "device_time" else Snapshot(ex.refresh_now(), None, None, None)
        )
    if name == "device_time":
        return snap.t_ms
    truth_key = {
        "tip_dose": "tip_ng",
        "tip_volume": "tip_nl",
        "pumped_volume": "pumped_nl",
        "reservoir_volume": "reservoir_nl",
    }
    if name in truth_key:
        if snap.truth is None:
            raise StepFailed(f"no rig truth for {name} at that instant")
        return int(snap.truth[truth_key[name]])
    status_key = {
        "pump_volume": "delivered_nl",
        "pump_reservoir": "reservoir_nl",
        "pressure": "pressure_x10",
    }
    if snap.status is None:
        raise StepFailed(f"no STATUS for {name} at that instant (the pump was off)")
    if status_key[name] not in snap.status:
        raise CapabilityMissing(f"STATUS has no {status_key[name]} in this schema")
    return int(snap.status[status_key[name]])


def _window_quantity(ex: Executor, name: str, since_ms: int) -> int:
    """tip_dose_max_1h / _24h (ng) or tip_dose_gap (ms) over the samples since."""
    ex.sample()
    points = [
        (s.t_ms, s.tip_ng) for s in ex.record.samples if s.t_ms >= since_ms and s.tip_ng is not None
    ]
    if len(points) < 2:
        raise StepFailed(f"{name}: fewer than two samples since the mark (sample: on advance)")
    if name == "tip_dose_gap":
        longest = run = 0
        for (t0, d0), (t1, d1) in itertools.pairwise(points):
            run = run + (t1 - t0) if d1 == d0 else 0
            longest = max(longest, run)
        return longest
    window = 3_600_000 if name == "tip_dose_max_1h" else 86_400_000
    worst = 0
    first = 0
    for t, dose in points:
        while t - points[first][0] > window:
            first += 1
        worst = max(worst, dose - points[first][1])
    return worst


def run_measure(ex: Executor, step: MeasureStep) -> str:
    if step.source:
        reply = ex.replies.get(step.source)
        if reply is None or step.source_field not in reply:
            raise StepFailed(f"no {step.source_path} value to measure (no {step.source} reply)")
        wire = reply[step.source_field]
    elif step.source_field in WINDOW_QUANTITIES and step.since:  # since: checked at parse
        wire = _window_quantity(ex, step.source_field, ex.marks[step.since].t_ms)
    else:
        wire = _quantity(ex, step.source_field)
        if step.since:
            wire -= _quantity(ex, step.source_field, ex.marks[step.since])
    value = units.convert(wire, step.source_unit, step.unit)
    if isinstance(value, float):
        value = round(value, 6)
    record = ex.measurements[id(step)]
    record.value = value
    record.wire_value = wire
    record.wire_unit = step.source_unit
    record.since = step.since
    low_ok = step.min is None or value >= step.min
    high_ok = step.max is None or value <= step.max
    record.outcome = MeasurementOutcome.PASS if low_ok and high_ok else MeasurementOutcome.FAIL
    text = f"{step.name} = {value} {step.unit}, limits {record.limits_text()}"
    if record.outcome is MeasurementOutcome.FAIL:
        # A measurement out of limits fails the scenario but does not stop
        # it: the next measurements are still worth having in the report.
        ex.record.settle(Outcome.FAIL, f"{step_where(step)}: {text}: out of limits")
    return f"{text}: {record.outcome}"


def run_flow_accuracy(ex: Executor, step: FlowAccuracyStep) -> str:
    status = ex.need_pump().status()
    rate = status["rate_nl_day"]
    if rate <= 0 or status["state_name"] != "RUNNING":
        raise StepFailed(f"the pump is not delivering ({status['state_name']}, rate {rate} nL/day)")
    scale = step.scale or flow.auto_scale(rate, min(step.windows_ms), step.strokes_per_window)
    sample_ms = step.sample_ms * scale
    samples = step.period_ms // step.sample_ms
    rig = ex.need_rig()
    truth = ex.truth()
    assert truth is not None
    volumes = [int(truth["tip_nl"])]
    times = [rig.advance(0)]
    for _ in range(samples):
        ex.advance_by(sample_ms, sample=False)
        truth = ex.truth()
        assert truth is not None
        volumes.append(int(truth["tip_nl"]))
        # when the truth was read: in lockstep the end of the ADVANCE;
        # in real time (a rig, a free-running board) a little later
        times.append(rig.advance(0))
        if len(volumes) % 8 == 0:
            ex.sample()
    ex.sample()
    volumes = flow.on_grid(times, volumes, sample_ms)
    analysis = flow.analyse(
        volumes,
        sample_ms=sample_ms,
        rate_nl_day=rate,
        analysis_from_ms=step.analysis_from_ms * scale,
        windows_ms=[w * scale for w in step.windows_ms],
        scale=scale,
    )
    ex.replies["flow_accuracy"] = analysis.fields()
    ex.record.flows.append(
        FlowRecord(
            line=step.line,
            rate_nl_day=rate,
            scale=scale,
            sample_ms=sample_ms,
            analysis_from_ms=analysis.analysis_from_ms,
            times_ms=analysis.times_ms,
            flows_nl_day=[round(q, 1) for q in analysis.flows_nl_day],
            errors_pct=[round(e, 4) for e in analysis.errors_pct],
            windows_ms=[t.window_ms for t in analysis.trumpets],
            ep_max_pct=[round(t.ep_max_pct, 4) for t in analysis.trumpets],
            ep_min_pct=[round(t.ep_min_pct, 4) for t in analysis.trumpets],
            mean_error_pct=round(analysis.mean_error_pct, 4),
            startup_error_pct=round(analysis.startup_error_pct, 4),
        )
    )
    return (
        f"rate {rate} nL/day, scale x{scale} (sample {fmt_ms(sample_ms)}, "
        f"{samples} samples), mean error {analysis.mean_error_pct:+.2f} %"
    )


KINDS = (
    StepKind(
        "flow_accuracy",
        FlowAccuracyStep,
        _parse_flow_accuracy,
        run_flow_accuracy,
        fields=(
            "`sample` (30s), `period` (2h), `analysis_from` (1h), `windows` (2, 5, 11, 19, 31"
            " min), `scale` (`auto` or an integer), `strokes_per_window` (20)"
        ),
        does="the IEC 60601-2-24 flow test on the running program (below)",
    ),
    StepKind(
        "measure",
        MeasureStep,
        _parse_measure,
        run_measure,
        fields=(
            "`name`, `from`, `unit`; `min` and/or `max`, or `nominal` with `tolerance` (`2%` "
            "or a quantity); `since` (quantities only)"
        ),
        does=(
            "a named value judged against limits in `unit`. FAIL when out of limits, but the "
            "scenario goes on, so the report has every value"
        ),
    ),
)
