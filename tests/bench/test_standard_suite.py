"""A quick slice of the standard suite, end to end: verdicts, report, plots.

The whole suite (`make run`) takes a while because of the 90-day soak and
is not run here; these scenarios cover each kind of step it uses.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from bench.cli.main import main
from bench.link.transport import Transport
from protocol import codec
from tests.protocol.test_spec_decoder import check_against_spec

SUITE = Path(__file__).resolve().parents[2] / "bench" / "scenarios"
QUICK = [
    "flow-accuracy-4ml-day",
    "hard-limit-refused",
    "motor-stall",
    "occlusion-intermediate-rate",
    "patient-bolus-lockout-daily-max",
    "power-loss-during-bolus",
    "runaway-governor",
]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC), path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# Every frame the bench received during the run (pump and rig ports, replies
# and events), as it arrived: decoded again from SPEC.md alone below.
RECEIVED: list[bytes] = []


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("suite") / "report"
    paths = [str(SUITE / f"{name}.yaml") for name in QUICK]
    deliver = Transport._deliver

    def tap(self: Transport, chunk: bytes) -> None:
        RECEIVED.append(bytes(chunk))  # list.append is atomic: boards run in threads
        deliver(self, chunk)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Transport, "_deliver", tap)
        code = main(["run", *paths, "--jobs", "2", "--report", str(directory)])
    assert code == 0
    return directory


def test_every_frame_of_the_run_decodes_from_the_spec_alone(report: Path) -> None:
    # protocol/SPEC.md is enough to write a client: the decoder written from
    # its tables (tests/protocol/test_spec_decoder.py) reads every reply and
    # event of these scenarios as the bench's codec (protocol/schema.py) does.
    assert report.exists()
    assert len(RECEIVED) > 1_000
    names = set()
    for chunk in RECEIVED:
        frame = codec.decode(chunk)
        check_against_spec(chunk, frame.name, frame.seq, frame.flags, frame.fields)
        names.add(frame.name)
    assert {"HELLO", "STATUS", "PROGRAM", "BOLUS_EVENT", "ALARM", "ADVANCE", "TRUTH"} <= names


def test_quick_slice_passes(report: Path) -> None:
    data = json.loads((report / "results.json").read_text())
    outcomes = {s["id"]: s["outcome"] for s in data["scenarios"]}
    assert {outcomes[name] for name in QUICK} == {"PASS"}, outcomes
    assert data["jobs"] == 2
    assert data["firmware_version"] and data["schema_fingerprint"]
    assert data["seeds"]["runaway-governor"] == 71
    for s in data["scenarios"]:
        assert s["device_time_ms"] is not None and s["wall_s"] > 0
        for m in s["measurements"]:
            assert {"value", "min", "max", "unit", "outcome"} <= set(m)
    flows = next(s for s in data["scenarios"] if s["id"] == "flow-accuracy-4ml-day")
    (result,) = flows["flow_accuracy"]
    assert result["scale"] == 1 and len(result["errors_pct"]) == 240
    assert [w // 60_000 for w in result["windows_ms"]] == [2, 5, 11, 19, 31]


def test_plots_are_written_and_not_trivial(report: Path) -> None:
    data = json.loads((report / "results.json").read_text())
    plots = {s["id"]: s["plots"] for s in data["scenarios"]}
    assert "flow-1" in plots["flow-accuracy-4ml-day"]
    for name in ("flow-accuracy-4ml-day", "power-loss-during-bolus", "runaway-governor"):
        assert "volume" in plots[name]
    # a scenario with `trace:` gets the rig's pressure trace, fault and alarm marked
    assert "pressure" in plots["occlusion-intermediate-rate"]
    for files in plots.values():
        for relative in files.values():
            path = report / relative
            assert path.stat().st_size > 10_000, path  # a real figure, not an empty canvas
            width, height = png_size(path)
            assert width >= 800 and height >= 300
    occlusion = next(s for s in data["scenarios"] if s["id"] == "occlusion-intermediate-rate")
    assert len(occlusion["trace"]["pressure_x10"]) > 100
    kinds = {a["kind"] for a in occlusion["annotations"]}
    assert {"fault", "alarm", "fault_cleared"} <= kinds


def test_html_page_links_plots_and_traces_requirements(report: Path) -> None:
    page = (report / "report.html").read_text()
    data = json.loads((report / "results.json").read_text())
    for s in data["scenarios"]:
        assert f'id="{s["id"]}"' in page
        for relative in s["plots"].values():
            assert f'src="{relative}"' in page
    assert "Requirements traceability" in page
    assert "REQ-GOV-001" in page and "REQ-OCCL-001" in page
    assert data["schema_fingerprint"] in page
    assert "<script" not in page  # opens anywhere, fetches nothing


def test_junit_and_summary(report: Path) -> None:
    junit = (report / "junit.xml").read_text()
    assert 'name="firmware_version"' in junit and 'name="schema_fingerprint"' in junit
    assert 'name="measure.time_to_stop"' in junit
    summary = (report / "summary.txt").read_text()
    assert "7 scenarios: 7 passed" in summary
