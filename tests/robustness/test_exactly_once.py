"""Exactly once across power cuts (protocol/SPEC.md section 23).

A BOLUS is sent under a request id and the power is cut after n journal
bytes, n stepping through every byte the request writes (its intent, the
bolus record, BOLUS_START, its journalled reply); power comes back and the
client sends the same request again under the same id, in a new session.
Whatever n: the log holds at most one BOLUS_START for it; a reply the client
saw before the cut is the reply it gets again; a resend that runs is the
only copy that ran; and the sweep meets all three outcomes (never ran, in
doubt, answered from the journal).
"""

from __future__ import annotations

import struct
import time
from typing import Any

from bench.board.sim import VirtualBoard
from bench.link.errors import BenchError, PumpRefused
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from bench.robustness.common import ALARM, bolus_fields, program_fields
from protocol import auth, codec, schema
from tests.robustness.test_power_loss import (
    board,  # noqa: F401 (the fixture: a board with a filled reservoir, strict client)
    log_total,
    power_cycle,
    sweep,
    wait_for_pump,
)

BOLUS = bolus_fields(volume_nl=400)


def send_and_cut(
    pump: PumpClient, rig: RigClient, after_bytes: int, request_id: bytes
) -> tuple[bool, codec.Frame | None]:
    session = pump.open_session()
    rig.cut_after_bytes(after_bytes)
    seq = pump.next_seq()
    pump.transport.expect(seq)
    pump.transport.send(
        codec.encode("BOLUS", seq, BOLUS, signer=lambda c: session.sign(c, request_id))
    )
    frame = None
    deadline = time.monotonic() + 2.0
    while frame is None and rig.truth()["powered"]:
        frame = pump.transport.wait_reply(seq, 0.002)
        assert time.monotonic() < deadline, "no reply to BOLUS and no cut"
    pump.transport.forget(seq)
    cut = not rig.truth()["powered"]
    if cut:
        rig.power_on()
    else:
        power_cycle(rig)  # disarms the cut: the request wrote fewer bytes
    wait_for_pump(pump)
    pump.session = None  # the reboot ended it
    return cut, frame


def test_a_bolus_resent_after_a_cut_anywhere_in_it_runs_at_most_once(
    board: tuple[VirtualBoard, PumpClient, RigClient],  # noqa: F811 (the fixture)
) -> None:
    _vb, pump, rig = board
    pump.confirm(pump.program(program_fields(drug_id=0, conc_ug_ml=0, basal_nl_day=100_000))["crc"])
    rig.advance(1_000)
    pump.open_session()
    written = rig.truth()["journal_bytes"]
    pump.request_once("BOLUS", BOLUS, auth.new_request_id())
    total = rig.truth()["journal_bytes"] - written
    rig.advance(5_000)  # it ends
    seen: dict[str, int] = {"ran": 0, "in doubt": 0, "answered": 0}
    for n in sweep(total + 8, dense=total + 8):
        start = log_total(pump)
        request_id = auth.new_request_id()
        cut, first = send_and_cut(pump, rig, n, request_id)
        where = f"cut after {n} of {total} bytes ({'cut' if cut else 'no cut'})"
        again: dict[str, Any] | None = None
        try:
            again = pump.request_once("BOLUS", BOLUS, request_id)
        except BenchError as doubt:
            assert not isinstance(doubt, PumpRefused), f"{where}: {doubt}"
            assert "IN_DOUBT" in str(doubt), f"{where}: {doubt}"
            seen["in doubt"] += 1
        starts = [e for e in pump.log(start) if e["name"] == "BOLUS_START"]
        assert len(starts) <= 1, f"{where}: ran twice {starts}"
        if first is not None:
            assert not first.is_nack and again == first.fields, f"{where}: {again} {first}"
        if again is not None:
            assert len(starts) == 1 and starts[0]["a"] & 0xFFFF == again["bolus_id"], where
            seen["answered" if _before_the_boot(pump, start, starts[0]) else "ran"] += 1
        rig.advance(5_000)  # a bolus that runs ends
        pump.clear_alarm(ALARM["UNEXPECTED_RESET"])
    assert all(seen.values()), f"the sweep must meet every outcome: {seen}"


def _before_the_boot(pump: PumpClient, start: int, entry: dict[str, Any]) -> bool:
    # The BOLUS_START came before the reboot's BOOT entry: the first copy ran.
    boots = [e["index"] for e in pump.log(start) if e["name"] == "BOOT"]
    return bool(boots) and entry["index"] < boots[0]


def test_every_reply_of_a_therapy_request_fits_an_outcome_record() -> None:
    # Every therapy-changing request's reply fits an outcome record.
    for name, role in schema.MESSAGE_ROLES:
        if not role or name in schema.ONCE_EXCEPT:
            continue
        size = struct.calcsize(schema.struct_format(schema.message_by_name(name)[4]))
        assert size <= schema.OUTCOME_REPLY_SIZE, f"{name} reply {size} B"
    assert struct.calcsize(schema.struct_format(schema.NACK_FIELDS)) <= schema.OUTCOME_REPLY_SIZE
