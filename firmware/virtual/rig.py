# The rig of the virtual board: owns device time (ADVANCE), resets the pump
# firmware (RESET), the plant model (PLANT, FILL, TRUTH), fault injection
# (INJECT_FAULT, CLEAR_FAULT), the sampled ground truth (TRACE_CONFIG,
# TRACE) and the record of the annunciator (ANNUNCIATION). It speaks the rig
# message set on its own port. A physical rig fixture implements the same
# messages (protocol/SPEC.md) on its own board.

import gc
import struct
from array import array

from micropython import const
from pump import link as linkmod
from pump.journal import SLOT_FILES

from protocol import table as t
from protocol.table import (
    POWER_CUT_AFTER_BYTES,
    POWER_CUT_IN_MS,
    POWER_OFF,
    POWER_ON,
    RESET_CAUSE_RIG_RESET,
)
from virtual import plant as plantmod

_RIG_HELLO_FMT = t.RIG_HELLO_REPLY
_ADVANCE_FMT = t.ADVANCE_REPLY
_PING_FMT = t.PING_REPLY
_STATS_FMT = t.LINK_STATS_REPLY
_TRUTH_FMT = t.TRUTH_REPLY
_POWER_REQUEST = t.POWER_REQUEST
_POWER_FMT = t.POWER_REPLY
_PLANT_REQUEST = t.PLANT_REQUEST
_LINE_REQUEST = t.LINE_REQUEST
_FAULT_REQUEST = t.INJECT_FAULT_REQUEST
_FILL_FMT = t.FILL_REPLY


RIG_KIND = b"virtual"

# TRACE: samples kept (a ring; older ones are overwritten) and per reply.
_TRACE_RING = const(512)
_PAGE = const(12)  # the schema's array size in TRACE and ANNUNCIATION replies
# A fault of the virtual board's timer, not of the plant (schema FAULTS 13).
FAULT_TIMER_FAST = 13
# Journal state slots: magic u16, version u8, flags u8, seq u32 (pump/journal.py)
_SLOT_HEADER = "<HBBI"
_SLOT_MAGIC = const(0x4A53)


class Trace:
    """Ground truth sampled every period_ms of device time, in lockstep:
    the board's idle stops at next_ms so that samples land on their period.
    The ring (12 bytes a sample) is allocated by the first configure() that
    starts a trace, so a board that is never traced does not pay for it in
    its heap; sampling then allocates nothing."""

    def __init__(self, size=_TRACE_RING):
        self.wanted = size
        self.size = 0
        self.time_ms = array("I")  # low 32 bits
        self.tip_nl = array("I")
        self.pressure_x10 = array("h")  # true, at the sensor
        self.sensor_x10 = array("h")  # what the sensor reported
        self.period_ms = 0  # 0: stopped
        self.next_ms = -1
        self.total = 0  # samples since TRACE_CONFIG

    def configure(self, period_ms, now):
        # Raises MemoryError (and changes nothing) if the ring cannot be had.
        if period_ms and not self.size:
            size = self.wanted
            self.time_ms = array("I", bytes(4 * size))
            self.tip_nl = array("I", bytes(4 * size))
            self.pressure_x10 = array("h", bytes(2 * size))
            self.sensor_x10 = array("h", bytes(2 * size))
            self.size = size
        self.period_ms = period_ms
        if period_ms:
            self.total = 0
            self.next_ms = now
        else:
            self.next_ms = -1

    def sample(self, plant, now):
        plant.update(now)
        i = self.total % self.size
        self.time_ms[i] = now & 0xFFFFFFFF
        self.tip_nl[i] = plant.tip_nl & 0xFFFFFFFF
        self.pressure_x10[i] = plant.pressure_x10(now)
        self.sensor_x10[i] = plant.sensor_x10(now)
        self.total += 1


def _page(start, count, total, size):
    # (first, count) of a page of a ring holding the newest `size` of `total`.
    first = total - size if total > size else 0
    if start > first:
        first = start
    if count > _PAGE:
        count = _PAGE
    if first >= total:
        return start, 0
    if count > total - first:
        count = total - first
    return first, count


class VirtualRig:
    def __init__(self, board, seed):
        self.board = board
        self.clock = board.clock
        self.seed = seed
        self._advance_token = None
        self.trace = Trace()
        handlers = {
            t.RIG_HELLO: self._on_hello,
            t.PING: self._on_ping,
            t.LINK_STATS: self._on_link_stats,
            t.ADVANCE: self._on_advance,
            t.RESET: self._on_reset,
            t.TRUTH: self._on_truth,
            t.POWER: self._on_power,
            t.PLANT: self._on_plant,
            t.LINE: self._on_line,
            t.INJECT_FAULT: self._on_inject,
            t.CLEAR_FAULT: self._on_clear_fault,
            t.FILL: self._on_fill,
            t.HEAP: self._on_heap,
            t.TRACE_CONFIG: self._on_trace_config,
            t.TRACE: self._on_trace,
            t.ANNUNCIATION: self._on_annunciation,
        }
        self.link = linkmod.Link(board.rig_port, t.RIG_REQUESTS, handlers)
        # CORRUPT_JOURNAL is the rig's hand on the journal's medium, through
        # the board's fs adapter (the emulated Pico's flash is the chip's own:
        # no flip_byte there, and virtual/pico_rig.py refuses the fault).
        if hasattr(board.fs, "flip_byte"):
            board.plant.corrupt_journal = self.corrupt_journal

    def corrupt_journal(self, offset):
        # The rig fault CORRUPT_JOURNAL, at its onset (the plant schedules
        # it): flips the byte at offset (modulo the file's size) of the
        # newest journal state slot, the valid-looking header with the
        # higher sequence number. -> False if there is no slot yet.
        fs = self.board.fs
        newest = None
        newest_seq = -1
        for name in SLOT_FILES:
            header = fs.read(name)
            if header is None or len(header) < 8:
                continue
            magic, _version, _flags, seq = struct.unpack_from(_SLOT_HEADER, header, 0)
            if magic == _SLOT_MAGIC and seq > newest_seq:
                newest, newest_seq = name, seq
        if newest is None:
            return False
        return fs.flip_byte(newest, offset)

    def advancing(self):
        # An ADVANCE is waiting for its grant to run out.
        return self._advance_token is not None

    def next_sample_ms(self):
        return self.trace.next_ms

    def service(self):
        # Called from the main loop after the firmware's due tasks ran: a
        # trace sample due now is taken, and an ADVANCE is answered only
        # once everything due at its end has run.
        if self.trace.next_ms >= 0:
            self._sample_due()
        self.link.service()
        if self._advance_token is not None and self.clock.granted_ms() == 0:
            token = self._advance_token
            self._advance_token = None
            self.link.ack_deferred(token, _ADVANCE_FMT, (self.clock.time_ms(),))

    def _on_hello(self, link, payload):
        if not linkmod.hello_matches(link, payload):
            return linkmod.DONE
        link.ack(_RIG_HELLO_FMT, (t.PROTOCOL_VERSION, RIG_KIND, t.FINGERPRINT, self.seed))
        return linkmod.DONE

    def _on_ping(self, link, payload):
        link.ack(_PING_FMT, struct.unpack_from("<I", payload, 0))
        return linkmod.DONE

    def _on_link_stats(self, link, _payload):
        link.ack(_STATS_FMT, link.counters)
        return linkmod.DONE

    def _on_advance(self, link, payload):
        if self._advance_token is not None:
            link.nack(t.BUSY, 0)
            return linkmod.DONE
        duration = struct.unpack_from("<Q", payload, 0)[0]
        if duration > t.MAX_ADVANCE_MS:
            link.nack(t.BAD_VALUE, 0)
            return linkmod.DONE
        self.clock.grant(duration)
        self._advance_token = link.defer()
        return linkmod.DEFERRED

    def _on_reset(self, link, _payload):
        if not self.board.powered:
            link.nack(t.POWERED_OFF, 0)  # nothing runs to be reset
            return linkmod.DONE
        link.ack(None, ())
        self.board.request_reset(RESET_CAUSE_RIG_RESET)
        return linkmod.DONE

    # --- the plant and power --------------------------------------------------------
    def _on_truth(self, link, _payload):
        plant = self.board.plant
        plant.update(self.clock.time_ms())
        link.ack(
            _TRUTH_FMT,
            (
                plant.pumped_nl,
                plant.tip_nl,
                plant.reservoir_nl,
                plant.steps & 0xFFFFFFFF,
                1 if self.board.powered else 0,
                self.board.fs.bytes_written & 0xFFFFFFFF,
                plant.pocket_nl,
                plant.released_nl,
                plant.tip_ng(),
            ),
        )
        return linkmod.DONE

    def _on_power(self, link, payload):
        action, arg = struct.unpack_from(_POWER_REQUEST, payload, 0)
        board = self.board
        if action == POWER_OFF:
            board.power_off()
        elif action == POWER_ON:
            board.power_on()
        elif action == POWER_CUT_AFTER_BYTES and board.powered:
            board.cut_after_bytes(arg)
        elif action == POWER_CUT_IN_MS and board.powered:
            board.cut_in_ms(arg)
        else:
            link.nack(t.BAD_VALUE, 0)
            return linkmod.DONE
        link.ack(_POWER_FMT, (1 if board.powered else 0,))
        return linkmod.DONE

    def _on_plant(self, link, payload):
        (calibration, catheter, empty, reservoir, compliance, resistance, noise, csf) = (
            struct.unpack_from(_PLANT_REQUEST, payload, 0)
        )
        bad = plantmod.check_plant(calibration, catheter, compliance, resistance, noise, csf)
        if bad >= 0:
            link.nack(t.BAD_VALUE, bad)
            return linkmod.DONE
        self.board.plant.configure(
            calibration,
            catheter,
            empty,
            reservoir,
            self.clock.time_ms(),
            compliance,
            resistance,
            noise,
            csf,
        )
        link.ack(None, ())
        return linkmod.DONE

    def _on_line(self, link, payload):
        (material, modulus, air, dissolve_s, inertance, site, ambient, daily) = struct.unpack_from(
            _LINE_REQUEST, payload, 0
        )
        from virtual import line as linemod  # the first LINE loads the line's physics

        bad = linemod.check_line(material, modulus, air, inertance, site, ambient)
        if bad < 0 and daily > 1:
            bad = 7
        if bad >= 0:
            link.nack(t.BAD_VALUE, bad)
            return linkmod.DONE
        plant = self.board.plant
        now = self.clock.time_ms()
        plant.ambient_x10 = ambient
        plant.configure_line(material, modulus, air, dissolve_s * 1000, inertance, site, now)
        if daily:
            plant.line_module().daily_life(plant.csf)
        link.ack(None, ())
        return linkmod.DONE

    def _on_inject(self, link, payload):
        fault, param, onset_ms = struct.unpack_from(_FAULT_REQUEST, payload, 0)
        if fault == FAULT_TIMER_FAST:
            if not 1000 <= param <= 1_000_000:  # x1 to x1000, in per mille
                link.nack(t.BAD_VALUE, 1)
                return linkmod.DONE
            self.clock.set_tick_factor(param)
            link.ack(None, ())
            return linkmod.DONE
        if not plantmod.fault_known(fault):
            link.nack(t.BAD_VALUE, 0)
            return linkmod.DONE
        if not plantmod.param_ok(fault, param):
            link.nack(t.BAD_VALUE, 1)
            return linkmod.DONE
        now = self.clock.time_ms()
        self.board.plant.inject(fault, param, now + onset_ms, now)
        link.ack(None, ())
        return linkmod.DONE

    def _on_clear_fault(self, link, payload):
        fault = payload[0]
        if fault in (0, FAULT_TIMER_FAST):
            self.clock.set_tick_factor(1000)
            if fault:
                link.ack(None, ())
                return linkmod.DONE
        if fault and not plantmod.fault_known(fault):
            link.nack(t.BAD_VALUE, 0)
            return linkmod.DONE
        self.board.plant.clear_fault(fault, self.clock.time_ms())
        link.ack(None, ())
        return linkmod.DONE

    def _on_fill(self, link, payload):
        plant = self.board.plant
        plant.update(self.clock.time_ms())
        volume, conc = struct.unpack_from("<II", payload, 0)
        link.ack(_FILL_FMT, (plant.fill(volume, conc),))
        return linkmod.DONE

    def _on_trace_config(self, link, payload):
        period = struct.unpack_from("<I", payload, 0)[0]
        try:
            self.trace.configure(period, self.clock.time_ms())
        except MemoryError:
            link.nack(t.BUSY, 1)  # no heap left for the ring
            return linkmod.DONE
        link.ack(None, ())
        self._sample_due()  # the first sample is taken now
        return linkmod.DONE

    def _sample_due(self):
        trace = self.trace
        now = self.clock.time_ms()
        if 0 <= trace.next_ms <= now:
            trace.sample(self.board.plant, now)
            # in lockstep a sample is never late; free-running, the ones
            # missed while the host was busy are skipped
            late = (now - trace.next_ms) // trace.period_ms
            trace.next_ms += (late + 1) * trace.period_ms

    def _on_trace(self, link, payload):
        start, count = struct.unpack_from("<IB", payload, 0)
        trace = self.trace
        first, count = _page(start, count, trace.total, trace.size)
        values = [0] * (3 + 4 * _PAGE)  # not kept: a reply is rare
        values[0] = first
        values[1] = count
        values[2] = trace.total & 0xFFFFFFFF
        for k in range(_PAGE):
            if k < count:
                i = (first + k) % trace.size
                values[3 + k] = trace.time_ms[i]
                values[3 + _PAGE + k] = trace.tip_nl[i]
                values[3 + 2 * _PAGE + k] = trace.pressure_x10[i]
                values[3 + 3 * _PAGE + k] = trace.sensor_x10[i]
        link.ack(t.TRACE_REPLY, values)
        return linkmod.DONE

    def _on_annunciation(self, link, payload):
        start, count = struct.unpack_from("<IB", payload, 0)
        ring = self.board.annunciator
        first, count = _page(start, count, ring.total, ring.size)
        values = [0] * (3 + 3 * _PAGE)
        values[0] = first
        values[1] = count
        values[2] = ring.total & 0xFFFFFFFF
        for k in range(count):
            i = (first + k) % ring.size
            values[3 + k] = ring.time_ms[i]
            values[3 + _PAGE + k] = ring.output[i]
            values[3 + 2 * _PAGE + k] = ring.pattern[i]
        link.ack(t.ANNUNCIATION_REPLY, values)
        return linkmod.DONE

    def _on_heap(self, link, _payload):
        board = self.board
        board.sample_heap()
        alloc = gc.mem_alloc()
        link.ack(t.HEAP_REPLY, (alloc + gc.mem_free(), alloc, board.heap_peak, board.heap_samples))
        return linkmod.DONE
