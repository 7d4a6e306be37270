# The rig of the virtual board: owns device time (ADVANCE), resets the pump
# firmware (RESET) and, in later issues, the plant model and fault injection.
# It speaks the rig message set on its own port. A physical rig fixture
# implements the same messages (protocol/SPEC.md) on its own board.

import struct

from pump import link as linkmod

from protocol import schema

_RIG_HELLO_FMT = schema.struct_format(schema.message_by_name("RIG_HELLO")[4])
_ADVANCE_FMT = schema.struct_format(schema.message_by_name("ADVANCE")[4])
_PING_FMT = schema.struct_format(schema.message_by_name("PING")[4])
_STATS_FMT = schema.struct_format(schema.message_by_name("LINK_STATS")[4])

RIG_KIND = b"virtual"
RESET_CAUSE_RIG = 1


class VirtualRig:
    def __init__(self, board, seed):
        self.board = board
        self.clock = board.clock
        self.seed = seed
        self._advance_token = None
        handlers = {
            schema.message_by_name("RIG_HELLO")[0]: self._on_hello,
            schema.message_by_name("PING")[0]: self._on_ping,
            schema.message_by_name("LINK_STATS")[0]: self._on_link_stats,
            schema.message_by_name("ADVANCE")[0]: self._on_advance,
            schema.message_by_name("RESET")[0]: self._on_reset,
        }
        self.link = linkmod.Link(board.rig_port, schema.PORT_RIG, handlers)

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
        link.ack(_RIG_HELLO_FMT, (schema.PROTOCOL_VERSION, RIG_KIND, schema.FINGERPRINT, self.seed))
        return linkmod.DONE

    def _on_ping(self, link, payload):
        link.ack(_PING_FMT, struct.unpack_from("<I", payload, 0))
        return linkmod.DONE

    def _on_link_stats(self, link, _payload):
        link.ack(_STATS_FMT, link.counters)
        return linkmod.DONE

    def _on_advance(self, link, payload):
        if self._advance_token is not None:
            link.nack(schema.BUSY, 0)
            return linkmod.DONE
        duration = struct.unpack_from("<Q", payload, 0)[0]
        if duration > schema.MAX_ADVANCE_MS:
            link.nack(schema.BAD_VALUE, 0)
            return linkmod.DONE
        self.clock.grant(duration)
        self._advance_token = link.defer()
        return linkmod.DEFERRED

    def _on_reset(self, link, _payload):
        link.ack(None, ())
        self.board.request_reset(RESET_CAUSE_RIG)
        return linkmod.DONE
