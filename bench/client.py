"""Typed clients for the pump port and the rig port.

Every call has a deadline. A request that gets no reply in time is sent
again *unchanged* (same sequence number), so the device answers it from its
reply cache instead of executing it twice; link-level NACKs (BAD_CRC, ...)
are retransmitted the same way. A NACK that refuses the request itself is
raised as :class:`PumpRefused` and never retried.
"""

from __future__ import annotations

import queue
import random
import time
from collections.abc import Callable
from typing import Any

from bench.errors import BenchError, PumpRefused
from bench.transport import Transport
from protocol import codec, schema

DEFAULT_TIMEOUT_S = 1.0
DEFAULT_RETRIES = 3


def text(value: str) -> str:
    """Fixed-size strings arrive padded; construct strips the padding."""
    return value.rstrip("\x00")


class Client:
    """Request/reply over one port. Subclasses add the typed methods."""

    port_kind = ""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.transport = Transport(url)
        # A random first sequence number: a client that reconnects must not
        # collide with the device's cache of the previous session's replies.
        self._seq = random.randrange(0x10000)
        self.retransmissions = 0

    def close(self) -> None:
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        return self._seq

    def request(
        self,
        name: str,
        fields: dict[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
        seq: int | None = None,
    ) -> dict[str, Any]:
        """Sends one request and returns the reply fields."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        seq = self.next_seq() if seq is None else seq
        wire = codec.encode(name, seq, fields)
        self.transport.expect(seq)
        tries = self.retries + 1
        try:
            for attempt in range(tries):
                if attempt:
                    self.retransmissions += 1
                self.transport.send(wire)
                frame = self.transport.wait_reply(seq, timeout)
                if frame is None:
                    continue
                if frame.is_nack and frame.fields["code"] < schema.LINK_ERROR_LIMIT:
                    # The request was damaged on the way (its id byte too,
                    # perhaps): resend it unchanged.
                    self.transport.expect(seq)
                    continue
                if frame.name != name:
                    raise BenchError(
                        f"{self.url}: reply to {name} (seq {seq}) came back as {frame.name}"
                    )
                if frame.is_nack:
                    raise PumpRefused(self.url, name, frame.fields["code"], frame.fields["detail"])
                return frame.fields
        finally:
            self.transport.forget(seq)
        raise BenchError(
            f"{self.url}: no reply to {name} (seq {seq}) within {timeout:g} s, {tries} tries"
        )

    def wait_event(
        self,
        name: str,
        timeout_s: float | None = None,
        where: Callable[[codec.Frame], bool] | None = None,
    ) -> codec.Frame:
        """The next event called ``name`` (and matching ``where``); others are dropped."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.url}: no {name} event within {timeout_s} s")
            try:
                frame = self.transport.events.get(timeout=left)
            except queue.Empty:
                continue
            if frame.name == name and (where is None or where(frame)):
                return frame

    def clear_events(self) -> int:
        """Drops every event received so far (from an earlier boot, say)."""
        dropped = 0
        while True:
            try:
                self.transport.events.get_nowait()
            except queue.Empty:
                return dropped
            dropped += 1

    def link_stats(self) -> dict[str, int]:
        return self.request("LINK_STATS")

    def ping(self, token: int | None = None) -> int:
        token = random.randrange(1 << 32) if token is None else token
        echoed = self.request("PING", {"token": token})["token"]
        if echoed != token:
            raise BenchError(f"{self.url}: PING echoed {echoed:#x}, sent {token:#x}")
        return echoed

    def _check_fingerprint(self, reply: dict[str, Any], what: str) -> None:
        theirs = reply["schema_fingerprint"]
        if reply["protocol_version"] != schema.PROTOCOL_VERSION or theirs != schema.FINGERPRINT:
            raise BenchError(
                f"{self.url}: {what} speaks protocol v{reply['protocol_version']} "
                f"schema {theirs:#010x}; this bench speaks v{schema.PROTOCOL_VERSION} "
                f"schema {schema.FINGERPRINT:#010x}: flash matching firmware"
            )


def _our_schema() -> dict[str, int]:
    return {"protocol_version": schema.PROTOCOL_VERSION, "schema_fingerprint": schema.FINGERPRINT}


class PumpClient(Client):
    """The pump port: what a clinician programmer or the bench may ask the pump."""

    port_kind = schema.PORT_PUMP

    def hello(self) -> dict[str, Any]:
        try:
            reply = self.request("HELLO", _our_schema())
        except PumpRefused as refused:
            if refused.code == schema.SCHEMA_MISMATCH:
                raise BenchError(
                    f"{self.url}: the pump refuses this bench's schema "
                    f"{schema.FINGERPRINT:#010x}: flash matching firmware"
                ) from None
            raise
        self._check_fingerprint(reply, "the pump")
        for key in ("firmware_version", "board", "device_id"):
            reply[key] = text(reply[key])
        return reply

    def status(self) -> dict[str, Any]:
        reply = self.request("STATUS")
        reply["state_name"] = schema.state_name(reply["state"])
        return reply


class RigClient(Client):
    """The rig port: device time, resets and (later) the plant and its faults."""

    port_kind = schema.PORT_RIG

    def hello(self) -> dict[str, Any]:
        reply = self.request("RIG_HELLO", _our_schema())
        self._check_fingerprint(reply, "the rig")
        reply["rig_kind"] = text(reply["rig_kind"])
        return reply

    def advance(self, duration_ms: int, *, timeout_s: float | None = None) -> int:
        """Runs device time forward; returns the device time when it stopped.

        On the virtual board this is lockstep: the call returns once the
        firmware has run everything due up to that instant. The default
        deadline grows with the duration (a year of idle time takes seconds).
        """
        if timeout_s is None:
            timeout_s = 10.0 + duration_ms / 86_400_000 * 0.5
        return self.request("ADVANCE", {"duration_ms": duration_ms}, timeout_s=timeout_s)[
            "device_time_ms"
        ]

    def reset(self) -> None:
        self.request("RESET")
