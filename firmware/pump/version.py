# The firmware version: reported at HELLO, checked after flashing, the frozen
# UF2's name and the bench package's version (pyproject.toml reads it here).
# The one place it is written.
import sys

FIRMWARE_VERSION = "0.1.0"

# The interpreter this firmware runs on, also reported at HELLO: a frozen
# image and a stock interpreter with .mpy files are told apart by it.
MICROPYTHON_VERSION = ("%d.%d.%d" % sys.implementation.version[:3]).encode()
