"""Extra pyserial URL handlers for the bench.

Importing this package registers it with pyserial
(``serial.protocol_handler_packages``), so that ``serial.serial_for_url``
and therefore every bench client accept the URLs handled here:

- ``fault://<inner url>?drop=P&dup=P&corrupt=P&delay_ms=N&seed=S``: wraps
  another port and damages the bytes that cross it, in both directions
  (``protocol_fault.py``; docs/robustness.md).
- ``forge://<inner url>?mode=payload|strip|nack|echo``: a device in the
  middle that rewrites the pump's replies (``protocol_forge.py``; SPEC 21.6).

pyserial finds a handler by importing ``<package>.protocol_<scheme>``; the
module must define ``Serial``.
"""

from __future__ import annotations

import serial

PACKAGE = __name__


def register() -> None:
    """Adds this package to pyserial's handler packages (idempotent)."""
    if PACKAGE not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(PACKAGE)


register()
