# The rig around an emulated Pico (pico/harness.mjs): the plant process.
#
#   micropython -m virtual.pico_rig --rig-fd N --harness-fd M [--seed S]
#
# The pump firmware runs on the emulated RP2040; this process plays the
# physical rig of docs/hardware.md section 8 around it, with the same
# physics as the virtual board (virtual/plant.py, virtual/line.py) and the same rig
# message handlers (virtual/rig.py) on its own pty (--rig-fd, the master
# side). Its hands on the board are the harness's rig socket (--harness-fd,
# JSON lines, one object a line):
#
# - the harness asks, and the chip stands still until it is answered:
#   {"ev": "step", "q", "t"}: the STEP pin rose with the driver on at t
#   (emulated ns since the harness started): the head is asked to make one
#   step (Plant.move, at the rate the STEP edges show: PicoRigBoard.step);
#   the answer is the encoder edges it really made
#   (0 for a stall, lost step or dead encoder, 1 + extra for a runaway);
#   {"ev": "adc", "ch", "q", "t"}: a conversion of the pressure (ch 0) or
#   battery (ch 3) input: the answer is the 12-bit level of the plant's
#   reading through board_config's calibration, valid to the end of that ms
#   (the sensor converts once a ms, Plant.sensor_x10);
# - this process asks (with an "id"; answered with the same "id"):
#   "advance" (until_ns: lockstep, idle time passes up to there), "power",
#   "reset".
#
# Device time is the emulated clock: ADVANCE grants emulated time in
# lockstep; the harness answers once the chip has run to the grant's end.
# What cannot be done to an emulated chip from outside NACKs as on a
# physical rig fixture: POWER 2 (cut after journal bytes), the TIMER_FAST
# and CORRUPT_JOURNAL faults, HEAP (the 32-bit heap is the board's own:
# tests read it over the REPL).

import json
import select
import struct
import sys

import board_config as cfg
from micropython import const
from pump import link as linkmod

from protocol import table as t
from virtual import plant as plantmod
from virtual import rig as rigmod

RIG_KIND = b"pico-emu"
_NS_PER_MS = const(1_000_000)
_ADC_PRESSURE = const(0)
_ADC_BATTERY = const(3)
# STEP edges this many of the board's configured step periods apart (or
# closer) belong to one move: the later one's rate is read from the gap.
_MOVE_GAP_PERIODS = const(4)
_NS_PER_S = const(1_000_000_000)
# Power cuts from the rig: a timed switch-off (POWER 3) is exact in emulated time.
_POWER_CUT_AFTER_BYTES = rigmod.POWER_CUT_AFTER_BYTES


def raw12_of_u16(u16):
    # The 12-bit conversion that the rp2 port's read_u16() turns into u16
    # ((raw << 4) | (raw >> 8)): the nearest, within 0..4095.
    raw = (u16 * 4095 + 32767) // 65535
    return 0 if raw < 0 else 4095 if raw > 4095 else raw


def pressure_raw12(x10):
    # hal/rp2.PressureSensor: x10 = (u16 - offset) * gain >> 16, inverted.
    u16 = cfg.PRESSURE_OFFSET_RAW + (x10 * 65536 + cfg.PRESSURE_GAIN // 2) // cfg.PRESSURE_GAIN
    return raw12_of_u16(u16)


def battery_raw12(mv):
    # hal/rp2.BatteryMonitor: mv = u16 * full_scale >> 16, inverted.
    return raw12_of_u16((mv * 65536 + cfg.BATTERY_MV_FULL_SCALE // 2) // cfg.BATTERY_MV_FULL_SCALE)


class PicoClock:
    """Device time of the emulated board: what the harness last reported (ms)."""

    def __init__(self):
        self.now_ns = 0
        self._grant_end_ms = 0
        self.sync = None  # fn(): asks the harness for the time now (it runs ahead busy)

    def see(self, t_ns):
        if t_ns > self.now_ns:
            self.now_ns = t_ns

    def time_ms(self):
        return self.now_ns // _NS_PER_MS

    def grant(self, duration_ms):
        if self.sync is not None:
            self.sync()  # a grant runs from now, not from the last event seen
        now = self.time_ms()
        base = self._grant_end_ms if self._grant_end_ms > now else now
        self._grant_end_ms = base + duration_ms
        return self._grant_end_ms

    def grant_end_ms(self):
        return self._grant_end_ms

    def set_tick_factor(self, _factor):
        pass  # TIMER_FAST is refused (PicoRig._on_inject); CLEAR_FAULT 0 comes here

    def granted_ms(self):
        left = self._grant_end_ms - self.time_ms()
        return left if left > 0 else 0


class _NoFs:
    bytes_written = 0  # journal bytes: not seen from outside the chip


class _NoAnnunciator:
    # The buzzer and LED pins are not watched yet: an empty record.
    size = 1
    total = 0
    time_ms = (0,)
    output = (0,)
    pattern = (0,)


class Harness:
    """The harness's rig socket: questions answered at once, requests by id."""

    def __init__(self, fd, rig_board):
        self.stream = open(fd, "r+b")
        self.board = rig_board
        self._buffer = b""
        self._next_id = 1
        self.replies = {}
        self._poll = select.poll()
        self._poll.register(self.stream, select.POLLIN)

    def send(self, message):
        self.stream.write(json.dumps(message).encode() + b"\n")

    def request(self, cmd, fields=None):
        ident = self._next_id
        self._next_id += 1
        message = {"id": ident, "cmd": cmd}
        if fields:
            message.update(fields)
        self.send(message)
        return ident

    def wait(self, ident):
        # Answers the harness's questions while waiting for one reply.
        while ident not in self.replies:
            if self._poll.poll(1000):
                self.read()
        return self.replies.pop(ident)

    def read(self):
        # One read of what is there (the caller polled): every whole line.
        data = self._read_some()
        if data is None:
            return
        if not data:
            raise SystemExit("pico rig: the harness closed its socket")
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if line:
                self._message(json.loads(line))

    def _read_some(self):
        # The socket is non-blocking (bench/board/pico.py): a FileIO read on a
        # blocking one waits until its whole buffer is filled.
        buf = bytearray(4096)
        n = self.stream.readinto(buf)
        if n is None:
            return None  # nothing there after all
        return bytes(buf[:n])

    def _message(self, msg):
        if "t" in msg:
            self.board.clock.see(msg["t"])
        ev = msg.get("ev")
        if ev == "step":
            edges = self.board.step()
            self.send({"cmd": "step_done", "q": msg["q"], "edges": edges})
        elif ev == "adc":
            raw, until = self.board.adc(msg["ch"])
            self.send({"cmd": "adc_done", "q": msg["q"], "raw": raw, "until": until})
        elif "id" in msg:
            self.replies[msg["id"]] = msg


class PicoRigBoard:
    """What virtual/rig.VirtualRig needs of a board, for the emulated Pico."""

    def __init__(self, rig_fd, harness_fd, seed):
        from virtual.board import FdPort

        self.clock = PicoClock()
        self.plant = plantmod.Plant(seed)
        self.rig_port = FdPort(rig_fd)
        self.harness = Harness(harness_fd, self)
        self.clock.sync = self._sync
        self.fs = _NoFs()
        self.annunciator = _NoAnnunciator()
        self.powered = True
        self._cut_at_ms = -1
        self.heap_peak = 0
        self.heap_samples = 0
        self.rig = None
        self._poll = select.poll()
        self._poll.register(self.rig_port.stream, select.POLLIN)
        self._poll.register(self.harness.stream, select.POLLIN)
        self._advancing = -1  # id of the harness advance in flight
        self._last_step_ns = -1  # emulated time of the last STEP edge

    # --- the pins -------------------------------------------------------------------
    def step(self):
        # One STEP edge with the driver on: the head's answer, as encoder edges.
        # The head turns at the rate the STEP pin shows, as a stepper driver
        # sees it: the gap since the edge before, when both belong to one
        # move; the board's configured rate for the first edge of a move.
        plant = self.plant
        now_ns = self.clock.now_ns
        rate = cfg.STEP_RATE_HZ
        gap = now_ns - self._last_step_ns
        if self._last_step_ns >= 0 and 0 < gap <= _MOVE_GAP_PERIODS * _NS_PER_S // rate:
            rate = _NS_PER_S // gap if gap < _NS_PER_S else 1
        self._last_step_ns = now_ns
        before = plant.encoder
        plant.move(1, self.clock.time_ms(), rate)
        return (plant.encoder - before) & 0x3FFFFFFF

    def adc(self, channel):
        now = self.clock.time_ms()
        if channel == _ADC_PRESSURE:
            raw = pressure_raw12(self.plant.sensor_x10(now))
        elif channel == _ADC_BATTERY:
            raw = battery_raw12(self.plant.battery_mv(now))
        else:
            raw = 0
        return raw, (now + 1) * _NS_PER_MS

    # --- power and reset (VirtualRig calls these) --------------------------------------
    def _call(self, cmd, fields=None):
        return self.harness.wait(self.harness.request(cmd, fields))

    def _sync(self):
        self.clock.see(self._call("status")["t"])

    def power_off(self):
        self._cut_at_ms = -1
        if self.powered:
            self._call("power", {"on": False})
        self.powered = False

    def power_on(self):
        if not self.powered:
            self._call("power", {"on": True})
        self.powered = True

    def cut_in_ms(self, delay_ms):
        self._cut_at_ms = self.clock.time_ms() + delay_ms

    def cut_after_bytes(self, _count):
        pass  # refused by PicoRig before it gets here

    def request_reset(self, _cause):
        self._call("reset")

    def sample_heap(self):
        pass

    # --- the loop ---------------------------------------------------------------------
    def _next_stop_ms(self, rig):
        # The grant's end, or earlier: a trace sample or an armed power cut.
        stop = self.clock.grant_end_ms()
        for at in (rig.next_sample_ms(), self._cut_at_ms, self.plant.next_onset_ms()):
            if 0 <= at < stop:
                stop = at
        return stop

    def run(self, rig):
        self.rig = rig
        harness = self.harness
        clock = self.clock
        while True:
            if 0 <= self._cut_at_ms <= clock.time_ms() and self.powered:
                self.power_off()
            now = clock.time_ms()
            if 0 <= self.plant.next_onset_ms() <= now:
                self.plant.update(now)
            rig.service()
            if self._advancing < 0 and clock.granted_ms() > 0:
                stop = self._next_stop_ms(rig)
                if stop <= now:
                    continue  # a sample or cut due now: served above
                self._advancing = harness.request("advance", {"until_ns": stop * _NS_PER_MS})
            for stream, flags in self._poll.poll(-1 if self._advancing < 0 else 1000):
                if flags & (select.POLLHUP | select.POLLERR) and stream is not harness.stream:
                    continue  # nobody holds the rig pty's slave now
                if stream is harness.stream:
                    harness.read()
            if self._advancing >= 0 and self._advancing in harness.replies:
                harness.replies.pop(self._advancing)
                self._advancing = -1


class PicoRig(rigmod.VirtualRig):
    """The virtual rig's messages, less what an emulated chip cannot do."""

    def _on_hello(self, link, payload):
        if not linkmod.hello_matches(link, payload):
            return linkmod.DONE
        link.ack(t.RIG_HELLO_REPLY, (t.PROTOCOL_VERSION, RIG_KIND, t.FINGERPRINT, self.seed))
        return linkmod.DONE

    def _on_power(self, link, payload):
        action = struct.unpack_from(t.POWER_REQUEST, payload, 0)[0]
        if action == _POWER_CUT_AFTER_BYTES:
            link.nack(t.BAD_VALUE, 0)  # journal bytes are inside the chip
            return linkmod.DONE
        return rigmod.VirtualRig._on_power(self, link, payload)

    def _on_inject(self, link, payload):
        fault = payload[0]
        if fault in (rigmod.FAULT_TIMER_FAST, plantmod.FAULT_CORRUPT_JOURNAL):
            link.nack(t.BAD_VALUE, 0)  # the crystal and the flash are the chip's own
            return linkmod.DONE
        return rigmod.VirtualRig._on_inject(self, link, payload)

    def _on_heap(self, link, _payload):
        link.nack(t.BAD_VALUE, 0)  # as on a physical board
        return linkmod.DONE


def _options(argv):
    options = {"--seed": "0"}
    i = 1
    while i + 1 < len(argv):
        options[argv[i]] = argv[i + 1]
        i += 2
    if "--rig-fd" not in options or "--harness-fd" not in options:
        raise SystemExit("usage: virtual.pico_rig --rig-fd N --harness-fd M [--seed S]")
    return options


def main(argv):
    options = _options(argv)
    seed = int(options["--seed"])
    board = PicoRigBoard(int(options["--rig-fd"]), int(options["--harness-fd"]), seed)
    board.run(PicoRig(board, seed))


if __name__ == "__main__":
    main(sys.argv)
