"""report.html in a real browser (headless Chromium), at a phone's width.

A page is opened from disk as a person opens a CI artifact. A small page of
the test's own loads the report in a 390-pixel frame (a phone) and reads back
what a person would see: every image loaded, every in-page anchor lands on
an element, the page does not scroll sideways (wide tables scroll in their
own box); every file link exists on disk; the browser logged no console
error. A screenshot at that width is taken and checked for its size.
Chromium comes from Debian's packages; without it the test is skipped with
one line, and `.ci/run` installs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

from bench.board.paths import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PHONE_WIDTH = 390
SCENARIOS = ("battery-eri-eos.yaml", "occlusion-minimum-rate.yaml", "status.yaml")
# Reads the framed report once it and its images have loaded.
CHECK_PAGE = """<!DOCTYPE html><html><body>
<iframe id="report" src="REPORT" style="width:WIDTHpx;height:900px;border:0"></iframe>
<pre id="result">pending</pre>
<script>
const frame = document.getElementById("report");
frame.addEventListener("load", () => {
  const doc = frame.contentDocument, win = frame.contentWindow;
  const images = [...doc.images]
      .map(i => [i.getAttribute("src"), i.complete && i.naturalWidth > 0]);
  const anchors = [...doc.querySelectorAll("a[href]")].map(a => a.getAttribute("href"));
  const missing = anchors.filter(h => h.startsWith("#"))
      .filter(h => !doc.getElementById(decodeURIComponent(h.slice(1))));
  const files = anchors.filter(h => !h.startsWith("#"));
  const overflow = doc.documentElement.scrollWidth - win.innerWidth;
  document.getElementById("result").textContent =
      JSON.stringify({images, missing, files, overflow, anchors: anchors.length});
});
</script></body></html>
"""
BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-file-access-from-files",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=15000",
]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium: apt-get install chromium (.ci/run installs it)"
)


def _browser(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *BROWSER_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("report")
    scenarios = [str(ROOT / "bench" / "scenarios" / name) for name in SCENARIOS]
    result = subprocess.run(
        [sys.executable, "-m", "bench.cli.main", "run", *scenarios, "--report", str(directory)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return directory / "report.html"


def test_the_report_reads_on_a_phone_in_a_real_browser(report: Path, tmp_path: Path) -> None:
    check = tmp_path / "check.html"
    relative = os.path.relpath(report, tmp_path)
    check.write_text(CHECK_PAGE.replace("REPORT", relative).replace("WIDTH", str(PHONE_WIDTH)))
    run = _browser(tmp_path / "profile", "--dump-dom", check.as_uri())
    found = re.search(r'<pre id="result">(.*?)</pre>', run.stdout, re.DOTALL)
    assert found and found.group(1) != "pending", run.stdout[-2000:] + run.stderr[-2000:]
    seen = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert seen["images"], "the report shows no plot"
    assert [src for src, ok in seen["images"] if not ok] == []  # no broken image
    assert seen["missing"] == []  # every in-page anchor lands
    assert seen["anchors"] >= len(SCENARIOS)
    for href in seen["files"]:  # scenario file links, relative to the report
        assert (report.parent / unquote(href)).resolve().is_file(), href
    assert seen["overflow"] <= 0, "the page scrolls sideways at a phone's width"
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line]
    assert console == []


def test_a_phone_width_screenshot_of_the_report(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "phone.png"
    _browser(
        tmp_path / "profile",
        f"--screenshot={shot}",
        f"--window-size={PHONE_WIDTH},2400",
        report.as_uri(),
    )
    assert shot.exists(), "Chromium wrote no screenshot"
    assert _png_size(shot) == (PHONE_WIDTH, 2400)
