"""pumpbench commands that act on a board or its keys: sim (a virtual board for a person),
keys new.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.board import image
from bench.board.sim import BoardOptions, VirtualBoard
from bench.cli.common import EXIT_ERROR, EXIT_OK, PROG, _died, _error, _note, _raise_stop, _Stop
from bench.link import keys as keysmod
from bench.link.errors import BenchError
from protocol import schema


def _sim_keys(path: Path | None, scratch: Path) -> tuple[keysmod.DeviceKeys, Path]:
    """The keys a person's virtual board is provisioned with, and their key file."""
    if path is None:
        path = scratch / "sim.keys"
    elif path.exists():
        return keysmod.load(path), path
    keys = keysmod.generate()
    keysmod.write(path, keys, "keys of a pumpbench virtual board")
    return keys, path


def cmd_sim(args: argparse.Namespace) -> int:
    """Starts a virtual board for a person and keeps it until Ctrl-C or SIGTERM."""
    with tempfile.TemporaryDirectory(prefix="pumpbench-sim-") as scratch:
        keys, key_file = _sim_keys(args.key_file, Path(scratch))
        if args.board == "pico":
            from bench.board import pico_pump

            return pico_pump.run_sim(args, keys, key_file)
        return _run_sim(args, keys, key_file)


def _run_sim(args: argparse.Namespace, keys: keysmod.DeviceKeys, key_file: Path) -> int:
    options = BoardOptions(heap=args.heap, seed=args.seed, speed=args.speed, keys=keys)
    image.ensure_compiled(say=_note)
    # Both signals stop the board the same way; SIGINT explicitly too, since a
    # shell starts background jobs with SIGINT ignored.
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with VirtualBoard(options) as board, _links(args, board.pump_port, board.rig_port):
            assert board.process is not None
            # The ports are printed inside the try: whoever read them may send
            # the signal at once, even before the last print returns.
            try:
                print(f"pump port: {board.pump_port}", flush=True)
                print(f"rig port: {board.rig_port}", flush=True)
                print(f"key file: {key_file}", flush=True)
                if args.link:
                    print(f"pump link: {args.link}", flush=True)
                    print(f"rig link: {_rig_link(args)}", flush=True)
                board.process.wait()
            except _Stop:
                return EXIT_OK
            line, stderr = _died(board)
            _error(line)
            if stderr:
                print(stderr, file=sys.stderr, flush=True)
            return EXIT_ERROR
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _rig_link(args: argparse.Namespace) -> Path:
    return args.rig_link or Path(f"{args.link}-rig")


def _make_link(path: Path, port: str) -> None:
    """``path`` -> ``port``, replacing a symlink left by an earlier board, never a file."""
    if path.is_symlink():
        path.unlink()  # a dead board's: its /dev/pts/N may be someone's terminal now
    elif path.exists():
        raise BenchError(f"{path}: exists and is not a symlink; --link never replaces a file")
    try:
        path.symlink_to(port)
    except OSError as exc:
        raise BenchError(f"{path}: cannot make the link ({exc.strerror})") from None


@contextmanager
def _links(args: argparse.Namespace, pump_port: str, rig_port: str) -> Iterator[None]:
    """``sim --link PATH``: stable names for the board's ptys, removed when it stops."""
    if not args.link:
        yield
        return
    made: list[tuple[Path, str]] = []
    try:
        for path, port in ((args.link, pump_port), (_rig_link(args), rig_port)):
            _make_link(path, port)
            made.append((path, port))
        yield
    finally:
        for path, port in made:
            try:
                if path.is_symlink() and os.readlink(path) == port:
                    path.unlink()  # only our own: another board may own the name now
            except OSError:
                pass


def cmd_keys_new(args: argparse.Namespace) -> int:
    """Writes a key file: fresh keys, or one role's key of an existing file."""
    if args.source:
        keys = keysmod.load(args.source).only(keysmod.ROLE_WORDS[args.role])
        if keys.highest_role == schema.ROLE_READ_ONLY:
            raise BenchError(f"{args.source}: holds no {args.role} key")
        comment = f"{args.role} key of {args.source}"
    else:
        keys = keysmod.generate()
        comment = f"pump keys, made by {PROG} keys new {time.strftime('%Y-%m-%d')}"
    keysmod.write(args.file, keys, comment)
    roles = [word for word, role in keysmod.ROLE_WORDS.items() if keys.for_role(role)]
    print(f"{args.file}: {' and '.join(roles)} key{'s' if len(roles) > 1 else ''} (mode 600)")
    return EXIT_OK
