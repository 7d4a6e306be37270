# ruff: noqa: ARG002  (fakes keep the real signatures)
# Test kit for the rp2 HAL under the MicroPython unix port (check scripts in
# tests/modules/upy/check_rp2_*.py). Builds a board config, a littlefs
# volume on a RAM block device, fake USB CDC streams and poller, and runs
# interrupt handlers under micropython.heap_lock().

import json
import sys

import machine
import micropython
import rp2
import vfs

LFS_MOUNT = "/lfs"
BLOCK_SIZE = 4096


class PowerCut(Exception):
    """The RAM flash lost power in the middle of an operation."""


class RamFlash:
    """A block device for vfs.VfsLfs2 that counts erases and programs.

    cut_after(n): the n-th next erase or program fails (PowerCut) after
    programming half of its bytes (a torn page), and the flash is dead from
    then on: nothing more lands (not even a file closed on the way out).
    revived() is the flash after the power came back: a copy of what landed.
    """

    def __init__(self, blocks=32, block_size=BLOCK_SIZE, data=None):
        self.block_size = block_size
        self.blocks = blocks
        self._blank = b"\xff" * block_size  # an erased block
        if data is None:
            data = bytearray(blocks * block_size)
            for block in range(blocks):
                data[block * block_size : (block + 1) * block_size] = self._blank
        self.data = data
        self.erases = 0
        self.programmed = 0
        self.block_erases = [0] * blocks
        self.operations = 0  # erases and programs
        self._budget = -1
        self._dead = None  # the PowerCut raised by everything once cut

    def cut_after(self, operations):
        self._budget = operations

    def revived(self):
        return RamFlash(self.blocks, self.block_size, bytearray(self.data))

    def _spend(self):
        # Raises when the power goes now (preallocated: this may run in a
        # finaliser, with the heap locked).
        if self._dead is not None:
            raise self._dead
        self.operations += 1
        if self._budget < 0:
            return False
        if self._budget == 0:
            self._budget = -1
            self._dead = PowerCut()
            return True
        self._budget -= 1
        return False

    def readblocks(self, block, buf, offset=0):
        if self._dead is not None:
            raise self._dead
        start = block * self.block_size + offset
        buf[:] = self.data[start : start + len(buf)]

    def writeblocks(self, block, buf, offset=None):
        if offset is None:  # erase + program (the basic interface)
            self._erase(block)
            offset = 0
        start = block * self.block_size + offset
        if self._spend():
            half = len(buf) // 2
            self.data[start : start + half] = buf[:half]
            raise self._dead
        self.data[start : start + len(buf)] = buf
        self.programmed += len(buf)

    def _erase(self, block):
        if self._spend():
            raise self._dead
        start = block * self.block_size
        self.data[start : start + self.block_size] = self._blank
        self.erases += 1
        self.block_erases[block] += 1

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.blocks
        if op == 5:  # block size
            return self.block_size
        if op == 6:  # erase
            self._erase(arg)
            return 0
        return 0


def mount(flash=None, fresh=True):
    # Mounts littlefs (as rp2 does: progsize=256) at /lfs; -> the flash.
    if flash is None:
        flash = RamFlash()
    try:
        vfs.umount(LFS_MOUNT)
    except OSError:
        pass
    if fresh:
        vfs.VfsLfs2.mkfs(flash, progsize=256)
    vfs.mount(vfs.VfsLfs2(flash, progsize=256), LFS_MOUNT)
    return flash


def unmount():
    try:
        vfs.umount(LFS_MOUNT)
    except OSError:
        pass


def config(**overrides):
    # board_config's values on an object the check may change.
    import board_config

    class Config:
        pass

    cfg = Config()
    for name in dir(board_config):
        if name.isupper():
            setattr(cfg, name, getattr(board_config, name))
    cfg.JOURNAL_DIR = LFS_MOUNT + "/journal"
    cfg.MAINTENANCE_WINDOW_MS = 0
    for name, value in overrides.items():
        setattr(cfg, name, value)
    return cfg


class FakeStream:
    """sys.stdin.buffer / sys.stdout.buffer of the board's USB CDC."""

    def __init__(self):
        self.incoming = bytearray()
        self.written = bytearray()
        self.fail_writes = False

    def feed(self, data):
        self.incoming += data

    def waiting(self):
        return len(self.incoming)

    def readinto(self, buf):
        n = min(len(buf), len(self.incoming))
        buf[:n] = self.incoming[:n]
        self.incoming = self.incoming[n:]
        return n

    def write(self, data):
        if self.fail_writes:
            raise OSError(5)
        self.written += data
        return len(data)


class FakePoll:
    """select.poll over the fake stream: a wait with nothing to read lets
    the fake clock run for the whole timeout."""

    def __init__(self, stream):
        self.stream = stream
        self.registered = []
        self.waits = []  # timeouts of the waits that found nothing (> 0)

    def register(self, obj, mask=None):
        self.registered.append(obj)

    def ipoll(self, timeout=-1, flags=0):
        if self.stream.waiting():
            return iter(((self.stream, 1),))
        if timeout and timeout > 0:
            self.waits.append(timeout)
            machine.advance(timeout)
        return iter(())


def board(cfg=None, **overrides):
    # A fresh Rp2Board on the fakes: -> (board, stdin, stdout, poller).
    from hal.rp2 import Rp2Board

    machine.reset_fakes()
    rp2.reset_fakes()
    if cfg is None:
        cfg = config(**overrides)
    mount()
    stdin = FakeStream()
    stdout = FakeStream()
    poller = FakePoll(stdin)
    b = Rp2Board(cfg, stdin=stdin, stdout=stdout, poller=poller, ticks=machine.ticks)
    return b, stdin, stdout, poller


def rebuild(cfg, ticks=None):
    # Another Rp2Board on the fakes as they are (the same flash, pins, ...):
    # what a reset would bring up.
    from hal.rp2 import Rp2Board

    return Rp2Board(cfg, stdin=FakeStream(), poller=FakePoll(FakeStream()), ticks=ticks)


def in_irq(handler, arg):
    # Calls an interrupt handler as a hard IRQ would have to run it: with
    # the heap locked. -> None, or the name of the error it raised.
    micropython.heap_lock()
    try:
        handler(arg)
        error = None
    except MemoryError:
        error = "MemoryError"
    except Exception as e:
        error = repr(e)
    finally:
        micropython.heap_unlock()
    return error


def step_sm():
    return rp2.MACHINES[0]


def run_cases(cases):
    # Runs the case named by argv[1] (or all) and prints the JSON results.
    names = sys.argv[1:] or sorted(cases)
    results = {}
    for name in names:
        results[name] = cases[name]()
    print(json.dumps(results))
