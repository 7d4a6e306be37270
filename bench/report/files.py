"""The report folder: every file written from one run record (the plots first, so that
results.json and the page can name them).
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import html as htmlreport
from bench.report.junit import junit_tree
from bench.report.records import RunRecord
from bench.report.summary import summary_text

RESULTS_JSON = "results.json"
JUNIT_XML = "junit.xml"
SUMMARY_TXT = "summary.txt"
REPORT_HTML = "report.html"
PLOTS_DIR = "plots"


def write_reports(run: RunRecord, directory: Path, *, plots: bool = True) -> Path:
    """Writes the plots, results.json, junit.xml, summary.txt and report.html.

    Returns the HTML page. The plots come first so that results.json and the
    page can name them. ``plots=False`` skips matplotlib (fast tests).
    """
    directory.mkdir(parents=True, exist_ok=True)
    if plots:
        from bench.report import plots as plotting  # matplotlib takes a second to import

        plotting.write_plots(run, directory / PLOTS_DIR)
    (directory / RESULTS_JSON).write_text(
        json.dumps(run.to_json(), indent=1) + "\n", encoding="utf-8"
    )
    junit_tree(run).write(directory / JUNIT_XML, encoding="utf-8", xml_declaration=True)
    (directory / SUMMARY_TXT).write_text(summary_text(run), encoding="utf-8")
    page = directory / REPORT_HTML
    page.write_text(htmlreport.render(run, directory), encoding="utf-8")
    return page
