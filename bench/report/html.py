"""``report.html``: one page a person opens after a run.

It holds what results.json holds, laid out for reading: the run (firmware,
schema fingerprint, seeds, times), a summary table, the requirement-to-
scenario traceability table generated from the scenarios' ``requirements``,
then each scenario with its measurements (value, limits, units, outcome),
its plots (bench/report/plots.py) and its step log. One file plus its ``plots/``
folder, no scripts, nothing fetched from the network: it opens from a CI
artifact as well as from disk.
"""

from __future__ import annotations

import os
from collections import defaultdict
from html import escape
from pathlib import Path
from urllib.parse import quote

from bench.report.records import (
    Outcome,
    RunRecord,
    ScenarioRecord,
    fingerprint_hex,
    format_ms,
    format_span,
)
from bench.report.summary import counts_line
from protocol import schema

COLOURS = {
    Outcome.PASS: "#1e8449",
    Outcome.SKIP: "#7f8c8d",
    Outcome.XFAIL: "#b9770e",
    Outcome.XPASS: "#8e44ad",
    Outcome.FAIL: "#c0392b",
    Outcome.ERROR: "#922b21",
}
MEASURE_COLOURS = {"PASS": "#1e8449", "FAIL": "#c0392b", "NOT_RUN": "#7f8c8d"}

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em;
  border-bottom: 1px solid #ccc; } h3 { font-size: 1.1em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
.wide { overflow-x: auto; max-width: 100%; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f4f6f7; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { color: #fff; border-radius: 3px; padding: .05em .45em; font-weight: 600;
         font-size: .85em; white-space: nowrap; }
.scenario { border-top: 3px solid #eee; margin-top: 2em; }
.problem { color: #922b21; } .note { color: #7f6000; }
img { max-width: 100%; height: auto; border: 1px solid #eee; margin: .4em 0; }
@media (max-width: 600px) { body { margin: .5em auto; padding: 0 .5em; }
  table { font-size: .8em; } th, td { padding: .2em .35em; } }
pre { background: #f8f9f9; padding: .6em; overflow-x: auto; font-size: .82em; }
table.info th, table.info td { border: none; padding: .1em 1em .1em 0; background: none; }
table.info td { overflow-wrap: anywhere; }
.nowrap, td.num, td.id { white-space: nowrap; }
.banner { font-size: 1.05em; padding: .5em .8em; border-radius: 4px; color: #fff; }
"""


def _badge(outcome: str, colour: str) -> str:
    return f'<span class="badge" style="background:{colour}">{escape(outcome)}</span>'


def _outcome(outcome: Outcome) -> str:
    return _badge(str(outcome), COLOURS[outcome])


def _dl(items: list[tuple[str, str]]) -> str:
    """Label and value pairs (values are HTML already)."""
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in items)
    return _wide(f'<table class="info">{rows}</table>')


def _requirements(requirements: list[str]) -> str:
    return "<br>".join(f'<span class="nowrap">{escape(r)}</span>' for r in requirements)


def _run_info(run: RunRecord) -> str:
    device = run.device
    items = [
        ("outcome", _outcome(run.outcome) + f" &nbsp; exit code {run.exit_code()}"),
        ("scenarios", escape(counts_line(run))),
        ("target", escape(run.target + (f", rig {run.rig}" if run.rig else ""))),
        ("started", escape(f"{run.started_at} (UTC), wall {run.wall_s:.1f} s")),
        ("device time", escape(format_ms(run.device_time_ms) + " run in all")),
        ("seed", escape("per scenario" if run.seed_override is None else str(run.seed_override))),
        ("bench", escape(f"pumpbench {run.bench}, schema {fingerprint_hex(schema.FINGERPRINT)}")),
    ]
    if device is not None:
        items.insert(
            3,
            (
                "firmware",
                escape(
                    f"{device.firmware_version} on {device.board} {device.device_id}, "
                    f"protocol v{device.protocol_version}, "
                    f"schema {fingerprint_hex(device.schema_fingerprint)}"
                ),
            ),
        )
    return _dl(items)


def _summary(run: RunRecord) -> str:
    rows = []
    for s in run.scenarios:
        measured = sum(m.outcome.value == "PASS" for m in s.measurements)
        problem = escape(s.problems[0]) if s.problems else ""
        rows.append(
            f'<tr><td class="id"><a href="#{escape(s.id)}">{escape(s.id)}</a></td>'
            f"<td>{escape(s.title)}</td><td>{_outcome(s.outcome)}</td>"
            f"<td>{_requirements(s.requirements)}</td>"
            f'<td class="num">{measured}/{len(s.measurements)}</td>'
            f'<td class="num">{escape(format_span(s.device_time_ms))}</td>'
            f'<td class="num">{s.wall_s:.2f}</td><td class="problem">{problem}</td></tr>'
        )
    head = (
        "<tr><th>scenario</th><th>title</th><th>outcome</th><th>requirements</th>"
        "<th>measured ok</th><th>device time</th><th>wall s</th><th>first problem</th></tr>"
    )
    return _wide(f"<table>{head}{''.join(rows)}</table>")


def _wide(table: str) -> str:
    """A table that scrolls inside its box on a narrow screen instead of the page."""
    return f'<div class="wide">{table}</div>'


def requirement_status(records: list[ScenarioRecord]) -> Outcome:
    """A requirement is verified (PASS) only when every scenario tracing it passed."""
    outcomes = [r.outcome for r in records]
    for worst in (Outcome.ERROR, Outcome.FAIL, Outcome.XFAIL, Outcome.XPASS, Outcome.SKIP):
        if worst in outcomes:
            return worst
    return Outcome.PASS


def traceability(run: RunRecord) -> list[tuple[str, list[ScenarioRecord]]]:
    """Requirement id -> the scenarios that verify it, sorted by requirement."""
    table: dict[str, list[ScenarioRecord]] = defaultdict(list)
    for s in run.scenarios:
        for requirement in s.requirements:
            table[requirement].append(s)
    return sorted(table.items())


def _traceability(run: RunRecord) -> str:
    rows = []
    for requirement, records in traceability(run):
        status = requirement_status(records)
        verified = "verified" if status is Outcome.PASS else str(status).lower()
        links = ", ".join(
            f'<span class="nowrap"><a href="#{escape(r.id)}">{escape(r.id)}</a> '
            f"{_outcome(r.outcome)}</span>"
            for r in records
        )
        rows.append(
            f'<tr><td class="id">{escape(requirement)}</td>'
            f"<td>{_badge(verified, COLOURS[status])}</td><td>{links}</td></tr>"
        )
    untraced = [s.id for s in run.scenarios if not s.requirements]
    tail = (
        f'<p class="note">Scenarios tracing no requirement: {escape(", ".join(untraced))}</p>'
        if untraced
        else ""
    )
    head = "<tr><th>requirement</th><th>status</th><th>scenarios</th></tr>"
    return _wide(f"<table>{head}{''.join(rows)}</table>") + tail


def _measurements(s: ScenarioRecord) -> str:
    if not s.measurements:
        return "<p>No measurements.</p>"
    rows = []
    for m in s.measurements:
        value = "—" if m.value is None else escape(f"{m.value}")
        wire = ""
        if m.wire_value is not None and m.wire_unit != m.unit:
            wire = escape(f" ({m.wire_value} {m.wire_unit})")
        since = escape(f" since {m.since}") if m.since else ""
        rows.append(
            f"<tr><td>{escape(m.name)}</td><td>{escape(m.source)}{since}</td>"
            f'<td class="num">{value}{wire}</td>'
            f'<td class="num">{"" if m.min is None else escape(str(m.min))}</td>'
            f'<td class="num">{"" if m.max is None else escape(str(m.max))}</td>'
            f"<td>{escape(m.unit)}</td>"
            f"<td>{_badge(str(m.outcome), MEASURE_COLOURS[str(m.outcome)])}</td>"
            f'<td class="num">{m.line}</td></tr>'
        )
    head = (
        "<tr><th>measurement</th><th>from</th><th>value</th><th>min</th><th>max</th>"
        "<th>unit</th><th>outcome</th><th>line</th></tr>"
    )
    return _wide(f"<table>{head}{''.join(rows)}</table>")


def _flows(s: ScenarioRecord) -> str:
    parts = []
    for f in s.flows:
        cells = "".join(
            f'<tr><td class="num">{w / 60_000 / f.scale:g}</td>'
            f'<td class="num">{w / 60_000:g}</td>'
            f'<td class="num">{hi:+.2f}</td><td class="num">{lo:+.2f}</td></tr>'
            for w, hi, lo in zip(f.windows_ms, f.ep_max_pct, f.ep_min_pct, strict=True)
        )
        parts.append(
            f"<p>IEC 60601-2-24 at {f.rate_nl_day / 1e6:g} mL/day, time scale x{f.scale} "
            f"(Δt {f.sample_ms / 1000:g} s): mean error A {f.mean_error_pct:+.3f} %, "
            f"start-up period error {f.startup_error_pct:+.3f} %</p>"
            + _wide(
                "<table><tr><th>window (standard min)</th><th>window (device min)</th>"
                f"<th>Ep(max) %</th><th>Ep(min) %</th></tr>{cells}</table>"
            )
        )
    return "".join(parts)


def _file_link(s: ScenarioRecord, directory: Path | None) -> str:
    """The scenario file and line, linked relative to the report (it opens from disk)."""
    text = escape(f"{s.file}:{s.line}" if s.line else s.file)
    if directory is None or not s.file:
        return text
    target = os.path.relpath(Path(s.file).resolve(), directory.resolve())
    return f'<a href="{escape(quote(target))}">{text}</a>'


def _scenario(s: ScenarioRecord, directory: Path | None = None) -> str:
    items = [
        ("outcome", _outcome(s.outcome)),
        ("file", _file_link(s, directory)),
        ("requirements", escape(", ".join(s.requirements) or "none")),
        ("seed", escape("-" if s.seed is None else str(s.seed))),
        ("device time", escape(f"{format_span(s.device_time_ms)} ({format_ms(s.device_time_ms)})")),
        ("wall time", escape(f"{s.wall_s:.2f} s")),
    ]
    if s.xfail is not None:
        items.insert(1, ("expected to fail", escape(s.xfail)))
    problems = "".join(f'<li class="problem">{escape(p)}</li>' for p in s.problems)
    notes = "".join(f'<li class="note">{escape(n)}</li>' for n in s.notes)
    plots = "".join(
        f'<div><img src="{escape(path)}" alt="{escape(kind)} plot of {escape(s.id)}"></div>'
        for kind, path in s.plots.items()
    )
    log = escape("\n".join(s.log))
    stderr = (
        "<details><summary>firmware output</summary>"
        f"<pre>{escape(s.firmware_stderr)}</pre></details>"
        if s.firmware_stderr
        else ""
    )
    return (
        f'<div class="scenario" id="{escape(s.id)}"><h3>{escape(s.id)}: {escape(s.title)}</h3>'
        f"{_dl(items)}"
        + (f"<ul>{problems}</ul>" if problems else "")
        + (f"<ul>{notes}</ul>" if notes else "")
        + _measurements(s)
        + _flows(s)
        + plots
        + f"<details><summary>step log ({len(s.log)} lines)</summary><pre>{log}</pre></details>"
        + stderr
        + "</div>"
    )


def render(run: RunRecord, directory: Path | None = None) -> str:
    """The whole page as text; ``directory`` (where it is written) makes file links relative."""
    banner = (
        f'<div class="banner" style="background:{COLOURS[run.outcome]}">'
        f"{escape(str(run.outcome))}: {escape(counts_line(run))}</div>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>pumpbench report: {escape(str(run.outcome))}</title>"
        f"<style>{_CSS}</style></head><body>"
        "<h1>pumpbench report</h1>"
        "<p><em>Not for clinical use: a research and engineering platform.</em></p>"
        f"{banner}<h2>Run</h2>{_run_info(run)}"
        f"<h2>Scenarios</h2>{_summary(run)}"
        f"<h2>Requirements traceability</h2>{_traceability(run)}"
        f"<h2>Details</h2>{''.join(_scenario(s, directory) for s in run.scenarios)}"
        "</body></html>\n"
    )
