# The rig of the virtual board: owns device time (ADVANCE), resets the pump
# firmware (RESET) and, in later issues, the plant model and fault injection.
# It speaks the rig message set on its own port. A physical rig fixture
# implements the same messages (protocol/SPEC.md) on its own board.

import gc
import struct

from pump import link as linkmod

from protocol import table as t
from rig.plant import FAULT_RUNAWAY

_RIG_HELLO_FMT = t.RIG_HELLO_REPLY
_ADVANCE_FMT = t.ADVANCE_REPLY
_PING_FMT = t.PING_REPLY
_STATS_FMT = t.LINK_STATS_REPLY
_TRUTH_FMT = t.TRUTH_REPLY
_POWER_REQUEST = t.POWER_REQUEST
_POWER_FMT = t.POWER_REPLY
_PLANT_REQUEST = t.PLANT_REQUEST
_FAULT_REQUEST = t.INJECT_FAULT_REQUEST
_FILL_FMT = t.FILL_REPLY

POWER_OFF = 0
POWER_ON = 1
POWER_CUT_AFTER_BYTES = 2
POWER_CUT_IN_MS = 3

RIG_KIND = b"virtual"
RESET_CAUSE_RIG = 1


class VirtualRig:
    def __init__(self, board, seed):
        self.board = board
        self.clock = board.clock
        self.seed = seed
        self._advance_token = None
        handlers = {
            t.RIG_HELLO: self._on_hello,
            t.PING: self._on_ping,
            t.LINK_STATS: self._on_link_stats,
            t.ADVANCE: self._on_advance,
            t.RESET: self._on_reset,
            t.TRUTH: self._on_truth,
            t.POWER: self._on_power,
            t.PLANT: self._on_plant,
            t.INJECT_FAULT: self._on_inject,
            t.CLEAR_FAULT: self._on_clear_fault,
            t.FILL: self._on_fill,
            t.HEAP: self._on_heap,
        }
        self.link = linkmod.Link(board.rig_port, t.RIG_REQUESTS, handlers)

    def service(self):
        # Called from the main loop after the firmware's due tasks ran: an
        # ADVANCE is answered only once everything due at its end has run.
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
        self.board.request_reset(RESET_CAUSE_RIG)
        return linkmod.DONE

    # --- the plant and power --------------------------------------------------------
    def _on_truth(self, link, _payload):
        plant = self.board.plant
        link.ack(
            _TRUTH_FMT,
            (
                plant.pumped_nl,
                plant.tip_nl,
                plant.reservoir_nl,
                plant.steps & 0xFFFFFFFF,
                1 if self.board.powered else 0,
                self.board.fs.bytes_written & 0xFFFFFFFF,
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
        calibration, catheter, empty, reservoir = struct.unpack_from(_PLANT_REQUEST, payload, 0)
        if not -200_000 <= calibration <= 200_000:
            link.nack(t.BAD_VALUE, 0)
            return linkmod.DONE
        self.board.plant.configure(calibration, catheter, empty, reservoir)
        link.ack(None, ())
        return linkmod.DONE

    def _on_inject(self, link, payload):
        fault, param = struct.unpack_from(_FAULT_REQUEST, payload, 0)
        if fault != FAULT_RUNAWAY or param < 0:
            link.nack(t.BAD_VALUE, 0 if fault != FAULT_RUNAWAY else 1)
            return linkmod.DONE
        self.board.plant.inject(fault, param)
        link.ack(None, ())
        return linkmod.DONE

    def _on_clear_fault(self, link, _payload):
        self.board.plant.clear_fault()
        link.ack(None, ())
        return linkmod.DONE

    def _on_fill(self, link, payload):
        plant = self.board.plant
        withdrawn = plant.reservoir_nl
        plant.reservoir_nl = struct.unpack_from("<I", payload, 0)[0]
        link.ack(_FILL_FMT, (withdrawn,))
        return linkmod.DONE

    def _on_heap(self, link, _payload):
        board = self.board
        board.sample_heap()
        alloc = gc.mem_alloc()
        link.ack(t.HEAP_REPLY, (alloc + gc.mem_free(), alloc, board.heap_peak, board.heap_samples))
        return linkmod.DONE
