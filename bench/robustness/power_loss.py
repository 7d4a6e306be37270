"""The power-loss campaign: power cut at random and exact moments of therapy, every invariant
checked after each boot (docs/robustness.md).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.board.sim import BoardOptions, VirtualBoard
from bench.link.errors import BenchError, PumpRefused
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from bench.robustness.common import (
    ALARM,
    DAY_MS,
    LOG,
    STATE,
    STROKE_NL,
    _alarm_ids,
    _spin,
    _stopping,
    bolus_fields,
    program_crc_of,
    program_fields,
)
from protocol import codec, schema
from protocol.table import RESET_CAUSE_POWER_ON


# ==================================================================================
# 4. The event log's story (shared with tests/robustness/test_invariants.py)
# ==================================================================================
def bolus_story(entries: Sequence[dict[str, Any]]) -> tuple[list[str], dict[int, int]]:
    """Problems in the boluses an event log tells, and the boluses still open.

    Rules (docs/pump.md sections 12 and 15): a bolus id starts once (BOLUS_START
    a = id | kind << 16); it ends at most once, with BOLUS_DONE,
    BOLUS_CANCELLED or BOLUS_INTERRUPTED, never before it started. Returns
    (problems, {open bolus id: index of its BOLUS_START}).
    """
    problems: list[str] = []
    started: dict[int, int] = {}
    ended: dict[int, int] = {}
    ends = (LOG["BOLUS_DONE"], LOG["BOLUS_CANCELLED"], LOG["BOLUS_INTERRUPTED"])
    for entry in entries:
        code = entry["code"]
        if code == LOG["BOLUS_START"]:
            bolus_id = entry["a"] & 0xFFFF
            if bolus_id in started:
                problems.append(
                    f"bolus {bolus_id} started twice (log {started[bolus_id]} and {entry['index']})"
                )
            started[bolus_id] = entry["index"]
        elif code in ends:
            bolus_id = entry["a"] & 0xFFFF
            if bolus_id not in started:
                problems.append(
                    f"{entry['name']} of bolus {bolus_id}, never started (log {entry['index']})"
                )
            elif bolus_id in ended:
                problems.append(
                    f"bolus {bolus_id} ended twice (log {ended[bolus_id]} and {entry['index']})"
                )
            ended[bolus_id] = entry["index"]
    open_ids = {b: i for b, i in started.items() if b not in ended}
    return problems, open_ids


# ==================================================================================
# 5. Power loss: killing the virtual-board process
# ==================================================================================
# Refusals by the session rules: the campaign's requests must never meet one.
AUTH_REFUSALS = (
    schema.AUTH_REQUIRED,
    schema.WRONG_ROLE,
    schema.BAD_MAC,
    schema.REPLAY,
    schema.SESSION_EXPIRED,
)


ACTIVITIES = ("strokes", "bolus", "patient_bolus", "programming", "confirm", "refill", "stop_start")


EXACT_KILLS = ("frozen", "mid_stroke", "in_request", "torn_write")


RATES_NL_DAY = (1_200_000, 2_400_000, 4_800_000)


# About how many journal bytes each request writes: where a torn-write cut
# aimed at it lands (CONFIRM and REFILL write a snapshot).
_REQUEST_BYTES = {"CONFIRM": 1_200, "REFILL": 1_200}


_SMALL_REQUEST_BYTES = 80


@dataclass
class CampaignStats:
    cycles: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    activities: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    max_over_count_nl: int = 0  # exact kills: the pump's count minus the plant's
    max_bracket_nl: int = 0  # in_advance kills: width of the plant's bracket
    seconds: float = 0.0


@dataclass
class _Story:
    """One cycle: what was going on, how the process died, what the bench saw."""

    activity: str
    old_crc: int
    old_running: bool | None  # None: a stopping alarm hid it
    old_account: int
    kind: str = ""
    request: tuple[str, dict[str, Any] | None] | None = None
    new_fields: dict[str, Any] | None = None
    new_crc: int | None = None
    refill_nl: int | None = None
    bolus_id: int | None = None
    bolus_running_at_death: bool | None = None
    mid_stroke: bool = False
    cut: bool | None = None
    raw_seq: int = -1
    signer: codec.Signer | None = None  # the session of the raw request
    acked: dict[str, dict[str, Any]] = field(default_factory=dict)
    death_ms: int = 0

    @property
    def where(self) -> str:
        request = f" {self.request[0]}" if self.request else ""
        return f"{self.activity}{request}/{self.kind}"


def campaign_program(rng: random.Random, mode: int | None = None) -> dict[str, Any]:
    """A saline program (no drug limits in the way): the campaign is about the journal."""
    mode = rng.choice((1, 1, 1, 2, 3, 0)) if mode is None else mode
    fields = program_fields(
        drug_id=0,
        conc_ug_ml=0,
        mode=mode,
        basal_nl_day=rng.choice(RATES_NL_DAY) if mode in (1, 2) else 0,
        pb_dose_nl=rng.choice((1_000, 2_000, 4_000)),
        pb_lockout_s=600,
        pb_max_per_day=rng.randint(1, 24),
        low_reservoir_nl=rng.choice((1_000_000, 2_000_000)),
    )
    if mode == 2:
        steps = sorted(rng.sample(range(1440), rng.randint(1, 4)))
        pad = [0] * (24 - len(steps))
        fields["flex_count"] = len(steps)
        fields["flex_start_min"] = steps + pad
        fields["flex_rate_nl_day"] = [rng.choice(RATES_NL_DAY) for _ in steps] + pad
    return fields


class PowerLossCampaign:
    """Kills the virtual-board process at random instants; checks every restart.

    Each cycle: an activity (basal strokes, a clinician or patient bolus, a
    pending program, CONFIRM, REFILL, STOP or START), then a kill:

    - ``frozen``: device time stands still at a random instant (lockstep:
      ADVANCE a random number of ms), the rig's TRUTH is read, the process is
      killed. What the plant pumped at death is known exactly.
    - ``mid_stroke``: the same, stopped within a stroke (ADVANCE in 5 ms
      steps until TRUTH shows the head moved; a stroke lasts 20 ms).
    - ``in_request``: a pump request is sent and the process killed 0-0.8 ms
      later, while the firmware handles it and writes its journal (time
      stands still: truth exact).
    - ``torn_write``: the rig cuts power after a random number of journal
      bytes (POWER action 2: the write that crosses it lands torn), aimed at
      the activity's writes; then the powered-off process is killed. Truth
      exact (the rig outlives the cut).
    - ``in_advance``: an ADVANCE of 2-3000 ms is sent and the process killed
      0-1.5 ms later, while strokes run. The instant of death is unknown, so
      the plant's volume is bracketed: at least TRUTH before the ADVANCE, at
      most that plus every stroke the grant could hold.

    A new process then starts on the same journal (VirtualBoard.restart,
    new ptys) and the checks run (docs/robustness.md). Before the next
    cycle the new plant is filled to the pump's own account and device time
    is brought back to where the dead process had it: the Pico keeps its
    seconds across a reset, the virtual board's clock restarts at 0.
    """

    def __init__(self, rng: random.Random, journal_dir: str) -> None:
        self.rng = rng
        self.board = VirtualBoard(
            BoardOptions(journal_dir=journal_dir, seed=rng.randrange(1 << 16))
        )
        self.stats = CampaignStats()
        self.pump = PumpClient(self.board.pump_port, timeout_s=0.5)
        self.rig = RigClient(self.board.rig_port, timeout_s=0.5)
        self.log_seen = 0
        self.log_entries: list[dict[str, Any]] = []
        self._reported: set[str] = set()  # log problems already reported
        self.rig.fill(30_000_000)
        self.pump.refill(0, 30_000_000)
        self.pump.confirm(self.pump.program(campaign_program(rng, mode=1))["crc"])
        self.rig.advance(5_000)
        self.life_start_delivered = 0  # the pump's count when this process started
        self._read_log()

    # --- plumbing -------------------------------------------------------------------
    def close(self) -> None:
        self.pump.close()
        self.rig.close()
        self.board.close()

    def _connect(self) -> None:
        self.pump = PumpClient(self.board.pump_port, timeout_s=0.5)
        self.rig = RigClient(self.board.rig_port, timeout_s=0.5)
        self.pump.hello()
        self.rig.hello()

    def _restart(self) -> None:
        self.pump.close()
        self.rig.close()
        self.board.restart()
        self._connect()

    def _read_log(self) -> list[dict[str, Any]]:
        new = self.pump.log(self.log_seen)
        if new and new[0]["index"] != self.log_seen:
            self._violation(f"log entries {self.log_seen}..{new[0]['index'] - 1} are missing")
        if new:
            self.log_seen = new[-1]["index"] + 1
        self.log_entries += new
        return new

    def _violation(self, text: str) -> None:
        self.stats.violations.append(f"cycle {self.stats.cycles}: {text}")

    def _kill_now(self) -> None:
        if not self.board.alive:
            self._violation(f"the board died by itself:\n{self.board.stderr_text()}")
        self.board.kill()

    # --- one cycle ----------------------------------------------------------------------
    def run(self, cycles: int) -> CampaignStats:
        started = time.perf_counter()
        for _ in range(cycles):
            self.cycle()
        self.stats.seconds += time.perf_counter() - started
        return self.stats

    def cycle(self) -> None:
        rng = self.rng
        self.stats.cycles += 1
        status = self.pump.status()
        story = _Story(
            activity=rng.choice(ACTIVITIES),
            old_crc=self.pump.get_program()["crc"],
            old_running=None
            if _stopping(status["alarms"])
            else status["state"] == STATE["RUNNING"],
            old_account=status["reservoir_nl"],
        )
        self.stats.activities[story.activity] += 1
        self._begin(story, status)
        status = self.pump.status()
        kinds = ["frozen", "in_advance", "torn_write"]
        if story.request is not None:
            kinds += ["in_request", "in_request", "torn_write"]
        if status["bolus_kind"] or status["rate_nl_day"] >= 2_400_000:
            kinds += ["mid_stroke", "mid_stroke"]
        story.kind = rng.choice(kinds)
        self.stats.kills[story.kind] += 1
        if story.request is not None and story.kind not in ("in_request", "torn_write"):
            self._request(story)  # done before the kill, which comes later
        p_low, p_high = self._kill(story)
        self._restart()
        self._check(story, p_low, p_high)
        self._next_life(story)

    def _begin(self, story: _Story, status: dict[str, Any]) -> None:
        rng = self.rng
        activity = story.activity
        if activity in ("bolus", "patient_bolus"):
            if activity == "bolus":
                fields: dict[str, Any] | None = bolus_fields(
                    volume_nl=rng.choice((200, 400, 1_000, 2_000, 6_000)),
                    duration_s=rng.choice((0, 0, 5, 30)),
                )
                story.request = ("BOLUS", fields)
            else:
                story.request = ("PATIENT_BOLUS", None)
            if rng.random() < 0.5:
                self._request(story)  # running before the kill is chosen
                story.request = None
                self.rig.advance(rng.choice((0, 10, 260, 1_000)))
        elif activity in ("programming", "confirm"):
            story.new_fields = campaign_program(rng)
            story.new_crc = self.pump.program(story.new_fields)["crc"]
            if activity == "confirm":
                story.request = ("CONFIRM", {"crc": story.new_crc})
        elif activity == "refill":
            # a fill clearly different from the account, so the outcome is plain
            story.refill_nl = max(
                (20_000_000, 30_000_000, 38_000_000), key=lambda v: abs(v - story.old_account)
            )
            withdrawn = status["reservoir_nl"]
            story.request = ("REFILL", self.pump.refill_fields(withdrawn, story.refill_nl))
        elif activity == "stop_start":
            story.request = ("STOP", None) if story.old_running else ("START", None)

    def _request(self, story: _Story) -> None:
        assert story.request is not None
        name, fields = story.request
        try:
            reply = self.pump.request(name, fields)
        except PumpRefused as refused:
            if refused.code in AUTH_REFUSALS:
                self._violation(f"{name} refused {refused.code_name}: not exercised")
            self.stats.outcomes[f"{name} refused {refused.code_name}"] += 1
            return
        self._acked(story, name, reply)

    def _acked(self, story: _Story, name: str, reply: dict[str, Any]) -> None:
        story.acked[name] = reply
        if name in ("BOLUS", "PATIENT_BOLUS"):
            story.bolus_id = reply["bolus_id"]

    def _send_raw(self, story: _Story) -> None:
        assert story.request is not None
        name, fields = story.request
        story.raw_seq = self.pump.next_seq()
        self.pump.transport.expect(story.raw_seq)
        self.pump.transport.send(codec.encode(name, story.raw_seq, fields, signer=story.signer))

    def _collect(self, story: _Story, wait_s: float) -> bool:
        """Takes the raw request's reply if one came within ``wait_s``."""
        if story.request is None or story.raw_seq < 0:
            return False
        try:
            frame = self.pump.transport.wait_reply(story.raw_seq, wait_s)
        except BenchError:
            frame = None  # the port went with the process
        if frame is None:
            return False
        story.raw_seq = -1
        name = story.request[0]
        if frame.is_nack:
            code = frame.fields["code"]
            if code in AUTH_REFUSALS:  # the campaign's own session must hold
                self._violation(f"{name} refused {schema.error_name(code)}: not exercised")
            self.stats.outcomes[f"{name} refused {schema.error_name(code)}"] += 1
        else:
            self._acked(story, name, frame.fields)
        return True

    def _kill(self, story: _Story) -> tuple[int, int]:
        """Kills the process the chosen way; returns what the plant pumped (low, high)."""
        rng = self.rng
        rig = self.rig
        kind = story.kind
        if story.request is not None and schema.required_role(story.request[0]):
            # A change goes in a session (SPEC 21), opened now, before any
            # cut is armed: the kill falls in the request's own work.
            story.signer = self.pump.open_session().sign
        if kind == "in_advance":
            status = self.pump.status()
            pumped = rig.truth()["pumped_nl"]
            duration = rng.randint(2, 3_000)
            story.death_ms = status["device_time_ms"] + duration
            seq = rig.next_seq()
            rig.transport.send(codec.encode("ADVANCE", seq, {"duration_ms": duration}))
            _spin(rng.uniform(0.0, 0.0015))
            self._kill_now()
            bound = _stroke_bound(status, duration) * STROKE_NL
            self.stats.max_bracket_nl = max(self.stats.max_bracket_nl, bound)
            return pumped, pumped + bound
        if kind == "in_request":
            pumped = rig.truth()["pumped_nl"]
            story.death_ms = rig.advance(0)
            self._send_raw(story)
            _spin(rng.uniform(0.0, 0.0008))
            self._kill_now()
            self._collect(story, 0.05)
            return pumped, pumped
        if kind == "frozen":
            rig.advance(rng.randint(0, 5_000))
        elif kind == "mid_stroke":
            story.mid_stroke = self._into_a_stroke()
        elif kind == "torn_write":
            self._torn_write(story)
        if story.bolus_id is not None and rig.truth()["powered"]:
            story.bolus_running_at_death = self.pump.status()["bolus_kind"] != 0
        pumped = rig.truth()["pumped_nl"]
        story.death_ms = rig.advance(0)
        self._kill_now()
        return pumped, pumped

    def _into_a_stroke(self) -> bool:
        """Advances until a stroke has started and not ended (5 ms steps)."""
        rig = self.rig
        status = self.pump.status()
        start = rig.truth()["pumped_nl"]
        if not status["bolus_kind"] and status["rate_nl_day"]:
            # basal only: find a stroke at 100 ms, then wait for the next one
            interval = STROKE_NL * DAY_MS // status["rate_nl_day"]
            for _ in range(interval // 100 + 2):
                rig.advance(100)
                if rig.truth()["pumped_nl"] != start:
                    rig.advance(max(0, interval - 150))
                    start = rig.truth()["pumped_nl"]
                    break
        for _ in range(120):
            rig.advance(5)
            if rig.truth()["pumped_nl"] != start:
                return True
        return False

    def _torn_write(self, story: _Story) -> None:
        rng = self.rng
        rig = self.rig
        aim = _SMALL_REQUEST_BYTES
        if story.request is not None:
            aim = _REQUEST_BYTES.get(story.request[0], _SMALL_REQUEST_BYTES)
        rig.cut_after_bytes(rng.randint(0, aim) if rng.random() < 0.8 else rng.randint(0, 1_300))
        if story.request is not None:
            self._send_raw(story)
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline and rig.truth()["powered"]:
                if self._collect(story, 0.005):  # answered before the cut
                    break
        for step in range(50):
            if not rig.truth()["powered"]:
                break
            rig.advance(rng.randint(100, 3_000) if step < 30 else 30_000)
        story.cut = not rig.truth()["powered"]
        # nothing written in 10 min (delivery stopped): the kill is a frozen one
        self.stats.outcomes[f"torn_write: {'cut' if story.cut else 'nothing written'}"] += 1

    # --- after the restart ------------------------------------------------------------
    def _check(self, story: _Story, p_low: int, p_high: int) -> None:
        where = story.where
        pump = self.pump
        status = pump.status()
        program = pump.get_program()
        new = self._read_log()
        boots = [i for i, e in enumerate(new) if e["code"] == LOG["BOOT"]]
        if len(boots) != 1:
            self._violation(f"{where}: {len(boots)} BOOT entries, want 1: {new}")
            return
        boot = new[boots[0]]
        before_boot, after_boot = new[: boots[0]], new[boots[0] + 1 :]
        # an unexpected-reset event, every time
        if (boot["a"], boot["b"]) != (RESET_CAUSE_POWER_ON, 1):
            self._violation(f"{where}: BOOT a={boot['a']} b={boot['b']}, want a=0 b=1")
        if not any(
            e["code"] == LOG["ALARM_RAISED"] and e["a"] == ALARM["UNEXPECTED_RESET"]
            for e in after_boot
        ):
            self._violation(f"{where}: UNEXPECTED_RESET not raised at boot")
        if not status["alarms"] & (1 << (ALARM["UNEXPECTED_RESET"] - 1)):
            self._violation(f"{where}: UNEXPECTED_RESET not active after boot")
        if status["pending"] or status["bolus_kind"]:
            self._violation(
                f"{where}: after boot pending={status['pending']} bolus_kind={status['bolus_kind']}"
            )
        resumed = [e for e in after_boot if e["code"] == LOG["BOLUS_START"]]
        if resumed:
            self._violation(f"{where}: started again after boot: {resumed}")
        # A PROGRAM_ACTIVE after BOOT finishes an activation whose entry a cut
        # lost (docs/pump.md 22, section 15): only for the program now active, and
        # only when its entry is not already there.
        for entry in after_boot:
            if entry["code"] != LOG["PROGRAM_ACTIVE"]:
                continue
            crc = entry["a"] & 0xFFFFFFFF
            before = any(
                e["code"] == LOG["PROGRAM_ACTIVE"] and e["a"] & 0xFFFFFFFF == crc
                for e in before_boot
            )
            if crc != status["program_crc"] or before:
                self._violation(f"{where}: program activation logged again after boot: {entry}")
        self._check_program(story, status, program, before_boot)
        self._check_refill(story, status, before_boot)
        self._check_boluses(story, after_boot)
        # accounting: the pump's count of this life against the dead plant's
        counted = status["delivered_nl"] - self.life_start_delivered
        if not p_low <= counted <= p_high + STROKE_NL:
            plant = f"{p_low}" if p_low == p_high else f"{p_low}..{p_high}"
            self._violation(
                f"{where}: the pump counted {counted} nL this life, the plant pumped {plant} nL"
            )
        if story.kind in EXACT_KILLS:
            self.stats.max_over_count_nl = max(self.stats.max_over_count_nl, counted - p_low)

    def _check_program(
        self,
        story: _Story,
        status: dict[str, Any],
        program: dict[str, Any],
        before_boot: list[dict[str, Any]],
    ) -> None:
        where = story.where
        crc = program["crc"]
        fields = {name: value for name, value in program.items() if name != "crc"}
        if program_crc_of(fields) != crc or status["program_crc"] != crc:
            self._violation(
                f"{where}: active program not whole: GET_PROGRAM crc {crc:#x}, its fields "
                f"{program_crc_of(fields):#x}, STATUS {status['program_crc']:#x}"
            )
        allowed = {story.old_crc}
        if story.activity == "confirm" and story.new_crc is not None:
            allowed.add(story.new_crc)
            if "CONFIRM" in story.acked:
                allowed = {story.new_crc}
        if crc not in allowed:
            want = ", ".join(f"{c:#x}" for c in sorted(allowed))
            self._violation(f"{where}: active program {crc:#x}, want {want}")
        is_new = crc == story.new_crc and crc != story.old_crc
        if is_new and not any(
            e["code"] == LOG["PROGRAM_ACTIVE"] and e["a"] & 0xFFFFFFFF == crc
            for e in self.log_entries
        ):
            self._violation(f"{where}: program {crc:#x} active, no PROGRAM_ACTIVE entry names it")
        if story.activity in ("programming", "confirm"):
            self.stats.outcomes[f"{story.activity}: {'new' if is_new else 'old'} program"] += 1
        logged_new = any(
            e["code"] == LOG["PROGRAM_ACTIVE"] and e["a"] == story.new_crc for e in before_boot
        )
        if logged_new and not is_new and story.new_crc != story.old_crc:
            self._violation(f"{where}: PROGRAM_ACTIVE {story.new_crc:#x} logged, {crc:#x} active")
        if _stopping(status["alarms"]):
            return
        running = status["state"] == STATE["RUNNING"]
        if is_new:
            assert story.new_fields is not None
            if running != (story.new_fields["mode"] != 0):
                self._violation(f"{where}: the new program runs={running}")
        elif story.activity == "stop_start":
            wanted = "STOP" if story.old_running else "START"
            if wanted in story.acked and running == story.old_running:
                self._violation(f"{where}: {wanted} was ACKed but did not survive")
            if any(e["code"] == LOG[wanted] for e in before_boot) and running == story.old_running:
                self._violation(f"{where}: {wanted} logged but not in force")
        elif story.old_running is not None and running != story.old_running:
            self._violation(f"{where}: running {story.old_running} -> {running}")

    def _check_refill(
        self, story: _Story, status: dict[str, Any], before_boot: list[dict[str, Any]]
    ) -> None:
        if story.refill_nl is None:
            return
        where = story.where
        account = status["reservoir_nl"]
        # refilled: the new fill, less what this life delivered after it
        refilled = abs(account - story.refill_nl) < abs(account - story.old_account)
        if "REFILL" in story.acked and not refilled:
            self._violation(f"{where}: REFILL was ACKed, the account is {account} nL")
        logged = any(e["code"] == LOG["REFILL"] and e["a"] == story.refill_nl for e in before_boot)
        if logged and not refilled:
            self._violation(f"{where}: REFILL logged, the account is {account} nL")
        self.stats.outcomes[f"refill: {'new' if refilled else 'old'} account"] += 1

    def _check_boluses(self, story: _Story, after_boot: list[dict[str, Any]]) -> None:
        where = story.where
        problems, open_ids = bolus_story(self.log_entries)
        for problem in problems:
            if problem in self._reported:
                continue
            self._reported.add(problem)
            self._violation(f"{where}: {problem}")
        for bolus_id, index in open_ids.items():
            problem = f"bolus {bolus_id} (log {index}) never ended"
            if problem in self._reported:
                continue
            self._reported.add(problem)
            self._violation(f"{where}: {problem}")
        if story.bolus_id is None:
            return
        started = [
            e
            for e in self.log_entries
            if e["code"] == LOG["BOLUS_START"] and e["a"] & 0xFFFF == story.bolus_id
        ]
        if not started:
            self._violation(f"{where}: bolus {story.bolus_id} was ACKed and is not in the log")
        interrupted = [
            e
            for e in after_boot
            if e["code"] == LOG["BOLUS_INTERRUPTED"] and e["a"] == story.bolus_id
        ]
        if story.bolus_running_at_death and not interrupted and story.bolus_id not in open_ids:
            self._violation(f"{where}: bolus {story.bolus_id} was running, no BOLUS_INTERRUPTED")
        if interrupted and started and interrupted[0]["b"] > started[0]["b"] + STROKE_NL:
            delivered, target = interrupted[0]["b"], started[0]["b"]
            self._violation(f"{where}: interrupted bolus delivered {delivered} nL of {target}")
        self.stats.outcomes[
            "bolus: interrupted" if interrupted else "bolus: ended before the cut"
        ] += 1

    def _next_life(self, story: _Story) -> None:
        """Brings the clock back to where the dead process had it, refills the plant.

        The Pico restores its device seconds after a reset (hal/rp2.py saves
        them); the virtual board's clock restarts at 0 with the process. Left
        so, every window of the dose governor and every patient-bolus lockout
        would wait for time to pass the old maximum, and catching up with
        delivery running would pile hours of basal into one governor minute.
        So the pump is powered off at once (it has delivered nothing at
        device time 0), time is advanced to the instant of death with the
        pump off, and the pump is powered on again: a second boot, at the
        right time, with its own BOOT entry (not checked: it is the bench's).
        """
        pump = self.pump
        rig = self.rig
        if story.death_ms:
            rig.power_off()
            rig.advance(story.death_ms, timeout_s=30.0)
            rig.power_on()
            self._wait_for_pump()
        status = pump.status()
        self.life_start_delivered = status["delivered_nl"]
        account = status["reservoir_nl"]
        if account < 8_000_000:
            rig.fill(30_000_000)
            pump.refill(account, 30_000_000)
        else:
            rig.fill(account)
        for alarm in _alarm_ids(status["alarms"]):
            if alarm != ALARM["UNEXPECTED_RESET"]:
                self.stats.outcomes[f"alarm after restart: {schema.alarm_name(alarm)}"] += 1
            try:
                pump.clear_alarm(alarm)
            except PumpRefused:
                pass
        self._read_log()

    def _wait_for_pump(self) -> None:
        # The pump port is silent while the firmware boots: ask until it answers.
        deadline = time.monotonic() + 5.0
        while True:
            try:
                self.pump.request("PING", {"token": 1}, timeout_s=0.05)
                return
            except BenchError:
                if time.monotonic() > deadline:
                    raise


def _stroke_bound(status: dict[str, Any], duration_ms: int) -> int:
    """Most strokes a grant of ``duration_ms`` can hold now (basal and a bolus)."""
    count = 0
    rate = status["rate_nl_day"]
    if rate:
        count += duration_ms // (STROKE_NL * DAY_MS // rate) + 2
    if status["bolus_kind"]:
        count += duration_ms // 250 + 2
    return count
