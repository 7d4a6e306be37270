# Filesystem adapter of the Pico: the journal's files on littlefs, with
# appends batched in RAM.
#
# Same interface and ordering contract as virtual/fs.py (read, read_into,
# write, append, remove; see the contract there). How this adapter keeps it:
# - append() copies the bytes into one preallocated batch buffer, as
#   segments in issue order (consecutive appends to one file share a
#   segment). flush() writes the segments in that order, each as one
#   open("ab") / write / close: littlefs commits a file at close, so a cut
#   leaves each segment whole or absent, and a segment is only started
#   after every earlier one was committed. What lands is always a prefix of
#   what was issued.
# - write() and remove() are barriers: they flush the batch first. write()
#   replaces the file in one open("wb") / write / close; littlefs keeps the
#   old content until the close commits the new one.
# - read() and read_into() flush first, so a reader always sees every
#   append issued before it.
# - data is consumed before append() returns (copied into the batch).
# When the batch is flushed besides the barriers: when it is full, when the
# board asks (flush() before the motor moves: the journal's "before stroke"
# record must be durable before anything moves), and when the oldest append
# is JOURNAL_FLUSH_MS old (due(), checked by the board while the motor is
# stopped).
#
# Why batch: littlefs rewrites a block for nearly every committed append
# (measured on the host: ~1 erase per small flush, about 50 x the erases of
# 32-record batches). Batching joins each stroke's "after" record with the
# next stroke's "before" record, plus any events logged in between.
#
# A flush that fails (flash error) raises; the segments not yet written stay
# in the batch and the next flush resumes at the one that failed, so nothing
# is silently dropped or reordered (the failed segment may land twice if
# littlefs committed it before reporting the error: the journal's sequence
# numbers and CRCs end the chain there). A failing flash is a fault either way.

import errno
import os

from pump.ticks import ticks_diff

# Segments one batch can hold (one per run of appends to the same file).
MAX_SEGMENTS = 16


class LfsFs:
    def __init__(self, directory, batch_bytes=512, max_age_ms=10_000, clock=None):
        self.directory = directory
        self._clock = clock  # ticks_ms() source for the age of the batch
        self._max_age_ms = max_age_ms
        self._batch = bytearray(batch_bytes)
        self._view = memoryview(self._batch)
        self._used = 0  # bytes in the batch
        # Segment i: file _seg_name[i], batch bytes [_seg_end[i-1], _seg_end[i]).
        self._seg_name = [""] * MAX_SEGMENTS
        self._seg_end = [0] * MAX_SEGMENTS
        self._segments = 0
        self._first = 0  # first segment not yet written (a failed flush resumes there)
        self._oldest = 0  # ticks of the first append in the batch
        self._paths = {}  # name -> full path (built once per name)
        # Counters for tests and `make bench`.
        self.bytes_written = 0  # handed to littlefs by write() and flushes
        self.flushes = 0  # batches written
        self.commits = 0  # files closed (littlefs commits)
        try:
            os.mkdir(directory)
        except OSError as e:
            if e.args[0] != errno.EEXIST:
                raise

    # --- adapter interface (pump/journal.py) ----------------------------------
    def read(self, name):
        self.flush()
        path = self._path(name)
        try:
            size = os.stat(path)[6]
        except OSError as e:
            if e.args[0] == errno.ENOENT:
                return None
            raise
        f = open(path, "rb")
        try:
            return f.read(size)
        finally:
            f.close()

    def read_into(self, name, offset, buf):
        self.flush()
        try:
            f = open(self._path(name), "rb")
        except OSError as e:
            if e.args[0] == errno.ENOENT:
                return 0
            raise
        try:
            f.seek(offset)
            n = f.readinto(buf)
            return n if n else 0
        finally:
            f.close()

    def write(self, name, data):
        self.flush()  # barrier: every earlier append lands first
        f = open(self._path(name), "wb")
        try:
            f.write(data)
        finally:
            f.close()
        self.bytes_written += len(data)
        self.commits += 1

    def append(self, name, data):
        size = len(data)
        batch = self._batch
        if size > len(batch):
            # Larger than a batch: what is batched goes first, then this.
            self.flush()
            self._put(name, data)
            return
        last = self._segments - 1
        same = last >= 0 and self._seg_name[last] == name
        if self._used + size > len(batch) or (not same and self._segments == MAX_SEGMENTS):
            self.flush()
            last = -1
            same = False
        if self._segments == 0 and self._clock is not None:
            self._oldest = self._clock.ticks_ms()
        end = self._used + size
        batch[self._used : end] = data  # a copy: data may be a reused buffer
        self._used = end
        if not same:
            last += 1
            self._seg_name[last] = name
            self._segments = last + 1
        self._seg_end[last] = end

    def remove(self, name):
        self.flush()  # barrier
        try:
            os.remove(self._path(name))
        except OSError as e:
            if e.args[0] != errno.ENOENT:
                raise

    # --- batching -------------------------------------------------------------
    def pending(self):
        # Bytes appended but not yet handed to littlefs.
        return self._used

    def due(self, now_ticks):
        # True when the oldest batched append is at least max_age_ms old.
        return self._segments > 0 and ticks_diff(now_ticks, self._oldest) >= self._max_age_ms

    def due_in_ms(self, now_ticks):
        # Milliseconds until due() (0: due now; -1: nothing batched).
        if self._segments == 0:
            return -1
        left = self._max_age_ms - ticks_diff(now_ticks, self._oldest)
        return left if left > 0 else 0

    def flush(self):
        # Writes the batch, segment by segment, in issue order.
        count = self._segments
        if count == 0:
            return
        view = self._view
        i = self._first
        start = self._seg_end[i - 1] if i else 0
        while i < count:
            end = self._seg_end[i]
            self._put(self._seg_name[i], view[start:end])  # may raise: resumes here
            start = end
            i += 1
            self._first = i
        self._segments = 0
        self._first = 0
        self._used = 0
        self.flushes += 1

    # --- internals ------------------------------------------------------------
    def _path(self, name):
        path = self._paths.get(name)
        if path is None:
            path = self.directory + "/" + name
            self._paths[name] = path
        return path

    def _put(self, name, data):
        f = open(self._path(name), "ab")
        try:
            f.write(data)
        finally:
            f.close()
        self.bytes_written += len(data)
        self.commits += 1
