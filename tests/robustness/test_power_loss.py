"""Power loss: the virtual-board process killed at random instants, and cuts at
every byte of the journal writes of each therapy command.

- ``test_power_loss_campaign``: a short bench.robustness.power_loss.PowerLossCampaign
  (process kills frozen mid-stroke, mid-request, mid-journal-write and
  mid-ADVANCE, restarts on the same journal); the long one is
  ``python -m bench.robustness --cycles N``.
- the sweeps: the rig cuts power after n journal bytes (POWER action 2), n
  stepping through everything CONFIRM, REFILL, BOLUS, PATIENT_BOLUS and STOP
  write; power comes back and the command is either whole or not there.
- the firmware bugs the campaign found, each reproduced as a test (they
  were strict xfails until fixed): CONFIRM one journal step, REFILL and
  BOLUS_START logged after their state is durable, a bolus ended once in the
  log whatever instant the power goes, POWER off and on in one pass.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.board.sim import BoardOptions, VirtualBoard
from bench.link.errors import BenchError, PumpRefused
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from bench.robustness.common import (
    ALARM,
    LOG,
    STATE,
    STROKE_NL,
    bolus_fields,
    program_crc_of,
    program_fields,
    refill_request,
)
from bench.robustness.power_loss import PowerLossCampaign, bolus_story
from protocol import codec, schema


# --- the campaign -----------------------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_power_loss_campaign(tmp_path: Path, seed: int) -> None:
    campaign = PowerLossCampaign(random.Random(seed), str(tmp_path))
    try:
        stats = campaign.run(40)
    finally:
        campaign.close()
    assert stats.violations == []
    assert sum(stats.kills.values()) == 40


def test_restart_is_a_new_process_on_the_same_journal(tmp_path: Path) -> None:
    with VirtualBoard(BoardOptions(journal_dir=str(tmp_path))) as board:
        with PumpClient(board.pump_port) as pump, RigClient(board.rig_port) as rig:
            rig.fill(10_000_000)
            pump.refill(0, 10_000_000)
            crc = pump.program(program_fields())["crc"]
            pump.confirm(crc)
            rig.advance(60_000)
            delivered = pump.status()["delivered_nl"]
            board.restart()
            with pytest.raises(BenchError):
                pump.status()  # its port went with the old process
        with PumpClient(board.pump_port) as pump, RigClient(board.rig_port) as rig:
            status = pump.status()
            assert status["program_crc"] == crc and status["boot_count"] == 2
            assert status["delivered_nl"] == delivered
            assert status["device_time_ms"] == 0, "the virtual board's clock restarts"
            truth = rig.truth()
            assert truth["pumped_nl"] == 0 and truth["reservoir_nl"] == 0, "a new plant"
            boots = [e for e in pump.log() if e["code"] == LOG["BOOT"]]
            assert [(e["a"], e["b"]) for e in boots] == [(0, 0), (0, 1)]


# --- cuts at every byte of one command's journal writes -----------------------------------
Board = tuple[VirtualBoard, PumpClient, RigClient]


@contextlib.contextmanager
def filled_board() -> Iterator[Board]:
    with VirtualBoard(BoardOptions()) as vb:
        pump = PumpClient(vb.pump_port, timeout_s=0.3, retries=0)
        rig = RigClient(vb.rig_port)
        try:
            rig.fill(30_000_000)
            pump.refill(0, 30_000_000)
            yield vb, pump, rig
        finally:
            pump.close()
            rig.close()
        assert vb.alive, f"virtual board died:\n{vb.stderr_text()}"


@pytest.fixture
def board() -> Iterator[Board]:
    with filled_board() as made:
        yield made


@dataclass
class Swept:
    records: list[dict[str, Any]]  # one per cut
    log_after: list[dict[str, Any]]  # the board's whole log once the sweep is over


@pytest.fixture(scope="module")
def swept() -> Callable[..., Swept]:
    """Runs each sweep once per module, on a board of its own, for every test that
    judges it (a sweep is a hundred power cuts; the tests ask different questions
    of the same cuts)."""
    done: dict[str, Swept] = {}

    def run(sweep_of: Callable[..., list[dict[str, Any]]], *args: Any) -> Swept:
        key = sweep_of.__name__ + repr(args)
        if key not in done:
            with filled_board() as made:
                done[key] = Swept(sweep_of(made, *args), made[1].log())
        return done[key]

    return run


def cut_during(
    pump: PumpClient, rig: RigClient, after_bytes: int, name: str, fields: dict[str, Any] | None
) -> tuple[bool, dict[str, Any] | None]:
    """Arms a cut after ``after_bytes`` journal bytes, sends one request.

    Returns (whether the cut happened, the reply if one came). Power comes
    back and the pump has booted when it returns.
    """
    # A change goes in a session (SPEC 21), opened before the cut is armed:
    # the cut falls in the command's own journal writes.
    session = pump.open_session() if schema.required_role(name) else None
    rig.cut_after_bytes(after_bytes)
    seq = pump.next_seq()
    pump.transport.expect(seq)
    pump.transport.send(codec.encode(name, seq, fields, signer=session.sign if session else None))
    frame = None
    deadline = time.monotonic() + 2.0
    while frame is None and rig.truth()["powered"]:  # a reply, or the cut
        frame = pump.transport.wait_reply(seq, 0.002)
        assert time.monotonic() < deadline, f"no reply to {name} and no cut"
    pump.transport.forget(seq)
    reply = None if frame is None or frame.is_nack else frame.fields
    if frame is not None and frame.is_nack:
        raise PumpRefused(pump.url, name, frame.fields["code"], frame.fields["detail"])
    cut = not rig.truth()["powered"]
    if not cut:
        power_cycle(rig)  # disarms the cut: the command wrote fewer bytes
    else:
        rig.power_on()
    wait_for_pump(pump)
    return cut, reply


def power_cycle(rig: RigClient) -> None:
    """POWER off, then on, with time between (one pass of the board's loop or two)."""
    rig.power_off()
    rig.advance(1)  # answered once the board's loop has run: the app saw "off"
    rig.power_on()


def wait_for_pump(pump: PumpClient) -> None:
    deadline = time.monotonic() + 5.0
    while True:
        try:
            pump.request("PING", {"token": 0}, timeout_s=0.02)
            return
        except BenchError:
            assert time.monotonic() < deadline, "the pump did not come back"


def sweep(total: int, dense: int = 80, stride: int = 23) -> list[int]:
    """Every byte of the first ``dense``, then every ``stride``-th, and the last few."""
    points = set(range(min(dense, total))) | set(range(0, total, stride))
    points |= set(range(max(0, total - 6), total + 1))
    return sorted(points)


def journal_bytes_of(rig: RigClient, action: Callable[[], Any]) -> int:
    before = rig.truth()["journal_bytes"]
    action()
    return int(rig.truth()["journal_bytes"]) - before


def new_entries(pump: PumpClient, start: int) -> list[dict[str, Any]]:
    return pump.log(start)


def log_total(pump: PumpClient) -> int:
    return int(pump.request("GET_LOG", {"start": 0, "count": 0})["total"])


CONTINUOUS = program_fields(drug_id=0, conc_ug_ml=0, basal_nl_day=2_400_000)
STOPPED = program_fields(drug_id=0, conc_ug_ml=0, mode=0, basal_nl_day=0)
FASTER = program_fields(drug_id=0, conc_ug_ml=0, basal_nl_day=4_800_000)


def confirm_sweep(board: Board, old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Cuts CONFIRM(new) over ``old`` at every byte it writes; one record per cut."""
    _vb, pump, rig = board
    old_crc, new_crc = program_crc_of(old), program_crc_of(new)

    def back_to_old() -> None:
        if pump.status()["program_crc"] != old_crc:
            pump.confirm(pump.program(old)["crc"])
        pump.clear_alarm(ALARM["UNEXPECTED_RESET"])

    back_to_old()
    rig.advance(30_000)
    pump.program(new)
    size = journal_bytes_of(rig, lambda: pump.confirm(new_crc))
    records = []
    for n in sweep(size):
        back_to_old()
        pump.program(new)
        start = log_total(pump)
        cut, reply = cut_during(pump, rig, n, "CONFIRM", {"crc": new_crc})
        status = pump.status()
        program = pump.get_program()
        records.append(
            {
                "n": n,
                "cut": cut,
                "acked": reply is not None,
                "status": status,
                "program": program,
                "log": new_entries(pump, start),
                "old": old_crc,
                "new": new_crc,
            }
        )
    return records


@pytest.mark.parametrize(
    ("old", "new"),
    [(CONTINUOUS, FASTER), (CONTINUOUS, STOPPED), (STOPPED, CONTINUOUS)],
    ids=["rate change", "to stopped", "from stopped"],
)
def test_a_cut_anywhere_in_confirm_leaves_the_old_or_the_new_program_whole(
    swept: Callable[..., Swept], old: dict[str, Any], new: dict[str, Any]
) -> None:
    for record in swept(confirm_sweep, old, new).records:
        program, status = record["program"], record["status"]
        crc = program["crc"]
        fields = {k: v for k, v in program.items() if k != "crc"}
        where = f"cut after {record['n']} bytes"
        assert program_crc_of(fields) == crc == status["program_crc"], where
        assert crc in (record["old"], record["new"]), where
        if record["acked"]:
            assert crc == record["new"], f"{where}: CONFIRM was ACKed, the old program runs"
        assert status["pending"] == 0, where
        if record["cut"]:
            boots = [e for e in record["log"] if e["code"] == LOG["BOOT"]]
            assert [(e["a"], e["b"]) for e in boots] == [(0, 1)], where


@pytest.mark.parametrize(("old", "new"), [(CONTINUOUS, STOPPED), (STOPPED, CONTINUOUS)])
def test_a_cut_in_confirm_never_runs_the_old_program_with_the_new_running_state(
    swept: Callable[..., Swept], old: dict[str, Any], new: dict[str, Any]
) -> None:
    for record in swept(confirm_sweep, old, new).records:
        crc = record["program"]["crc"]
        running = record["status"]["state"] == STATE["RUNNING"]
        active = old if crc == record["old"] else new
        assert running == (active["mode"] != 0), (
            f"cut after {record['n']} bytes: program {crc:#x} (mode {active['mode']}), "
            f"running={running}"
        )


@pytest.mark.parametrize(
    ("old", "new"),
    [(CONTINUOUS, FASTER), (CONTINUOUS, STOPPED), (STOPPED, CONTINUOUS)],
    ids=["rate change", "to stopped", "from stopped"],
)
def test_after_a_cut_anywhere_in_confirm_the_log_names_the_active_program(
    swept: Callable[..., Swept], old: dict[str, Any], new: dict[str, Any]
) -> None:
    # A cut between the snapshot that makes the program active and its
    # PROGRAM_ACTIVE entry must not leave a program running that the log
    # never names: the boot finishes the entry (docs/pump.md 22, section 15).
    done = swept(confirm_sweep, old, new)
    for record in done.records:
        crc = record["program"]["crc"]
        if crc != record["new"]:
            continue
        where = f"cut after {record['n']} bytes"
        named = [e for e in record["log"] if e["code"] == LOG["PROGRAM_ACTIVE"] and e["a"] == crc]
        assert len(named) >= 1, f"{where}: program {crc:#x} runs, no PROGRAM_ACTIVE entry"
    assert any(e["code"] == LOG["PROGRAM_ACTIVE"] for e in done.log_after)


def refill_with_program_sweep(
    board: Board,
) -> list[dict[str, Any]]:
    """Cuts a REFILL that commits a program for a new concentration (docs/pump.md 22.2)."""
    _vb, pump, rig = board
    weak = program_fields(conc_ug_ml=1_000, basal_nl_day=1_000_000)
    strong = program_fields(conc_ug_ml=2_000, basal_nl_day=500_000)
    size = 0
    records = []
    for n in [None, *range(0, 4000, 37)]:
        if n is not None and n > size + 6:
            break
        # back to the weak drug and program
        if pump.status()["program_crc"] != program_crc_of(weak):
            crc = pump.program(weak)["crc"]
            pump.refill(0, 30_000_000, weak["drug_id"], 1_000, crc)
        pump.clear_alarm(ALARM["UNEXPECTED_RESET"])
        rig.advance(30_000)
        crc = pump.program(strong)["crc"]
        fields = refill_request(0, 20_000_000, strong["drug_id"], 2_000)
        fields["program_crc"] = crc
        if n is None:
            size = journal_bytes_of(rig, lambda f=fields: pump.request("REFILL", f))
            continue
        start = log_total(pump)
        _cut, reply = cut_during(pump, rig, n, "REFILL", fields)
        status = pump.status()
        records.append(
            {
                "n": n,
                "acked": reply is not None,
                "crc": status["program_crc"],
                "account": status["reservoir_nl"],
                "log": new_entries(pump, start),
                "strong": crc,
            }
        )
    return records


def test_a_cut_in_a_refill_with_its_program_commits_both_or_neither(
    swept: Callable[..., Swept],
) -> None:
    records = swept(refill_with_program_sweep).records
    assert len(records) > 10
    for record in records:
        where = f"cut after {record['n']} bytes"
        new_program = record["crc"] == record["strong"]
        assert new_program == (record["account"] == 20_000_000), where
        if record["acked"]:
            assert new_program, where
        if new_program:
            assert any(
                e["code"] == LOG["PROGRAM_ACTIVE"] and e["a"] == record["strong"]
                for e in record["log"]
            ), where


def test_a_cut_in_confirm_never_logs_a_program_that_is_not_active(
    swept: Callable[..., Swept],
) -> None:
    for record in swept(confirm_sweep, CONTINUOUS, FASTER).records:
        logged = [e for e in record["log"] if e["code"] == LOG["PROGRAM_ACTIVE"]]
        if any(e["a"] == record["new"] for e in logged):
            assert record["program"]["crc"] == record["new"], (
                f"cut after {record['n']} bytes: PROGRAM_ACTIVE {record['new']:#x} logged, "
                f"program {record['program']['crc']:#x} active"
            )


def refill_sweep(board: Board) -> list[dict[str, Any]]:
    _vb, pump, rig = board
    pump.confirm(pump.program(CONTINUOUS)["crc"])
    rig.advance(60_000)
    size = journal_bytes_of(rig, lambda: pump.refill(pump.status()["reservoir_nl"], 30_000_000))
    records = []
    for n in sweep(size):
        old = pump.status()["reservoir_nl"]
        added = 20_000_000 if old > 25_000_000 else 30_000_000
        start = log_total(pump)
        cut, reply = cut_during(
            pump, rig, n, "REFILL", refill_request(old, added, drug_id=0, conc_ug_ml=0)
        )
        pump.clear_alarm(ALARM["UNEXPECTED_RESET"])
        account = pump.status()["reservoir_nl"]
        log = new_entries(pump, start)
        records.append(
            {
                "n": n,
                "cut": cut,
                "acked": reply is not None,
                "old": old,
                "added": added,
                "account": account,
                "log": log,
            }
        )
    return records


def test_a_cut_anywhere_in_refill_leaves_the_old_or_the_new_account(
    swept: Callable[..., Swept],
) -> None:
    for record in swept(refill_sweep).records:
        where = f"cut after {record['n']} bytes"
        assert record["account"] in (record["old"], record["added"]), where
        if record["acked"]:
            assert record["account"] == record["added"], f"{where}: REFILL ACKed, then forgotten"


def test_a_cut_in_refill_never_logs_a_refill_the_pump_forgot(
    swept: Callable[..., Swept],
) -> None:
    for record in swept(refill_sweep).records:
        if any(e["code"] == LOG["REFILL"] for e in record["log"]):
            assert record["account"] == record["added"], f"cut after {record['n']} bytes"


def bolus_sweep(board: Board, name: str, fields: dict[str, Any] | None) -> list[dict[str, Any]]:
    _vb, pump, rig = board
    program = program_fields(
        drug_id=0,
        conc_ug_ml=0,
        basal_nl_day=1_200_000,
        pb_dose_nl=2_000,
        pb_lockout_s=600,
        pb_max_per_day=24,
    )
    pump.confirm(pump.program(program)["crc"])
    rig.advance(10_000)
    size = journal_bytes_of(rig, lambda: pump.request(name, fields))
    # between two cuts: the bolus ends, the lockout passes, and no 24 h
    # holds more than 24 patient boluses
    gap_ms = 3_700_000
    rig.advance(gap_ms)
    records = []
    for n in sweep(size + 30, dense=size + 5, stride=7):
        start = log_total(pump)
        pumped = rig.truth()["pumped_nl"]
        granted_before = pump.status()["pb_last_day"]
        cut, reply = cut_during(pump, rig, n, name, fields)
        status = pump.status()
        status["granted"] = status["pb_last_day"] - granted_before  # time stood still
        again: str | None = None
        if name == "PATIENT_BOLUS":
            try:
                pump.patient_bolus()
                again = "granted"
            except PumpRefused as refused:
                again = refused.code_name
        rig.advance(gap_ms)
        records.append(
            {
                "n": n,
                "cut": cut,
                "reply": reply,
                "status": status,
                "again": again,
                "log": new_entries(pump, start),
                "pumped": rig.truth()["pumped_nl"] - pumped,
            }
        )
        pump.clear_alarm(ALARM["UNEXPECTED_RESET"])
    return records


@pytest.mark.parametrize(
    ("name", "fields"),
    [("BOLUS", bolus_fields(volume_nl=2_000)), ("PATIENT_BOLUS", None)],
    ids=["clinician", "patient"],
)
def test_a_cut_anywhere_in_a_bolus_request_never_gives_it_twice(
    swept: Callable[..., Swept], name: str, fields: dict[str, Any] | None
) -> None:
    for record in swept(bolus_sweep, name, fields).records:
        where = f"cut after {record['n']} bytes"
        starts = [e for e in record["log"] if e["code"] == LOG["BOLUS_START"]]
        assert len(starts) <= 1 + (record["again"] == "granted"), where
        if record["reply"] is not None:
            bolus_id = record["reply"]["bolus_id"]
            assert any(e["a"] & 0xFFFF == bolus_id for e in starts), f"{where}: ACKed, not logged"
        assert record["status"]["bolus_kind"] == 0 or not record["cut"], where
        # one bolus (2 uL) at most, and basal: 3700 s at 1.2 mL/day is 51.4 uL
        boluses = 1 + (record["again"] == "granted")
        assert record["pumped"] <= boluses * 2_000 + 51_400 + 2 * STROKE_NL, where
        if name == "PATIENT_BOLUS" and record["status"]["granted"]:
            # a grant that survived the cut counts for the lockout
            assert record["again"] == "LOCKOUT", f"{where}: {record['again']}"


@pytest.mark.parametrize(
    ("name", "fields"),
    [("BOLUS", bolus_fields(volume_nl=2_000)), ("PATIENT_BOLUS", None)],
    ids=["clinician", "patient"],
)
def test_a_cut_in_a_bolus_request_never_logs_an_end_without_a_start(
    swept: Callable[..., Swept], name: str, fields: dict[str, Any] | None
) -> None:
    done = swept(bolus_sweep, name, fields)
    records = done.records
    problems, _open = bolus_story(done.log_after)
    assert problems == [], [r["n"] for r in records if r["cut"]]
    for record in records:
        where = f"cut after {record['n']} bytes"
        problems, open_ids = bolus_story(record["log"])
        assert problems == [] and open_ids == {}, f"{where}: {problems} {open_ids}"
        if record["status"]["granted"]:
            # a grant the lockout counts is a patient bolus the log shows
            starts = [e for e in record["log"] if e["code"] == LOG["BOLUS_START"]]
            assert any(e["a"] >> 16 == 4 for e in starts), f"{where}: grant not logged"


def test_a_cut_anywhere_in_the_end_of_a_bolus_ends_it_once_in_the_log(
    board: Board,
) -> None:
    """Cuts at every byte of a bolus's last stroke end: stroke record, close, entry."""
    _vb, pump, rig = board
    pump.confirm(pump.program(program_fields(drug_id=0, conc_ug_ml=0, basal_nl_day=100_000))["crc"])
    rig.advance(1_000)
    cuts = 0
    for n in range(80):
        start = log_total(pump)
        before = rig.truth()["pumped_nl"]
        bolus_id = pump.bolus("clinician", volume_nl=400)["bolus_id"]
        while rig.truth()["pumped_nl"] - before < 400:
            rig.advance(5)  # into the bolus's last stroke (20 ms long)
        rig.cut_after_bytes(n)
        rig.advance(2_000)  # the stroke ends, the bolus closes, or the power fails
        if rig.truth()["powered"]:
            power_cycle(rig)  # disarms the cut: the end wrote fewer bytes
        else:
            cuts += 1
            rig.power_on()
        wait_for_pump(pump)
        pump.clear_alarm(ALARM["UNEXPECTED_RESET"])
        log = new_entries(pump, start)
        problems, open_ids = bolus_story(log)
        ends = [
            e["name"]
            for e in log
            if e["code"] in (LOG["BOLUS_DONE"], LOG["BOLUS_INTERRUPTED"], LOG["BOLUS_CANCELLED"])
        ]
        where = f"cut after {n} bytes"
        assert problems == [] and open_ids == {}, f"{where}: {problems} {open_ids}"
        assert len(ends) == 1, f"{where}: bolus {bolus_id} ends {ends}"
        delivered = [e["b"] for e in log if e["a"] == bolus_id and e["name"] in ends]
        assert delivered == [400], f"{where}: delivered {delivered}"
    assert cuts > 40, "the sweep must cut inside the end of the bolus"


@pytest.mark.parametrize("volume_nl", [200, 1_000])
def test_power_lost_in_the_last_stroke_of_a_bolus_still_ends_it_in_the_log(
    board: Board, volume_nl: int
) -> None:
    _vb, pump, rig = board
    pump.confirm(pump.program(program_fields(drug_id=0, conc_ug_ml=0, basal_nl_day=100_000))["crc"])
    rig.advance(1_000)
    before = rig.truth()["pumped_nl"]
    bolus_id = pump.bolus("clinician", volume_nl=volume_nl)["bolus_id"]
    while rig.truth()["pumped_nl"] - before < volume_nl:
        rig.advance(5)  # stop inside the bolus's last stroke (20 ms long)
    assert pump.status()["bolus_kind"] != 0, "the last stroke is under way"
    power_cycle(rig)  # a cut, now
    wait_for_pump(pump)
    ends = [
        e["name"]
        for e in pump.log()
        if e["code"] in (LOG["BOLUS_DONE"], LOG["BOLUS_INTERRUPTED"], LOG["BOLUS_CANCELLED"])
        and e["a"] == bolus_id
    ]
    assert len(ends) == 1, f"bolus {bolus_id} of {volume_nl} nL: end records {ends}"


def test_stop_survives_a_cut_anywhere_or_did_not_happen(
    board: Board,
) -> None:
    _vb, pump, rig = board
    pump.confirm(pump.program(CONTINUOUS)["crc"])
    rig.advance(10_000)
    size = journal_bytes_of(rig, pump.stop)
    pump.start()
    for n in sweep(size + 10, dense=size + 10):
        _cut, reply = cut_during(pump, rig, n, "STOP", None)
        state = pump.status()["state"]
        if reply is not None:
            assert state == STATE["IDLE"], f"cut after {n} bytes: STOP ACKed, still running"
        assert state in (STATE["IDLE"], STATE["RUNNING"])
        pump.clear_alarm(ALARM["UNEXPECTED_RESET"])
        if state == STATE["IDLE"]:
            pump.start()


def test_power_off_then_on_in_one_breath_reboots_the_pump(
    board: Board,
) -> None:
    _vb, pump, rig = board
    pump.confirm(pump.program(CONTINUOUS)["crc"])
    rig.advance(60_000)
    off, on = rig.next_seq(), rig.next_seq()
    for seq in (off, on):
        rig.transport.expect(seq)
    rig.transport.send(
        codec.encode("POWER", off, {"action": 0, "arg": 0})
        + codec.encode("POWER", on, {"action": 1, "arg": 0})
    )
    assert rig.transport.wait_reply(on, 2.0) is not None
    wait_for_pump(pump)
    assert pump.status()["boot_count"] == 2, "power went off and on: the pump must boot again"
    boots = [(e["a"], e["b"]) for e in pump.log() if e["code"] == LOG["BOOT"]]
    assert boots == [(0, 0), (0, 1)], "one boot more, with the cause of a power-on"


def test_a_snapshot_taken_while_a_stroke_moves_keeps_the_stroke_across_a_cut() -> None:
    # A REFILL (or CONFIRM) journals a new snapshot, which starts a new delta
    # log, while a patient-bolus stroke moves: a cut before the stroke's end
    # must still count it (never under-count), as a cut without the snapshot
    # does. Found by the safety-invariant machine: the pump counted 0 nL of
    # 400 the plant pumped.
    with (
        VirtualBoard(BoardOptions()) as board,
        PumpClient(board.pump_port) as pump,
        RigClient(board.rig_port) as rig,
    ):
        rig.fill(30_000_000)
        pump.refill(0, 30_000_000)
        fields = program_fields(
            basal_nl_day=742_268, pb_dose_nl=12_500, pb_lockout_s=3600, pb_max_per_day=1
        )
        pump.confirm(pump.program(fields)["crc"])
        pump.patient_bolus()  # its first stroke starts at once
        pump.refill(rig.fill(30_000_000), 30_000_000)  # a snapshot mid-stroke
        rig.cut_in_ms(1)
        rig.advance(2)
        assert not rig.truth()["powered"]
        pumped = rig.truth()["pumped_nl"]
        assert pumped > 0
        rig.power_on()
        wait_for_pump(pump)
        counted = pump.status()["delivered_nl"]
    # the stroke in flight at the cut is counted whole: never less than moved
    assert pumped <= counted <= pumped + STROKE_NL, (counted, pumped)
