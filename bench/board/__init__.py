"""Boards: virtual boards (MicroPython unix port), the emulated Pico, targets, the compiled image,
the frozen firmware build, flashing a Pico.
"""
