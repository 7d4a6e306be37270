# Runs under MicroPython: the firmware's HMAC-SHA256 (pump/auth.py, built on
# hashlib.sha256) against RFC 4231, and its session rules against the golden
# auth vectors the host made with CPython's hmac (protocol/vectors.json).
# Prints one JSON line; raises on a mismatch.
import json
import sys
from binascii import hexlify, unhexlify

from pump import auth

from protocol import table as t
from protocol.wire import FRAME_OK, NOTHING, FrameReader

# RFC 4231 test cases 1 to 4 and 6 (a key longer than a block is hashed
# first; the firmware's own keys are 32 bytes).
RFC4231 = (
    (
        b"\x0b" * 20,
        b"Hi There",
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
    ),
    (
        b"Jefe",
        b"what do ya want for nothing?",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    ),
    (
        b"\xaa" * 20,
        b"\xdd" * 50,
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
    ),
    (
        bytes(range(1, 26)),
        b"\xcd" * 50,
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
    ),
    (
        b"\xaa" * 131,
        b"Test Using Larger Than Block-Size Key - Hash Key First",
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    ),
)


class Clock:
    def __init__(self):
        self.now = 0

    def time_ms(self):
        return self.now


class Link:
    # Records what a handler answers.
    def __init__(self):
        self.replies = []

    def ack(self, _fmt, values):
        self.replies.append(("ack", values))

    def nack(self, code, detail):
        self.replies.append(("nack", code, detail))


def read_frame(wire):
    reader = FrameReader()
    for byte in wire:
        result = reader.feed(byte)
        if result != NOTHING:
            assert result == FRAME_OK, result
            return reader
    raise AssertionError("no frame")


def main(path):
    for key, message, expected in RFC4231:
        got = hexlify(auth.Hmac(key).digest(message)).decode()
        assert got == expected, (message, got)
    # the message in two and three parts hashes as one
    mac = auth.Hmac(b"Jefe")
    assert mac.digest(b"what do ya", b" want for", b" nothing?") == mac.digest(RFC4231[1][1])

    with open(path) as f:
        vectors = json.load(f)["auth"]
    status, keys = auth.read_keystore(unhexlify(vectors["keystore"]))
    assert status == 0
    assert keys[t.ROLE_CLINICIAN] == unhexlify(vectors["clinician_key"])
    assert keys[t.ROLE_PATIENT] == unhexlify(vectors["patient_key"])
    damaged = bytearray(unhexlify(vectors["keystore"]))
    damaged[10] ^= 1
    assert auth.read_keystore(bytes(damaged)) == (1, [None, None, None])
    assert auth.read_keystore(None) == (0, [None, None, None])

    log = []
    clock = Clock()
    sessions = auth.Sessions(clock, lambda code, a, b: log.append((code, a, b)), bytes(damaged))
    assert sessions.keystore_damaged
    sessions = auth.Sessions(
        clock, lambda code, a, b: log.append((code, a, b)), unhexlify(vectors["keystore"])
    )
    role = vectors["role"]
    pump_nonce = unhexlify(vectors["pump_nonce"])
    client_nonce = unhexlify(vectors["client_nonce"])
    # The pump's nonce is random; put the vector's in its place.
    link = Link()
    sessions.challenge(link, role)
    assert link.replies[-1][0] == "ack"
    sessions._challenge = pump_nonce
    sessions.open(link, role, client_nonce, unhexlify(vectors["client_proof"]))
    kind, values = link.replies[-1]
    assert kind == "ack", link.replies[-1]
    assert hexlify(values[0]).decode() == vectors["pump_proof"]
    assert sessions.role == role

    signed = vectors["signed_frame"]
    sessions.counter = signed["counter"] - 1
    reader = read_frame(unhexlify(signed["hex"]))
    assert sessions.admit(reader.msg_id, reader, reader.flags & t.FLAG_AUTH) == 0
    assert sessions.counter == signed["counter"]
    # the same frame again: its counter is spent
    assert sessions.admit(reader.msg_id, reader, True) == t.REPLAY
    # one bit of the payload changed: the MAC no longer matches
    sessions.counter = signed["counter"] - 1
    reader.body[t.HEADER_SIZE] ^= 1
    assert sessions.admit(reader.msg_id, reader, True) == t.BAD_MAC
    print(json.dumps({"rfc4231": len(RFC4231), "vectors": 1}))


main(sys.argv[1])
