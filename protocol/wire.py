# Firmware-side frame codec: COBS framing, CRC-32, header and payloads with
# `struct`, all into buffers allocated once at construction.
#
# MicroPython subset; it ships to the board and also runs on the host under
# the MicroPython unix port (tests/modules). The bench has its own codec
# (protocol/codec.py, construct) built from the same schema; the golden
# vectors in protocol/vectors.json keep the two honest.

import struct
from binascii import crc32

from protocol import table as t

# Result of FrameReader.feed() for a byte that completes nothing.
NOTHING = -1
# Result for a complete, intact frame (header and CRC checked). Any other
# result is a schema error code (BAD_CRC, BAD_FRAME, ...); .seq_valid says
# whether .seq can be trusted enough to address a NACK.
FRAME_OK = 0
# Bytes between delimiters too short to hold even a header: counted, no NACK.
GARBAGE = -2


def cobs_encode(src, length, dst, offset):
    # Encodes src[0:length] into dst starting at offset. Returns the offset
    # just past the encoded bytes. dst must hold length + length // 254 + 1.
    code_at = offset
    out = offset + 1
    code = 1
    for i in range(length):
        byte = src[i]
        if byte:
            dst[out] = byte
            out += 1
            code += 1
            if code == 0xFF:
                dst[code_at] = code
                if i == length - 1:
                    return out  # a full last block needs no closing code
                code_at = out
                out += 1
                code = 1
        else:
            dst[code_at] = code
            code_at = out
            out += 1
            code = 1
    dst[code_at] = code
    return out


def cobs_decode(src, length, dst):
    # Decodes src[0:length] into dst. Returns (decoded length, ok). When the
    # input is malformed or dst is too small, ok is False and the length is
    # how much was decoded before the problem: enough, often, to read a
    # header and address a NACK.
    read = 0
    out = 0
    room = len(dst)
    while read < length:
        code = src[read]
        if code == 0:
            return out, False
        read += 1
        end = read + code - 1
        if end > length:
            # block runs past the end: decode what is there, report failure
            while read < length and out < room:
                dst[out] = src[read]
                out += 1
                read += 1
            return out, False
        while read < end:
            if out >= room:
                return out, False
            dst[out] = src[read]
            out += 1
            read += 1
        if code < 0xFF and read < length:
            if out >= room:
                return out, False
            dst[out] = 0
            out += 1
    return out, True


class FrameWriter:
    """Builds complete wire frames (delimiters included) in one buffer."""

    def __init__(self):
        self.body = bytearray(t.MAX_BODY)
        self.payload_size = 0  # of the last frame built
        self._wire = bytearray(t.MAX_WIRE)
        self._wire_view = memoryview(self._wire)

    def frame(self, msg_id, seq, flags, fmt, values):
        # Returns a memoryview of the wire bytes, valid until the next call.
        body = self.body
        if fmt is None:
            size = 0
        else:
            size = struct.calcsize(fmt)
            struct.pack_into(fmt, body, t.HEADER_SIZE, *values)
        return self._finish(msg_id, seq, flags, size)

    def frame_raw(self, msg_id, seq, flags, payload, size):
        # For payloads that are already packed (cached replies, tests).
        body = self.body
        base = t.HEADER_SIZE
        for i in range(size):
            body[base + i] = payload[i]
        return self._finish(msg_id, seq, flags, size)

    def _finish(self, msg_id, seq, flags, size):
        body = self.body
        self.payload_size = size
        struct.pack_into(
            t.HEADER_FORMAT,
            body,
            0,
            t.PROTOCOL_VERSION,
            msg_id,
            seq & 0xFFFF,
            flags,
            size,
        )
        end = t.HEADER_SIZE + size
        crc = crc32(memoryview(body)[:end]) & 0xFFFFFFFF
        struct.pack_into("<I", body, end, crc)
        wire = self._wire
        wire[0] = 0
        stop = cobs_encode(body, end + t.CRC_SIZE, wire, 1)
        wire[stop] = 0
        return self._wire_view[: stop + 1]


class FrameReader:
    """Splits a byte stream at 0x00 delimiters and checks each frame.

    Feed bytes one at a time; a result other than NOTHING describes the frame
    that the byte completed. After FRAME_OK the attributes msg_id, seq, flags,
    payload_size, crc and payload (a memoryview into the body) describe it.
    """

    def __init__(self):
        self._raw = bytearray(t.MAX_ENCODED)
        self._count = 0
        self._overflow = False
        self.body = bytearray(t.MAX_BODY)
        self.body_view = memoryview(self.body)
        self.payload = self.body_view[t.HEADER_SIZE : t.HEADER_SIZE]
        self.version = 0
        self.msg_id = 0
        self.seq = 0
        self.flags = 0
        self.payload_size = 0
        self.crc = 0
        self.seq_valid = False

    def feed(self, byte):
        if byte:
            if self._count < t.MAX_ENCODED:
                self._raw[self._count] = byte
                self._count += 1
            else:
                self._overflow = True
            return NOTHING
        if self._count == 0 and not self._overflow:
            return NOTHING  # the idle gap between two delimiters
        result = self._check()
        self._count = 0
        self._overflow = False
        return result

    def _check(self):
        size, ok = cobs_decode(self._raw, self._count, self.body)
        self.seq_valid = False
        if size < t.HEADER_SIZE:
            return GARBAGE
        (self.version, self.msg_id, self.seq, self.flags, self.payload_size) = struct.unpack_from(
            t.HEADER_FORMAT, self.body, 0
        )
        self.seq_valid = True
        if self._overflow:
            return t.OVERSIZE
        if not ok:
            return t.BAD_FRAME
        end = t.HEADER_SIZE + self.payload_size
        if end + t.CRC_SIZE != size:
            return t.BAD_LENGTH
        self.crc = struct.unpack_from("<I", self.body, end)[0]
        if crc32(self.body_view[:end]) & 0xFFFFFFFF != self.crc:
            return t.BAD_CRC
        self.payload = self.body_view[t.HEADER_SIZE : end]
        return FRAME_OK
