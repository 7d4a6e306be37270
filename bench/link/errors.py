"""The two ways a bench run can go wrong, kept apart on purpose.

- :class:`BenchError`: the bench or the link failed (no port, no reply, a
  schema mismatch). Reported as ERROR, never as a pump failure, and never
  retried into a pass.
- :class:`PumpRefused`: the pump answered a well-formed request with a NACK.
  That is the device's verdict; the bench never retries it.
"""

from __future__ import annotations

from protocol import schema


class BenchError(Exception):
    """The bench could not do what was asked (port, link, timeout, setup)."""


class PumpRefused(Exception):
    """The pump refused a request with a NACK (code and detail from the wire)."""

    def __init__(self, port: str, request: str, code: int, detail: int) -> None:
        self.port = port
        self.request = request
        self.code = code
        self.detail = detail
        self.code_name = schema.error_name(code)
        super().__init__(f"{port}: {request} refused: {self.code_name} (detail {detail})")
