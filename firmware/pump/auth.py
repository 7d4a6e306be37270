# Authenticated sessions on the pump port (protocol/SPEC.md section 21).
#
# Who may change therapy: a request the schema gives a role (table.
# REQUIRED_ROLE) runs only as an authenticated frame of an open session of
# that role or a higher one. A session opens with a challenge-response over
# the role's key, provisioned at flash time in the board's key store
# (KEYSTORE_FILE); the key never leaves this module: no request reads it.
#
# Every refusal changes nothing (the request is not executed, the session
# keeps its counter) and is logged (AUTH_REFUSED) in the access log, with
# the tally of refusals ever (pump/app.py log()): the access log is a ring
# of its own, so a hostile peer cannot age the therapy history out of the
# event log, and the tally survives a reset.
#
# Not the hot path: sessions and MACs run once per request, never per
# stroke, so hashing allocates freely.

import hashlib
import os
import struct
from binascii import crc32

from micropython import const

from protocol import table as t
from pump import logcodes, once

_BLOCK = const(64)  # SHA-256 block size
_COUNTER_AT = t.HEADER_SIZE  # + payload size: where the trailer starts

# why a session ended (SESSION_CLOSED b)
CLOSED = const(0)
IDLE = const(1)
TOO_OLD = const(2)
REPLACED = const(3)

# SELF_TEST_FAILED a: the key store is unreadable
SELF_TEST_KEYS = const(3)

# admit(): the request ran before; answer it with its journalled reply
_ANSWERED = const(-1)
_NO_ID = bytes(t.REQUEST_ID_SIZE)


class Hmac:
    """HMAC-SHA256 (RFC 2104) with the key's padded blocks made once."""

    def __init__(self, key):
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        padded = bytearray(_BLOCK)
        padded[: len(key)] = key
        self._inner = bytes(b ^ 0x36 for b in padded)
        self._outer = bytes(b ^ 0x5C for b in padded)

    def digest(self, first, second=b"", third=b""):
        inner = hashlib.sha256(self._inner)
        inner.update(first)
        inner.update(second)
        inner.update(third)
        outer = hashlib.sha256(self._outer)
        outer.update(inner.digest())
        return outer.digest()


def read_keystore(blob):
    # -> (status, keys): keys[role] is the role's key (bytes) or None.
    # status 0: read (or no store at all); 1: present but damaged (no keys).
    keys = [None, None, None]  # type: list[bytes | None]
    if blob is None:
        return 0, keys
    if len(blob) != t.KEYSTORE_SIZE or blob[:4] != t.KEYSTORE_MAGIC:
        return 1, keys
    end = t.KEYSTORE_SIZE - 4
    if crc32(blob[:end]) & 0xFFFFFFFF != struct.unpack_from("<I", blob, end)[0]:
        return 1, keys
    for role in (t.ROLE_PATIENT, t.ROLE_CLINICIAN):
        start = 4 + (role - 1) * t.KEY_SIZE
        key = bytes(blob[start : start + t.KEY_SIZE])
        if key != bytes(t.KEY_SIZE):  # all zeros: this role has no key
            keys[role] = key
    return 0, keys


def _equal(a, b):
    # Compares in time independent of where they differ.
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


class Sessions:
    """The pump port's guard (Link calls admit()) and its AUTH_* handlers.

    One session at a time: the pump has one link, one peer at the end of it.
    """

    def __init__(self, clock, log, keystore_blob, outcomes=None):
        self._clock = clock
        # exactly once (pump/once.py): None, or the journalled outcomes
        self.outcomes = outcomes
        self._once = False  # the request admitted last needs begin_once()
        self._once_id = b""
        self._once_crc = 0
        # the reply to the request admitted last is signed (SPEC 21.6) with
        # this session key over its request's counter and MAC (None: unsigned)
        self._reply_key = None
        self._reply_tag = b""
        self._log = log
        status, keys = read_keystore(keystore_blob)
        # The application logs it once booted (SELF_TEST_FAILED): a pump
        # without keys still delivers its program, and refuses every change.
        self.keystore_damaged = status != 0
        self._keys = [None if k is None else Hmac(k) for k in keys]
        self.role = t.ROLE_READ_ONLY
        self._mac = None  # the session key's HMAC
        self.counter = 0
        self._opened_ms = 0
        self._used_ms = 0
        self._challenge = None  # the pump nonce of the live challenge
        self._challenge_role = 0
        self._challenge_ms = 0
        self.detail = 0  # of the last refusal (the NACK detail)

    def has_key(self, role):
        return self._keys[role] is not None

    def provision(self, blob):
        # -> the mask of roles the key store gives keys (0: refused as damaged
        # or empty). The caller has checked that the pump had no store.
        status, keys = read_keystore(blob)
        mask = 0
        for role in (t.ROLE_PATIENT, t.ROLE_CLINICIAN):
            if keys[role] is not None:
                mask |= 1 << role
        if status != 0 or mask == 0:
            return 0
        self._keys = [None if k is None else Hmac(k) for k in keys]
        self.keystore_damaged = False
        return mask

    # --- the guard: every request passes here after framing checks --------
    def admit(self, msg_id, reader, authenticated):
        # -> 0 to run the request, _ANSWERED when it ran before (its reply is
        # in self.outcomes: send that), or the NACK code (detail in
        # self.detail).
        self._once = False
        self._reply_key = None
        needed = t.REQUIRED_ROLE.get(msg_id, t.ROLE_READ_ONLY)
        if not authenticated:
            if needed == t.ROLE_READ_ONLY:
                return 0
            return self.refuse(msg_id, t.AUTH_REQUIRED, needed)
        now = self._clock.time_ms()
        if self._mac is None:
            return self.refuse(msg_id, t.AUTH_REQUIRED, needed)
        if self._expired(now):
            return self.refuse(msg_id, t.SESSION_EXPIRED, 0)
        trailer = _COUNTER_AT + reader.payload_size - t.AUTH_TRAILER_SIZE
        body = reader.body_view
        mac_at = trailer + t.REQUEST_ID_SIZE + 4
        mac = self._mac.digest(body[:mac_at])
        if not _equal(mac[: t.MAC_SIZE], body[mac_at : mac_at + t.MAC_SIZE]):
            return self.refuse(msg_id, t.BAD_MAC, 0)
        # from here on, whatever the answer, it is signed (SPEC 21.6)
        self._reply_key = self._mac
        self._reply_tag = bytes(body[mac_at - 4 : mac_at + t.MAC_SIZE])
        counter = struct.unpack_from("<I", body, trailer + t.REQUEST_ID_SIZE)[0]
        outcomes = self.outcomes
        if outcomes is not None and needed and msg_id not in t.ONCE_EXCEPT:
            # Exactly once (SPEC section 23), before the counter: a copy of
            # a request that ran is answered, whatever its session or seq.
            request_id = bytes(body[trailer : trailer + t.REQUEST_ID_SIZE])
            if request_id == _NO_ID:
                return self.refuse(msg_id, t.NO_REQUEST_ID, 0)
            crc = once.request_crc(msg_id, body[_COUNTER_AT:trailer])
            state = outcomes.find(self.role, request_id)
            if state != once.NEW:
                if outcomes.msg_id != msg_id or outcomes.request_crc != crc:
                    return self.refuse(msg_id, t.ID_REUSED, outcomes.msg_id)
                if state == once.IN_DOUBT:
                    return self.refuse(msg_id, t.IN_DOUBT, 0)
                if counter > self.counter:
                    self.counter = counter
                self._used_ms = now
                return _ANSWERED
            self._once = True
            self._once_id = request_id
            self._once_crc = crc
        if counter <= self.counter:
            return self.refuse(msg_id, t.REPLAY, self.counter & 0xFFFF)
        if needed > self.role:
            self._once = False
            return self.refuse(msg_id, t.WRONG_ROLE, needed)
        self.counter = counter
        self._used_ms = now
        return 0

    def signing(self):
        # True if the reply to the request admitted last is to be signed.
        return self._reply_key is not None

    def reply_mac(self, covered):
        # The MAC of a reply (header | payload) to the request admitted last.
        key = self._reply_key
        assert key is not None  # signing() said so
        return key.digest(covered, self._reply_tag)[: t.REPLY_MAC_SIZE]

    def begin_once(self, msg_id):
        # The request admitted last is about to run: journals its intent if
        # it is a therapy-changing one. -> True if its reply must be
        # journalled (outcomes.done) before it is sent.
        if not self._once:
            return False
        self._once = False
        self.outcomes.begin(self.role, self._once_id, msg_id, self._once_crc)
        return True

    def refuse(self, msg_id, code, detail):
        # Logs the refusal (the access log counts it); returns its code.
        self.detail = detail
        self._log(logcodes.AUTH_REFUSED, code | msg_id << 8, 0)
        return code

    def _expired(self, now):
        if now - self._used_ms > t.SESSION_IDLE_S * 1000:
            self.close(IDLE)
            return True
        if now - self._opened_ms > t.SESSION_MAX_S * 1000:
            self.close(TOO_OLD)
            return True
        return False

    def close(self, why):
        if self._mac is not None:
            self._log(logcodes.SESSION_CLOSED, self.role, why)
        self._mac = None
        self.role = t.ROLE_READ_ONLY
        self.counter = 0

    # --- the handshake ------------------------------------------------------
    def challenge(self, link, role):
        if role not in (t.ROLE_PATIENT, t.ROLE_CLINICIAN):
            link.nack(self.refuse(t.AUTH_CHALLENGE, t.BAD_VALUE, 0), 0)
            return
        if self._keys[role] is None:
            link.nack(self.refuse(t.AUTH_CHALLENGE, t.NO_KEY, role), role)
            return
        # os.urandom: getrandom() on the unix port, the ring oscillator on
        # the RP2040; a nonce never repeats in practice (128 bits).
        self._challenge = os.urandom(t.NONCE_SIZE)
        self._challenge_role = role
        self._challenge_ms = self._clock.time_ms()
        link.ack(t.AUTH_CHALLENGE_REPLY, (role, self._challenge))

    def open(self, link, role, client_nonce, proof):
        # A challenge answers one AUTH_OPEN, right or wrong: guessing a
        # proof costs a round trip per guess against a fresh nonce.
        nonce = self._challenge
        self._challenge = None
        now = self._clock.time_ms()
        if (
            nonce is None
            or role != self._challenge_role
            or now - self._challenge_ms > t.CHALLENGE_S * 1000
        ):
            link.nack(self.refuse(t.AUTH_OPEN, t.NO_CHALLENGE, 0), 0)
            return
        key = self._keys[role]
        transcript = bytes((role,)) + nonce + bytes(client_nonce)
        if not _equal(key.digest(t.LABEL_OPEN, transcript), proof):
            link.nack(self.refuse(t.AUTH_OPEN, t.BAD_MAC, 0), 0)
            return
        if self._mac is not None:
            self.close(REPLACED)
        self._mac = Hmac(key.digest(t.LABEL_SESSION, transcript))
        self.role = role
        self.counter = 0
        self._opened_ms = now
        self._used_ms = now
        self._log(logcodes.SESSION_OPENED, role, 0)
        link.ack(
            t.AUTH_OPEN_REPLY,
            (key.digest(t.LABEL_PUMP, transcript), t.SESSION_IDLE_S, t.SESSION_MAX_S),
        )


def handlers(sessions, done):
    """AUTH_CHALLENGE, AUTH_OPEN, AUTH_CLOSE: msg id -> fn(link, payload)."""

    def auth_challenge(link, payload):
        sessions.challenge(link, payload[0])
        return done

    def auth_open(link, payload):
        role, client_nonce, proof = struct.unpack_from(t.AUTH_OPEN_REQUEST, payload, 0)
        sessions.open(link, role, client_nonce, proof)
        return done

    def auth_close(link, _payload):
        sessions.close(CLOSED)
        link.ack(None, ())
        return done

    return {
        t.AUTH_CHALLENGE: auth_challenge,
        t.AUTH_OPEN: auth_open,
        t.AUTH_CLOSE: auth_close,
    }
