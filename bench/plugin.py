"""pytest plugin (entry point ``pumpbench``): boards as fixtures, scenario files as tests.

Installed with the package, it gives any pytest run in this environment:

- ``--pump-target sim|pico|URL`` (default ``sim``: a fresh virtual board for
  every test; ``pico``: a fresh emulated Pico, bench/board/pico.py),
  ``--pump-rig URL`` (the rig port of a board given by URL) and
  ``--pump-firmware DIR`` (the firmware tree virtual boards run; default
  ``$PUMPBENCH_FIRMWARE``, else the checkout's or the installed package's).
  The plugin loads in every pytest run of the environment, beside other
  plugins (pytest-embedded owns ``--target``), so every option it adds
  starts with ``--pump-`` and every ini key with ``pumpbench_``;
- fixtures ``pump`` and ``rig`` (:class:`PumpClient`, :class:`RigClient`,
  HELLO already done), on the same board within a test; ``pumpbench_target``
  and ``pumpbench_ports`` for tests that want the target itself. A project's
  own conftest fixtures of the same names win, as pytest always prefers the
  nearest definition (this repository's tests/conftest.py does that);
- marker ``hardware``: the test needs a physical board and is skipped, with
  the reason, on virtual boards;
- scenario files as test items: files matching the ini option
  ``pumpbench_scenarios`` (default ``scenario_*.yaml *.scenario.yaml``, so
  the standard suite in bench/scenarios is run by ``pumpbench run``, not
  collected by accident). A FAIL fails the test, a bench ERROR is reported
  as a pytest error, ``xfail`` scenarios are xfail tests (XPASS when they
  pass), scenarios needing what the target lacks are skipped;
- the firmware version and schema fingerprint of the board in the JUnit XML
  suite properties (what ``record_testsuite_property`` writes), measurements
  and requirements as testcase properties.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench.board.paths import select_firmware
from bench.board.targets import Ports, PortTarget, SimTarget, Target
from bench.link.errors import BenchError
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from bench.report.records import DeviceInfo, Outcome, ScenarioRecord, bench_version, fingerprint_hex
from bench.scenario.load import NEED_HARDWARE, Scenario, ScenarioError, load_scenario
from bench.scenario.runner import run_scenario
from protocol import schema

SIM = "sim"
PICO = "pico"  # an emulated Pico per test (bench/board/pico.py)
DEFAULT_PATTERNS = ["scenario_*.yaml", "*.scenario.yaml"]
HARDWARE_REASON = (
    "needs a physical board: run with --pump-target /dev/ttyACM0 (or rfc2217://host:port); "
    "this run uses virtual boards"
)


@dataclass
class _State:
    """What the plugin knows for one session: the target, and the first device seen."""

    target_option: str
    rig_option: str | None
    _target: Target | None = None
    device: DeviceInfo | None = None
    records: list[ScenarioRecord] = field(default_factory=list)

    def target(self) -> Target:
        """The target, checked on first use (a URL is opened and asked HELLO once)."""
        if self._target is None:
            if self.target_option == SIM:
                target: Target = SimTarget()
            elif self.target_option == PICO:
                from bench.board.pico_pump import pico_target

                target = pico_target()
            else:
                target = PortTarget(self.target_option, self.rig_option)
            target.preflight()
            self._target = target
        return self._target

    def physical(self) -> bool:
        if self.target_option in (SIM, PICO):
            return False
        return NEED_HARDWARE in self.target().provides

    def saw(self, device: DeviceInfo | None) -> None:
        if self.device is None and device is not None:
            self.device = device


_STATE = pytest.StashKey[_State]()


def _state(config: pytest.Config) -> _State:
    return config.stash[_STATE]


# --- options and markers ----------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pumpbench", "pump test bench")
    group.addoption(
        "--pump-target",
        dest="pump_target",
        default=SIM,
        metavar="sim|URL",
        help="sim (default): a fresh virtual board per test; pico: a fresh emulated Pico "
        "per test; or the pump port URL of a board",
    )
    group.addoption(
        "--pump-rig",
        dest="pump_rig",
        default=None,
        metavar="URL",
        help="the rig port URL of --pump-target",
    )
    group.addoption(
        "--pump-firmware",
        dest="pump_firmware",
        default=None,
        metavar="DIR",
        help="the firmware tree virtual boards run (default: $PUMPBENCH_FIRMWARE, else the "
        "checkout's or the installed package's)",
    )
    parser.addini(
        "pumpbench_scenarios",
        type="args",
        default=DEFAULT_PATTERNS,
        help="file name patterns of scenario files collected as tests",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hardware: needs a physical board (--pump-target PORT)")
    target = config.getoption("pump_target")
    rig = config.getoption("pump_rig")
    if rig and target == SIM:
        raise pytest.UsageError(
            "--pump-rig goes with --pump-target URL; a virtual board brings its own rig"
        )
    select_firmware(config.getoption("pump_firmware"))
    config.stash[_STATE] = _State(target, rig)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("hardware") is not None and not _state(item.config).physical():
        pytest.skip(HARDWARE_REASON)


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pumpbench_target(pytestconfig: pytest.Config) -> Target:
    """Where this session's boards are: virtual boards, or one board by URL."""
    try:
        return _state(pytestconfig).target()
    except BenchError as exc:
        pytest.fail(f"pumpbench target: {exc}", pytrace=False)


@pytest.fixture
def pumpbench_ports(pumpbench_target: Target) -> Iterator[Ports]:
    """The ports of this test's board: a fresh virtual one, or the shared one."""
    with pumpbench_target.session(seed=0) as ports:
        yield ports
        if ports.board is not None and not ports.board.alive:
            pytest.fail(f"virtual board died:\n{ports.board.stderr_text()}", pytrace=False)


@pytest.fixture
def pump(pumpbench_ports: Ports, pytestconfig: pytest.Config) -> Iterator[PumpClient]:
    """A client on the pump port; HELLO done (the schema matches)."""
    with PumpClient(pumpbench_ports.pump) as client:
        _state(pytestconfig).saw(DeviceInfo.from_hello(client.hello()))
        yield client


@pytest.fixture
def rig(pumpbench_ports: Ports) -> Iterator[RigClient]:
    """A client on the rig port of the same board; skipped when the target has none."""
    if pumpbench_ports.rig is None:
        pytest.skip("needs a rig port: give --pump-rig URL with --pump-target URL")
    with RigClient(pumpbench_ports.rig) as client:
        client.hello()
        yield client


# --- JUnit suite properties -----------------------------------------------------------------


def _junit(config: pytest.Config) -> Any:
    """The JUnit writer ``record_testsuite_property`` adds to (None without --junitxml)."""
    try:
        from _pytest.junitxml import xml_key
    except ImportError:  # a future pytest: the properties are only a convenience
        return None
    return config.stash.get(xml_key, None)


@pytest.hookimpl(tryfirst=True)  # before the JUnit writer writes the file
def pytest_sessionfinish(session: pytest.Session) -> None:
    xml = _junit(session.config)
    if xml is None or _STATE not in session.config.stash:
        return
    state = _state(session.config)
    xml.add_global_property("pumpbench_version", bench_version())
    xml.add_global_property("bench_schema_fingerprint", fingerprint_hex(schema.FINGERPRINT))
    xml.add_global_property("target", state.target_option)
    device = state.device
    if device is not None:
        xml.add_global_property("firmware_version", device.firmware_version)
        xml.add_global_property("board", device.board)
        xml.add_global_property("device_id", device.device_id)
        xml.add_global_property("schema_fingerprint", fingerprint_hex(device.schema_fingerprint))


# --- scenario files as tests ------------------------------------------------------------------


class ScenarioFailed(Exception):
    """The scenario ran and the pump did not do what it expects (FAIL)."""


class ScenarioBenchError(Exception):
    """The bench could not run the scenario (ERROR): raised in setup, so pytest says ERROR."""


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    patterns = parent.config.getini("pumpbench_scenarios")
    if file_path.suffix in (".yaml", ".yml") and any(
        fnmatch.fnmatch(file_path.name, pattern) for pattern in patterns
    ):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    """One scenario file; invalid ones are collection errors naming file:line: field."""

    def collect(self) -> Iterator[pytest.Item]:
        scenario = load_scenario(self.path)
        item = ScenarioItem.from_parent(self, name=scenario.id, scenario=scenario)
        if scenario.xfail is not None:
            # Only a FAIL is the expected failure; a bench error stays an error.
            item.add_marker(pytest.mark.xfail(reason=scenario.xfail, raises=ScenarioFailed))
        yield item

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> Any:  # type: ignore[override]
        if isinstance(excinfo.value, ScenarioError):
            return "\n".join(excinfo.value.problems)
        return super().repr_failure(excinfo)


class ScenarioItem(pytest.Item):
    """One scenario run on the session's target (its own virtual board under sim)."""

    def __init__(self, *, scenario: Scenario, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.record: ScenarioRecord | None = None

    def setup(self) -> None:
        state = _state(self.config)
        try:
            target = state.target()
        except BenchError as exc:
            raise ScenarioBenchError(str(exc)) from None
        record = run_scenario(self.scenario, target)
        self.record = record
        state.saw(record.device)
        state.records.append(record)
        self.user_properties.extend(_properties(record))
        if record.outcome is Outcome.ERROR:
            raise ScenarioBenchError(_describe(record))
        if record.outcome is Outcome.SKIP:
            pytest.skip(record.problems[0] if record.problems else "not applicable")

    def runtest(self) -> None:
        assert self.record is not None
        if self.record.outcome in (Outcome.FAIL, Outcome.XFAIL):
            raise ScenarioFailed(_describe(self.record))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> Any:  # type: ignore[override]
        if isinstance(excinfo.value, ScenarioFailed | ScenarioBenchError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.scenario.line - 1, f"scenario {self.scenario.id}"


def _properties(record: ScenarioRecord) -> list[tuple[str, object]]:
    props: list[tuple[str, object]] = [
        ("title", record.title),
        ("requirements", " ".join(record.requirements)),
        ("seed", "" if record.seed is None else record.seed),
    ]
    for m in record.measurements:
        value = "not run" if m.value is None else f"{m.value} {m.unit}"
        props.append((f"measure.{m.name}", f"{value} {m.limits_text()} {m.outcome}"))
    return props


def _describe(record: ScenarioRecord) -> str:
    """What a person needs when a scenario did not pass: problems, measurements, the log's end."""
    lines = [f"scenario {record.id} ({record.file}): {record.outcome}"]
    lines += [f"  {p}" for p in record.problems]
    for m in record.measurements:
        value = "not run" if m.value is None else f"{m.value} {m.unit}"
        lines.append(f"  measure {m.name} = {value}, limits {m.limits_text()}: {m.outcome}")
    if record.log:
        lines.append("  log (last lines):")
        lines += [f"    {line}" for line in record.log[-12:]]
    if record.firmware_stderr:
        lines.append("  firmware output:")
        lines += [f"    {line}" for line in record.firmware_stderr.splitlines()[-20:]]
    return "\n".join(lines)
