"""summary.txt, and the result lines and table pumpbench run prints: text for a person."""

from __future__ import annotations

from bench.report.records import Outcome, RunRecord, ScenarioRecord, fingerprint_hex, format_ms


def result_line(record: ScenarioRecord) -> str:
    """The line printed as a scenario finishes."""
    line = f"{record.outcome!s:<5} {record.id}  ({record.wall_s:.2f} s)"
    if record.problems:
        line += f"  {record.problems[0]}"
        if len(record.problems) > 1:
            line += f" (+{len(record.problems) - 1} more)"
    return line


def summary_lines(run: RunRecord) -> list[str]:
    """The summary table: printed by the CLI and written to summary.txt."""
    width = max([len("scenario"), *(len(s.id) for s in run.scenarios)])
    lines = [f"{'outcome':<7}  {'scenario':<{width}}  {'wall s':>7}  device time run"]
    for s in run.scenarios:
        lines.append(
            f"{s.outcome!s:<7}  {s.id:<{width}}  {s.wall_s:7.2f}  {format_ms(s.device_time_ms)}"
        )
    lines.append(counts_line(run))
    xpass = [s.id for s in run.scenarios if s.outcome is Outcome.XPASS]
    if xpass:
        lines.append(
            f"XPASS: {', '.join(xpass)} passed although marked xfail: "
            "what they wait for has landed; remove their xfail"
        )
    return lines


def counts_line(run: RunRecord) -> str:
    counts = run.counts()
    total = len(run.scenarios)
    text = (
        f"{total} scenario{'' if total == 1 else 's'}: {counts['PASS']} passed, "
        f"{counts['FAIL']} failed, {counts['ERROR']} errors, "
        f"{counts['SKIP']} not applicable"
    )
    if counts["XFAIL"] or counts["XPASS"]:
        text += f", {counts['XFAIL']} xfailed, {counts['XPASS']} xpassed"
    return text + f" ({run.wall_s:.1f} s, {run.jobs} job{'' if run.jobs == 1 else 's'})"


def summary_text(run: RunRecord) -> str:
    device = run.device
    head = [
        f"pumpbench {run.bench}: {run.outcome}",
        f"started {run.started_at}, target {run.target}" + (f", rig {run.rig}" if run.rig else ""),
    ]
    if device is not None:
        head.append(
            f"firmware {device.firmware_version} on {device.board} {device.device_id}, "
            f"schema {fingerprint_hex(device.schema_fingerprint)}"
        )
    body = summary_lines(run)
    problems = [f"  {s.id} ({s.outcome}): {p}" for s in run.scenarios for p in s.problems]
    tail = ["", "problems:", *problems] if problems else []
    return "\n".join([*head, "", *body, *tail]) + "\n"
