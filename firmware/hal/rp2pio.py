# PIO programs of the Pico board, loaded by hal/rp2.py.
# ruff: noqa: F403, F405  (the PIO assembler names come from rp2.asm_pio)
#
# Assembling a program builds a list of instruction words (rp2.asm_pio runs
# the function once with the PIO assembler names bound): it touches no
# hardware. The state machines are configured by hal/rp2.py at board start.
#
# Timing: a PIO state machine runs from its own instruction memory, clocked
# from clk_sys: it keeps stepping and counting through garbage collection,
# USB traffic and flash writes (which hold the CPU's interrupts off).

from rp2 import PIO, asm_pio

# The PIO assembler names (set, pins, jmp, x_dec, ...) exist only while
# asm_pio runs the function; the type checker gets them from the stubs.
try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False
if TYPE_CHECKING:
    from rp2.asm_pio import *

# Word pushed when a move is complete: in_(x, 30) with X = 0xFFFFFFFF after
# the last jmp(x_dec). A readback of X during a move is below MAX_MOVE_STEPS,
# so the two never collide, and 2**30 - 1 is still a small int on the RP2040
# (no allocation when the CPU reads it).
MOVE_DONE = 0x3FFFFFFF

# Cycles of one step beyond the two delay loops (set, mov, set, mov, jmp,
# and one extra pass of each loop): a step lasts 2 * Y + STEP_OVERHEAD cycles.
STEP_OVERHEAD = 7


@asm_pio(set_init=PIO.OUT_LOW)
def stepper():
    # A bounded move. The CPU puts two words: steps - 1, then the delay
    # count Y (PIO cycles per half step, less the overhead). X counts the
    # steps down; OSR keeps Y to reload the delay loops. At the end the
    # completion word goes to the RX FIFO and IRQ (rel 0) is raised; the
    # machine then waits for the next move at the first pull.
    pull(block)
    mov(x, osr)
    pull(block)
    label("step")
    set(pins, 1)  # rising edge: the driver takes one step
    mov(y, osr)
    label("high")
    jmp(y_dec, "high")
    set(pins, 0)
    mov(y, osr)
    label("low")
    jmp(y_dec, "low")
    jmp(x_dec, "step")  # X != 0: another step (X then decremented)
    in_(x, 30)  # X = 0xFFFFFFFF here: ISR = MOVE_DONE
    push(noblock)
    irq(rel(0))


@asm_pio()
def edge_counter():
    # Counts rising edges on the input pin (in_base): X counts down from 0,
    # one decrement per edge (a single instruction, so a readback never sees
    # a half-updated X). The CPU reads X with exec(in_(x, 30)) +
    # exec(push(noblock)) + get(): edges = -X mod 2**30, wrapping like every
    # tick and step counter here.
    wrap_target()
    label("edge")
    wait(0, pin, 0)
    wait(1, pin, 0)
    jmp(x_dec, "edge")  # back to the top either way (X = 0: by the wrap)
    wrap()


# Single instructions the CPU executes on a state machine (sm.exec). They
# are encoded at board start (asm_pio_encode allocates), never in the loop.
READ_X = "in_(x, 30)"
PUSH = "push(noblock)"
STEP_LOW = "set(pins, 0)"
CLEAR_X = "set(x, 0)"
