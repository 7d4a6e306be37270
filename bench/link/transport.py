"""Frame transport over any pyserial URL, with a background reader.

``/dev/ttyACM0``, ``/dev/pts/N``, ``rfc2217://host:port`` and ``socket://``
all work: the port is opened with ``serial.serial_for_url``. A reader thread
splits the byte stream at 0x00 delimiters, decodes each frame and sorts it:
replies go to whoever waits for their sequence number, events go to a queue.
Nothing the pump sends is lost because nobody was waiting for it.
"""

from __future__ import annotations

import queue
import threading
import time

import serial

import bench.link.transports  # noqa: F401  (registers fault:// with pyserial: usable from the CLI)
from bench.link.errors import BenchError
from protocol import codec

# pyserial read timeout of the reader thread: how quickly it notices close().
_READ_POLL_S = 0.05


class Transport:
    def __init__(self, url: str, *, baudrate: int = 115200) -> None:
        self.url = url
        try:
            self.serial = serial.serial_for_url(url, baudrate=baudrate, timeout=_READ_POLL_S)
        except (serial.SerialException, ValueError, OSError) as exc:
            raise BenchError(f"{url}: cannot open port ({exc})") from None
        # Drop whatever was queued before we came (events of an earlier
        # session): every frame after this point is ours.
        self.serial.reset_input_buffer()
        self.events: queue.Queue[codec.Frame] = queue.Queue()
        self.decode_errors = 0
        self.unsolicited_replies = 0
        self._replies: dict[int, codec.Frame] = {}
        self._waiting: set[int] = set()
        self._lock = threading.Condition()
        self._closed = False
        self._fatal: str | None = None
        self._write_lock = threading.Lock()
        self._thread = threading.Thread(target=self._read_loop, name=f"reader {url}", daemon=True)
        self._thread.start()

    # --- writing ---------------------------------------------------------------
    def send(self, wire: bytes) -> None:
        with self._write_lock:
            try:
                self.serial.write(wire)
                self.serial.flush()
            except (serial.SerialException, OSError) as exc:
                raise BenchError(f"{self.url}: write failed ({exc})") from None

    # --- replies -----------------------------------------------------------------
    def expect(self, seq: int) -> None:
        """Registers interest in the reply to ``seq`` before the request goes out."""
        with self._lock:
            self._waiting.add(seq)
            self._replies.pop(seq, None)

    def wait_reply(self, seq: int, timeout_s: float) -> codec.Frame | None:
        """The reply to ``seq``, or None when none came within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while seq not in self._replies:
                if self._fatal is not None:
                    raise BenchError(f"{self.url}: {self._fatal}")
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(left)
            return self._replies.pop(seq)

    def forget(self, seq: int) -> None:
        with self._lock:
            self._waiting.discard(seq)
            self._replies.pop(seq, None)

    # --- reader thread -------------------------------------------------------------
    def _read_loop(self) -> None:
        buffer = bytearray()
        while not self._closed:
            try:
                data = self.serial.read(max(1, self.serial.in_waiting))
            except (serial.SerialException, OSError, TypeError) as exc:
                if not self._closed:
                    with self._lock:
                        self._fatal = f"port lost ({exc})"
                        self._lock.notify_all()
                return
            if not data:
                continue
            buffer.extend(data)
            for chunk in codec.split_stream(buffer):
                self._deliver(chunk)

    def _deliver(self, chunk: bytes) -> None:
        try:
            frame = codec.decode(chunk)
        except codec.CodecError:
            self.decode_errors += 1
            return
        if frame.is_event:
            self.events.put(frame)
            return
        if not frame.is_reply:
            # a request (our own, echoed by the link?) is never an answer
            self.unsolicited_replies += 1
            return
        with self._lock:
            if frame.seq in self._waiting:
                self._waiting.discard(frame.seq)
                self._replies[frame.seq] = frame
                self._lock.notify_all()
            else:
                # a second reply to a retransmission, or a reply to garbage
                self.unsolicited_replies += 1

    def close(self) -> None:
        self._closed = True
        self._thread.join(timeout=1.0)
        try:
            self.serial.close()
        except (serial.SerialException, OSError):
            pass
