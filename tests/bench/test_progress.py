"""What `pumpbench run` shows while it works: a bar on a terminal, lines otherwise."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bench.cli.main import main
from bench.cli.progress import Progress
from bench.report.records import Outcome, ScenarioRecord
from bench.scenario.load import parse_scenario

LONG = "id: soak\ntitle: soak\nsteps:\n  - advance: {duration: 10d}\n"
SHORT = "id: quick\ntitle: quick\nsteps:\n  - advance: {duration: 1h}\n"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _progress(bar: bool | None = None) -> tuple[Progress, io.StringIO, io.StringIO]:
    scenarios = [parse_scenario(LONG, "soak.yaml"), parse_scenario(SHORT, "quick.yaml")]
    out, err = io.StringIO(), Terminal()
    return Progress(scenarios, out=out, err=err, bar=bar), out, err


def test_a_terminal_gets_a_bar_that_moves_with_device_time() -> None:
    progress, out, err = _progress()  # err is a tty: bar
    progress.start(parse_scenario(LONG, "soak.yaml"))
    progress.advance("soak", 5 * 86_400_000)  # half of its 10 days: a quarter of the run
    line = progress.line()
    assert line.startswith("[" + "#" * 6 + "." * 18 + "] 0/2   25 %")
    assert line.endswith("running: soak (5d 00h)")
    progress.result(ScenarioRecord("soak", "soak", "soak.yaml", [], 1, wall_s=1.0))
    assert progress.fraction() == 0.5
    progress.close()
    drawn = err.getvalue()
    assert "\r\x1b[2K[" in drawn  # redrawn in place
    assert drawn.endswith("\r\x1b[2K")  # and erased at the end
    assert out.getvalue() == "PASS  soak  (1.00 s)\n"  # results go to stdout, one line each


def test_without_a_terminal_only_result_lines() -> None:
    progress, out, err = _progress(bar=False)
    progress.start(parse_scenario(SHORT, "quick.yaml"))
    progress.advance("quick", 1_800_000)
    record = ScenarioRecord("quick", "quick", "quick.yaml", [], 1, wall_s=0.5)
    record.settle(Outcome.FAIL, "line 4: advance: something")
    progress.result(record)
    progress.close()
    assert err.getvalue() == ""
    assert out.getvalue() == "FAIL  quick  (0.50 s)  line 4: advance: something\n"


def test_the_cli_prints_one_line_per_scenario_when_piped(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for name, text in (("soak", LONG), ("quick", SHORT)):
        (tmp_path / f"{name}.yaml").write_text(text)
    report = tmp_path / "report"
    assert main(["run", str(tmp_path), "--report", str(report), "--no-plots", "--jobs", "2"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # no bar when stderr is not a terminal
    lines = captured.out.splitlines()
    assert sorted(line.split()[1] for line in lines[:2]) == ["quick", "soak"]
    assert lines[-2].startswith("2 scenarios: 2 passed")
    assert lines[-2].endswith("2 jobs)")
