"""PNG plots for the report, made with matplotlib (Agg: no display needed).

Where a person would rather look than read:

- delivered volume against device time: what left the catheter (rig truth),
  what the pump says it delivered, and the programmed line, with alarms,
  faults and power events marked on the time axis;
- for each flow-accuracy step, the IEC 60601-2-24 start-up curve (flow in
  each sample interval against the set rate) and trumpet curve (Ep(max),
  Ep(min) per observation window, with the mean error A);
- the pressure trace with fault onset and alarms marked, when the rig
  provides one (TRACE, safety issue); until then the report says why not.

Figures are made with the object API (``Figure``), never pyplot, so plots
can be drawn from any thread and leave no global state behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before anything else of matplotlib is imported

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bench.report.records import Annotation, FlowRecord, RunRecord, ScenarioRecord

DPI = 100
SIZE = (11.0, 4.2)  # wide: the legend sits right of the axes
COLOURS = {
    "alarm": "#c0392b",
    "alarm_cleared": "#27ae60",
    "fault": "#e67e22",
    "fault_cleared": "#7f8c2d",
    "power_off": "#555555",
    "boot": "#555555",
    "bolus": "#2471a3",
    "mark": "#8e44ad",
}
STYLES = {"alarm_cleared": ":", "boot": ":", "bolus": ":", "mark": "-."}
MAX_BOLUS_MARKS = 12  # a 90-day soak with a daily bolus would be all lines


def time_axis(span_ms: int) -> tuple[float, str]:
    """Divisor and label for a device-time axis that reads well over this span."""
    if span_ms <= 3 * 3_600_000:
        return 60_000.0, "device time (min)"
    if span_ms <= 3 * 86_400_000:
        return 3_600_000.0, "device time (h)"
    return 86_400_000.0, "device time (days)"


def volume_axis(max_nl: float) -> tuple[float, str]:
    if max_nl < 2_000_000:
        return 1_000.0, "volume (uL)"
    return 1_000_000.0, "volume (mL)"


ALARM_PALETTE = ("#c0392b", "#d35400", "#8e44ad", "#b7950b", "#1abc9c", "#e84393")


def _mark(
    ax: Axes, annotations: Sequence[Annotation], t0: int, divisor: float, labels: bool = True
) -> None:
    """Vertical lines for alarms, faults and power events, each labelled once.

    Each alarm gets its own colour: solid dashes when raised, dots when cleared.
    """
    boluses = [a for a in annotations if a.kind == "bolus"]
    shown = [a for a in annotations if a.kind != "bolus"]
    if len(boluses) <= MAX_BOLUS_MARKS:
        shown += boluses
    alarm_names = sorted({a.label for a in shown if a.kind in ("alarm", "alarm_cleared")})
    palette = {name: ALARM_PALETTE[i % len(ALARM_PALETTE)] for i, name in enumerate(alarm_names)}
    seen: set[str] = set()
    low, high = ax.get_xlim()
    for a in sorted(shown, key=lambda a: a.t_ms):
        x = (a.t_ms - t0) / divisor
        if not low <= x <= high:
            continue
        label = {"bolus": "bolus", "alarm_cleared": f"{a.label} cleared"}.get(a.kind, a.label)
        colour = palette.get(a.label) if a.kind.startswith("alarm") else COLOURS.get(a.kind)
        ax.axvline(
            x,
            color=colour or "#333333",
            linestyle=STYLES.get(a.kind, "--"),
            linewidth=1.0,
            alpha=0.8,
            label=None if label in seen or not labels else label,
        )
        seen.add(label)


Series = tuple[list[float], list[float], dict[str, object]]
MARKS_PER_LINE = 12  # markers along a line, so lines that coincide stay visible
RESIDUAL_FROM_MS = 86_400_000  # runs of a day or more get the residual panel
ZOOM_MAX_SHARE = 0.1  # events within a tenth of the axis get an inset around them
UNIT_NL = {"nL": 1.0, "uL": 1_000.0, "mL": 1_000_000.0}


def _draw(
    ax: Axes, series: Sequence[Series], low: float | None = None, high: float | None = None
) -> None:
    """Plots each series (only the part in [low, high] when given).

    A style's ``offset`` (0 or 1) shifts its markers by half a period, so two
    lines that lie on each other show both kinds of marker.
    """
    for xs, ys, style in series:
        if low is not None and high is not None:
            kept = [(x, y) for x, y in zip(xs, ys, strict=True) if low <= x <= high]
            xs, ys = [x for x, _y in kept], [y for _x, y in kept]
        if not xs:
            continue
        kwargs = dict(style)
        every = max(1, len(xs) // MARKS_PER_LINE)
        start = int(kwargs.pop("offset", 0)) * (every // 2)  # type: ignore[call-overload]
        ax.plot(xs, ys, markevery=(start, every), **kwargs)  # type: ignore[arg-type]


def _style(**kwargs: object) -> dict[str, object]:
    return dict(kwargs)


def _zoom(
    annotations: Sequence[Annotation], t0: int, divisor: float, span: float
) -> tuple[float, float] | None:
    """The window an inset should show: the largest bunch of events (two or more,
    each within 2 % of the axis of the next) that fits in a tenth of the axis."""
    xs = sorted((a.t_ms - t0) / divisor for a in annotations if a.kind != "bolus")
    xs = [x for x in xs if 0 <= x <= span]
    if len(xs) < 2 or span <= 0:
        return None
    bunches: list[list[float]] = [[xs[0]]]
    for x in xs[1:]:
        if x - bunches[-1][-1] <= 0.02 * span:
            bunches[-1].append(x)
        else:
            bunches.append([x])
    fits = [b for b in bunches if len(b) >= 2 and b[-1] - b[0] <= ZOOM_MAX_SHARE * span]
    if not fits:
        return None
    bunch = max(fits, key=len)
    low, high = bunch[0], bunch[-1]
    pad = max((high - low) * 0.5, 0.005 * span)
    return max(0.0, low - pad), min(span, high + pad)


def _inset(
    ax: Axes,
    series: Sequence[Series],
    window: tuple[float, float],
    annotations: Sequence[Annotation],
    t0: int,
    divisor: float,
) -> None:
    """A zoomed copy of the axes around ``window``, placed away from it."""
    low, high = window
    left_half = (low + high) / 2 < sum(ax.get_xlim()) / 2
    box = (0.58, 0.08, 0.38, 0.42) if left_half else (0.06, 0.5, 0.38, 0.42)
    inset = ax.inset_axes(box)
    _draw(
        inset,
        [(xs, ys, {k: v for k, v in st.items() if k != "label"}) for xs, ys, st in series],
        low,
        high,
    )
    inset.set_xlim(low, high)
    _mark(inset, annotations, t0, divisor, labels=False)
    inset.tick_params(labelsize=7)
    inset.set_title("zoom on the events", fontsize=7)
    inset.grid(True, alpha=0.3)
    ax.indicate_inset_zoom(inset, edgecolor="#888888")


def _tolerance_nl(record: ScenarioRecord) -> float | None:
    """Half the width of the delivered-volume limits (a measure from tip_volume), in nL."""
    for m in record.measurements:
        if m.source.startswith("tip_volume") and m.min is not None and m.max is not None:
            scale = UNIT_NL.get(m.unit)
            if scale is not None:
                return (float(m.max) - float(m.min)) / 2 * scale
    return None


def volume_plot(record: ScenarioRecord, path: Path) -> bool:
    """Delivered volume vs device time; False when the scenario delivered nothing to show.

    Lines that coincide (the pump's count on rig truth) keep markers of their
    own; events bunched at one end of a long run get a zoomed inset; runs of
    a day or more get a residual panel (delivered minus programmed) with the
    scenario's tolerance band, where "within 10 uL over 90 days" shows.
    """
    samples = [s for s in record.samples if s.tip_nl is not None or s.pump_nl is not None]
    if len(samples) < 2:
        return False
    first = samples[0]
    t0 = first.t_ms
    span = samples[-1].t_ms - t0
    tip = [
        (s.t_ms, s.tip_nl - first.tip_nl)
        for s in samples
        if s.tip_nl is not None and first.tip_nl is not None
    ]
    pump = [
        (s.t_ms, s.pump_nl - first.pump_nl)
        for s in samples
        if s.pump_nl is not None and first.pump_nl is not None
    ]
    base = first.programmed_nl or 0.0
    programmed = [(s.t_ms, s.programmed_nl - base) for s in samples if s.programmed_nl is not None]
    peak = max([v for _t, v in tip + pump + programmed] + [0.0])
    if span <= 0 or peak <= 0:
        return False
    tdiv, tlabel = time_axis(span)
    vdiv, vlabel = volume_axis(peak)

    def xy(points: Sequence[tuple[int, float]]) -> tuple[list[float], list[float]]:
        return [(t - t0) / tdiv for t, _v in points], [v / vdiv for _t, v in points]

    series: list[Series] = []
    if programmed:
        series.append((*xy(programmed), _style(color="#999999", linewidth=3.0, label="programmed")))
    if tip:
        series.append(
            (
                *xy(tip),
                _style(
                    color="#111111",
                    linewidth=1.4,
                    marker="o",
                    markersize=4,
                    label="delivered (rig truth, catheter tip)",
                ),
            )
        )
    if pump:
        series.append(
            (
                *xy(pump),
                _style(
                    color="#2471a3",
                    linestyle="--",
                    linewidth=1.2,
                    marker="x",
                    markersize=6,
                    offset=1,
                    label="pump-reported",
                ),
            )
        )
    residual = span >= RESIDUAL_FROM_MS and bool(tip) and bool(programmed)
    fig = Figure(figsize=(SIZE[0], SIZE[1] * (1.45 if residual else 1.0)), dpi=DPI)
    if residual:
        ax, low_ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    else:
        ax = fig.subplots()
    _draw(ax, series)
    ax.set_xlim(0, span / tdiv)
    ax.set_ylim(bottom=0)
    _mark(ax, record.annotations, t0, tdiv)
    window = _zoom(record.annotations, t0, tdiv, span / tdiv)
    if window is not None:
        _inset(ax, series, window, record.annotations, t0, tdiv)
    ax.set_ylabel(vlabel)
    ax.set_title(f"{record.id}: delivered volume", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if residual:
        _residual(low_ax, record, tip, programmed, t0, tdiv)
        low_ax.set_xlabel(tlabel)
    else:
        ax.set_xlabel(tlabel)
    fig.tight_layout()
    fig.savefig(path)
    return True


def _residual(
    ax: Axes,
    record: ScenarioRecord,
    tip: Sequence[tuple[int, float]],
    programmed: Sequence[tuple[int, float]],
    t0: int,
    tdiv: float,
) -> None:
    """Delivered minus programmed (uL) at the samples both have, and the tolerance band."""
    planned = dict(programmed)
    points = [(t, v - planned[t]) for t, v in tip if t in planned]
    ax.plot(
        [(t - t0) / tdiv for t, _d in points],
        [d / 1000 for _t, d in points],
        color="#111111",
        linewidth=1.2,
        label="delivered - programmed",
    )
    band = _tolerance_nl(record)
    if band is not None:
        ax.axhspan(
            -band / 1000,
            band / 1000,
            color="#27ae60",
            alpha=0.15,
            label=f"tolerance ±{band / 1000:g} uL",
        )
    ax.axhline(0, color="#999999", linewidth=0.8)
    ax.set_ylabel("residual (uL)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def flow_plot(record: ScenarioRecord, result: FlowRecord, path: Path) -> None:
    """IEC 60601-2-24 start-up curve and trumpet curve, side by side."""
    fig = Figure(figsize=(11.0, 4.2), dpi=DPI)
    startup, trumpet = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    tdiv, tlabel = time_axis(result.times_ms[-1])
    rate_ml_day = result.rate_nl_day / 1e6
    # each Qi holds over its interval: from (end - Δt) to end
    startup.step(
        [(t - result.sample_ms) / tdiv for t in result.times_ms] + [result.times_ms[-1] / tdiv],
        [q / 1e6 for q in result.flows_nl_day] + [result.flows_nl_day[-1] / 1e6],
        where="post",
        color="#2471a3",
        linewidth=1.0,
        label="Qi (each sample interval)",
    )
    startup.axhline(rate_ml_day, color="#111111", linewidth=1.2, label="set rate")
    startup.axvline(
        result.analysis_from_ms / tdiv,
        color="#888888",
        linestyle=":",
        label="trumpet period starts",
    )
    startup.set_xlabel(tlabel)
    startup.set_ylabel("flow (mL/day)")
    startup.set_ylim(bottom=0)
    startup.set_title(
        f"start-up curve: {rate_ml_day:g} mL/day, "
        f"Δt = {result.sample_ms / 1000:g} s (x{result.scale})",
        fontsize=10,
    )
    startup.grid(True, alpha=0.3)
    startup.legend(loc="lower right", fontsize=8)

    windows = [w / 60_000 / result.scale for w in result.windows_ms]
    trumpet.plot(windows, result.ep_max_pct, marker="o", color="#c0392b", label="Ep(max)")
    trumpet.plot(windows, result.ep_min_pct, marker="o", color="#2471a3", label="Ep(min)")
    trumpet.axhline(
        result.mean_error_pct,
        color="#111111",
        linestyle="--",
        label=f"A = {result.mean_error_pct:+.2f} %",
    )
    trumpet.axhline(0, color="#999999", linewidth=0.8)
    trumpet.set_xticks(windows)
    trumpet.set_xlabel(f"observation window, standard minutes (x{result.scale} device time)")
    trumpet.set_ylabel("error (%)")
    bound = max([abs(v) for v in result.ep_max_pct + result.ep_min_pct] + [1.0]) * 1.2
    trumpet.set_ylim(-bound, bound)
    trumpet.set_title("trumpet curve (second half of the run)", fontsize=10)
    trumpet.grid(True, alpha=0.3)
    trumpet.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"{record.id}: IEC 60601-2-24 flow accuracy", fontsize=11)
    fig.tight_layout()
    fig.savefig(path)


def pressure_plot(record: ScenarioRecord, path: Path) -> bool:
    trace = record.trace
    if trace is None or len(trace.times_ms) < 2:
        return False
    # the scenario's start as zero, like the volume plot (the rig may keep
    # only the newest part of a long trace)
    t0 = record.device_time_start_ms or 0
    tdiv, tlabel = time_axis(trace.times_ms[-1] - t0)
    fig = Figure(figsize=SIZE, dpi=DPI)
    ax = fig.subplots()
    xs = [(t - t0) / tdiv for t in trace.times_ms]
    ax.plot(
        xs,
        [p / 10 for p in trace.pressure_x10],
        color="#111111",
        linewidth=1.2,
        label="line pressure (truth)",
    )
    ax.plot(
        xs,
        [p / 10 for p in trace.sensor_x10],
        color="#2471a3",
        linewidth=0.8,
        alpha=0.7,
        label="sensor reading",
    )
    ax.set_xlim(xs[0], xs[-1])
    _mark(ax, record.annotations, t0, tdiv)
    ax.set_xlabel(tlabel)
    ax.set_ylabel("pressure (mmHg)")
    ax.set_title(f"{record.id}: pressure", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    return True


def write_plots(run: RunRecord, directory: Path) -> None:
    """Draws every plot the run's records support; names them in ``record.plots``."""
    directory.mkdir(parents=True, exist_ok=True)
    for record in run.scenarios:
        record.plots = {}
        name = f"{record.id}-volume.png"
        if volume_plot(record, directory / name):
            record.plots["volume"] = f"{directory.name}/{name}"
        for i, result in enumerate(record.flows):
            name = f"{record.id}-flow-{i + 1}.png"
            flow_plot(record, result, directory / name)
            record.plots[f"flow-{i + 1}"] = f"{directory.name}/{name}"
        name = f"{record.id}-pressure.png"
        if pressure_plot(record, directory / name):
            record.plots["pressure"] = f"{directory.name}/{name}"
        elif record.trace is not None and record.trace.note:
            note = f"{record.trace.note}; pressure plot skipped"
            if note not in record.notes:
                record.notes.append(note)
