"""junit.xml: one testcase per scenario, as pytest writes one (FAIL, ERROR, SKIP, XFAIL)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from bench.report.records import Outcome, RunRecord, fingerprint_hex
from protocol import schema


def _properties(parent: ET.Element, values: dict[str, str]) -> None:
    props = ET.SubElement(parent, "properties")
    for name, value in values.items():
        ET.SubElement(props, "property", name=name, value=value)


def junit_tree(run: RunRecord) -> ET.ElementTree:
    counts = run.counts()
    attrs = {
        "name": "pumpbench",
        "tests": str(len(run.scenarios)),
        "failures": str(counts["FAIL"] + (counts["XPASS"] if run.strict_xfail else 0)),
        "errors": str(counts["ERROR"]),
        "skipped": str(counts["SKIP"] + counts["XFAIL"]),
        "time": f"{run.wall_s:.3f}",
    }
    suites = ET.Element("testsuites", attrs)
    suite = ET.SubElement(suites, "testsuite", {**attrs, "timestamp": run.started_at})
    device = run.device
    props = {
        "bench_version": run.bench,
        "bench_schema_fingerprint": fingerprint_hex(schema.FINGERPRINT),
        "target": run.target,
    }
    if device is not None:
        props |= {
            "firmware_version": device.firmware_version,
            "board": device.board,
            "device_id": device.device_id,
            "schema_fingerprint": fingerprint_hex(device.schema_fingerprint),
        }
    _properties(suite, props)
    for s in run.scenarios:
        case = ET.SubElement(
            suite,
            "testcase",
            classname="pumpbench." + Path(s.file).stem,
            name=s.id,
            file=s.file,
            time=f"{s.wall_s:.3f}",
        )
        case_props = {
            "title": s.title,
            "requirements": " ".join(s.requirements),
            "seed": "" if s.seed is None else str(s.seed),
            "outcome": str(s.outcome),
            "device_time_ms": "" if s.device_time_ms is None else str(s.device_time_ms),
        }
        if s.xfail is not None:
            case_props["xfail"] = s.xfail
        for m in s.measurements:
            shown = "not run" if m.value is None else f"{m.value} {m.unit}"
            case_props[f"measure.{m.name}"] = f"{shown} {m.limits_text()} {m.outcome}"
        _properties(case, case_props)
        detail = "\n".join(s.problems)
        first = s.problems[0] if s.problems else ""
        if s.outcome is Outcome.FAIL:
            ET.SubElement(case, "failure", message=first, type="FAIL").text = detail
        elif s.outcome is Outcome.ERROR:
            ET.SubElement(case, "error", message=first, type="ERROR").text = detail
        elif s.outcome is Outcome.SKIP:
            ET.SubElement(case, "skipped", message=first)
        elif s.outcome is Outcome.XFAIL:
            # as pytest writes an xfail: skipped, with the reason
            ET.SubElement(case, "skipped", type="xfail", message=f"xfail: {s.xfail}").text = detail
        elif s.outcome is Outcome.XPASS and run.strict_xfail:
            message = f"XPASS(strict): {s.xfail}"
            ET.SubElement(case, "failure", message=message, type="XPASS")
        out = list(s.log)
        if s.firmware_stderr:
            out += ["firmware stderr:", s.firmware_stderr]
        if out:
            ET.SubElement(case, "system-out").text = "\n".join(out)
    ET.indent(suites)
    return ET.ElementTree(suites)
