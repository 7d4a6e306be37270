# ruff: noqa: ARG001, ARG002, ARG005  (fakes keep the real signatures)
# Fake `rp2` for host tests of hal/rp2.py under the MicroPython unix port.
#
# asm_pio runs the decorated function with the PIO assembler names bound, as
# the real one does, but records instructions instead of encoding them; a
# StateMachine records its configuration (LOG, shared with the fake machine
# module) and can *run* the program: run(cycles) emulates the subset of the
# RP2040 PIO the firmware uses (pull, push, mov, set, in_, jmp, wait, irq,
# delays, wrap), driving and reading the fake machine.Pin objects. So a
# check can count the step edges a move really produces and their spacing in
# PIO cycles, not just the words the HAL put in the FIFO.
#
# Interrupts: a state machine's irq(handler, hard=...) is recorded; when the
# program executes irq, `irq_pending` is set and the check calls the handler
# (under micropython.heap_lock(), to prove it allocates nothing).

import machine

LOG = machine.LOG
MACHINES = {}  # id -> StateMachine
BOOTSEL = [0]
_MASK32 = 0xFFFFFFFF


class PIO:
    IN_LOW = 0
    IN_HIGH = 1
    OUT_LOW = 2
    OUT_HIGH = 3
    SHIFT_LEFT = 0
    SHIFT_RIGHT = 1
    JOIN_NONE = 0
    JOIN_TX = 1
    JOIN_RX = 2
    IRQ_SM0 = 0x100

    def __init__(self, id):
        self.id = id


class PIOASMError(Exception):
    pass


# --- the assembler ------------------------------------------------------------
class Instr:
    def __init__(self, op, a=None, b=None, c=None):
        self.op = op
        self.a = a
        self.b = b
        self.c = c
        self.delay = 0
        self.side_value = None

    def __getitem__(self, delay):
        if not 0 <= delay <= 31:
            raise PIOASMError("delay")
        self.delay = delay
        return self

    def side(self, value):
        self.side_value = value
        return self

    def __repr__(self):
        return f"{self.op}({self.a!r}, {self.b!r}, {self.c!r})[{self.delay}]"


class Program:
    def __init__(self, name, options):
        self.name = name
        self.options = options
        self.instrs = []
        self.labels = {}
        self.wrap_target = 0
        self.wrap = -1

    def __len__(self):
        return len(self.instrs)


class _Src:
    # An operand name (x, y, pins, ...) or a modified one (invert(x)).
    def __init__(self, name, modifier=None):
        self.name = name
        self.modifier = modifier

    def __repr__(self):
        return self.name if self.modifier is None else f"{self.modifier}({self.name})"


def _dsl(program):
    def emit(instr):
        program.instrs.append(instr)
        return instr

    def label(name):
        program.labels[name] = len(program.instrs)

    def wrap_target():
        program.wrap_target = len(program.instrs)

    def wrap():
        program.wrap = len(program.instrs) - 1

    names = {
        "label": label,
        "wrap_target": wrap_target,
        "wrap": wrap,
        "nop": lambda: emit(Instr("mov", _Src("y"), _Src("y"))),
        "pull": lambda block=True, ifempty=False: emit(Instr("pull", block)),
        "push": lambda block=True, iffull=False: emit(Instr("push", block)),
        "mov": lambda dest, src: emit(Instr("mov", dest, src)),
        "set": lambda dest, value: emit(Instr("set", dest, value)),
        "in_": lambda src, count: emit(Instr("in", src, count)),
        "jmp": lambda cond, target=None: emit(
            Instr("jmp", None, cond) if target is None else Instr("jmp", cond, target)
        ),
        "wait": lambda polarity, src, index: emit(Instr("wait", polarity, src, index)),
        "irq": lambda *args: emit(Instr("irq", args[-1])),
        "invert": lambda src: _Src(src.name, "invert"),
        "reverse": lambda src: _Src(src.name, "reverse"),
        "rel": lambda index: ("rel", index),
        "block": True,
        "noblock": False,
        "clear": "clear",
    }
    for name in ("x", "y", "osr", "isr", "null", "pins", "pindirs", "pin", "gpio", "status"):
        names[name] = _Src(name)
    for cond in ("not_x", "x_dec", "not_y", "y_dec", "x_not_y", "not_osre"):
        names[cond] = cond
    return names


def asm_pio(**options):
    def decorator(fn):
        program = Program(fn.__name__, options)
        g = fn.__globals__
        saved = g.copy()
        g.clear()
        g.update(_dsl(program))
        try:
            fn()
        finally:
            g.clear()
            g.update(saved)
        if program.wrap < 0:
            program.wrap = len(program.instrs) - 1
        for target in program.labels.values():
            if target >= len(program.instrs):
                # a jump there would run whatever follows in instruction memory
                raise PIOASMError("label past the last instruction")
        if len(program.instrs) > 32:
            raise PIOASMError("program too long")
        LOG.append(("asm_pio", program.name, len(program.instrs)))
        return program

    return decorator


_ENCODED = []  # asm_pio_encode() results are indexes into this list


def asm_pio_encode(text, sideset_count, sideset_opt=False):
    program = Program("exec", {})
    instr = eval(text, _dsl(program))
    _ENCODED.append(instr)
    return len(_ENCODED) - 1


def bootsel_button():
    return BOOTSEL[0]


# --- the state machine -------------------------------------------------------------
class StateMachine:
    def __init__(self, id, program=None, **kw):
        machine._check_fail("StateMachine")
        self.id = id
        self.program = None
        self.freq = None
        self.kw = {}
        self.handler = None
        self.hard = None
        self.irq_pending = False
        self.irqs = 0
        self.running = False
        self.inits = 0
        self.tx = []
        self.rx = []
        self.execs = []
        self.x = 0
        self.y = 0
        self.osr = 0
        self.isr = 0
        self.pc = 0
        self.stalled = False
        self.cycles = 0  # PIO cycles emulated since init
        self.rising = []  # cycle of every rising edge on the set pin
        MACHINES[id] = self
        if program is not None:
            self.init(program, **kw)

    def init(self, program, freq=-1, **kw):
        machine._check_fail("StateMachine.init")
        if freq != -1 and not 1908 <= freq <= 125_000_000:
            raise ValueError("freq out of range")
        self.program = program
        self.freq = freq
        self.kw = kw
        self.inits += 1
        self.tx = []
        self.rx = []
        self.pc = 0
        self.isr = 0
        self.stalled = False
        self.running = False
        self.cycles = 0
        set_base = kw.get("set_base")
        if set_base is not None:
            set_base.pio = True
            if program.options.get("set_init") == PIO.OUT_LOW:
                set_base.level = 0
        LOG.append(("StateMachine.init", self.id, program.name, freq, sorted(kw)))

    def active(self, value=None):
        if value is None:
            return self.running
        # no LOG entry: a hard IRQ may call this (it must not allocate)
        self.running = bool(value)
        return self.running

    def restart(self):
        self.pc = 0

    def irq(self, handler=None, trigger=0, hard=False):
        self.handler = handler
        self.hard = hard
        LOG.append(("StateMachine.irq", self.id, hard))

    def put(self, value, shift=0):
        if len(self.tx) >= 4:
            raise RuntimeError("TX FIFO full: the real put() would block")
        self.tx.append((value >> shift) & _MASK32)

    def get(self, buf=None, shift=0):
        if not self.rx:
            raise RuntimeError("RX FIFO empty: the real get() would block forever")
        return self.rx.pop(0) >> shift

    def rx_fifo(self):
        return len(self.rx)

    def tx_fifo(self):
        return len(self.tx)

    def exec(self, instr):
        if isinstance(instr, str):
            instr = _ENCODED[asm_pio_encode(instr, 0)]
        else:
            instr = _ENCODED[instr]
        self.execs.append(instr)
        self._execute(instr, immediate=True)

    # --- emulation -----------------------------------------------------------------
    def run(self, cycles):
        # Runs up to `cycles` PIO cycles (only while active); returns when
        # they are spent, or early when the machine stalls on a pull, push
        # or wait that nothing can satisfy. -> cycles run.
        spent = 0
        program = self.program
        while self.running and spent < cycles:
            instr = program.instrs[self.pc]
            advanced = self._execute(instr)
            if not advanced:
                self.stalled = True
                return spent
            self.stalled = False
            spent += 1 + instr.delay
            self.cycles += 1 + instr.delay
        return spent

    def _set_pin(self, value):
        pin = self.kw["set_base"]
        if value and not pin.level:
            self.rising.append(self.cycles)
        pin.value(value)

    def _read(self, src):
        name = src.name
        if name == "x":
            v = self.x
        elif name == "y":
            v = self.y
        elif name == "osr":
            v = self.osr
        elif name == "isr":
            v = self.isr
        elif name == "null":
            v = 0
        elif name == "pins":
            v = self.kw["in_base"].level
        else:
            raise PIOASMError(f"source {name}")
        if src.modifier == "invert":
            v = ~v & _MASK32
        elif src.modifier == "reverse":
            v = int(f"{v:032b}"[::-1], 2)
        return v

    def _write(self, dest, value):
        name = dest.name
        if name == "x":
            self.x = value & _MASK32
        elif name == "y":
            self.y = value & _MASK32
        elif name == "isr":
            self.isr = value & _MASK32
        elif name == "osr":
            self.osr = value & _MASK32
        elif name == "pins":
            self._set_pin(value & 1)
        else:
            raise PIOASMError(f"destination {name}")

    def _next(self):
        if self.pc == self.program.wrap:
            self.pc = self.program.wrap_target
        else:
            self.pc += 1

    def _execute(self, instr, immediate=False):
        # Executes one instruction; False if it stalls (pc unchanged).
        op = instr.op
        jumped = False
        if op == "pull":
            if not self.tx:
                if instr.a:
                    return False
                self.osr = self.x
            else:
                self.osr = self.tx.pop(0)
        elif op == "push":
            if len(self.rx) >= 4:
                if instr.a:
                    return False
            else:
                self.rx.append(self.isr)
            self.isr = 0
        elif op == "mov":
            self._write(instr.a, self._read(instr.b))
        elif op == "set":
            self._write(instr.a, instr.b)
        elif op == "in":
            count = instr.b
            value = self._read(instr.a) & ((1 << count) - 1)
            self.isr = ((self.isr << count) | value) & _MASK32
        elif op == "jmp":
            cond = instr.a
            if cond is None:
                take = True
            elif cond == "x_dec":
                take = self.x != 0
                self.x = (self.x - 1) & _MASK32
            elif cond == "y_dec":
                take = self.y != 0
                self.y = (self.y - 1) & _MASK32
            elif cond == "not_x":
                take = self.x == 0
            elif cond == "not_y":
                take = self.y == 0
            elif cond == "x_not_y":
                take = self.x != self.y
            else:
                raise PIOASMError(f"jmp condition {cond}")
            if take and not immediate:
                self.pc = self.program.labels[instr.b]
                jumped = True
        elif op == "wait":
            pin = self.kw["in_base"]
            if pin.level != instr.a:
                return False
        elif op == "irq":
            self.irq_pending = True
            self.irqs += 1
        else:
            raise PIOASMError(f"instruction {op}")
        if not immediate and not jumped:
            self._next()
        return True

    def fire_irq(self):
        # The interrupt the program raised, delivered to the handler.
        if self.irq_pending and self.handler is not None:
            self.irq_pending = False
            self.handler(self)
            return True
        return False


def reset_fakes():
    MACHINES.clear()
    BOOTSEL[0] = 0
