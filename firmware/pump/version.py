# The firmware version reported at HELLO and checked after flashing.
import sys

FIRMWARE_VERSION = "0.1.0"

# The interpreter this firmware runs on, also reported at HELLO: a frozen
# image and a stock interpreter with .mpy files are told apart by it.
MICROPYTHON_VERSION = ("%d.%d.%d" % sys.implementation.version[:3]).encode()
