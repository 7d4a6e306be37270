"""Boards on other machines: the suite over ``socket://`` and ``rfc2217://`` URLs.

A lab farm (labgrid, or plain ser2net) exports a board's serial ports over
TCP; the bench reaches them with the pyserial URL, nothing else changes.
Here the "remote" board is a virtual board on this machine and the network
hop is loopback:

- ``socket://``: a raw TCP bridge to the board's ptys (a thread in the test);
- ``rfc2217://``: pyserial's own RFC 2217 port manager, the server half of
  the protocol ser2net speaks, as a thread in the test;
- ``rfc2217://`` through a real ser2net, when it is installed (skipped with
  the reason otherwise: ``apt-get install ser2net``).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial
import serial.rfc2217

from bench.board.sim import BoardOptions, VirtualBoard
from bench.cli.main import main

SUITE = Path(__file__).resolve().parents[2] / "bench" / "scenarios"
# Both ports, a deferred reply (ADVANCE) and a reboot: what a transport can break.
BASIC = [str(SUITE / name) for name in ("handshake.yaml", "lockstep-advance.yaml", "reset.yaml")]
# pyserial's RFC 2217 client costs tens of ms a request: one scenario there.
RFC2217 = [str(SUITE / "handshake.yaml")]
# pyserial's RFC 2217 client still calls Thread.setDaemon (deprecated)
pytestmark = pytest.mark.filterwarnings(
    "ignore:set(Daemon|Name)\\(\\) is deprecated:DeprecationWarning"
)
CONNECT_TIMEOUT_S = 10.0  # for a server to start listening (not the pump: wall time is fine)


class Bridge:
    """A TCP server on loopback that serves one port of a board, one client at a time."""

    def __init__(self, pty_path: str, serve: Callable[[socket.socket, str, threading.Event], None]):
        self.pty_path = pty_path
        self.serve = serve
        self.stop = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _addr = self.server.accept()
            except TimeoutError:
                continue
            with conn:
                self.serve(conn, self.pty_path, self.stop)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.server.close()


def serve_raw(conn: socket.socket, pty_path: str, stop: threading.Event) -> None:
    """Bytes both ways between a TCP connection and a pty, as ser2net's raw mode does."""
    fd = os.open(pty_path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    try:
        while not stop.is_set():
            ready, _, _ = select.select([conn, fd], [], [], 0.1)
            if conn in ready:
                data = conn.recv(4096)
                if not data:
                    return
                os.write(fd, data)
            if fd in ready:
                conn.sendall(os.read(fd, 4096))
    finally:
        os.close(fd)


class PtySerial(serial.Serial):
    """A pty has no modem lines: report them idle instead of failing the ioctl."""

    @property
    def cts(self) -> bool:
        return False

    @property
    def dsr(self) -> bool:
        return False

    @property
    def ri(self) -> bool:
        return False

    @property
    def cd(self) -> bool:
        return False

    def _update_rts_state(self) -> None:
        pass

    def _update_dtr_state(self) -> None:
        pass


def serve_rfc2217(conn: socket.socket, pty_path: str, stop: threading.Event) -> None:
    """An RFC 2217 server (pyserial's PortManager) in front of a pty."""
    port = PtySerial(pty_path, timeout=0.05)
    lock = threading.Lock()

    class Connection:
        def write(self, data: bytes) -> None:
            with lock:
                conn.sendall(data)

    manager = serial.rfc2217.PortManager(port, Connection())
    conn.settimeout(0.1)
    done = threading.Event()

    def board_to_net() -> None:
        while not (stop.is_set() or done.is_set()):
            data = port.read(port.in_waiting or 1)
            if data:
                Connection().write(b"".join(manager.escape(data)))

    reader = threading.Thread(target=board_to_net, daemon=True)
    reader.start()
    try:
        while not stop.is_set():
            try:
                data = conn.recv(4096)
            except TimeoutError:
                continue
            if not data:
                break
            port.write(b"".join(manager.filter(data)))
    finally:
        done.set()
        reader.join(timeout=2)
        port.close()


@pytest.fixture
def board() -> Iterator[VirtualBoard]:
    with VirtualBoard(BoardOptions(seed=9)) as vb:
        yield vb


def _bridges(board: VirtualBoard, serve: Callable[..., None]) -> tuple[Bridge, Bridge]:
    return Bridge(board.pump_port, serve), Bridge(board.rig_port, serve)


def _run(tmp_path: Path, target: str, rig: str, scenarios: list[str]) -> dict:
    report = tmp_path / "report"
    args = ["run", *scenarios, "--target", target, "--rig", rig, "--report", str(report)]
    assert main([*args, "--no-plots"]) == 0
    return json.loads((report / "results.json").read_text())


@pytest.mark.parametrize(
    ("scheme", "serve", "scenarios"),
    [("socket", serve_raw, BASIC), ("rfc2217", serve_rfc2217, RFC2217)],
)
def test_suite_over_a_network_url(
    board: VirtualBoard,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    scheme: str,
    serve: Callable[..., None],
    scenarios: list[str],
) -> None:
    pump, rig = _bridges(board, serve)
    try:
        url = f"{scheme}://127.0.0.1:"
        data = _run(tmp_path, f"{url}{pump.port}", f"{url}{rig.port}", scenarios)
    finally:
        pump.close()
        rig.close()
    capsys.readouterr()
    assert data["outcome"] == "PASS"
    assert data["target"] == f"{scheme}://127.0.0.1:{pump.port}"
    assert len(data["scenarios"]) == len(scenarios)
    assert all(s["outcome"] == "PASS" for s in data["scenarios"])
    assert all(s["seed"] == 9 for s in data["scenarios"])  # the remote rig's own seed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"ser2net exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)  # ser2net starting up, not the pump
    raise AssertionError(f"ser2net did not listen on {port}")


@pytest.mark.skipif(
    shutil.which("ser2net") is None,
    reason="ser2net is not installed (apt-get install ser2net); the RFC 2217 path is "
    "still tested above against pyserial's own RFC 2217 server",
)
def test_suite_through_ser2net(board: VirtualBoard, tmp_path: Path) -> None:
    pump_port, rig_port = _free_port(), _free_port()
    config = tmp_path / "ser2net.yaml"
    config.write_text(
        "".join(
            f"connection: &{name}\n"
            f"  accepter: telnet(rfc2217),tcp,127.0.0.1,{port}\n"
            f"  connector: serialdev,{path},115200n81,local\n"
            f"  options:\n    kickolduser: true\n"
            for name, port, path in (
                ("pump", pump_port, board.pump_port),
                ("rig", rig_port, board.rig_port),
            )
        )
    )
    process = subprocess.Popen(
        ["ser2net", "-n", "-u", "-c", str(config), "-P", str(tmp_path / "ser2net.pid")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_listening(pump_port, process)
        _wait_listening(rig_port, process)
        # A pty has no modem lines, so ser2net never acknowledges pyserial's
        # DTR/RTS request; ?ign_set_control tells pyserial not to wait for it
        # (docs/ci.md: the same for any port without modem control).
        data = _run(
            tmp_path,
            f"rfc2217://127.0.0.1:{pump_port}?ign_set_control",
            f"rfc2217://127.0.0.1:{rig_port}?ign_set_control",
            RFC2217,
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()
    assert data["outcome"] == "PASS"
    assert data["scenarios"][0]["outcome"] == "PASS"
