# Filesystem adapter of the virtual board: the journal's files are real files
# in one host directory. The journal (pump/journal.py) never opens a file
# itself; it goes through an object with this interface, so the Pico port can
# hand in a littlefs-backed adapter (with batched writes) instead.
#
# Adapter interface (what pump/journal.py relies on):
#   read(name) -> bytes or None     whole content; None if the file is missing
#   read_into(name, offset, buf) -> int
#                                   reads up to len(buf) bytes from offset into
#                                   buf; -> bytes read (0 at the end or if the
#                                   file is missing). The journal reads only
#                                   through this, into preallocated buffers,
#                                   so that it never needs a big block of heap.
#   write(name, data)               replace the content with data
#   append(name, data)              add data at the end
#   remove(name)                    delete; no error if missing
# Contract an adapter must keep for the journal's power-loss argument:
#   - operations reach the medium in the order they are issued: write() and
#     remove() are barriers, every earlier append() is durable before they
#     start (a batching adapter flushes its batch first);
#   - a cut during append() leaves a prefix of the appended bytes (or any
#     damage the record CRCs detect), never bytes in a different order;
#   - a cut during write() leaves the old content, the new content, or a
#     truncated/damaged content (the journal's CRCs reject it); never a
#     mix that looks like a whole record;
#   - data (often a memoryview of a reused buffer) is consumed before the
#     call returns: copy it if it is kept for a later batch.
#
# This adapter is deliberately pessimistic: write() truncates first ("wb"),
# so a cut in the middle leaves a short file, as on a filesystem without
# copy-on-write. littlefs is kinder (an interrupted write keeps the old
# content), and the journal is correct for both.
#
# Power-cut simulation for tests: arm_cut(n) lets n more bytes through
# write()/append() in total; the call that reaches the n-th byte writes only
# what fits (a torn write) and raises PowerCut. A call that ends exactly on
# it lands whole and still raises (the power failed right after it), so
# arm_cut(0) cuts before the next byte. The cut fires once and closes the
# append handles; a test then "reboots" by building a new SimFs and Journal
# on the same directory.

import errno
import os


class PowerCut(Exception):
    """Raised by SimFs when an armed power cut happens."""


class SimFs:
    def __init__(self, directory, sync=False):
        self.directory = directory
        # sync=True: fsync after every write (survives a host OS crash, costs
        # ~0.2 ms a call). Not needed against a process kill: files on the
        # MicroPython unix port are unbuffered, each write() is a syscall.
        self.sync = sync
        self.bytes_written = 0  # by write() and append(), since construction
        self._budget = -1  # bytes left before the armed cut; -1: not armed
        self._appending = {}  # name -> file kept open for appends
        try:
            os.mkdir(directory)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise

    def _path(self, name):
        return self.directory + "/" + name

    # --- adapter interface ----------------------------------------------------
    def read(self, name):
        f = self._open_read(name)
        if f is None:
            return None
        try:
            # One allocation of the exact size (read() would grow a buffer).
            return f.read(os.stat(self._path(name))[6])
        finally:
            f.close()

    def read_into(self, name, offset, buf):
        f = self._open_read(name)
        if f is None:
            return 0
        try:
            f.seek(offset)
            n = f.readinto(buf)
            return n if n else 0
        finally:
            f.close()

    def write(self, name, data):
        self._forget(name)
        f = open(self._path(name), "wb")
        try:
            self._put(f, data)
        finally:
            f.close()

    def append(self, name, data):
        f = self._appending.get(name)
        if f is None:
            f = open(self._path(name), "ab")
            self._appending[name] = f
        self._put(f, data)

    def remove(self, name):
        self._forget(name)
        try:
            os.remove(self._path(name))
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise

    # --- power-cut simulation -------------------------------------------------
    def arm_cut(self, after_bytes):
        self._budget = after_bytes

    def disarm(self):
        self._budget = -1

    # --- the rig's hand on the medium (rig fault CORRUPT_JOURNAL) ---------------
    def flip_byte(self, name, offset):
        # Xors 0xFF into the byte at offset (modulo the file's size): damage
        # from outside the pump, straight to the file. Not a journal write
        # (bytes_written stays), never cut by an armed power cut. False if
        # the file is missing or empty.
        try:
            f = open(self._path(name), "r+b")
        except OSError as e:
            if e.errno == errno.ENOENT:
                return False
            raise
        try:
            size = f.seek(0, 2)
            if size <= 0:
                return False
            f.seek(offset % size)
            byte = f.read(1)[0]
            f.seek(offset % size)
            f.write(bytes((byte ^ 0xFF,)))
        finally:
            f.close()
        return True

    def close(self):
        # Closes the append handles (nothing is lost: writes are unbuffered).
        for name in list(self._appending):
            self._forget(name)

    # --- internals ------------------------------------------------------------
    def _open_read(self, name):
        try:
            return open(self._path(name), "rb")
        except OSError as e:
            if e.errno == errno.ENOENT:
                return None
            raise

    def _forget(self, name):
        f = self._appending.pop(name, None)
        if f is not None:
            f.close()

    def _put(self, f, data):
        size = len(data)
        budget = self._budget
        if budget >= 0 and size >= budget:
            # The power fails once the budget is reached: the first `budget`
            # bytes land, the rest never does.
            if budget > 0:
                f.write(memoryview(data)[:budget])
            self.bytes_written += budget
            self._budget = -1
            self.close()
            raise PowerCut()
        if budget >= 0:
            self._budget = budget - size
        f.write(data)
        if self.sync:
            f.flush()
        self.bytes_written += size
