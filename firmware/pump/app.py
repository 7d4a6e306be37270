# The pump application: owns the pump port, the scheduler and the therapy
# state, and runs the main loop. Hardware comes in through `board` (a HAL
# object); nothing here knows whether it runs on a Pico or the unix port.

import struct

from protocol import schema
from pump import link as linkmod
from pump.scheduler import Scheduler, Task
from pump.version import FIRMWARE_VERSION


def _reply_format(name):
    return schema.struct_format(schema.message_by_name(name)[4])


_HELLO_FMT = _reply_format("HELLO")
_PING_FMT = _reply_format("PING")
_STATUS_FMT = _reply_format("STATUS")
_STATS_FMT = _reply_format("LINK_STATS")
_BOOT_FMT = schema.struct_format(schema.message_by_name("BOOT")[3])
_BOOT_ID = schema.message_by_name("BOOT")[0]

STATE_IDLE = 1

# Housekeeping period: how often the supervisor wakes when nothing else is
# due. Later issues hang the monitors and the watchdog feed here.
HOUSEKEEPING_MS = 60_000


class PumpApp:
    def __init__(self, board, reset_cause):
        self.board = board
        self.clock = board.clock
        self.state = STATE_IDLE
        self.reset_cause = reset_cause
        board.boot_count += 1
        self._boot_time_ms = self.clock.time_ms()
        self.housekeeping_runs = 0
        self.scheduler = Scheduler()
        self._housekeeping = self.scheduler.add(Task("housekeeping", self._on_housekeeping))
        self._housekeeping.after(self.clock.ticks_ms(), HOUSEKEEPING_MS)
        self._hello = (
            schema.PROTOCOL_VERSION,
            FIRMWARE_VERSION.encode(),
            board.name.encode(),
            board.device_id.encode(),
            schema.FINGERPRINT,
        )
        handlers = {
            schema.message_by_name("HELLO")[0]: self._on_hello,
            schema.message_by_name("PING")[0]: self._on_ping,
            schema.message_by_name("STATUS")[0]: self._on_status,
            schema.message_by_name("LINK_STATS")[0]: self._on_link_stats,
        }
        self.link = linkmod.Link(board.pump_port, schema.PORT_PUMP, handlers)

    # --- main loop ---------------------------------------------------------------
    def run(self):
        # Returns the reset cause when a reset is requested (the caller then
        # boots a fresh application, as the hardware would), or -1 when the
        # board is shutting down.
        board = self.board
        clock = self.clock
        scheduler = self.scheduler
        self.link.event(
            _BOOT_ID, _BOOT_FMT, (self._boot_time_ms, self.reset_cause, board.boot_count)
        )
        while True:
            scheduler.run_due(clock.ticks_ms())
            self.link.service()
            board.service()
            cause = board.take_reset_request()
            if cause >= 0:
                return cause
            if board.orphaned:
                return -1
            board.idle(scheduler.wait_ms(clock.ticks_ms()))

    def uptime_ms(self):
        return self.clock.time_ms() - self._boot_time_ms

    def _on_housekeeping(self, now_ticks):
        self.housekeeping_runs += 1
        self._housekeeping.after(now_ticks, HOUSEKEEPING_MS)

    # --- pump port handlers: fn(link, payload) -> linkmod.DONE -------------------
    def _on_hello(self, link, payload):
        if linkmod.hello_matches(link, payload):
            link.ack(_HELLO_FMT, self._hello)
        return linkmod.DONE

    def _on_ping(self, link, payload):
        link.ack(_PING_FMT, struct.unpack_from("<I", payload, 0))
        return linkmod.DONE

    def _on_status(self, link, _payload):
        link.ack(
            _STATUS_FMT, (self.clock.time_ms(), self.uptime_ms(), self.state, self.board.boot_count)
        )
        return linkmod.DONE

    def _on_link_stats(self, link, _payload):
        link.ack(_STATS_FMT, link.counters)
        return linkmod.DONE
