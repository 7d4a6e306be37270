"""Therapy from the command line: program, bolus, refill, log, alarms, status.

``bench.cli.main.main`` runs in-process against virtual boards. Where device time
must pass, the test owns the board (``--port URL``) and moves time through
its rig; nothing waits in real time for the pump.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench import vocab
from bench.board.sim import VirtualBoard
from bench.cli.main import main
from bench.link.client import Refusal, limit_name, program_crc
from bench.link.errors import PumpRefused
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from bench.program.file import DRUGS, load_program
from protocol import schema

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ROOT / "bench" / "programs"
MORPHINE = PROGRAMS / "morphine-continuous.toml"  # 10 mg/mL, 0.5 mL/day, 0.05 mL PB, 2 h
BACLOFEN = PROGRAMS / "baclofen-flex.toml"
MINUTE_MS = 60_000
HOUR_MS = 3_600_000


@dataclass
class Bench:
    """A virtual board, its rig, and pumpbench pointed at its pump port."""

    board: VirtualBoard
    rig: RigClient
    capsys: pytest.CaptureFixture

    def run(self, *args: str) -> tuple[int, str, str]:
        """pumpbench ARGS --port URL -> (exit code, stdout, stderr)."""
        code = main([*args, "--port", self.board.pump_port])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def ok(self, *args: str) -> str:
        code, out, err = self.run(*args)
        assert code == 0, err
        return out

    def pump(self) -> PumpClient:
        return PumpClient(self.board.pump_port)

    def running(self, program: Path = MORPHINE) -> None:
        """A filled reservoir and a confirmed program: a pump delivering therapy."""
        self.rig.fill(20_000_000)  # the real reservoir (the clinician's syringe)
        self.ok("refill", "--withdrawn", "0mL", "--added", "20mL")
        self.ok("program", str(program), "--yes")


@pytest.fixture
def bench(capsys: pytest.CaptureFixture) -> Iterator[Bench]:
    with VirtualBoard() as board, RigClient(board.rig_port) as rig:
        yield Bench(board, rig, capsys)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def morphine(tmp_path: Path, rate: str, extra: str = "") -> Path:
    return write(
        tmp_path,
        f"morphine-{rate.split()[0]}.toml",
        f'drug = "morphine"\nconcentration = "10 mg/mL"\nmode = "continuous"\n'
        f'rate = "{rate}"\n{extra}',
    )


def crc_of(path: Path) -> str:
    return f"0x{program_crc(load_program(path)):08x}"


def value(out: str, label: str) -> str:
    """The value of a ``label:   value`` line."""
    match = re.search(rf"^{re.escape(label)}:\s+(.*)$", out, re.MULTILINE)
    assert match is not None, f"no {label!r} line in:\n{out}"
    return match.group(1)


# --- program ----------------------------------------------------------------------------


def test_program_with_yes_then_status_shows_it_running(bench: Bench) -> None:
    bench.ok("refill", "--withdrawn", "0mL", "--added", "20mL")
    out = bench.ok("program", str(MORPHINE), "--yes")
    crc = crc_of(MORPHINE)
    assert "sent, read back, not yet active" in out
    assert re.search(rf"^\*\s+crc\s+0x[0-9a-f]{{8}}\s+{crc}$", out, re.MULTILINE)
    assert re.search(r"^\*\s+rate\s+0 mL/day\s+0\.5 mL/day \(5 mg/day\)$", out, re.MULTILINE)
    assert re.search(r"^\s+override soft\s+no\s+no$", out, re.MULTILINE)  # unchanged: no mark
    assert "soft limits overridden: none" in out
    assert "worst case, any 24 h:   0.905209 mL" in out
    assert "Confirm?" not in out
    assert f"confirmed: program CRC {crc} is active; state RUNNING" in out

    status = bench.ok("status")
    assert value(status, "state") == "RUNNING"
    assert value(status, "mode") == "CONTINUOUS"
    assert value(status, "rate") == "0.5 mL/day (5 mg/day)"
    assert value(status, "program") == f"CRC {crc}, no program pending"
    assert value(status, "alarms") == "none"
    assert value(status, "reservoir") == "20 mL left"
    assert value(status, "empty") == "in 40d 00:00"  # 20 mL at 0.5 mL/day
    # down to the 2 mL alarm level, each day's 4 patient boluses taken at its
    # start: 25 days of 0.7 mL, then 0.2 mL of boluses and 0.3 mL of basal
    assert value(status, "refill by") == "25d 14:24 (device time)"


def test_program_on_a_private_virtual_board(capsys: pytest.CaptureFixture) -> None:
    assert main(["program", str(MORPHINE), "--target", "sim", "--yes"]) == 0
    out = capsys.readouterr().out
    # a fresh board has an empty reservoir: the program is active, the pump alarms
    assert f"confirmed: program CRC {crc_of(MORPHINE)} is active; state ALARM" in out
    assert "alarms: LOW_RESERVOIR, EMPTY_RESERVOIR" in out


def test_declining_leaves_the_old_program_running(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench.running()
    asked: list[str] = []

    def answer(prompt: str) -> str:
        asked.append(prompt)
        return "n"

    monkeypatch.setattr("builtins.input", answer)
    monkeypatch.setattr("bench.cli.therapy._interactive", lambda: True)
    out = bench.ok("program", str(BACLOFEN))
    assert asked == ["Confirm? [y/N] "]
    old = crc_of(MORPHINE)
    assert f"cancelled: the active program (CRC {old}) keeps running" in out
    assert re.search(r"^\*\s+flex step 1\s+-\s+07:00 mon,tue,wed,thu,fri", out, re.MULTILINE)
    with bench.pump() as pump:
        assert f"0x{pump.get_program()['crc']:08x}" == old
        assert pump.status()["pending"] == 0
        assert pump.status()["state_name"] == "RUNNING"
        assert pump.log()[-1]["name"] == "PROGRAM_ABANDONED"


def test_no_terminal_to_ask_is_not_confirmed(bench: Bench) -> None:
    # pytest's stdin is no terminal: like a script or CI, it must not confirm,
    # and the command must not look as if it succeeded (exit 2, "not confirmed")
    bench.running()
    code, out, err = bench.run("program", str(BACLOFEN))
    assert code == 2
    assert "keeps running" in out
    assert err.count("\n") == 1 and "not confirmed" in err and "--yes" in err
    assert value(bench.ok("status"), "program").startswith(f"CRC {crc_of(MORPHINE)}")


def test_ctrl_c_at_the_question_cancels(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    bench.running()

    def interrupt(_prompt: str) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr("builtins.input", interrupt)
    monkeypatch.setattr("bench.cli.therapy._interactive", lambda: True)
    code, _out, err = bench.run("program", str(BACLOFEN))
    assert code == 130 and err == "pumpbench: interrupted\n"
    with bench.pump() as pump:
        assert pump.status()["pending"] == 0
        assert f"0x{pump.get_program()['crc']:08x}" == crc_of(MORPHINE)


def test_yes_answer_confirms(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    bench.rig.fill(20_000_000, 1_000)
    bench.ok("refill", "--withdrawn", "0mL", "--added", "20mL")  # a new pump
    monkeypatch.setattr("builtins.input", lambda _prompt: "y")
    monkeypatch.setattr("bench.cli.therapy._interactive", lambda: True)
    out = bench.ok("program", str(BACLOFEN))
    assert f"confirmed: program CRC {crc_of(BACLOFEN)} is active; state RUNNING" in out
    assert value(bench.ok("status"), "mode") == "FLEX"


def test_hard_limit_is_refused_with_the_limit_named(bench: Bench, tmp_path: Path) -> None:
    bench.running()
    path = morphine(tmp_path, "30 mg/day")  # above the 25 mg/day hard limit
    code, out, err = bench.run("program", str(path), "--yes")
    assert code == 1
    assert err == (
        f"pumpbench: error: {bench.board.pump_port}: PROGRAM refused: HARD_LIMIT: "
        "limit daily_hard (4)\n"
    )
    assert "confirmed" not in out
    with bench.pump() as pump:
        status = pump.status()
    assert status["pending"] == 0 and f"0x{status['program_crc']:08x}" == crc_of(MORPHINE)


def test_soft_limit_needs_the_override(bench: Bench, tmp_path: Path) -> None:
    bench.running()
    plain = morphine(tmp_path, "20 mg/day")  # above the 15 mg/day soft limit
    code, _out, err = bench.run("program", str(plain), "--yes")
    assert code == 1
    assert "SOFT_LIMIT: limit daily_soft (7); needs the soft-limit override" in err
    accepted = morphine(tmp_path, "20.0 mg/day", "override_soft = true\n")
    out = bench.ok("program", str(accepted), "--yes")
    assert "soft limits overridden: daily_soft" in out
    assert "state RUNNING" in out


def test_a_bad_file_is_a_bench_error_before_any_board(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = write(tmp_path, "bad.toml", 'drug = "morphine"\nmode = "continous"\n')
    assert main(["program", str(path), "--port", "/dev/nonexistent"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"pumpbench: error: {path}: concentration: missing",
        f"pumpbench: error: {path}: mode: unknown mode 'continous'; "
        "use stopped, continuous, flex, minimum_rate",
    ]


def test_a_wrong_readback_is_a_failure_and_cancels(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench.running()
    real = PumpClient.get_program

    def corrupted(self: PumpClient, pending: bool = False) -> dict[str, Any]:
        program = real(self, pending)
        if pending:
            program["basal_nl_day"] += 1
        return program

    monkeypatch.setattr(PumpClient, "get_program", corrupted)
    code, out, err = bench.run("program", str(BACLOFEN), "--yes")
    assert code == 1
    assert "the pending program reads back differently" in err
    assert "fields basal_nl_day" in err
    assert "confirmed" not in out
    monkeypatch.undo()
    with bench.pump() as pump:
        assert pump.status()["pending"] == 0  # cancelled, not left to time out
        assert f"0x{pump.get_program()['crc']:08x}" == crc_of(MORPHINE)


@pytest.mark.parametrize("path", sorted(PROGRAMS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_program_is_accepted_by_the_firmware(bench: Bench, path: Path) -> None:
    fields = load_program(path)
    drug = {v: k for k, v in DRUGS.items()}[fields["drug_id"]]
    concentration = f"{fields['conc_ug_ml']}ug/mL"
    bench.ok("refill", "--withdrawn", "0mL", "--added", "20mL")
    bench.ok("refill", "--withdrawn", "20mL", "--added", "20mL")
    out = bench.ok("program", str(path), "--yes")
    assert f"confirmed: program CRC {crc_of(path)} is active; state RUNNING" in out, path
    # the same drug again is a plain refill; another needs its program with it
    bench.ok(
        "refill",
        "--withdrawn",
        "20mL",
        "--added",
        "20mL",
        "--drug",
        drug,
        "--concentration",
        concentration,
    )
    other = "none" if drug != "none" else "morphine"
    code, _out, err = bench.run(
        "refill",
        "--withdrawn",
        "20mL",
        "--added",
        "20mL",
        "--drug",
        other,
        "--concentration",
        "0ug/mL" if other == "none" else "10mg/mL",
    )
    assert code == 1 and "DRUG_MISMATCH" in err


# --- boluses ------------------------------------------------------------------------------


def test_clinician_bolus_by_volume_and_by_dose(bench: Bench) -> None:
    bench.running()
    out = bench.ok("bolus", "--volume", "0.04mL")
    assert out == f"{bench.board.pump_port}: clinician bolus 1 started: 0.04 mL (400 ug)\n"
    status = bench.ok("status")
    assert value(status, "bolus") == "CLINICIAN, 0.04 mL (400 ug) to go"
    bench.rig.advance(MINUTE_MS)  # 200 strokes at 250 ms: done in 50 s
    assert value(bench.ok("status"), "bolus") == "none"

    out = bench.ok("bolus", "--dose", "100ug", "--duration", "10min")
    assert out.endswith("clinician bolus 2 started: 0.01 mL (100 ug) over 10 min\n")
    bench.rig.advance(1_000)  # one stroke now, the next in 12 s
    assert bench.ok("cancel-bolus").endswith("bolus cancelled after 0.0002 mL\n")
    assert bench.ok("cancel-bolus").endswith("no bolus was running\n")


def test_bolus_limits_are_named(bench: Bench) -> None:
    bench.running()  # morphine 10 mg/mL: bolus soft 1.5 mg, hard 2.5 mg
    code, _out, err = bench.run("bolus", "--volume", "0.3mL")
    assert code == 1 and "BOLUS refused: HARD_LIMIT: limit bolus_hard (5)" in err
    code, _out, err = bench.run("bolus", "--dose", "2mg")
    assert code == 1 and "SOFT_LIMIT: limit bolus_soft (8)" in err
    out = bench.ok("bolus", "--dose", "2mg", "--override-soft")
    assert "0.2 mL (2 mg)" in out


def test_priming_bolus_fills_the_catheter(bench: Bench, tmp_path: Path) -> None:
    saline = write(
        tmp_path,
        "saline.toml",
        'drug = "none"\nconcentration = "0 ug/mL"\nmode = "continuous"\nrate = "0.5 mL/day"\n',
    )
    bench.running(saline)
    out = bench.ok("bolus", "--kind", "priming", "--catheter-cm", "60.5", "--nl-per-cm", "2600")
    assert out.endswith("priming bolus 1 started: 0.1573 mL\n")  # 605 mm x 260 nL/mm


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bolus"], "a clinician bolus needs --volume or --dose"),
        (["bolus", "--volume", "1mL", "--dose", "1mg"], "not allowed with argument"),
        (["bolus", "--volume", "0.1"], "'0.1' is not a volume"),
        (["bolus", "--dose", "1mL"], "is a volume, not a drug amount"),
        (["bolus", "--kind", "priming", "--volume", "1mL"], "give no --volume or --dose"),
        (["bolus", "--kind", "bridge", "--catheter-cm", "60"], "--nl-per-cm go together"),
        (["bolus", "--volume", "1mL", "--nl-per-cm", "9"], "go with --kind priming or bridge"),
        (["bolus", "--volume", "1mL", "--duration", "5m"], "(minutes are min)"),
        (["bolus", "--volume", "5000mL"], "'5000mL' is too large: at most 4294967295 nL"),
        (
            ["bolus", "--kind", "bridge", "--catheter-cm", "7000", "--nl-per-cm", "1"],
            "too large: at most 65535 mm",
        ),
        (["bolus", "--kind", "bridge", "--catheter-cm", "60", "--nl-per-cm", "70000"], "at most"),
        (["refill", "--withdrawn", "1mL"], "the following arguments are required: --added"),
        (["clear-alarm", "256"], "unknown alarm '256'"),
        (["clear-alarm", "NO_SUCH"], "unknown alarm 'NO_SUCH'"),
    ],
)
def test_argument_errors(args: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as caught:
        main([*args, "--port", "/dev/nonexistent"])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_patient_bolus_and_its_lockout(bench: Bench) -> None:
    bench.running()  # 0.05 mL (0.5 mg), 2 h lockout, 4 a day
    out = bench.ok("patient-bolus")
    assert out.endswith("patient bolus 1 started: 0.05 mL (500 ug)\n")
    bench.rig.advance(30 * MINUTE_MS)
    code, _out, err = bench.run("patient-bolus")
    assert code == 1
    assert err.endswith("PATIENT_BOLUS refused: LOCKOUT: 5400 s of lockout left\n")
    assert value(bench.ok("status"), "pt boluses") == "1 in the last 24 h"


def test_bolus_on_a_stopped_pump_is_refused(capsys: pytest.CaptureFixture) -> None:
    assert main(["patient-bolus", "--target", "sim"]) == 1
    assert "PATIENT_BOLUS refused: NOT_DELIVERING" in capsys.readouterr().err


# --- refill, alarms, start/stop ----------------------------------------------------------


def test_refill_reconciles_and_the_alarm_clears(bench: Bench) -> None:
    bench.running()
    bench.rig.advance(24 * HOUR_MS)  # 2499 strokes of 200 nL at 0.5 mL/day
    out = bench.ok("refill", "--withdrawn", "17mL", "--added", "20mL")
    assert value(out, "expected") == "19.5002 mL (what the pump believed was left)"
    assert value(out, "discrepancy") == (
        "-2.5002 mL (less left than expected: over-infusion or a leak)"
    )
    assert value(out, "flagged") == "YES: beyond tolerance, REFILL_DISCREPANCY raised"
    assert value(out, "refill by") == "26d 14:24 (device time)"
    assert value(bench.ok("status"), "alarms") == "REFILL_DISCREPANCY"

    out = bench.ok("clear-alarm", "refill_discrepancy")
    assert out.splitlines()[0].endswith("cleared REFILL_DISCREPANCY")
    assert value(out, "alarms") == "none"


def test_refill_within_tolerance_and_over_capacity(bench: Bench) -> None:
    out = bench.ok("refill", "--withdrawn", "0 mL", "--added", "20mL")
    assert value(out, "flagged") == "no"
    assert value(out, "refill by") == "never"  # nothing programmed consumes it
    code, _out, err = bench.run("refill", "--withdrawn", "20mL", "--added", "41mL")
    assert code == 1
    assert "REFILL refused: RESERVOIR: added volume above the reservoir's capacity" in err


def test_clear_alarm_by_id_and_a_lasting_condition(bench: Bench) -> None:
    bench.running()
    bench.ok("refill", "--withdrawn", "10mL", "--added", "20mL")
    assert value(bench.ok("clear-alarm", "5"), "alarms") == "none"
    bench.ok("refill", "--withdrawn", "20mL", "--added", "1mL")  # below the 2 mL level
    code, _out, err = bench.run("clear-alarm", "LOW_RESERVOIR")
    assert code == 1 and "CLEAR_ALARM refused: ALARM_ACTIVE: alarm LOW_RESERVOIR" in err


def test_stop_and_start(bench: Bench) -> None:
    code, _out, err = bench.run("start")
    assert code == 1 and "START refused: NOT_DELIVERING" in err  # no program yet
    bench.running()
    assert bench.ok("stop").endswith("stopped; state IDLE\n")
    assert value(bench.ok("status"), "rate") == "0 mL/day"
    assert bench.ok("start").endswith("started; state RUNNING\n")


# --- log and status ----------------------------------------------------------------------


def test_log_table_pages_through_get_log(bench: Bench) -> None:
    bench.running()
    for _ in range(7):  # two log entries each
        bench.ok("stop")
        bench.ok("start")
    bench.rig.advance(3 * 86_400_000 + 4 * HOUR_MS + 5 * MINUTE_MS + 6_000)
    bench.ok("stop")
    out = bench.ok("log")
    lines = out.splitlines()
    assert re.fullmatch(r".*: (\d+) log entries", lines[0])
    total = int(lines[0].split()[1])
    assert total > 12  # more than one GET_LOG page
    assert lines[1].split() == ["index", "device", "time", "event", "a", "b", "what"]
    rows = [line.split() for line in lines[2:]]
    assert [int(row[0]) for row in rows] == list(range(total))
    assert rows[0][3] == "BOOT"
    active = next(row for row in rows if row[3] == "PROGRAM_ACTIVE")
    assert active[4] == crc_of(MORPHINE)  # a CRC, shown as one
    assert rows[-1][1:4] == ["3d", "04:05:06", "STOP"]

    out = bench.ok("log", "--start", "3", "--count", "13")
    indexes = [int(line.split()[0]) for line in out.splitlines()[2:]]
    assert indexes == list(range(3, 16))


def test_status_reports_a_pending_program_and_the_windows(bench: Bench) -> None:
    bench.running()
    bench.rig.advance(HOUR_MS)
    with bench.pump() as pump:
        pump.program(load_program(BACLOFEN))
    status = bench.ok("status")
    assert value(status, "program") == (
        f"CRC {crc_of(MORPHINE)}, pending: a program waits for CONFIRM"
    )
    # 0.5 mL/day for an hour, in whole 200 nL strokes
    # the governor's windows hold dose at the tip
    assert value(status, "1 h window") == "208 ug"
    assert value(status, "24 h window") == "208 ug"
    assert value(status, "at the tip") == "morphine 10 mg/mL"
    assert value(status, "delivered") == "0.0208 mL (208 ug) in all"


# --- the clients' typed methods ----------------------------------------------------------


def test_client_methods_name_what_the_wire_numbers(bench: Bench) -> None:
    bench.running()
    with bench.pump() as pump:
        status = pump.status()
        assert (status["state_name"], status["mode_name"]) == ("RUNNING", "CONTINUOUS")
        assert status["alarm_names"] == [] and status["bolus_kind_name"] == "NONE"
        program = pump.get_program()
        assert program["crc"] == status["program_crc"] and program["drug_id"] == 1
        with pytest.raises(PumpRefused) as caught:
            pump.get_program(pending=True)
        assert caught.value.code_name == "NO_PENDING"
        assert pump.bolus("clinician", volume_nl=1_000)["volume_nl"] == 1_000
        with pytest.raises(Refusal) as refused:
            pump.bolus(1, volume_nl=1_000)
        assert refused.value.code == schema.BOLUS_ACTIVE and refused.value.limit is None
        bench.rig.advance(MINUTE_MS)
        pump.set_clock(7 * 3600)
        entries = pump.log(start=1)
        assert entries[0]["index"] == 1
        assert entries[-1] == {
            "index": entries[-1]["index"],
            "time_s": 60,
            "code": 18,
            "name": "CLOCK_SET",
            "a": 25_200,
            "b": 0,
        }
        assert pump.log(start=0, count=0) == []
        assert pump.stop() == 1 and pump.start() == 2
    assert limit_name(4) == "daily_hard"


def test_rig_client_typed_methods(bench: Bench) -> None:
    bench.running()  # fills the real reservoir with 20 mL, and the pump's account
    bench.rig.plant(catheter_nl=100_000, reservoir_nl=20_000_000)
    bench.rig.advance(HOUR_MS)
    truth = bench.rig.truth()
    assert truth["powered"] == 1 and truth["steps"] > 0
    assert truth["pumped_nl"] == 20_800  # 104 strokes of 200 nL in an hour at 0.5 mL/day
    bench.rig.inject_fault(vocab.FAULTS["RUNAWAY"], 1)
    bench.rig.clear_fault(vocab.FAULTS["RUNAWAY"])
    assert bench.rig.fill(20_000_000) == 20_000_000 - truth["pumped_nl"]
    assert bench.rig.power_off() is False
    assert bench.rig.truth()["powered"] == 0
    assert bench.rig.power_on() is True


def test_program_rejects_incomplete_fields(bench: Bench) -> None:
    with bench.pump() as pump, pytest.raises(ValueError, match="missing"):
        pump.program({"drug_id": 1})


# --- dose at the tip (docs/pump.md 22) -----------------------------------------------------------


def test_refill_with_a_new_concentration_and_its_program(bench: Bench, tmp_path: Path) -> None:
    bench.running()  # morphine 10 mg/mL
    stronger = write(
        tmp_path,
        "morphine-25.toml",
        'drug = "morphine"\nconcentration = "25 mg/mL"\nmode = "continuous"\nrate = "5 mg/day"\n',
    )
    args = ["refill", "--withdrawn", "19mL", "--added", "20mL", "--drug", "morphine"]
    code, _out, err = bench.run(*args, "--concentration", "25mg/mL")
    assert code == 1 and "DRUG_MISMATCH" in err
    with bench.pump() as pump:
        crc = pump.program(load_program(stronger))["crc"]
    bench.rig.fill(20_000_000, 25_000)
    bench.ok(*args, "--concentration", "25mg/mL", "--with-program")
    status = bench.ok("status")
    assert value(status, "program") == f"CRC 0x{crc:08x}, no program pending"
    assert value(status, "at the tip").startswith("morphine 10 mg/mL; the reservoir's drug")


def test_catheter_records_the_drug_path(bench: Bench) -> None:
    bench.running()
    out = bench.ok("catheter", "--length", "80", "--nl-per-cm", "2600", "--new")
    assert "drug path:   0.228 mL (pump internal volume + catheter)" in out
    assert "at the tip:  saline or an empty catheter" in out
    out = bench.ok("bolus", "--kind", "priming")
    assert out.endswith("priming bolus 1 started: 0.208 mL\n")  # the empty 80 cm
