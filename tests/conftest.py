"""Fixtures shared by the test suite: virtual boards and clients on them.

Every board is the real firmware under the MicroPython unix port, launched
on two ptys by bench.board.sim, at the heap size the README states.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.board.sim import BoardOptions, VirtualBoard
from bench.link.pump import PumpClient
from bench.link.rig import RigClient


@pytest.fixture
def board() -> Iterator[VirtualBoard]:
    with VirtualBoard(BoardOptions()) as vb:
        yield vb
        # A firmware crash must fail the test that caused it, with the trace.
        assert vb.alive, f"virtual board died:\n{vb.stderr_text()}"


@pytest.fixture
def pump(board: VirtualBoard) -> Iterator[PumpClient]:
    with PumpClient(board.pump_port) as client:
        yield client


@pytest.fixture
def rig(board: VirtualBoard) -> Iterator[RigClient]:
    with RigClient(board.rig_port) as client:
        yield client
