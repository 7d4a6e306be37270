"""``fault://``: a serial port that drops, delays, duplicates and corrupts bytes.

    fault://<inner url>?drop=0.01&delay_ms=5&dup=0.01&corrupt=0.01&seed=N

wraps any other pyserial URL (``/dev/pts/5``, ``socket://host:port``,
``rfc2217://...``) and damages what crosses it, in both directions, at the
given rates. Everything above it (bench.link.transport, the clients, the CLI) sees
an ordinary port. Import ``bench.link.transports`` first: that registers the
handler with pyserial.

Options (all optional; docs/robustness.md has the rationale):

========  ======================================================================
drop      probability that a byte is lost, per byte (0..1)
dup       probability that a byte arrives twice, per byte (0..1)
corrupt   probability that one bit of a byte is flipped, per byte (0..1); a
          flip can turn a byte into the 0x00 delimiter or a delimiter into data
delay_ms  every chunk (one write, one read from the inner port) is held back a
          uniformly random 0..delay_ms ms; the order of bytes is kept
seed      seed of the random streams (host to device: ``seed``, device to host:
          ``seed + 1``): the same bytes through the same URL get the same damage
========  ======================================================================

Rates are per byte, so a frame of n bytes arrives intact with probability
(1 - drop)^n (1 - dup)^n (1 - corrupt)^n: at 1 % each, a 13-byte PING gets
through 68 % of the time and a 238-byte GET_LOG reply 0.08 %.

Options the handler does not know are handed to the inner URL when it has a
scheme (``fault://socket://host:1234?logging=debug&drop=0.1``), and refused
otherwise. At run time ``port.tx`` (host to device) and ``port.rx`` (device
to host) hold each direction's ``rates`` (mutable: a test may silence the
link) and its ``tally`` of what was done.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qsl, urlencode

import serial
from serial.serialutil import PortNotOpenError, SerialBase, SerialException

SCHEME = "fault://"
RATE_OPTIONS = ("drop", "dup", "corrupt")
# How long one read of the inner port may block: the granularity of read()'s
# timeout and of the release of delayed chunks.
_INNER_POLL_S = 0.005


@dataclass
class Rates:
    """The damage done to one direction (probabilities per byte, delay per chunk)."""

    drop: float = 0.0
    dup: float = 0.0
    corrupt: float = 0.0
    delay_ms: float = 0.0

    @property
    def clean(self) -> bool:
        return not (self.drop or self.dup or self.corrupt or self.delay_ms)


@dataclass
class Tally:
    """What one direction did: bytes offered, and what happened to them."""

    chunks: int = 0
    bytes: int = 0
    dropped: int = 0
    duplicated: int = 0
    corrupted: int = 0
    delayed_ms: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return dict(vars(self))


@dataclass
class Damage:
    """One direction of the link: its rates, its random stream and its tally."""

    rates: Rates
    seed: int
    tally: Tally = field(default_factory=Tally)

    def __post_init__(self) -> None:
        # Damage draws per byte, delays per chunk: separate streams, so that
        # the damage done to a byte sequence does not depend on how the
        # sequence happened to be chunked.
        self._rng = random.Random(self.seed)
        self._delay_rng = random.Random(self.seed ^ 0x5EED)

    def apply(self, data: bytes) -> bytes:
        """The bytes that arrive when ``data`` is sent."""
        rates = self.rates
        tally = self.tally
        tally.chunks += 1
        tally.bytes += len(data)
        if not (rates.drop or rates.dup or rates.corrupt):
            return bytes(data)
        rng = self._rng
        out = bytearray()
        for byte in data:
            if rng.random() < rates.drop:
                tally.dropped += 1
                continue
            if rng.random() < rates.corrupt:
                byte ^= 1 << rng.randrange(8)
                tally.corrupted += 1
            out.append(byte)
            if rng.random() < rates.dup:
                out.append(byte)
                tally.duplicated += 1
        return bytes(out)

    def delay_s(self) -> float:
        if not self.rates.delay_ms:
            return 0.0
        delay_ms = self._delay_rng.uniform(0.0, self.rates.delay_ms)
        self.tally.delayed_ms += delay_ms
        return delay_ms / 1000.0


def _rate(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={text} is not a probability (0..1)")
    return value


def parse_url(url: str) -> tuple[str, Rates, int]:
    """Splits ``fault://<inner>?options`` into (inner url, rates, seed).

    Raises ValueError naming the bad part.
    """
    if not url.lower().startswith(SCHEME):
        raise ValueError(f"expected {SCHEME}<inner url>[?options], got {url!r}")
    rest = url[len(SCHEME) :]
    inner, _sep, query = rest.rpartition("?") if "?" in rest else (rest, "", "")
    if not inner:
        raise ValueError(f"{url!r}: no inner port after {SCHEME}")
    rates = Rates()
    seed = 0
    passed_on: list[tuple[str, str]] = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in RATE_OPTIONS:
            setattr(rates, key, _rate(key, value))
        elif key == "delay_ms":
            try:
                rates.delay_ms = float(value)
            except ValueError:
                raise ValueError(f"delay_ms={value!r} is not a number") from None
            if rates.delay_ms < 0:
                raise ValueError(f"delay_ms={value} is negative")
        elif key == "seed":
            try:
                seed = int(value)
            except ValueError:
                raise ValueError(f"seed={value!r} is not an integer") from None
        else:
            passed_on.append((key, value))
    if passed_on:
        if "://" not in inner:
            names = ", ".join(key for key, _value in passed_on)
            raise ValueError(
                f"unknown fault:// option {names} "
                f"(known: {', '.join((*RATE_OPTIONS, 'delay_ms', 'seed'))})"
            )
        inner += ("&" if "?" in inner else "?") + urlencode(passed_on)
    return inner, rates, seed


class Serial(SerialBase):
    """A port that damages the bytes crossing it (see the module docstring)."""

    is_open: bool  # SerialBase's (pyserial ships no types)

    def __init__(self, *args: object, **kwargs: object) -> None:
        self._inner: serial.SerialBase | None = None
        self.tx = Damage(Rates(), 0)  # host to device (write)
        self.rx = Damage(Rates(), 1)  # device to host (read)
        self.inner_url = ""
        # Bytes read from the inner port, damaged, each chunk with the time
        # it may be handed out (delay_ms); released in order.
        self._held: list[tuple[float, bytes]] = []
        self._held_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    # --- pyserial's port interface ------------------------------------------------
    def open(self) -> None:
        if self.is_open:
            raise SerialException("Port is already open.")
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        try:
            inner, rates, seed = parse_url(str(self._port))
        except ValueError as exc:
            raise SerialException(str(exc)) from None
        self.inner_url = inner
        self.tx = Damage(rates, seed)
        self.rx = Damage(replace(rates), seed + 1)
        try:
            self._inner = serial.serial_for_url(
                inner, baudrate=self._baudrate, timeout=_INNER_POLL_S
            )
        except ValueError as exc:
            raise SerialException(f"{inner}: {exc}") from None
        self.is_open = True

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
            self._inner = None
        self.is_open = False

    def _reconfigure_port(self) -> None:
        # Baud rate and friends are the inner port's business (a pty ignores
        # them); the timeouts are applied by read() itself.
        pass

    def _port_open(self) -> serial.SerialBase:
        if not self.is_open or self._inner is None:
            raise PortNotOpenError()
        return self._inner

    @property
    def in_waiting(self) -> int:
        self._pull(block=False)
        now = time.monotonic()
        with self._held_lock:
            return sum(len(chunk) for release, chunk in self._held if release <= now)

    def read(self, size: int = 1) -> bytes:
        self._port_open()
        timeout = self._timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        out = bytearray()
        while len(out) < size:
            self._pull(block=True)
            out += self._take(size - len(out))
            if len(out) >= size or timeout == 0:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
        return bytes(out)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        inner = self._port_open()
        sent = bytes(data)
        damaged = self.tx.apply(sent)
        delay = self.tx.delay_s()
        if delay:
            time.sleep(delay)
        if damaged:
            inner.write(damaged)
        return len(sent)

    def flush(self) -> None:
        self._port_open().flush()

    def reset_input_buffer(self) -> None:
        self._port_open().reset_input_buffer()
        with self._held_lock:
            self._held.clear()

    def reset_output_buffer(self) -> None:
        self._port_open().reset_output_buffer()

    # --- fault control -----------------------------------------------------------
    def set_rates(self, direction: str = "both", **rates: float) -> None:
        """Changes rates at run time: ``direction`` "tx", "rx" or "both"."""
        unknown = set(rates) - {"drop", "dup", "corrupt", "delay_ms"}
        if unknown:
            raise ValueError(f"no rate {', '.join(sorted(unknown))}")
        sides = {"tx": (self.tx,), "rx": (self.rx,), "both": (self.tx, self.rx)}
        if direction not in sides:
            raise ValueError(f"direction {direction!r}: tx, rx or both")
        for side in sides[direction]:
            for key, value in rates.items():
                setattr(side.rates, key, value)

    def fault_stats(self) -> dict[str, dict[str, float]]:
        """What each direction did so far ("tx": host to device, "rx": back)."""
        return {"tx": self.tx.tally.as_dict(), "rx": self.rx.tally.as_dict()}

    # --- internals -------------------------------------------------------------------
    def _pull(self, block: bool) -> None:
        # Moves what the inner port has into the held chunks, damaged.
        inner = self._port_open()
        waiting = inner.in_waiting
        if not waiting and not block:
            return
        data = inner.read(max(1, waiting))
        if not data:
            return
        damaged = self.rx.apply(data)
        if not damaged:
            return
        release = time.monotonic() + self.rx.delay_s()
        with self._held_lock:
            if self._held and self._held[-1][0] > release:
                release = self._held[-1][0]  # a link does not reorder bytes
            self._held.append((release, damaged))

    def _take(self, size: int) -> bytes:
        now = time.monotonic()
        out = bytearray()
        with self._held_lock:
            while self._held and len(out) < size:
                release, chunk = self._held[0]
                if release > now:
                    break
                want = size - len(out)
                out += chunk[:want]
                if len(chunk) > want:
                    self._held[0] = (release, chunk[want:])
                else:
                    self._held.pop(0)
        if not out and self._held:
            # Something is held back by delay_ms: wait for it rather than
            # spin (at most one inner poll period).
            with self._held_lock:
                first = self._held[0][0] if self._held else now
            wait = min(first - now, _INNER_POLL_S)
            if wait > 0:
                time.sleep(wait)
        return bytes(out)
