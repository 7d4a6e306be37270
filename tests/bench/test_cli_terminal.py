"""The person at the terminal: rig commands, what status and
log say, --json, sessions only for changes, and one-line errors with the right
exit code.

``bench.cli.main.main`` runs in-process against a virtual board the test owns;
the few checks that need a real process (a closed pipe, a terminal-less
stdin, ``sim --link``) run ``python -m bench.cli``. Device time moves only
through the rig.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.board.sim import VirtualBoard
from bench.cli import logview
from bench.cli import rig as rigcli
from bench.cli.main import main
from bench.link import keys as keysmod
from bench.link.client import Refusal, program_crc
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from bench.program.file import load_program
from bench.report.records import bench_version
from protocol import schema
from tests.system.kit import reap

ROOT = Path(__file__).resolve().parents[2]
MORPHINE = ROOT / "bench" / "programs" / "morphine-continuous.toml"  # 0.5 mL/day
BACLOFEN = ROOT / "bench" / "programs" / "baclofen-flex.toml"
DAY_MS = 86_400_000
ENV_KEYS = ("PUMPBENCH_KEY_FILE", "PUMPBENCH_CLINICIAN_KEY", "PUMPBENCH_PATIENT_KEY")


@dataclass
class Terminal:
    """A virtual board, and pumpbench pointed at its pump or rig port."""

    board: VirtualBoard
    capsys: pytest.CaptureFixture

    def run(self, *args: str, port: str | None = "pump") -> tuple[int, str, str]:
        where = {"pump": ["--port", self.board.pump_port], "rig": ["--rig", self.board.rig_port]}
        try:
            code = main([*args, *where.get(port or "", [])])
        except SystemExit as exit_:  # argparse: a usage error
            code = int(str(exit_.code))
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def ok(self, *args: str, port: str | None = "pump") -> str:
        code, out, err = self.run(*args, port=port)
        assert code == 0, err
        return out

    def json(self, *args: str, port: str = "pump") -> dict:
        out = self.ok(*args, "--json", port=port)
        assert out.count("\n") == 1, out  # one object, one line: nothing else on stdout
        return json.loads(out)

    def rig(self, *args: str) -> str:
        return self.ok("rig", *args, port="rig")

    def fails(self, expected: int, *args: str, port: str | None = "pump") -> str:
        """Runs a command that must fail: its exit code, and one line on stderr."""
        code, _out, err = self.run(*args, port=port)
        assert code == expected, err
        assert err.count("\n") == 1 and err.startswith("pumpbench"), err
        assert "Traceback" not in err and "(detail 0)" not in err
        return err

    def running(self) -> None:
        out = self.rig("fill", "20mL", "--concentration", "10mg/mL")  # the clinician's syringe
        assert "filled:    20 mL of 10 mg/mL" in out
        self.ok("refill", "--withdrawn", "0mL", "--added", "20mL")
        self.ok("program", str(MORPHINE), "--yes")

    def access_log(self) -> list[dict]:
        with PumpClient(self.board.pump_port) as pump:
            return pump.log(access=True)


@pytest.fixture
def term(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[Terminal]:
    for name in ENV_KEYS:
        monkeypatch.delenv(name, raising=False)
    with VirtualBoard() as board:
        yield Terminal(board, capsys)


def cli(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.cli.main", *args],
        cwd=ROOT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        **kwargs,  # type: ignore[call-overload]
    )


# --- 6. rig commands ---------------------------------------------------------------------


def test_rig_commands_let_a_person_watch_therapy_run(term: Terminal) -> None:
    term.running()
    with RigClient(term.board.rig_port) as rig:
        before = rig.truth()
    start = term.json("status")["device_time_ms"]
    advanced = term.json("rig", "advance", "1d", port="rig")
    assert advanced["advanced_ms"] == DAY_MS
    assert advanced["device_time_ms"] == start + DAY_MS == term.json("status")["device_time_ms"]

    # truth: the rig's own figures, in JSON as on the wire and in words
    truth = term.json("rig", "truth", port="rig")
    with RigClient(term.board.rig_port) as rig:
        assert truth == rig.truth()
    delivered = truth["tip_nl"] - before["tip_nl"]
    assert 480_000 <= delivered <= 520_000  # 0.5 mL/day, in whole strokes
    assert truth["tip_ng"] == truth["tip_nl"] * 10  # FILL's 10 mg/mL all the way
    text = term.rig("truth")
    assert f"at the tip:    {rigcli.microlitres(truth['tip_nl'])}" in text
    assert f"reservoir:     {truth['reservoir_nl'] / 1e6:g} mL really in it" in text

    # a full occlusion, injected ten minutes from now, then cleared
    out = term.rig("fault", "OCCLUSION", "0", "--onset", "10min")
    assert "OCCLUSION, param 0" in out and "0d 00:10:00.000" in out
    term.rig("advance", "6h")
    alarms = term.json("alarms")
    assert "OCCLUSION" in [a["name"] for a in alarms["active"]]
    assert term.rig("clear", "occlusion") == "cleared: OCCLUSION\n"
    assert term.rig("clear") == "cleared: every fault\n"


def test_rig_trace_power_and_plant(term: Terminal) -> None:
    assert "every 10 ms" in term.rig("trace", "--period", "10ms")
    term.rig("advance", "1s")
    trace = term.json("rig", "trace", port="rig")
    assert trace["total"] == 101 == len(trace["samples"])  # paged through TRACE
    times = [s["time_ms"] for s in trace["samples"]]
    assert all(b - a == 10 for a, b in itertools.pairwise(times))
    lines = term.rig("trace", "--start", "5", "--count", "3").splitlines()
    assert lines[0].endswith(": 3 of 101 trace samples")
    assert lines[1].split()[:2] == ["device", "time"]
    assert lines[2].split()[0] == rigcli.device_time(times[5]).split()[0]
    assert len(lines) == 5
    assert "stopped" in term.rig("trace", "--period", "0ms")
    assert term.json("rig", "trace", "--period", "0ms", port="rig") == {"period_ms": 0}

    assert term.json("rig", "power", "off", port="rig")["powered"] is False
    assert term.json("rig", "truth", port="rig")["powered"] == 0
    assert term.json("rig", "power", "on", port="rig")["powered"] is True
    armed = term.json("rig", "power", "cut-in", "5min", port="rig")
    assert armed["arg"] == 300_000 and armed["powered"] is True
    term.rig("advance", "6min")
    assert term.json("rig", "truth", port="rig")["powered"] == 0
    term.rig("power", "on")

    plant = term.json("rig", "plant", "--catheter", "50cm", "--csf", "12.5 mmHg", port="rig")
    assert plant["catheter_nl"] == 130_000 and plant["csf_x10"] == 125
    assert plant["noise_x10"] == 5  # not given: nominal
    term.rig("plant", "--reservoir", "3 mL")
    assert term.json("rig", "truth", port="rig")["reservoir_nl"] == 3_000_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["advance", "90"], "a duration needs a unit"),
        (["advance", "5m"], "minutes are min"),
        (["trace", "--period=-1h"], "not negative"),
        (["fault", "NO_SUCH"], "no fault 'NO_SUCH'"),
        (["fault", "LEAK", "80"], "a share needs a unit"),
        (["fault", "SENSOR_OFFSET", "40"], "a pressure needs a unit"),
        (["plant", "--csf", "7"], "a pressure needs a unit"),
        (["plant", "--catheter", "60 m"], "unknown unit"),
        (["power", "on", "5"], "takes no argument"),
        (["power", "cut-in"], "a duration needs a unit"),
    ],
)
def test_rig_arguments_are_refused_in_one_line(
    term: Terminal, args: list[str], message: str
) -> None:
    err = term.fails(2, "rig", *args, port="rig")
    assert message in err


def test_a_rig_command_on_the_pump_port_says_so(term: Terminal) -> None:
    err = term.fails(1, "rig", "truth", "--rig", term.board.pump_port, port=None)
    assert "this is the pump port" in err


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 10**6), st.sampled_from(["ms", "s", "min", "h", "d"])),
        min_size=1,
        max_size=4,
    )
)
def test_rig_durations_are_exact(terms: list[tuple[int, str]]) -> None:
    factor = {"ms": 1, "s": 1_000, "min": 60_000, "h": 3_600_000, "d": DAY_MS}
    text = " ".join(f"{n}{unit}" for n, unit in terms)
    assert rigcli.duration_ms(text) == sum(n * factor[unit] for n, unit in terms)


@settings(max_examples=200, deadline=None)
@given(st.integers(-30_000, 30_000))
def test_rig_pressures_are_exact(x10: int) -> None:
    text = f"{'-' if x10 < 0 else ''}{abs(x10) // 10}.{abs(x10) % 10} mmHg"
    assert rigcli.pressure_x10(text) == x10
    assert rigcli.mmhg(x10) == text


def test_durations_out() -> None:
    assert rigcli.duration_text(250) == "250 ms"
    assert rigcli.duration_text(1_250) == "1 s 250 ms"
    assert rigcli.duration_text(DAY_MS + 7_200_000) == "1 d 2 h"
    assert rigcli.device_time(DAY_MS + 61_001) == "1d 00:01:01.001"


def test_fault_params_in_their_units() -> None:
    assert rigcli.duration_ms("1.5h") == rigcli.duration_ms("90min") == 5_400_000
    assert rigcli.fault_param("LEAK", "80%") == 80
    assert rigcli.fault_param("BATTERY", "2.4V") == rigcli.fault_param("BATTERY", "2400mV") == 2400
    assert rigcli.fault_param("CSF_PRESSURE", "20 mmHg") == 200
    assert rigcli.fault_param("TIMER_FAST", "x1.1") == 1_100
    assert rigcli.fault_param("RUNAWAY", "3") == 3
    assert rigcli.fault_param("STALL", None) == 0


# --- 7. status, log, --json, --version ----------------------------------------------------


def test_status_shows_the_device_id_and_firmware(term: Terminal) -> None:
    with PumpClient(term.board.pump_port) as pump:
        hello = pump.hello()
        status = pump.status()
    out = term.ok("status")
    assert f"device id:   {hello['device_id']} ({hello['board']})" in out
    assert f"firmware:    {hello['firmware_version']}" in out
    data = term.json("status")
    assert data["device_id"] == hello["device_id"]
    assert data["firmware_version"] == hello["firmware_version"]
    assert data["state_name"] == status["state_name"] and data["boot_count"] == 1


def test_log_says_what_a_and_b_mean(term: Terminal) -> None:
    term.running()
    term.ok("bolus", "--volume", "0.1mL")
    term.rig("advance", "1h")
    crc = program_crc(load_program(MORPHINE))
    data = term.json("log")
    with PumpClient(term.board.pump_port) as pump:
        entries = pump.log()
    assert [(e["index"], e["code"], e["a"], e["b"]) for e in data["entries"]] == [
        (e["index"], e["code"], e["a"], e["b"]) for e in entries
    ]
    what = {e["name"]: e["what"] for e in data["entries"]}
    assert what["BOOT"] == "POWER_ON"
    assert what["PROGRAM_ACTIVE"] == f"CRC 0x{crc:08x}"
    assert what["BOLUS_START"].endswith("(clinician), 0.1 mL")
    assert what["BOLUS_DONE"].endswith("0.1 mL delivered")
    assert what["REFILL"] == "20 mL added, discrepancy 0 mL"
    text = term.ok("log")
    assert text.splitlines()[1].split()[-1] == "what"
    assert f"CRC 0x{crc:08x}" in text
    access = term.json("log", "--access")
    assert {e["name"] for e in access["entries"]} >= {"SESSION_OPENED", "SESSION_CLOSED"}
    assert "clinician, closed" in [e["what"] for e in access["entries"]]


def test_every_log_code_has_words() -> None:
    # a code added to the schema without words here fails this test
    missing = [name for _code, name in schema.LOG_CODES if name not in logview._DECODERS]
    assert missing == []
    for code, name in schema.LOG_CODES:
        for a, b in ((0, 0), (1, -1), (0x7FFF_FFFF, 2**31 - 1), (-1, 12345)):
            text = logview.describe({"name": name, "code": code, "a": a, "b": b})
            assert "\n" not in text


def test_alarms_json(term: Terminal) -> None:
    term.running()
    term.rig("fault", "STALL")
    term.rig("advance", "2h")
    data = term.json("alarms")
    with PumpClient(term.board.pump_port) as pump:
        status = pump.status()
    assert status["alarm_names"]  # the stall raised something
    assert sorted(a["name"] for a in data["active"]) == sorted(status["alarm_names"])
    assert data["state"] == status["state_name"]
    raised = {e["alarm"] for e in data["history"] if e["event"] == "ALARM_RAISED"}
    assert raised >= set(status["alarm_names"])
    # highest priority first, as the text shows them
    ranks = [schema.alarm_priority(a["id"]) for a in data["active"]]
    assert ranks == sorted(ranks, reverse=True)


def test_run_summary_as_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    suite = ROOT / "bench" / "scenarios"
    report = tmp_path / "report"
    paths = [str(suite / "handshake.yaml"), str(suite / "status.yaml")]
    code = main(["run", *paths, "--report", str(report), "--no-plots", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("\n") == 1  # no result lines, no table: one object
    data = json.loads(out)
    recorded = json.loads((report / "results.json").read_text())
    assert data["exit_code"] == 0 and data["outcome"] == "PASS"
    assert [s["id"] for s in data["scenarios"]] == [s["id"] for s in recorded["scenarios"]]
    assert data["counts"]["PASS"] == 2
    assert data["report"] == str(report / "report.html")


def test_version(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out == (
        f"pumpbench {bench_version()} (protocol v{schema.PROTOCOL_VERSION}, "
        f"schema 0x{schema.FINGERPRINT:08x})\n"
    )


# --- 8. sessions only for changes, and closed --------------------------------------------


def _sessions(log: list[dict]) -> list[tuple[str, int]]:
    return [(e["name"], e["b"]) for e in log if e["name"].startswith("SESSION_")]


def test_reading_opens_no_session_and_a_change_closes_its_own(term: Terminal) -> None:
    term.running()
    before = _sessions(term.access_log())
    for command in (["status"], ["hello"], ["ping"], ["log"], ["log", "--access"], ["alarms"]):
        term.ok(*command)
    assert _sessions(term.access_log()) == before  # read-only: no session at all

    term.ok("stop")
    term.ok("alarms", "--ack", "all")
    after = _sessions(term.access_log())[len(before) :]
    # each change: one session, closed by the command (b = 0), not left to idle out
    assert after == [("SESSION_OPENED", 0), ("SESSION_CLOSED", 0)] * 2


def test_program_without_a_terminal_exits_non_zero(term: Terminal, tmp_path: Path) -> None:
    term.running()
    key_file = tmp_path / "board.keys"  # another process: it needs the board's keys
    keys = keysmod.find(term.board.pump_port)
    assert keys is not None
    keysmod.write(key_file, keys)
    process = cli(
        "program",
        str(BACLOFEN),
        "--port",
        term.board.pump_port,
        "--key-file",
        str(key_file),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2, err
    assert "not confirmed" in err and err.count("\n") == 1
    assert "keeps running" in out
    with PumpClient(term.board.pump_port) as pump:
        assert pump.status()["pending"] == 0
        assert pump.get_program()["crc"] == program_crc(load_program(MORPHINE))


# --- 9. errors: one line, the right exit code ---------------------------------------------


def test_a_stale_key_file_in_the_environment(
    term: Terminal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keysmod.forget_virtual(term.board.pump_port)  # as from another terminal
    monkeypatch.setenv("PUMPBENCH_KEY_FILE", str(tmp_path / "gone.keys"))
    for command in (["status"], ["log"], ["alarms"], ["hello"]):
        term.ok(*command)  # read-only commands never need it
    err = term.fails(2, "stop")
    assert "from the environment" in err and "PUMPBENCH_KEY_FILE" in err


def test_refusals_explain_themselves(term: Terminal, tmp_path: Path) -> None:
    keysmod.forget_virtual(term.board.pump_port)
    err = term.fails(1, "stop")  # no key at all
    assert "AUTH_REQUIRED" in err and "--key-file or PUMPBENCH_KEY_FILE" in err
    other = tmp_path / "other.keys"
    term.ok("keys", "new", str(other), port=None)
    err = term.fails(1, "stop", "--key-file", str(other))
    assert "BAD_MAC" in err and "the key does not match this pump" in err
    err = term.fails(1, "status", "--port", term.board.rig_port, port=None)
    assert "WRONG_PORT" in err and "this is the rig port" in err


def test_no_refusal_says_detail_0() -> None:
    names = [name for _id, name, *_rest in schema.MESSAGES]
    for code, _name in schema.ERRORS:
        for request in names:
            text = str(Refusal("/dev/x", request, code, 0))
            assert "(detail 0)" not in text and "\n" not in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "--port", ""], "an empty port"),
        (["status", "--target", ""], "an empty port"),
        (["log", "--port", "/dev/x", "--start", "9" * 40], "too large"),
        (["rig", "truth", "--rig", "/dev/nonexistent"], "/dev/nonexistent"),
        (["rig", "truth", "--rig", ""], "an empty port"),
        (["run", "x.yaml", "--target", ""], "an empty port"),
    ],
)
def test_argument_errors_are_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    try:
        code = main(args)
    except SystemExit as exit_:
        code = int(str(exit_.code))
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and message in err, err


# Every command that talks to a pump, with the least it needs: a missing port is
# one line, exit 2, for each of them.
ONE_OF_EACH = [
    ["status"],
    ["hello"],
    ["ping"],
    ["program", str(MORPHINE), "--yes"],
    ["bolus", "--volume", "0.1mL"],
    ["patient-bolus"],
    ["cancel-bolus"],
    ["catheter", "--length", "60"],
    ["refill", "--withdrawn", "1mL", "--added", "2mL"],
    ["log"],
    ["alarms"],
    ["start"],
    ["stop"],
    ["clear-alarm", "REFILL_DISCREPANCY"],
]


@pytest.mark.parametrize("args", ONE_OF_EACH, ids=lambda args: args[0])
def test_every_command_on_a_missing_port_is_one_line(
    args: list[str], capsys: pytest.CaptureFixture
) -> None:
    assert main([*args, "--port", "/dev/nonexistent-17"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/dev/nonexistent-17" in err, err


def test_log_start_out_of_range(term: Terminal) -> None:
    total = len(term.json("log")["entries"])
    err = term.fails(2, "log", "--start", str(total + 5))
    assert f"its entries are 0..{total - 1}" in err
    term.ok("log", "--start", str(total - 1))


def test_keys_new_into_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["keys", "new", str(tmp_path / "no" / "such" / "k.keys")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


@pytest.mark.parametrize("where", ["integer", "quantity"])
def test_a_5000_digit_number_in_a_program_file(
    tmp_path: Path, capsys: pytest.CaptureFixture, where: str
) -> None:
    text = MORPHINE.read_text()
    if where == "integer":
        text = text.replace("max_per_day = 4", f"max_per_day = {'7' * 5000}")
    else:
        text = text.replace('rate = "5 mg/day"', f'rate = "{"7" * 5000} mg/day"')
    path = tmp_path / "big.toml"
    path.write_text(text)
    assert main(["program", str(path), "--port", "/dev/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 300 and str(path) in err, err


def test_a_closed_pipe_ends_quietly(term: Terminal) -> None:
    term.rig("trace", "--period", "1ms")
    term.rig("advance", "500ms")
    process = cli(
        "rig", "trace", "--rig", term.board.rig_port, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # `| head -0`: the reader is gone before the first line
    err = process.stderr.read()
    process.stderr.close()
    assert process.wait(timeout=60) == 128 + signal.SIGPIPE
    assert err == ""  # no traceback, no "Exception ignored" at exit


def test_sim_link_is_a_stable_name(tmp_path: Path) -> None:
    link = tmp_path / "pump"
    link.symlink_to("/dev/pts/999")  # a stale link of an earlier board: replaced
    process = cli("sim", "--link", str(link), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        lines = dict(process.stdout.readline().strip().split(": ", 1) for _ in range(5))
        assert lines["pump link"] == str(link) and lines["rig link"] == f"{link}-rig"
        assert os.readlink(link) == lines["pump port"]
        assert os.readlink(f"{link}-rig") == lines["rig port"]
        with PumpClient(str(link), keys=keysmod.DeviceKeys()) as pump:
            assert pump.hello()["board"] == "sim"
        with RigClient(f"{link}-rig") as rig:
            assert rig.hello()["rig_kind"] == "virtual"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
        assert not link.exists() and not link.is_symlink()
        assert not Path(f"{link}-rig").is_symlink()
    finally:
        reap(process)


def test_sim_link_never_replaces_a_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    process = cli("sim", "--link", str(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "is not a symlink" in err and err.count("\n") == 1
    assert path.read_text() == "mine"
    assert "pump link" not in out
