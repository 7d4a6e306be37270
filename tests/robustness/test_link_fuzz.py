"""The running firmware under fuzz, through its pump port and its rig port.

Random bytes, damaged frames (bit flips, truncation, repeated slices, wrong
lengths, unknown and wrong-port ids, reply and event flags, other versions,
oversize) and intact requests with values a handler must refuse, interleaved
with good requests. Every chunk is also judged by bench.robustness.receiver.ReceiverModel
(protocol/SPEC.md section 6, written from the spec): each reply, each absence
of a reply and each LINK_STATS counter must be what the spec says. After
every batch a good LINK_STATS must be answered (no crash, no stall); at the
end STATUS, the active program, the log and the rig's truth must be what
they were (time stands still while fuzzing).

The long run is ``python -m bench.robustness`` (``--frames``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.board.sim import BoardOptions, VirtualBoard
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from bench.robustness.common import AUTH_LOG_CODES
from bench.robustness.frames import FrameFuzzer
from bench.robustness.fuzz import COUNTERS, FuzzSession, LinkFuzz, fuzz_setup
from bench.robustness.receiver import ReceiverModel, SessionView
from protocol import codec, schema

BATCHES = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def session() -> Iterator[FuzzSession]:
    with VirtualBoard(BoardOptions(seed=11)) as board:
        with PumpClient(board.pump_port) as pump, RigClient(board.rig_port) as rig:
            fuzz_setup(pump, rig)
        fuzz = FuzzSession(board, random.Random(11))
        yield fuzz
        fuzz.close()
        assert board.alive, f"the virtual board died:\n{board.stderr_text()}"


def fuzz_batch(target: LinkFuzz, rng: random.Random, size: int, seq: int) -> list[str]:
    # A fuzzer of its own for each example, driven by hypothesis's Random, so
    # that what it makes depends on the drawn values only (and shrinks).
    own = target.fuzzer
    target.fuzzer = FrameFuzzer(target.kind, rng, seq=seq, session=target.session)
    seen = len(target.stats.mismatches)
    try:
        target.batch(size)
    finally:
        target.fuzzer = own
    return target.stats.mismatches[seen:]


@BATCHES
@given(rng=st.randoms(use_true_random=False), size=st.integers(1, 8), seq=st.integers(0, 0x7FFF))
def test_pump_port_judges_every_bad_frame_as_the_spec_says(
    session: FuzzSession, rng: random.Random, size: int, seq: int
) -> None:
    assert fuzz_batch(session.pump, rng, size, seq) == []


@BATCHES
@given(rng=st.randoms(use_true_random=False), size=st.integers(1, 8), seq=st.integers(0, 0x7FFF))
def test_rig_port_judges_every_bad_frame_as_the_spec_says(
    session: FuzzSession, rng: random.Random, size: int, seq: int
) -> None:
    assert fuzz_batch(session.rig, rng, size, seq) == []


def test_a_longer_seeded_run_on_both_ports(session: FuzzSession) -> None:
    session.run(session.pump.stats.frames + session.rig.stats.frames + 600)
    assert session.mismatches == []


def test_every_kind_of_reject_was_exercised_and_counted(session: FuzzSession) -> None:
    # the batches above went through each receiver rule at least once
    for fuzz in (session.pump, session.rig):
        for counter in ("frames_ok", "garbage", "bad_crc", "bad_frame", "rejected"):
            assert fuzz.stats.predicted[counter] > 0, f"{fuzz.kind}: no {counter}"
        assert fuzz.counters["tx_dropped"] == 0
    # copies of signed queries come from the cache (a plain query's copy runs
    # afresh, SPEC section 7)
    assert session.pump.stats.predicted["duplicates"] > 0
    assert session.pump.stats.predicted["oversize"] + session.rig.stats.predicted["oversize"] > 0
    # and the session rules refused what they must (SPEC section 21.4)
    for code in ("AUTH_REQUIRED", "BAD_MAC", "REPLAY", "NO_CHALLENGE"):
        assert session.pump.stats.nacks[code] > 0, f"no {code}"
    assert session.rig.stats.nacks["NOT_A_REQUEST"] > 0


def test_therapy_never_changed(session: FuzzSession) -> None:
    assert session.therapy_changes() == []
    status = session.before["status"]
    assert status["state"] == 2 and status["program_crc"] and status["delivered_nl"] > 0


def test_fuzz_during_delivery_changes_nothing_a_twin_would_not_see() -> None:
    # Two boards, same seed and therapy. One gets its pump port fuzzed while
    # a day of delivery runs; the outcome must be the twin's, to the byte.
    outcomes = []
    for fuzzed in (True, False):
        with VirtualBoard(BoardOptions(seed=5)) as board:
            with PumpClient(board.pump_port) as pump, RigClient(board.rig_port) as rig:
                fuzz_setup(pump, rig)
                if fuzzed:
                    pump.close()
                    target = LinkFuzz(schema.PORT_PUMP, board.pump_port, random.Random(5))
                    seq = rig.next_seq()
                    rig.transport.expect(seq)
                    rig.transport.send(codec.encode("ADVANCE", seq, {"duration_ms": 86_400_000}))
                    batches = 0
                    while rig.transport.wait_reply(seq, 0.0) is None:
                        target.batch(4)
                        batches += 1
                    target.close()
                    assert target.stats.mismatches == []
                    assert batches > 3, "the fuzzer hardly ran during the advance"
                else:
                    rig.advance(86_400_000)
            outcomes.append(_outcome(board))
    fuzzed_run, twin = outcomes
    assert fuzzed_run == twin


def _outcome(board: VirtualBoard) -> dict[str, Any]:
    # The fuzzed board also logged the refusals of the session rules (and
    # wrote them to its journal); everything else must be the twin's.
    with PumpClient(board.pump_port) as pump, RigClient(board.rig_port) as rig:
        status = pump.status()
        del status["uptime_ms"]
        log = [
            (e["time_s"], e["name"], e["a"], e["b"])
            for e in pump.log()
            if e["code"] not in AUTH_LOG_CODES
        ]
        truth = rig.truth()
        del truth["journal_bytes"]
        return {"status": status, "log": log, "truth": truth}


# --- the model itself, against the golden bad vectors ------------------------------
@pytest.mark.parametrize("port", [schema.PORT_PUMP, schema.PORT_RIG])
def test_the_model_classifies_the_golden_bad_vectors(port: str) -> None:
    import json
    from pathlib import Path

    vectors = json.loads((Path(codec.__file__).with_name("vectors.json")).read_text())
    expected_counter = {
        "BAD_CRC": "bad_crc",
        "BAD_LENGTH": "bad_frame",
        "BAD_FRAME": "bad_frame",
        "OVERSIZE": "oversize",
        "BAD_VERSION": "rejected",
        "UNKNOWN_MESSAGE": "rejected",
        "BAD_PAYLOAD": "rejected",
        "NOT_A_REQUEST": "rejected",
    }
    for vector in vectors["bad"]:
        if vector["error"] not in expected_counter:
            continue
        model = ReceiverModel(port)
        (judged,) = [e for e in model.feed(bytes.fromhex(vector["hex"]))]
        assert judged.counter == expected_counter[vector["error"]], vector["name"]


def test_the_fuzzer_never_sends_an_intact_therapy_command() -> None:
    # whatever it makes, a batch holds no intact request that changes things
    view = SessionView(bytes(range(32)), schema.ROLE_CLINICIAN)
    for port, session in (
        (schema.PORT_PUMP, None),
        (schema.PORT_PUMP, view),
        (schema.PORT_RIG, None),
    ):
        fuzzer = FrameFuzzer(port, random.Random(3), session=session)
        model = ReceiverModel(port, session)
        for case in fuzzer.batch(3000):
            for judged in model.feed(case.wire):
                if judged.executes and case.refusal is None:
                    name = codec.MESSAGE_IDS[judged.msg_id].name
                    assert name in schema.QUERIES, case.kind
    assert set(COUNTERS) >= {"garbage", "oversize"}
