# The firmware version reported at HELLO and checked after flashing.
FIRMWARE_VERSION = "0.1.0"
