"""A pump's role keys on the bench side: key files, the environment, the board's key store.

A key file is text, one role per line, ``role hex-key`` (64 hex digits, 32
bytes); ``#`` starts a comment. A clinician programmer's file holds the
clinician key (and usually the patient one); a patient's holds only the
patient key::

    # pump SIM-0001, provisioned 2026-12-02
    clinician 5f1c...e0
    patient   91ab...4d

Where the bench finds keys, first match wins (never on the command line,
where ``ps`` and shell history would show them):

1. ``--key-file PATH``: a key file;
2. a virtual board started by this process: the keys it was provisioned with;
3. ``PUMPBENCH_KEY_FILE``: a key file;
4. ``PUMPBENCH_CLINICIAN_KEY`` / ``PUMPBENCH_PATIENT_KEY``: hex keys (CI secrets).

A key file must not be readable by group or others (mode 0600), as ssh
insists for private keys. ``pumpbench keys new FILE`` makes one.
"""

from __future__ import annotations

import os
import secrets
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from bench.link.errors import BenchError
from protocol import schema

ENV_FILE = "PUMPBENCH_KEY_FILE"
ENV_ROLE = {
    schema.ROLE_CLINICIAN: "PUMPBENCH_CLINICIAN_KEY",
    schema.ROLE_PATIENT: "PUMPBENCH_PATIENT_KEY",
}
ROLE_WORDS = {"clinician": schema.ROLE_CLINICIAN, "patient": schema.ROLE_PATIENT}


@dataclass(frozen=True)
class DeviceKeys:
    """One pump's keys by role; a role without a key is None."""

    clinician: bytes | None = None
    patient: bytes | None = None

    def __post_init__(self) -> None:
        for key in (self.clinician, self.patient):
            if key is not None and len(key) != schema.KEY_SIZE:
                raise BenchError(f"a key is {schema.KEY_SIZE} bytes, not {len(key)}")

    def for_role(self, role: int) -> bytes | None:
        if role == schema.ROLE_CLINICIAN:
            return self.clinician
        if role == schema.ROLE_PATIENT:
            return self.patient
        return None

    @property
    def highest_role(self) -> int:
        if self.clinician is not None:
            return schema.ROLE_CLINICIAN
        if self.patient is not None:
            return schema.ROLE_PATIENT
        return schema.ROLE_READ_ONLY

    def only(self, role: int) -> DeviceKeys:
        """These keys cut down to one role (a patient's programmer, say)."""
        if role == schema.ROLE_PATIENT:
            return DeviceKeys(patient=self.patient)
        if role == schema.ROLE_CLINICIAN:
            return DeviceKeys(clinician=self.clinician)
        return DeviceKeys()

    def keystore(self) -> bytes:
        """The board's key store file (schema KEYSTORE_*), as written at flash time."""
        body = (
            schema.KEYSTORE_MAGIC
            + (self.patient or bytes(schema.KEY_SIZE))
            + (self.clinician or bytes(schema.KEY_SIZE))
        )
        return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)

    def text(self, comment: str = "") -> str:
        lines = [f"# {comment}"] if comment else []
        for word, role in ROLE_WORDS.items():
            key = self.for_role(role)
            if key is not None:
                lines.append(f"{word} {key.hex()}")
        return "\n".join(lines) + "\n"


def from_keystore(blob: bytes, source: str) -> DeviceKeys:
    """The keys in a board's key store file (read from its flash by hand)."""
    size = schema.KEY_SIZE
    body = blob[:-4]
    if (
        len(blob) != schema.KEYSTORE_SIZE
        or not blob.startswith(schema.KEYSTORE_MAGIC)
        or struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF) != blob[-4:]
    ):
        raise BenchError(f"{source}: not a key store; remove it to provision fresh keys")
    patient, clinician = blob[4 : 4 + size], blob[4 + size : 4 + 2 * size]
    empty = bytes(size)
    return DeviceKeys(
        clinician=None if clinician == empty else clinician,
        patient=None if patient == empty else patient,
    )


def generate() -> DeviceKeys:
    """Fresh random keys for both roles (the OS's CSPRNG)."""
    return DeviceKeys(
        clinician=secrets.token_bytes(schema.KEY_SIZE),
        patient=secrets.token_bytes(schema.KEY_SIZE),
    )


def write(path: Path, keys: DeviceKeys, comment: str = "") -> None:
    """Writes a key file readable by its owner only; never overwrites one."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BenchError(f"{path}: exists; a key file is never overwritten") from None
    except OSError as exc:  # a folder that does not exist, or may not be written
        where = path.parent if path.parent != Path() else Path.cwd()
        missing = "" if where.is_dir() else f": the folder {where} does not exist"
        raise BenchError(f"{path}: cannot write the key file ({exc.strerror}){missing}") from None
    with os.fdopen(fd, "w") as f:
        f.write(keys.text(comment))


def write_private(path: Path, data: bytes) -> None:
    """Writes ``data`` to a file readable by its owner only (0600), whoever made it
    first: a key store in a caller-chosen directory is never left world-readable."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(data)
    finally:
        os.close(fd)


def parse(text: str, source: str) -> DeviceKeys:
    found: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2 or words[0] not in ROLE_WORDS:
            raise BenchError(f"{source}:{number}: expected 'clinician HEX' or 'patient HEX'")
        found[words[0]] = _hex_key(words[1], f"{source}:{number}")
    if not found:
        raise BenchError(f"{source}: no key in it")
    return DeviceKeys(clinician=found.get("clinician"), patient=found.get("patient"))


def load(path: Path) -> DeviceKeys:
    """Reads a key file; refuses one that group or others may read."""
    if not path.exists() and len(str(path)) == 2 * schema.KEY_SIZE:
        try:
            bytes.fromhex(str(path))
        except ValueError:
            pass
        else:
            raise BenchError(
                "--key-file takes a file, never a key: a key on the command line is "
                f"visible to ps and kept in shell history (or set {ENV_FILE})"
            )
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as exc:
        raise BenchError(f"{path}: cannot read the key file ({exc.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise BenchError(
            f"{path}: a key file must be private to its owner (mode {stat.S_IMODE(mode):o}): "
            f"chmod 600 {path}"
        )
    return parse(text, str(path))


def from_environment(environ: dict[str, str] | None = None) -> DeviceKeys | None:
    """Keys named by the environment (a key file or hex keys), or None."""
    env = os.environ if environ is None else environ
    if env.get(ENV_FILE):
        try:
            return load(Path(env[ENV_FILE]))
        except BenchError as exc:  # say where the name came from: not the command line
            raise BenchError(
                f"{exc} (from the environment: {ENV_FILE}={env[ENV_FILE]}; "
                f"unset it or give --key-file)"
            ) from None
    found = {role: _hex_key(env[name], name) for role, name in ENV_ROLE.items() if env.get(name)}
    if not found:
        return None
    return DeviceKeys(
        clinician=found.get(schema.ROLE_CLINICIAN), patient=found.get(schema.ROLE_PATIENT)
    )


def _hex_key(text: str, source: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise BenchError(f"{source}: a key is {2 * schema.KEY_SIZE} hex digits") from None
    if len(key) != schema.KEY_SIZE:
        raise BenchError(f"{source}: a key is {2 * schema.KEY_SIZE} hex digits, not {len(text)}")
    return key


# Virtual boards started by this process, by pump port: bench/board/sim.py
# registers each board's keys so that a client on its port finds them.
_VIRTUAL: dict[str, DeviceKeys] = {}
# The keys of --key-file, for every hardware port of this process.
_GIVEN: list[DeviceKeys] = []


def use_key_file(path: Path) -> DeviceKeys:
    """Loads ``path`` (``--key-file``) for every client of this process on a hardware port."""
    keys = load(path)
    _GIVEN[:] = [keys]
    return keys


def register_virtual(port: str, keys: DeviceKeys) -> None:
    _VIRTUAL[port] = keys


def forget_virtual(port: str) -> None:
    _VIRTUAL.pop(port, None)


def find(port: str) -> DeviceKeys | None:
    """The keys for the pump on ``port``: a virtual board's, --key-file's, the environment's."""
    if port in _VIRTUAL:
        return _VIRTUAL[port]
    inner = _wrapped_port(port)
    if inner in _VIRTUAL:  # fault:///dev/pts/3?drop=0.01: the board on /dev/pts/3
        return _VIRTUAL[inner]
    if _GIVEN:
        return _GIVEN[0]
    return from_environment()


def _wrapped_port(url: str) -> str:
    """The port a wrapping URL handler opens (``fault://``, pyserial's ``spy://``)."""
    if "://" not in url:
        return url
    return url.split("://", 1)[1].split("?", 1)[0]
