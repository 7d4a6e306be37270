"""The link fuzzing campaign: random frames against a virtual board, every reply judged by the
receiver model (bench/robustness/receiver.py); docs/robustness.md.
"""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import serial

from bench.board.sim import BoardOptions, VirtualBoard
from bench.link.errors import BenchError
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from bench.robustness.common import AUTH_LOG_CODES, MINUTE_MS, message_name, program_fields
from bench.robustness.frames import FrameFuzzer, FuzzCase
from bench.robustness.receiver import Expected, ReceiverModel, SessionView
from protocol import codec, schema

COUNTERS = (
    "frames_ok",
    "garbage",
    "bad_crc",
    "bad_frame",
    "oversize",
    "rejected",
    "duplicates",
    "tx_dropped",
)


# ==================================================================================
# 3. Fuzzing the running firmware
# ==================================================================================
class Stall(BenchError):
    """The device did not answer a good frame in time."""


class RawPort:
    """A port read synchronously, frame by frame: every reply and event is seen.

    The clients (bench.link.client) sort replies by seq and drop the rest; the
    fuzzer must see each reply, including NACKs to damaged seqs, in order.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.serial = serial.serial_for_url(url, baudrate=115200, timeout=0.02)
        except (serial.SerialException, ValueError, OSError) as exc:
            raise BenchError(f"{url}: cannot open port ({exc})") from None
        self.serial.reset_input_buffer()
        self._buffer = bytearray()
        self._frames: deque[codec.Frame] = deque()
        self.events: list[codec.Frame] = []
        self.undecodable = 0

    def close(self) -> None:
        self.serial.close()

    def send(self, data: bytes) -> None:
        self.serial.write(data)
        self.serial.flush()

    def frames_until(
        self, done: Callable[[codec.Frame], bool], timeout_s: float = 3.0
    ) -> list[codec.Frame]:
        """Replies (events set aside) in arrival order, up to the first that is ``done``."""
        deadline = time.monotonic() + timeout_s
        got: list[codec.Frame] = []
        while True:
            while self._frames:
                frame = self._frames.popleft()
                got.append(frame)
                if done(frame):
                    return got
            if time.monotonic() > deadline:
                raise Stall(f"{self.url}: no answer within {timeout_s:g} s ({len(got)} frames)")
            data = self.serial.read(max(1, self.serial.in_waiting))
            if not data:
                continue
            self._buffer += data
            for chunk in codec.split_stream(self._buffer):
                try:
                    frame = codec.decode(chunk)
                except codec.CodecError:
                    self.undecodable += 1
                    continue
                if frame.is_event:
                    self.events.append(frame)
                else:
                    self._frames.append(frame)


@dataclass
class FuzzStats:
    frames: int = 0  # chunks the device had to judge: frames, damaged frames, noise
    bytes: int = 0
    batches: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    predicted: Counter[str] = field(default_factory=Counter)  # LINK_STATS deltas
    nacks: Counter[str] = field(default_factory=Counter)  # NACK codes seen, by name
    mismatches: list[str] = field(default_factory=list)


class LinkFuzz:
    """Fuzzes one port of a running board and checks every answer against the model."""

    def __init__(
        self, port_kind: str, url: str, rng: random.Random, session: SessionView | None = None
    ) -> None:
        self.kind = port_kind
        self.port = RawPort(url)
        self.session = session
        self.model = ReceiverModel(port_kind, session)
        self.fuzzer = FrameFuzzer(port_kind, rng, seq=rng.randrange(0x8000), session=session)
        # The harness's own requests (the sentinels) use seqs from 0x8000 up,
        # the fuzzer's intact requests seqs below: a sentinel can never be
        # taken for a retransmission of a fuzzed request (the device would
        # answer it from its cache, with old counters).
        self._seq = rng.randrange(0x8000)
        self.stats = FuzzStats()
        self._pending: Counter[str] = Counter()
        self.counters = self._sentinel()  # LINK_STATS now; checked from here on

    def close(self) -> None:
        self.port.close()

    def _fail(self, text: str) -> None:
        self.stats.mismatches.append(f"{self.kind} port: {text}")

    def next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0x7FFF
        return 0x8000 | self._seq

    def request(self, name: str, fields: dict[str, Any] | None = None) -> codec.Frame:
        """A good request (the model sees it too, so the counters stay predicted)."""
        seq = self.next_seq()
        wire = codec.encode(name, seq, fields)
        *unfinished, expected = self.model.feed(wire)
        if unfinished:  # batches end with a delimiter: nothing may be pending
            raise BenchError(f"{self.kind} port: a fuzz batch left a partial frame")
        self.port.send(wire)
        frames = self.port.frames_until(lambda f: f.seq == seq and f.name == name)
        for extra in frames[:-1]:
            self._fail(f"unexpected {_describe(extra)} before the reply to {name}")
        reply = frames[-1]
        expected.actual = reply
        self._pending[expected.counter] += 1
        if reply.is_nack:
            self._pending["rejected"] += 1
        return reply

    def _sentinel(self) -> dict[str, int]:
        reply = self.request("LINK_STATS")
        if reply.is_nack:
            raise Stall(f"{self.kind} port: LINK_STATS refused: {reply.fields}")
        self._pending = Counter()  # the reply counts itself already
        return dict(reply.fields)

    def batch(self, size: int) -> None:
        """Sends ``size`` fuzz cases and a good LINK_STATS; checks replies and counters."""
        cases = self.fuzzer.batch(size)
        plan: list[tuple[Expected, FuzzCase]] = []
        for case in cases:
            self.stats.kinds[case.kind.split()[0]] += 1
            self.stats.bytes += len(case.wire)
            for expected in self.model.feed(case.wire):
                plan.append((expected, case))
        self.stats.frames += len(plan)
        self.stats.batches += 1
        self.port.send(b"".join(case.wire for case in cases))
        try:
            before = dict(self.counters)
            self.counters = self._check_batch(plan, cases[-1], before)
        except Stall as stall:
            self._fail(f"stalled after {', '.join(c.kind for c in cases)}: {stall}")
            raise

    def _check_batch(
        self, plan: list[tuple[Expected, FuzzCase]], last: FuzzCase, before: dict[str, int]
    ) -> dict[str, int]:
        seq = self.next_seq()
        wire = codec.encode("LINK_STATS", seq)
        # The sentinel's leading 0x00 also ends a batch's unfinished last chunk.
        *unfinished, sentinel = self.model.feed(wire)
        plan = plan + [(expected, last) for expected in unfinished]
        self.stats.frames += len(unfinished)
        self.port.send(wire)
        frames = self.port.frames_until(
            lambda f: f.seq == seq and f.name == "LINK_STATS" and not f.is_nack
        )
        predicted = self._pending
        self._pending = Counter()
        answering = [(e, case) for e, case in plan if e.replies]
        if len(frames) - 1 != len(answering):
            got = "; ".join(_describe(f) for f in frames[:-1])
            want = "; ".join(_describe_expected(e) for e, _case in answering)
            self._fail(
                f"{len(frames) - 1} replies, {len(answering)} expected: got [{got}] want [{want}]"
            )
        for (expected, case), frame in zip(answering, frames, strict=False):
            problem = _compare(expected, case, frame)
            if problem:
                self._fail(f"{case.kind}: {problem}")
            expected.actual = frame
            if frame.is_nack:
                self.stats.nacks[schema.error_name(frame.fields["code"])] += 1
            if expected.executes and frame.is_nack:
                predicted["rejected"] += 1
        for expected, _case in plan:
            predicted[expected.counter] += 1
        predicted[sentinel.counter] += 1
        after = dict(frames[-1].fields)
        sentinel.actual = frames[-1]
        for name in COUNTERS:
            delta = after[name] - before[name]
            if delta != predicted[name]:
                self._fail(f"LINK_STATS {name} moved {delta}, the model says {predicted[name]}")
        self.stats.predicted.update(predicted)
        return after


def _compare(expected: Expected, case: FuzzCase, frame: codec.Frame) -> str:
    """What is wrong with ``frame`` as the answer to ``expected`` ("" if nothing)."""
    if expected.nack is not None:
        got = (frame.msg_id, frame.seq, frame.fields.get("code"), frame.fields.get("detail"))
        if not frame.is_nack or got != expected.nack:
            return f"got {_describe(frame)}, want {_describe_expected(expected)}"
        return ""
    if (frame.msg_id, frame.seq) != (expected.msg_id, expected.seq) or not frame.is_reply:
        return f"got {_describe(frame)}, want {_describe_expected(expected)}"
    if expected.duplicate_of is not None:
        original = expected.duplicate_of.actual
        if original is None:
            return "a duplicate of a request whose reply was never seen"
        if (frame.flags, frame.fields) != (original.flags, original.fields):
            return f"cached reply {_describe(frame)} differs from the first {_describe(original)}"
        return ""
    if case.refusal is not None and expected is not None and frame.is_nack is False:
        if len([c for c in case.wire.split(b"\x00") if c]) == 1:
            return f"executed, want NACK {schema.error_name(case.refusal[0])}: {frame.fields}"
    if frame.is_nack:
        code, detail = frame.fields["code"], frame.fields["detail"]
        if code < schema.LINK_ERROR_LIMIT:
            return f"an intact request got link error {schema.error_name(code)}"
        if case.refusal is not None:
            want_code, want_detail = case.refusal
            if code != want_code or (want_detail is not None and detail != want_detail):
                return (
                    f"NACK {schema.error_name(code)} detail {detail}, want "
                    f"{schema.error_name(want_code)} detail {want_detail}"
                )
    return ""


def _describe(frame: codec.Frame) -> str:
    if frame.is_nack:
        return (
            f"NACK {schema.error_name(frame.fields['code'])}/{frame.fields['detail']} "
            f"{frame.name} seq {frame.seq:#06x}"
        )
    return f"{'ACK' if frame.is_reply else 'frame'} {frame.name} seq {frame.seq:#06x}"


def _describe_expected(expected: Expected) -> str:
    if expected.nack is not None:
        msg_id, seq, code, detail = expected.nack
        return f"NACK {schema.error_name(code)}/{detail} {message_name(msg_id)} seq {seq:#06x}"
    what = "cached reply" if expected.duplicate_of is not None else "reply"
    return f"{what} {message_name(expected.msg_id)} seq {expected.seq:#06x}"


def fuzz_setup(pump: PumpClient, rig: RigClient) -> None:
    """The therapy the fuzzer must not disturb: morphine 10 mg/mL at 1 mL/day,
    patient boluses allowed, 20 mL in the reservoir, ten minutes delivered."""
    rig.fill(20_000_000)
    pump.refill(0, 20_000_000)
    fields = program_fields(pb_dose_nl=20_000, pb_lockout_s=3_600, pb_max_per_day=4)
    crc = pump.program(fields)["crc"]
    pump.confirm(crc)
    rig.advance(10 * MINUTE_MS)


class FuzzSession:
    """Both ports of one board under the fuzzer, with the therapy snapshot around it."""

    def __init__(self, board: VirtualBoard, rng: random.Random) -> None:
        self.board = board
        self.rng = rng
        # A clinician session, so that signed requests reach their handlers
        # and the session rules themselves are fuzzed (SPEC section 21).
        with PumpClient(board.pump_port) as client:
            opened = client.open_session()
        self.session = SessionView(opened.key, opened.role)
        self.pump = LinkFuzz(schema.PORT_PUMP, board.pump_port, rng, self.session)
        self.rig = LinkFuzz(schema.PORT_RIG, board.rig_port, rng)
        self.before = self.snapshot()

    def close(self) -> None:
        self.pump.close()
        self.rig.close()

    def snapshot(self) -> dict[str, Any]:
        """Everything therapy is made of; time stands still, so all of it must hold."""
        status = self.pump.request("STATUS").fields
        program = self.pump.request("GET_PROGRAM", {"which": 0}).fields
        log = self.pump.request("GET_LOG", {"start": 0, "count": 0}).fields["total"]
        truth = self.rig.request("TRUTH").fields
        return {"status": status, "program": program, "log_total": log, "truth": truth}

    def run(self, frames: int, batch: int = 6) -> None:
        """Fuzzes both ports (two thirds pump) until ``frames`` chunks were judged."""
        while self.pump.stats.frames + self.rig.stats.frames < frames:
            target = self.pump if self.rng.random() < 0.67 else self.rig
            target.batch(self.rng.randint(1, batch))

    def therapy_changes(self) -> list[str]:
        after = self.snapshot()
        changes = []
        for part in ("status", "program", "truth"):
            for name, value in self.before[part].items():
                if name == "journal_bytes":  # the log entries of refusals (below)
                    continue
                if after[part].get(name) != value:
                    changes.append(f"{part} {name}: {value} -> {after[part].get(name)}")
        for entry in self.new_log_entries(self.before["log_total"]):
            if entry not in AUTH_LOG_CODES:  # refusals are logged, nothing else may be
                changes.append(f"log: new entry {schema.log_name(entry)}")
        return changes

    def new_log_entries(self, start: int) -> list[int]:
        """The codes of the log entries from index ``start`` on."""
        codes: list[int] = []
        while True:
            page = self.pump.request("GET_LOG", {"start": start, "count": 12}).fields
            codes += page["code"][: page["count"]]
            if not page["count"] or page["index"][page["count"] - 1] + 1 >= page["total"]:
                return codes
            start = page["index"][page["count"] - 1] + 1

    @property
    def mismatches(self) -> list[str]:
        return self.pump.stats.mismatches + self.rig.stats.mismatches


# ==================================================================================
# 7. make bench: the long runs, with figures
# ==================================================================================
def fuzz_campaign_rows(frames: int, seed: int) -> tuple[list[tuple[str, str, str]], list[str]]:
    with VirtualBoard(BoardOptions(seed=seed)) as board:
        with PumpClient(board.pump_port) as pump, RigClient(board.rig_port) as rig:
            fuzz_setup(pump, rig)
        session = FuzzSession(board, random.Random(seed))
        started = time.perf_counter()
        problems: list[str] = []
        try:
            session.run(frames)
        except Stall as stall:
            problems.append(str(stall))
        seconds = time.perf_counter() - started
        problems += session.mismatches + [
            f"therapy changed: {c}" for c in session.therapy_changes()
        ]
        if not board.alive:
            problems.append(f"the board died:\n{board.stderr_text()}")
        session.close()
    rows = []
    judged = session.pump.stats.frames + session.rig.stats.frames
    rows.append(("fuzz: chunks judged (pump + rig)", f"{judged}", "frames"))
    rows.append(("fuzz: rate", f"{judged / seconds:.0f}", "frames/s"))
    for fuzz in (session.pump, session.rig):
        counters = fuzz.counters
        text = ", ".join(f"{name} {counters[name]}" for name in COUNTERS)
        rows.append((f"fuzz: {fuzz.kind} LINK_STATS", text, ""))
    auth_nacks = ("AUTH_REQUIRED", "WRONG_ROLE", "BAD_MAC", "REPLAY", "NO_CHALLENGE")
    text = ", ".join(f"{name} {session.pump.stats.nacks[name]}" for name in auth_nacks)
    rows.append(("fuzz: pump refusals by the session rules", text, ""))
    rows.append(("fuzz: replies and counters off the model", f"{len(session.mismatches)}", ""))
    return rows, problems
