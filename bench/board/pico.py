"""The emulated Raspberry Pi Pico: stock MicroPython on rp2040js, reached over a pty.

``pico/harness.mjs`` (Node.js, rp2040js pinned in ``pico/package.json``)
runs the stock RPI_PICO UF2 on an emulated RP2040. This module is its host
side: it builds the board's littlefs image (the firmware compiled for
``armv6m`` and the key store, as ``make flash`` would leave them), starts the
harness, relays the board's USB CDC to a pseudo-terminal (``/dev/pts/N``,
used exactly like ``/dev/ttyACM0``) and talks to the harness's control
socket: emulated time, the pins (STEP pulses counted, encoder edges fed
back), the ADC inputs, BOOTSEL, power and reset.

What must be present, each overridable:

- Node.js 18 or later on PATH (``$PUMPBENCH_NODE``), and ``pico/node_modules``
  (``make pico``: ``npm ci`` in ``pico/``);
- the UF2, stock MicroPython v1.28.0 for RPI_PICO: ``$PICO_UF2``;
- the RP2040 B1 bootrom: ``$PICO_BOOTROM``.

Either, when not given, is looked for by its file name in ``shared/rp2/``
beside the checkout, the folder CI's inputs come in (docs/ci.md).

:func:`missing` says in one line what is absent and how to get it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path
from typing import Any

from bench.board.paths import ROOT, cache_dir
from bench.link import keys as keysmod
from bench.link.errors import BenchError
from protocol import schema

PICO_DIR = ROOT / "pico"
HARNESS = PICO_DIR / "harness.mjs"
SHARED_RP2 = ROOT.parent / "shared" / "rp2"
ENV_UF2 = "PICO_UF2"
ENV_BOOTROM = "PICO_BOOTROM"
ENV_NODE = "PUMPBENCH_NODE"
DEFAULT_UF2 = SHARED_RP2 / "micropython-v1.28.0-RPI_PICO.uf2"
DEFAULT_BOOTROM = SHARED_RP2 / "rp2040-bootrom-b1.bin"
ARCH = "armv6m"
STATE_DIR = "journal"  # board_config.JOURNAL_DIR, without the slash

# MicroPython v1.28.0 RPI_PICO: littlefs v2, 352 blocks of 4096 B at 0xA0000.
FS_BLOCK_SIZE = 4096
FS_BLOCK_COUNT = 352
# STEP, ENABLE and encoder pins of board_config (the harness's rig wiring).
ADC_PRESSURE = 0  # GP26
ADC_BATTERY = 3  # GP29 (VSYS / 3)


def uf2_path() -> Path:
    return Path(os.environ.get(ENV_UF2) or DEFAULT_UF2)


def bootrom_path() -> Path:
    return Path(os.environ.get(ENV_BOOTROM) or DEFAULT_BOOTROM)


def node_command() -> str | None:
    return os.environ.get(ENV_NODE) or shutil.which("node")


def missing() -> str | None:
    """One line naming what the emulated Pico lacks here and how to get it; None if ready."""
    node = node_command()
    if node is None:
        return f"Node.js is not installed (Debian: apt-get install nodejs npm; or set ${ENV_NODE})"
    if not (PICO_DIR / "node_modules" / "rp2040js" / "package.json").exists():
        return "rp2040js is not installed: run `make pico` (npm ci in pico/)"
    if not uf2_path().exists():
        return (
            f"no MicroPython UF2 at {uf2_path()}: set ${ENV_UF2} to "
            "micropython-v1.28.0-RPI_PICO.uf2 (micropython.org/download/RPI_PICO)"
        )
    if not bootrom_path().exists():
        return (
            f"no RP2040 bootrom at {bootrom_path()}: set ${ENV_BOOTROM} (raspberrypi/pico-bootrom)"
        )
    try:
        import littlefs  # noqa: F401
    except ImportError:
        return "littlefs-python is not installed: run `make venv`"
    return None


# --- the board's filesystem image ---------------------------------------------------


def staged_image() -> Path:
    """The firmware as ``make flash`` copies it (armv6m .mpy, main.py as source), cached."""
    from bench.board import flash, image

    key = image.image_key()
    final = cache_dir() / f"pico-{ARCH}-{key}"
    if (final / image.COMPLETE).exists():
        return final
    partial = Path(tempfile.mkdtemp(prefix=".pico-", dir=cache_dir()))
    try:
        flash.stage(partial / "image", ARCH)
        (partial / "image" / image.COMPLETE).write_text("armv6m\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial / "image", final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return final


def fs_image(files: Path | None, keystore: bytes | None) -> bytes:
    """A littlefs image of ``files`` (a folder laid out as on the board) plus the key store."""
    from littlefs import LittleFS

    lfs = LittleFS(block_size=FS_BLOCK_SIZE, block_count=FS_BLOCK_COUNT)
    if files is not None:
        for path in sorted(files.rglob("*")):
            rel = path.relative_to(files).as_posix()
            if path.name.startswith("."):
                continue
            if path.is_dir():
                lfs.makedirs(rel, exist_ok=True)
            else:
                with lfs.open(rel, "wb") as out:
                    out.write(path.read_bytes())
    if keystore is not None:
        lfs.makedirs(STATE_DIR, exist_ok=True)
        with lfs.open(f"{STATE_DIR}/{schema.KEYSTORE_FILE}", "wb") as out:
            out.write(keystore)
    return bytes(lfs.context.buffer)


def read_files(flash_file: Path) -> dict[str, bytes]:
    """Every file of the littlefs filesystem in a saved flash array (for tests)."""
    from littlefs import LittleFS

    data = Path(flash_file).read_bytes()
    offset = 0xA0000
    lfs = LittleFS(block_size=FS_BLOCK_SIZE, block_count=FS_BLOCK_COUNT, mount=False)
    lfs.context.buffer[:] = data[offset : offset + FS_BLOCK_SIZE * FS_BLOCK_COUNT]
    lfs.mount()
    out: dict[str, bytes] = {}
    for root, _dirs, names in lfs.walk("/"):
        for name in names:
            path = f"{root.rstrip('/')}/{name}"
            with lfs.open(path, "rb") as handle:
                out[path] = handle.read()
    return out


# --- the board ---------------------------------------------------------------------------


class PicoBoard:
    """One emulated Pico. Use as a context manager or call close().

    firmware: True (default) puts the pump firmware and ``keys`` on the
    board's filesystem, as ``make flash`` does; False leaves stock
    MicroPython with an empty filesystem (``make flash`` against it).
    flash_file: the flash array kept across runs (a temporary one if None;
    an existing file is used as it is). mode: ``fast`` (idle time skipped),
    ``realtime`` (emulated time never ahead of wall time) or ``lockstep``
    (idle time passes only through :meth:`advance`).
    rig: True also starts the rig around the board (firmware/virtual/pico_rig.py under
    the unix-port MicroPython: the plant's physics on the pins, the rig
    protocol on :attr:`rig_port`); the board then runs in lockstep, device
    time granted by the rig's ADVANCE. seed: the plant's.
    """

    def __init__(
        self,
        firmware: bool = True,
        keys: keysmod.DeviceKeys | None = None,
        flash_file: Path | None = None,
        mode: str = "fast",
        uf2: Path | None = None,
        rig: bool = False,
        seed: int = 0,
    ) -> None:
        lack = missing()
        if lack:
            raise BenchError(f"emulated Pico: {lack}")
        self._tmp = tempfile.TemporaryDirectory(prefix="pico-")
        self.flash_file = Path(flash_file) if flash_file else Path(self._tmp.name, "flash.bin")
        self.keys = keys if keys is not None else (keysmod.generate() if firmware else None)
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._replies: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._next_id = 1
        self._lock = threading.Lock()
        self._stderr: list[str] = []
        self._closing = False
        self.rig_port: str | None = None
        self.rig_process: subprocess.Popen[bytes] | None = None
        if rig:
            mode = "lockstep"
        command = [
            node_command() or "node",
            str(HARNESS),
            "--bootrom",
            str(bootrom_path()),
            "--flash",
            str(self.flash_file),
            "--mode",
            mode,
        ]
        if not self.flash_file.exists():
            files = staged_image() if firmware else None
            keystore = self.keys.keystore() if self.keys is not None else None
            fs_file = Path(self._tmp.name, "fs.bin")
            fs_file.write_bytes(fs_image(files, keystore))
            command += ["--uf2", str(uf2 or uf2_path()), "--fs", str(fs_file)]
        master, slave = os.openpty()
        tty.setraw(slave)
        self._slave = slave
        self._master = master
        self.pump_port = os.ttyname(slave)
        cdc_host, cdc_harness = socket.socketpair()
        ctl_host, ctl_harness = socket.socketpair()
        self._cdc = cdc_host
        self._ctl = ctl_host
        command += ["--cdc-fd", str(cdc_harness.fileno())]
        command += ["--control-fd", str(ctl_harness.fileno())]
        passed = [cdc_harness, ctl_harness]
        rig_plant = None
        if rig:
            rig_harness, rig_plant = socket.socketpair()
            command += ["--rig-fd", str(rig_harness.fileno())]
            passed.append(rig_harness)
        self.process = subprocess.Popen(
            command,
            pass_fds=tuple(s.fileno() for s in passed),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        for end in passed:
            end.close()
        if rig_plant is not None:
            try:
                self._start_rig(rig_plant, seed)
            finally:
                rig_plant.close()
        if self.keys is not None:
            keysmod.register_virtual(self.pump_port, self.keys)
        self._threads = [
            threading.Thread(target=self._relay, daemon=True),
            threading.Thread(target=self._control_reader, daemon=True),
            threading.Thread(target=self._stderr_reader, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        ready = self._wait_event("ready", 30.0)
        if ready is None:
            self.close()
            raise BenchError(f"emulated Pico did not start:\n{self.stderr_text()}")

    def _start_rig(self, harness_end: socket.socket, seed: int) -> None:
        # The plant process: firmware/virtual/pico_rig.py under the unix-port
        # MicroPython, in the host image (where firmware/virtual/ lives: never flashed).
        from bench.board import image
        from bench.board.sim import micropython_command

        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)  # the rig's link reads what is there
        harness_end.setblocking(False)  # (a blocking FileIO read fills its buffer)
        self._rig_slave = slave
        self.rig_port = os.ttyname(slave)
        env = dict(os.environ)
        env["MICROPYPATH"] = "."
        try:
            self.rig_process = subprocess.Popen(
                [
                    micropython_command(),
                    "-X",
                    "heapsize=512k",
                    "-m",
                    "virtual.pico_rig",
                    "--rig-fd",
                    str(master),
                    "--harness-fd",
                    str(harness_end.fileno()),
                    "--seed",
                    str(seed),
                ],
                pass_fds=(master, harness_end.fileno()),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(image.ensure_compiled()),
                start_new_session=True,
            )
        finally:
            os.close(master)

    def rig_output(self) -> str:
        """What the plant process printed (a traceback if it died); only once it exited."""
        proc = self.rig_process
        if proc is None or proc.poll() is None or proc.stdout is None:
            return ""
        return proc.stdout.read().decode(errors="replace")

    # --- plumbing -----------------------------------------------------------------
    def _relay(self) -> None:
        # pty master <-> the harness's CDC socket, both ways, unbuffered.
        sel = selectors.DefaultSelector()
        os.set_blocking(self._master, False)
        sel.register(self._master, selectors.EVENT_READ, "pty")
        sel.register(self._cdc, selectors.EVENT_READ, "cdc")
        while not self._closing:
            for key, _ in sel.select(0.2):
                try:
                    if key.data == "pty":
                        data = os.read(self._master, 4096)
                        if data:
                            self._cdc.sendall(data)
                    else:
                        data = self._cdc.recv(4096)
                        if not data:
                            return
                        _write_all(self._master, data)
                except BlockingIOError:
                    continue
                except OSError:
                    if self._closing:
                        return
                    # EIO: no one has the pty open right now; keep serving
                    time.sleep(0.01)

    def _control_reader(self) -> None:
        buffer = b""
        while True:
            try:
                data = self._ctl.recv(65536)
            except OSError:
                return
            if not data:
                return
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                message = json.loads(line)
                reply_to = message.get("id")
                if reply_to is not None and reply_to in self._replies:
                    self._replies[reply_to].put(message)
                else:
                    self.events.put(message)

    def _stderr_reader(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            self._stderr.append(raw.decode(errors="replace"))

    def _wait_event(self, name: str, timeout_s: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None:
                    return None
                continue
            if event.get("event") == name:
                return event
        return None

    def request(self, cmd: str, timeout_s: float = 60.0, **fields: Any) -> dict[str, Any]:
        """One control request; its answer (raises BenchError on an error or no answer)."""
        with self._lock:
            ident = self._next_id
            self._next_id += 1
            answers: queue.Queue[dict[str, Any]] = queue.Queue()
            self._replies[ident] = answers
        try:
            self._ctl.sendall(json.dumps({"id": ident, "cmd": cmd, **fields}).encode() + b"\n")
            answer = answers.get(timeout=timeout_s)
        except (OSError, queue.Empty):
            raise BenchError(f"emulated Pico: no answer to {cmd}:\n{self.stderr_text()}") from None
        finally:
            self._replies.pop(ident, None)
        if "error" in answer:
            raise BenchError(f"emulated Pico: {cmd}: {answer['error']}")
        return answer

    # --- what a rig or a test does -------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return self.request("status")

    def set_mode(self, mode: str) -> dict[str, Any]:
        return self.request("mode", mode=mode)

    def advance(self, ms: int, timeout_s: float = 120.0) -> int:
        """Lockstep: lets ``ms`` of idle emulated time pass; -> emulated ns now."""
        return int(self.request("advance", timeout_s=timeout_s, ms=ms)["now_ns"])

    def set_adc(self, channel: int, raw12: int, noise: int = 0) -> None:
        """ADC ``channel`` reads ``raw12`` (12-bit), +- ``noise`` counts per conversion
        (uniform; without the rig: a sensor's noise, so the pump sees no stuck sensor)."""
        self.request("adc", channel=channel, raw=raw12, noise=noise)

    def set_encoder(self, mode: str = "echo", lost_every: int = 0, extra_per_step: int = 0) -> None:
        self.request("encoder", mode=mode, lost_every=lost_every, extra_per_step=extra_per_step)

    def bootsel(self, pressed: bool) -> None:
        self.request("bootsel", pressed=pressed)

    def power(self, on: bool) -> dict[str, Any]:
        return self.request("power", on=on)

    def cut_at_step(self, step: int) -> None:
        """Cuts the power when the STEP pin has risen ``step`` times (driver on), flash kept."""
        self.request("cut_at_step", step=step)

    def reset(self) -> dict[str, Any]:
        return self.request("reset")

    def save(self) -> None:
        self.request("save")

    def files(self) -> dict[str, bytes]:
        """The board's littlefs files as they are on its flash now."""
        self.save()
        return read_files(self.flash_file)

    def stderr_text(self) -> str:
        return "".join(self._stderr[-50:])

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        with contextlib.suppress(OSError, BenchError):
            if self.process.poll() is None:
                self._ctl.sendall(b'{"id": 0, "cmd": "quit"}\n')
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for closer in (self._cdc.close, self._ctl.close):
            with contextlib.suppress(OSError):
                closer()
        if self.rig_process is not None:
            # the harness's end is gone: the plant process exits on its own
            try:
                self.rig_process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.rig_process.kill()
                self.rig_process.wait()
            if self.rig_process.stdout is not None:
                self.rig_process.stdout.close()
            with contextlib.suppress(OSError):
                os.close(self._rig_slave)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        keysmod.forget_virtual(self.pump_port)
        self._tmp.cleanup()

    def __enter__(self) -> PicoBoard:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            time.sleep(0.001)
            continue
        view = view[n:]


# --- the raw REPL, for evidence tests on stock MicroPython ----------------------------------


def repl_exec(port: str, code: str, timeout_s: float = 60.0) -> str:
    """Runs ``code`` in the raw REPL on ``port``; -> its output (raises on an exception)."""
    import serial

    with serial.Serial(port, 115200, timeout=0.1) as ser:
        reader = start_in_raw_repl(ser, port, code, timeout_s)
        out = reader.until(b"\x04", timeout_s)[:-1]
        err = reader.until(b"\x04", timeout_s)[:-1]
        ser.write(b"\x02")
    if err.strip():
        raise BenchError(f"on the board: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


def start_in_raw_repl(ser: Any, port: str, code: str, timeout_s: float) -> _Reader:
    """Enters the raw REPL on the open port ``ser`` and starts ``code``; returns
    once the board has taken it (its output follows on the returned reader)."""
    reader = _Reader(ser)
    # Ctrl-C twice, then raw REPL; again every second while the board
    # boots (bytes sent before its USB comes up may meet a busy script).
    deadline = time.monotonic() + timeout_s
    while True:
        ser.write(b"\r\x03\x03\x01")
        try:
            reader.until(b"raw REPL; CTRL-B to exit\r\n>", 1.0)
            break
        except BenchError as exc:
            if time.monotonic() > deadline:
                raise BenchError(f"{port}: no raw REPL ({exc})") from None
    time.sleep(0.2)
    reader.drain()  # the answers to the repeated entries
    ser.write(code.encode() + b"\x04")
    reader.until(b"OK", timeout_s)
    return reader


class _Reader:
    def __init__(self, ser: Any) -> None:
        self.ser = ser
        self.data = b""

    def drain(self) -> None:
        self.data += self.ser.read(65536)
        self.data = b""

    def until(self, marker: bytes, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        while marker not in self.data:
            if time.monotonic() > deadline:
                raise BenchError(
                    f"no {marker!r} from the board within {timeout_s:g} s "
                    f"(got {self.data[-200:]!r})"
                )
            self.data += self.ser.read(4096)
        cut = self.data.index(marker) + len(marker)
        found, self.data = self.data[:cut], self.data[cut:]
        return found


if __name__ == "__main__":  # pragma: no cover - a quick manual check
    with PicoBoard(firmware="--stock" not in sys.argv) as b:
        print(b.pump_port, b.status())
        input("press Enter to stop ")
