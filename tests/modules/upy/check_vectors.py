# Runs under MicroPython: the firmware codec (protocol/wire.py) against the
# golden vectors, and the firmware's table against the schema it came from.
# Prints one JSON line with the counts; raises on a mismatch.
import json
import sys

import schema  # protocol/schema.py, the host's tables, to compare against

from protocol import table
from protocol.wire import FRAME_OK, GARBAGE, NOTHING, FrameReader, FrameWriter, cobs_decode


def fields_tuple(entry, flags, fields):
    if flags & schema.FLAG_ERROR:
        spec = schema.NACK_FIELDS
    elif flags & schema.FLAG_REPLY:
        spec = entry[4]
    else:
        spec = entry[3]
    values = []
    for name, fmt, _unit in spec:
        value = fields[name]
        values.append(value.encode() if fmt.endswith("s") else value)
    return spec, tuple(values)


def decoded_fields(spec, payload):
    import struct

    raw = struct.unpack(schema.struct_format(spec), bytes(payload))
    out = {}
    for (name, fmt, _unit), value in zip(spec, raw):
        if fmt.endswith("s"):
            value = value.rstrip(b"\x00").decode()
        out[name] = value
    return out


def feed_all(reader, wire):
    results = []
    for byte in wire:
        result = reader.feed(byte)
        if result != NOTHING:
            results.append(result)
    return results


def main(path):
    with open(path) as f:
        doc = json.load(f)
    assert doc["schema_fingerprint"] == table.FINGERPRINT, "vectors are for another schema"
    # MicroPython computes the firmware table's fingerprint from the schema
    assert schema.compute_fingerprint() == table.FINGERPRINT, "run `make vectors`"
    writer = FrameWriter()
    reader = FrameReader()
    good = 0
    for vector in doc["good"]:
        wire = bytes.fromhex(vector["hex"])
        entry = schema.message_by_id(vector["msg_id"])
        spec, values = fields_tuple(entry, vector["flags"], vector["fields"])
        fmt = schema.struct_format(spec) if spec else None
        built = bytes(writer.frame(vector["msg_id"], vector["seq"], vector["flags"], fmt, values))
        assert built == wire, "%s: encoded %s" % (vector["name"], built.hex())
        assert feed_all(reader, wire) == [FRAME_OK], vector["name"]
        assert (reader.msg_id, reader.seq, reader.flags) == (
            vector["msg_id"],
            vector["seq"],
            vector["flags"],
        ), vector["name"]
        assert decoded_fields(spec, reader.payload) == vector["fields"], vector["name"]
        good += 1
    bad = 0
    for vector in doc["bad"]:
        results = feed_all(reader, bytes.fromhex(vector["hex"]))
        assert len(results) == 1, vector["name"]
        result = results[0]
        if vector["error"] == "GARBAGE":
            assert result == GARBAGE, vector["name"]
        elif result == FRAME_OK:
            # Frames that are intact but refused by the link (unknown id,
            # old version, wrong payload size) pass the framer; the link
            # rejects them, as the running-firmware tests check.
            assert vector["error"] in ("UNKNOWN_MESSAGE", "BAD_VERSION", "BAD_PAYLOAD"), vector[
                "name"
            ]
        else:
            assert schema.error_name(result) == vector["error"], "%s: got %s" % (
                vector["name"],
                schema.error_name(result),
            )
        if vector["seq"] is not None:
            assert reader.seq_valid and reader.seq == vector["seq"], vector["name"]
        bad += 1
    # COBS on its own: a block that runs past the end is reported.
    out = bytearray(8)
    size, ok = cobs_decode(b"\x05\x01\x02", 3, out)
    assert not ok and size == 2
    print(json.dumps({"good": good, "bad": bad}))


main(sys.argv[1])
