# Runs under MicroPython: the link's work per main-loop pass is bounded.
# A port that never runs dry (a flood) gives back control after
# at most RX_BUDGET bytes or FRAME_BUDGET frames; the frames
# left in the port are served by the next passes, none lost.
import json
import sys

from pump import link as linkmod

from protocol import table as t
from protocol.wire import FrameWriter

frame = bytes(FrameWriter().frame(t.PING, 7, 0, t.PING_REQUEST, (1,)))


class EndlessPort:
    """Always has another PING frame to read; counts the replies."""

    def __init__(self):
        self.offset = 0
        self.read = 0
        self.replies = 0

    def readinto(self, buf):
        n = len(buf)
        for i in range(n):
            buf[i] = frame[(self.offset + i) % len(frame)]
        self.offset += n
        self.read += n
        return n

    def write(self, _data):
        self.replies += 1
        return True


def on_ping(link, _payload):
    link.ack(t.PING_REPLY, (1,))
    return linkmod.DONE


port = EndlessPort()
link = linkmod.Link(port, t.RIG_REQUESTS, {t.PING: on_ping})
passes = 0
worst_bytes = 0
worst_frames = 0
while passes < 200:
    before_bytes = port.read
    before_frames = port.replies
    got = link.service()
    assert got == port.read - before_bytes
    worst_bytes = max(worst_bytes, got)
    worst_frames = max(worst_frames, port.replies - before_frames)
    passes += 1
# a pass reads at most RX_BUDGET bytes; once FRAME_BUDGET frames are done no
# further read starts (a read already made is finished: its frames count)
assert worst_bytes <= linkmod.RX_BUDGET, worst_bytes
assert worst_frames <= linkmod.FRAME_BUDGET + 64 // len(frame) + 1, worst_frames
# every complete frame read was served (the reply cache answers repeats)
assert port.replies >= port.read // len(frame) - 1, (port.replies, port.read)


class QuietPort:
    def readinto(self, _buf):
        return 0

    def write(self, _data):
        return True


quiet = linkmod.Link(QuietPort(), t.RIG_REQUESTS, {})
assert quiet.service() == 0
sys.stdout.write(
    json.dumps({"bytes": worst_bytes, "frames": worst_frames, "frame": len(frame)}) + "\n"
)
