"""The host side of the pump's authenticated sessions (protocol/SPEC.md section 21).

Three HMAC-SHA256 values are made from a role's key, each under its own
label (domain separation), over the same transcript: role, the pump's nonce,
the client's nonce.

- the client's proof (AUTH_OPEN request): shows the client holds the key;
- the pump's proof (AUTH_OPEN reply): shows the pump holds it too, so a
  bench never programs an impostor;
- the session key: signs every frame of the session. Fresh nonces make a
  fresh key, so a frame recorded in one session is worthless in the next.

Every authenticated request ends with a trailer: the client's request id
(8 bytes, SPEC section 23), a counter, strictly increasing within the
session, and the first 16 bytes of
HMAC(session key, header | payload | request id | counter) (RFC 4868
truncation). The
firmware builds the same functions on ``hashlib.sha256`` (firmware/pump/
auth.py); golden values in protocol/vectors.json hold the two together.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct

from protocol import schema

COUNTER_MAX = 0xFFFFFFFF


def hmac_sha256(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def _transcript(role: int, pump_nonce: bytes, client_nonce: bytes) -> bytes:
    if len(pump_nonce) != schema.NONCE_SIZE or len(client_nonce) != schema.NONCE_SIZE:
        raise ValueError(f"nonces are {schema.NONCE_SIZE} bytes")
    return bytes([role]) + pump_nonce + client_nonce


def client_proof(key: bytes, role: int, pump_nonce: bytes, client_nonce: bytes) -> bytes:
    return hmac_sha256(key, schema.LABEL_OPEN, _transcript(role, pump_nonce, client_nonce))


def pump_proof(key: bytes, role: int, pump_nonce: bytes, client_nonce: bytes) -> bytes:
    return hmac_sha256(key, schema.LABEL_PUMP, _transcript(role, pump_nonce, client_nonce))


def session_key(key: bytes, role: int, pump_nonce: bytes, client_nonce: bytes) -> bytes:
    return hmac_sha256(key, schema.LABEL_SESSION, _transcript(role, pump_nonce, client_nonce))


def frame_mac(key: bytes, covered: bytes, counter: int) -> bytes:
    """The MAC of an authenticated request: ``covered`` is its header, payload and request id."""
    return hmac_sha256(key, covered, struct.pack("<I", counter))[: schema.MAC_SIZE]


def reply_mac(key: bytes, covered: bytes, request_tag: bytes) -> bytes:
    """The MAC of a signed reply (SPEC 21.6): ``covered`` is its header and payload,
    ``request_tag`` the counter and MAC of the request it answers."""
    return hmac_sha256(key, covered, request_tag)[: schema.REPLY_MAC_SIZE]


def new_request_id() -> bytes:
    """A fresh request id: 64 random bits (never all zeros, which means "none")."""
    while True:
        request_id = secrets.token_bytes(schema.REQUEST_ID_SIZE)
        if any(request_id):
            return request_id


class Session:
    """An open session: signs requests with the session key and the next counter."""

    def __init__(self, role: int, key: bytes, counter: int = 0) -> None:
        self.role = role
        self._key = key
        self.counter = counter

    @property
    def key(self) -> bytes:
        """The session key (not a role key): a test harness signs its own frames with it."""
        return self._key

    def sign(self, covered: bytes, request_id: bytes | None = None) -> bytes:
        """The trailer (request id, counter, MAC) of the request whose header and
        payload are ``covered``; ``request_id`` None: a fresh one."""
        if self.counter >= COUNTER_MAX:
            raise OverflowError("session counter exhausted: open a new session")
        if request_id is None:
            request_id = new_request_id()
        self.counter += 1
        mac = frame_mac(self._key, covered + request_id, self.counter)
        return struct.pack(schema.AUTH_TRAILER_FORMAT, request_id, self.counter, mac)
