# The one source of truth for the pump and rig serial protocol.
#
# This module runs on both ends: the firmware (MicroPython, encodes with
# `struct`) and the bench (CPython, builds `construct` structures from it).
# Keep it in the MicroPython subset: plain tuples and ints, no typing, no
# dataclasses, nothing that allocates after import.
#
# Every change to a table here changes FINGERPRINT, which both ends exchange
# at HELLO; a firmware and a bench built from different tables refuse each
# other. protocol/SPEC.md describes the same tables in prose and
# protocol/vectors.json holds golden frames checked by both codecs.

import binascii

PROTOCOL_VERSION = 1

# --- framing ---------------------------------------------------------------
# body = header | payload | crc32 (little-endian), sent COBS-encoded between
# two 0x00 delimiters.
HEADER_FORMAT = "<BBHBB"  # version, msg_id, seq, flags, payload length
HEADER_SIZE = 6
CRC_SIZE = 4
MAX_PAYLOAD = 240
MAX_BODY = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE  # 250
# COBS adds one byte per started 254-byte block; the delimiters add two.
MAX_ENCODED = MAX_BODY + 1 + MAX_BODY // 254  # 251
MAX_WIRE = MAX_ENCODED + 2  # 253

FLAG_REPLY = 0x01  # an answer to a request, echoing its seq
FLAG_ERROR = 0x02  # with FLAG_REPLY: a NACK, payload is NACK_FIELDS
FLAG_EVENT = 0x04  # unsolicited, seq from the sender's own event counter

# --- ports -----------------------------------------------------------------
PORT_PUMP = "pump"  # the pump's own link (USB CDC on a board)
PORT_RIG = "rig"  # the plant / fixture: time, faults, ground truth
PORT_BOTH = "both"  # accepted on either port

# --- error codes carried by a NACK -----------------------------------------
# (code, name, meaning). Codes 1-15 are link errors: the frame did not arrive
# intact and the sender may retransmit it unchanged. Codes from 16 are
# refusals of a well-formed request: retrying the same request is pointless.
ERRORS = (
    (1, "BAD_CRC", "CRC-32 of the frame does not match; retransmit"),
    (2, "BAD_FRAME", "COBS decoding failed or the header is truncated; retransmit"),
    (3, "OVERSIZE", "more than MAX_ENCODED bytes between delimiters; retransmit"),
    (4, "BAD_LENGTH", "header length disagrees with the bytes received; retransmit"),
    (16, "BAD_VERSION", "protocol version in the header is not PROTOCOL_VERSION"),
    (17, "UNKNOWN_MESSAGE", "no message with this id (detail = the id)"),
    (18, "WRONG_PORT", "the message exists but not on this port (detail = the id)"),
    (19, "BAD_PAYLOAD", "payload size is wrong for the message (detail = expected size)"),
    (20, "NOT_A_REQUEST", "a frame with the REPLY or EVENT flag was sent to the device"),
    (21, "BAD_VALUE", "a field is out of its allowed range (detail = field index)"),
    (22, "BUSY", "an earlier request of this kind is still in progress"),
    (23, "SCHEMA_MISMATCH", "HELLO carried another protocol version or schema fingerprint"),
)
LINK_ERROR_LIMIT = 16  # codes below this are link errors, safe to retransmit

BAD_CRC = 1
BAD_FRAME = 2
OVERSIZE = 3
BAD_LENGTH = 4
BAD_VERSION = 16
UNKNOWN_MESSAGE = 17
WRONG_PORT = 18
BAD_PAYLOAD = 19
NOT_A_REQUEST = 20
BAD_VALUE = 21
BUSY = 22
SCHEMA_MISMATCH = 23

# The payload of every NACK (flags REPLY|ERROR), whatever the message id.
NACK_FIELDS = (
    ("code", "B", ""),
    ("detail", "H", ""),
)

# --- board states reported by STATUS ---------------------------------------
STATES = (
    (0, "BOOTING"),
    (1, "IDLE"),
    (2, "RUNNING"),
    (3, "ALARM"),
    (4, "FAULT"),
)

# --- reset causes reported by the BOOT event -------------------------------
RESET_CAUSES = (
    (0, "POWER_ON"),
    (1, "RIG_RESET"),
    (2, "WATCHDOG"),
    (3, "SOFT"),
)

# --- messages ----------------------------------------------------------------
# (id, name, port, request fields, reply fields)
# A field is (name, struct format, unit). Formats are little-endian, one field
# per format code; "Ns" is a fixed-size ASCII string padded with 0x00.
# Events use the same table: port is where they are sent from, the request
# fields are the event payload and the reply fields are None.
# fmt: off
MESSAGES = (
    (0x01, "HELLO", PORT_PUMP, (
        ("protocol_version", "B", ""),
        ("schema_fingerprint", "I", ""),
    ), (
        ("protocol_version", "B", ""),
        ("firmware_version", "16s", ""),
        ("board", "16s", ""),
        ("device_id", "16s", ""),
        ("schema_fingerprint", "I", ""),
    )),
    (0x02, "PING", PORT_BOTH, (
        ("token", "I", ""),
    ), (
        ("token", "I", ""),
    )),
    (0x03, "STATUS", PORT_PUMP, (), (
        ("device_time_ms", "Q", "ms"),
        ("uptime_ms", "Q", "ms"),
        ("state", "B", ""),
        ("boot_count", "H", "count"),
    )),
    (0x04, "LINK_STATS", PORT_BOTH, (), (
        ("frames_ok", "I", "count"),
        ("garbage", "I", "count"),
        ("bad_crc", "I", "count"),
        ("bad_frame", "I", "count"),
        ("oversize", "I", "count"),
        ("rejected", "I", "count"),
        ("duplicates", "I", "count"),
        ("tx_dropped", "I", "count"),
    )),
    (0x40, "RIG_HELLO", PORT_RIG, (
        ("protocol_version", "B", ""),
        ("schema_fingerprint", "I", ""),
    ), (
        ("protocol_version", "B", ""),
        ("rig_kind", "16s", ""),
        ("schema_fingerprint", "I", ""),
        ("seed", "I", ""),
    )),
    (0x41, "ADVANCE", PORT_RIG, (
        ("duration_ms", "Q", "ms"),
    ), (
        ("device_time_ms", "Q", "ms"),
    )),
    (0x42, "RESET", PORT_RIG, (), ()),
    (0x80, "BOOT", PORT_PUMP, (
        ("device_time_ms", "Q", "ms"),
        ("reset_cause", "B", ""),
        ("boot_count", "H", "count"),
    ), None),
)
# fmt: on

# Largest ADVANCE the rig accepts in one request: one year of device time.
MAX_ADVANCE_MS = 366 * 24 * 3600 * 1000


def _canonical():
    # A stable text rendering of every table above; its CRC-32 is the
    # fingerprint. Both interpreters produce the same text.
    parts = ["v%d;h%s;p%d" % (PROTOCOL_VERSION, HEADER_FORMAT, MAX_PAYLOAD)]
    for code, name, _doc in ERRORS:
        parts.append("e%d=%s" % (code, name))
    for code, name in STATES:
        parts.append("s%d=%s" % (code, name))
    for code, name in RESET_CAUSES:
        parts.append("r%d=%s" % (code, name))
    for msg_id, name, port, request, reply in MESSAGES:
        text = "m%d=%s@%s:" % (msg_id, name, port)
        for fname, fmt, unit in request:
            text += "%s/%s/%s," % (fname, fmt, unit)
        text += "|"
        if reply is None:
            text += "event"
        else:
            for fname, fmt, unit in reply:
                text += "%s/%s/%s," % (fname, fmt, unit)
        parts.append(text)
    return ";".join(parts)


FINGERPRINT = binascii.crc32(_canonical().encode()) & 0xFFFFFFFF


def struct_format(fields):
    # The struct format of a field tuple, e.g. "<QQBH".
    fmt = "<"
    for _name, code, _unit in fields:
        fmt += code
    return fmt


def message_by_name(name):
    for entry in MESSAGES:
        if entry[1] == name:
            return entry
    raise KeyError(name)


def message_by_id(msg_id):
    # Returns the table entry or None (unknown ids are a normal event on a
    # noisy link, not an exception).
    for entry in MESSAGES:
        if entry[0] == msg_id:
            return entry
    return None


def error_name(code):
    for entry_code, name, _doc in ERRORS:
        if entry_code == code:
            return name
    return "ERROR_%d" % code


def state_name(code):
    for entry_code, name in STATES:
        if entry_code == code:
            return name
    return "STATE_%d" % code
