"""Targets: where scenarios run. A fresh virtual board per scenario, or a board (and maybe a
rig) at a pyserial URL shared by all; chosen explicitly, never a silent simulator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from bench.board import image
from bench.board.sim import DEFAULT_HEAP, BoardOptions, VirtualBoard, micropython_command
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from bench.scenario.model import NEED_HARDWARE, NEED_RIG

SIM_BOARD = "sim"  # what a virtual board answers in HELLO's board field


@dataclass
class Ports:
    """The URLs of one session; ``board`` when the bench started it itself."""

    pump: str
    rig: str | None
    board: VirtualBoard | None = None


class Target:
    """Where scenarios run. Chosen explicitly; never a silent simulator."""

    label: str
    rig_label: str | None = None
    provides: frozenset[str] = frozenset()
    sets_seed = False  # True when the bench starts the board with the seed
    parallel = False  # True when every session is a board of its own

    def preflight(self) -> None:
        """Fails fast with one BenchError when nothing could possibly run."""

    def session(self, seed: int) -> AbstractContextManager[Ports]:
        """A context manager yielding the :class:`Ports` of one scenario."""
        raise NotImplementedError

    def advance_timeout_s(self, duration_ms: int) -> float | None:  # noqa: ARG002
        """The wall-time deadline of one ADVANCE; None: the client's default."""
        return None

    def missing(self, needs: frozenset[str]) -> str | None:
        """Why a scenario with these needs is not applicable here, or None."""
        lacking = needs - self.provides
        if not lacking:
            return None
        reasons = []
        if NEED_RIG in lacking:
            reasons.append("a rig port (give --rig URL)")
        if NEED_HARDWARE in lacking:
            reasons.append("a physical board (give --target with its port, e.g. /dev/ttyACM0)")
        reasons += sorted(lacking - {NEED_RIG, NEED_HARDWARE})
        return "not applicable: needs " + " and ".join(reasons)


class SimTarget(Target):
    """One fresh virtual board (pump and rig ports) per scenario."""

    label = "sim"
    provides = frozenset({NEED_RIG})
    sets_seed = True
    parallel = True

    def __init__(
        self,
        heap: str = DEFAULT_HEAP,
        say: Callable[[str], None] | None = None,
        speed: int = 0,
    ) -> None:
        self.heap = heap
        self.say = say
        self.speed = speed  # 0: lockstep; N: free-running at N x wall time
        if speed:
            self.label = f"sim x{speed}"

    def preflight(self) -> None:
        micropython_command()  # raises BenchError when the interpreter is missing
        # Once, before any board starts: the boards then share the built image.
        image.ensure_compiled(say=self.say)

    @contextmanager
    def session(self, seed: int) -> Iterator[Ports]:
        options = BoardOptions(heap=self.heap, seed=seed, speed=self.speed)
        with VirtualBoard(options) as board:
            yield Ports(board.pump_port, board.rig_port, board)

    def advance_timeout_s(self, duration_ms: int) -> float | None:
        if not self.speed:
            return None
        # free-running: ADVANCE takes the wall time it stands for (more when
        # the host cannot keep up and the virtual clock slips)
        return 10.0 + 3 * duration_ms / 1000 / self.speed


class PortTarget(Target):
    """A board (and maybe a rig) reached by pyserial URL; shared by all scenarios.

    It counts as a physical board (need ``hardware``) unless HELLO says it
    is a virtual one (``pumpbench sim`` served by URL).
    """

    def __init__(self, pump_url: str, rig_url: str | None = None) -> None:
        self.label = pump_url
        self.rig_label = rig_url
        self.provides = frozenset({NEED_RIG}) if rig_url else frozenset()

    def preflight(self) -> None:
        with PumpClient(self.label) as pump:
            board = pump.hello()["board"]
        if board != SIM_BOARD:
            self.provides |= {NEED_HARDWARE}
        if self.rig_label:
            with RigClient(self.rig_label) as rig:
                rig.hello()

    @contextmanager
    def session(self, seed: int) -> Iterator[Ports]:  # noqa: ARG002 (a board's own seed)
        yield Ports(self.label, self.rig_label)

    def advance_timeout_s(self, duration_ms: int) -> float | None:
        # A physical rig waits in real time; a lockstep board behind a URL is
        # faster, so the longer deadline serves both.
        return 10.0 + duration_ms / 1000 * 1.05
