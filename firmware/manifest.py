# What ships to a Pico, in MicroPython's manifest format (the one
# micropython-lib and the ports use): `make flash` copies these files as
# .mpy, `make firmware` freezes them into the UF2. Paths are relative to
# this folder. Nothing under virtual/ (the virtual board's HAL, its
# filesystem adapter, the rig and its plant) is listed: it never runs on a
# Pico (virtual/README.md). bench/board/manifest.py reads this file on the host.

module("main.py")  # frozen too: the board boots into the pump
module("board_config.py")
package("hal", files=("__init__.py", "rp2.py", "rp2fs.py", "rp2pio.py"))
package("pump")  # the pump and its monitors, every module
package("protocol", files=("__init__.py", "table.py", "wire.py"), base_path="..")
