"""The pytest plugin (bench/plugin.py), tested from the outside with pytester.

Each test writes a small project into a temporary directory and runs pytest
on it in-process; the plugin arrives through its entry point, exactly as in
a user's project.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from bench.board.sim import BoardOptions, VirtualBoard
from protocol import schema

pytest_plugins = ["pytester"]

FINGERPRINT = f"0x{schema.FINGERPRINT:08x}"

PASSING = """\
id: quick
title: A quick scenario
requirements: [REQ-T-1]
steps:
  - advance: {duration: 1h}
  - measure: {name: advanced, from: advance.advanced_ms, unit: min, min: 60, max: 60}
"""
FAILING = """\
id: too-short
title: Expects more time than it advances
steps:
  - advance: {duration: 1h}
  - measure: {name: advanced, from: advance.advanced_ms, unit: min, min: 61}
"""
EXPECTED_TO_FAIL = """\
id: waits
title: Waits for a capability
xfail: the pump cannot do this yet
steps:
  - expect_state: {state: RUNNING}
"""
UNEXPECTEDLY_PASSING = """\
id: landed
title: Its capability has landed
xfail: marked before it landed
steps:
  - expect_state: {state: IDLE}
"""


@pytest.fixture
def board() -> Iterator[VirtualBoard]:
    """A board served by URL, as a target given to the plugin with --pump-target."""
    with VirtualBoard(BoardOptions()) as vb:
        yield vb


def test_fixtures_give_a_virtual_board_per_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_time_moves_through_the_rig(pump, rig):
            assert pump.status()["device_time_ms"] == 0
            rig.advance(3_600_000)
            assert pump.status()["device_time_ms"] == 3_600_000

        def test_the_next_test_has_a_fresh_board(pump):
            assert pump.status()["device_time_ms"] == 0
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_hardware_tests_are_skipped_with_a_reason_on_virtual_boards(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hardware
        def test_needs_a_pico(pump):
            raise AssertionError("must not run on a virtual board")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*needs a physical board: run with --pump-target /dev/ttyACM0*"])


def test_a_board_by_url_without_a_rig(pytester: pytest.Pytester, board: VirtualBoard) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_pump_by_url(pump):
            assert pump.hello()["board"] == "sim"

        def test_rig_is_skipped(rig):
            raise AssertionError("no rig was given")

        @pytest.mark.hardware
        def test_still_not_hardware(pump):
            raise AssertionError("a virtual board served by URL is not a physical board")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs", "--pump-target", board.pump_port)
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*needs a rig port: give --pump-rig URL*"])


def test_scenario_files_are_test_items(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", scenario_quick=PASSING, scenario_short=FAILING)
    pytester.makefile(".scenario.yaml", waits=EXPECTED_TO_FAIL, landed=UNEXPECTEDLY_PASSING)
    pytester.makefile(".yaml", not_a_scenario="id: x\n")  # name does not match: ignored
    result = pytester.runpytest("-p", "no:cacheprovider", "-rxX", "-v")
    result.assert_outcomes(passed=1, failed=1, xfailed=1, xpassed=1)
    result.stdout.fnmatch_lines(
        [
            "*scenario_quick.yaml::quick PASSED*",
            "*scenario_short.yaml::too-short FAILED*",
        ]
    )
    # the failure says which measurement and why, not a traceback into the bench
    assert "measure advanced = 60 min, limits [61, +inf] min: FAIL" in result.stdout.str()
    result.stdout.no_fnmatch_line("*Traceback*")


def test_invalid_scenario_is_a_collection_error_naming_file_and_line(
    pytester: pytest.Pytester,
) -> None:
    path = pytester.makefile(".yaml", scenario_bad=PASSING.replace("duration: 1h", "duration: 1"))
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # collection errors stop the run
    assert f"{path}:5: steps[0].advance.duration: 1 has no unit" in result.stdout.str()


def test_scenario_glob_is_configurable(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", check_quick=PASSING)
    pytester.makeini("[pytest]\npumpbench_scenarios = check_*.yaml\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_junit_carries_firmware_version_and_schema_fingerprint(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".yaml", scenario_quick=PASSING)
    pytester.makepyfile("def test_hello(pump):\n    assert pump.hello()\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--junitxml=junit.xml")
    result.assert_outcomes(passed=2)
    root = ET.parse(pytester.path / "junit.xml").getroot()
    suite = root.find("testsuite")
    assert suite is not None
    props = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert props["schema_fingerprint"] == FINGERPRINT
    assert props["bench_schema_fingerprint"] == FINGERPRINT
    assert props["firmware_version"]
    assert props["board"] == "sim"
    case = next(c for c in suite.iter("testcase") if c.get("name") == "quick")
    case_props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert case_props["requirements"] == "REQ-T-1"
    assert case_props["measure.advanced"] == "60 min [60, 60] min PASS"


def test_rig_option_needs_a_url_target(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-p", "no:cacheprovider", "--pump-rig", "/dev/pts/99")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--pump-rig goes with --pump-target URL*"])


# Another plugin of the same environment that owns --target, as pytest-embedded does.
OTHER_PLUGIN = """\
import pytest

def pytest_addoption(parser):
    parser.getgroup("embedded").addoption("--target", default="esp32", help="another plugin's")

@pytest.fixture
def other_target(pytestconfig):
    return pytestconfig.getoption("target")
"""


def test_the_plugin_loads_beside_a_plugin_that_owns_target(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(other_embedded_plugin=OTHER_PLUGIN)
    pytester.makepyfile(
        test_both="""
        def test_both(pump, rig, other_target, pytestconfig):
            assert other_target == "esp32"
            assert pytestconfig.getoption("pump_target") == "sim"
            assert pump.hello()["board"] == "sim"
            assert rig.truth()["tip_nl"] == 0
        """
    )
    pytester.syspathinsert()
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "other_embedded_plugin")
    result.assert_outcomes(passed=1)
    help_text = pytester.runpytest("-p", "other_embedded_plugin", "--help")
    help_text.stdout.fnmatch_lines(["*--target*another plugin's*", "*--pump-target=sim|URL*"])
