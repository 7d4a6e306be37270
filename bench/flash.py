"""Flashing a Raspberry Pi Pico: ``make flash PORT=...`` and ``pumpbench flash``.

Steps, each failing with one clear line:

1. Probe: ``mpremote connect PORT exec`` prints ``sys.implementation._mpy``;
   this proves a MicroPython REPL answers and tells the board's architecture
   (RP2040: ``armv6m``, RP2350: ``armv7emsp``) and .mpy version.
2. Stage: every file of the firmware's manifest (``firmware/manifest.py``:
   no simulator, no rig) compiled with ``mpy-cross
   -march=ARCH`` into a staging folder in the per-user cache
   (``bench.paths.cache_dir``), laid out as on the board;
   ``main.py`` stays source (MicroPython runs it by name at boot).
3. Install, in one mpremote session: remove the firmware's old folders and
   files (a stale ``.py`` would shadow its new ``.mpy``), copy the staging
   folder to ``:``, reset.
   The same session provisions the pump's role keys: the key store
   (schema KEYSTORE_FILE, from ``--key-file``) goes into the board's state
   directory beside the journal, which the clean step never touches.
4. Check: the board answers ``HELLO`` on the same port with the expected
   firmware version and schema fingerprint (``bench.client.PumpClient``),
   and opens a session with the key file's highest role: the keys took.

The pump firmware turns Ctrl-C off at boot (the pump port is USB CDC), so
mpremote cannot break into a running pump. A person can: reset the board
(or replug it) and press BOOTSEL within 2 s (board_config
MAINTENANCE_WINDOW_MS); the application then does not start and the REPL is
free. When the probe finds no REPL, ``--wait`` seconds are given for that
and the probe is retried while the port is there.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import bootsel, image
from bench import firmware as firmware_build
from bench import keys as keysmod
from bench.errors import BenchError
from bench.paths import ENV_FIRMWARE, cache_dir, firmware_tree, select_firmware
from protocol import schema

PROG = "pumpbench flash"
EXIT_OK = 0
EXIT_ERROR = 2

# sys.implementation._mpy: bits 0-7 .mpy version, 8-9 sub-version, 10-15 arch.
ARCHES = {4: "armv6m", 5: "armv7m", 6: "armv7em", 7: "armv7emsp", 8: "armv7emdp", 11: "rv32imc"}
BOARD_ARCHES = ("armv6m", "armv7emsp")  # Pico (RP2040), Pico 2 (RP2350, Arm cores)
MPY_VERSION = 6

PROBE = "import sys; print(sys.implementation._mpy)"
# Run on the board before the copy: removes what an earlier image left.
CLEAN = """
import os
def rm(p):
    try:
        if os.stat(p)[0] & 0x4000:
            for n in os.listdir(p):
                rm(p + '/' + n)
            os.rmdir(p)
        else:
            os.remove(p)
    except OSError:
        pass
for p in {paths!r}:
    rm(p)
"""
# board_config.JOURNAL_DIR: the board's state (journal and key store)
STATE_DIR = "/journal"
MAKE_STATE_DIR = f"""
import os
try:
    os.mkdir({STATE_DIR!r})
except OSError:
    pass
"""
# Reset, USB enumeration, the maintenance window and boot take about 3 s on a
# Pico. An emulated Pico on a busy host runs several times slower than real
# time (measured: 3.4 s of its time in 20 s of wall time at load 10), so its
# callers give --boot-timeout.
BOOT_TIMEOUT_S = 20.0


def firmware_version() -> str:
    """FIRMWARE_VERSION of the firmware tree's pump/version.py (what HELLO must report)."""
    return firmware_tree().version()


def mpremote_command() -> str:
    beside_python = Path(sys.executable).with_name("mpremote")
    return str(beside_python) if beside_python.exists() else "mpremote"


def stage(out: Path, arch: str) -> Path:
    """Compiles the image for ``arch`` into ``out`` (emptied first); main.py as source."""
    if out.exists():
        shutil.rmtree(out)
    tree = firmware_tree()
    image.compile_all(out, arch, tree, image.board_files(tree))
    (out / "main.mpy").unlink()
    shutil.copy2(tree.firmware / "main.py", out / "main.py")
    return out


def board_paths(staged: Path) -> list[str]:
    """What the copy replaces on the board: top folders and top-level files."""
    paths = set()
    for path in staged.rglob("*"):
        top = path.relative_to(staged).parts[0]
        paths.add("/" + top)
        if top.endswith(".mpy"):
            paths.add("/" + top[:-4] + ".py")  # a stale source would shadow it
    return sorted(paths)


class Flasher:
    def __init__(self, port: str, mpremote: str, wait_s: float) -> None:
        self.port = port
        self.mpremote = mpremote
        self.wait_s = wait_s

    def _mpremote(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        command = [self.mpremote, "connect", self.port, *args]
        try:
            return subprocess.run(
                command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
            )
        except FileNotFoundError:
            raise BenchError(
                f"{self.mpremote} not found: run `make test` or `pip install -e '.[dev]'`"
            ) from None
        except subprocess.TimeoutExpired:
            raise BenchError(f"{self.port}: mpremote timed out after 120 s") from None

    def _port_exists(self) -> bool:
        return "://" in self.port or os.path.exists(self.port)

    def probe(self) -> int:
        """-> sys.implementation._mpy of the board (waits for a reset if needed)."""
        if not self._port_exists():
            raise BenchError(f"no board on {self.port}: is a Pico plugged in? (ls /dev/ttyACM*)")
        result = self._mpremote("exec", PROBE)
        if result.returncode != 0 and self.wait_s > 0:
            print(
                f"flash: {self.port}: no REPL (the pump firmware runs, Ctrl-C is off): "
                f"reset or replug the board, then press BOOTSEL within 2 s; "
                f"waiting {self.wait_s:g} s",
                file=sys.stderr,
            )
            result = self._retry(self.wait_s)
        if result.returncode != 0:
            detail = _last_line(result.stderr or result.stdout) or "no output"
            raise BenchError(
                f"no board answers on {self.port} (mpremote: {detail}); if the pump "
                "firmware runs, reset the board and press BOOTSEL within 2 s"
            )
        numbers = re.findall(r"^\s*(\d+)\s*$", result.stdout, re.MULTILINE)
        if not numbers:
            raise BenchError(f"{self.port}: unexpected answer to the probe: {result.stdout!r}")
        return int(numbers[-1])

    def _retry(self, wait_s: float) -> subprocess.CompletedProcess[str]:
        # Probes again whenever the port is there (it goes away while the
        # board resets), until the REPL answers or wait_s is over.
        deadline = time.monotonic() + wait_s
        result = subprocess.CompletedProcess[str]([], 1, "", "no REPL")
        while time.monotonic() < deadline:
            if self._port_exists():
                result = self._mpremote("exec", PROBE)
                if result.returncode == 0:
                    return result
            time.sleep(0.1)
        return result

    def install(self, staged: Path, keystore: bytes) -> None:
        clean = CLEAN.format(paths=board_paths(staged))
        # The key store goes through a private temporary file, never build/.
        with tempfile.TemporaryDirectory(prefix="pump-keys-") as private:
            store = Path(private, schema.KEYSTORE_FILE)
            keysmod.write_private(store, keystore)
            result = self._mpremote(
                "exec",
                clean + MAKE_STATE_DIR,
                "+",
                "cp",
                "-r",
                ".",
                ":",
                "+",
                "cp",
                str(store),
                f":{STATE_DIR}/{schema.KEYSTORE_FILE}",
                "+",
                "reset",
                cwd=staged,
            )
        if result.returncode != 0:
            detail = _last_line(result.stderr or result.stdout)
            raise BenchError(f"{self.port}: copying the firmware failed (mpremote: {detail})")

    def hello(self, timeout_s: float, keys: keysmod.DeviceKeys) -> dict[str, Any]:
        """HELLO after the reset, retried until the board is back or timeout_s;
        then a session with ``keys``, proving the provisioning."""
        from bench.client import PumpClient

        deadline = time.monotonic() + timeout_s
        last = "the port did not come back"
        while time.monotonic() < deadline:
            if self._port_exists():
                try:
                    with PumpClient(self.port, keys=keys, timeout_s=1.0, retries=1) as client:
                        reply = client.hello()
                        client.open_session()
                        client.close_session()
                        return reply
                except BenchError as exc:
                    last = str(exc)
                    if "flash matching firmware" in last:
                        raise
            time.sleep(0.25)
        raise BenchError(f"{self.port}: no HELLO after flashing ({last})")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def arch_of(mpy: int) -> str:
    return ARCHES.get((mpy >> 10) & 0x3F, f"arch {(mpy >> 10) & 0x3F}")


def provisioning_keys(path: Path) -> keysmod.DeviceKeys:
    """The key file's keys; a missing file is made with fresh keys (mode 0600)."""
    if path.exists():
        return keysmod.load(path)
    keys = keysmod.generate()
    keysmod.write(path, keys, f"pump keys, made by {PROG} {time.strftime('%Y-%m-%d')}")
    print(f"flash: new keys written to {path} (keep it private; it programs the pump)")
    return keys


def flash(
    port: str,
    arch: str | None,
    mpremote: str,
    wait_s: float,
    key_file: Path,
    boot_timeout_s: float = BOOT_TIMEOUT_S,
) -> dict[str, Any]:
    """The whole sequence; returns the HELLO reply. Raises BenchError."""
    flasher = Flasher(port, mpremote, wait_s)
    mpy = flasher.probe()
    board_arch = arch_of(mpy)
    if mpy & 0xFF != MPY_VERSION:
        raise BenchError(
            f"{port}: the board loads .mpy v{mpy & 0xFF}, mpy-cross emits v{MPY_VERSION}: "
            "update MicroPython on the board (1.26 or later)"
        )
    if arch is None:
        if board_arch not in BOARD_ARCHES:
            raise BenchError(f"{port}: a {board_arch} board; give --arch to flash it anyway")
        arch = board_arch
    elif arch != board_arch:
        raise BenchError(f"{port}: the board is {board_arch}, not {arch}: check --arch")
    # A new key file is written before the board gets the keys: they are
    # never only on the board.
    keys = provisioning_keys(key_file)
    # A staging folder of this flash's own: two boards flashed at once never
    # share one.
    with tempfile.TemporaryDirectory(prefix=f"flash-{arch}-", dir=cache_dir()) as scratch:
        staged = stage(Path(scratch) / "image", arch)
        size = sum(p.stat().st_size for p in staged.rglob("*") if p.is_file())
        print(f"flash: {port}: {arch}, {size} bytes staged in {staged}")
        flasher.install(staged, keys.keystore())
    reply = flasher.hello(boot_timeout_s, keys)
    expected = firmware_version()
    if reply["firmware_version"] != expected:
        raise BenchError(
            f"{port}: after flashing, HELLO reports firmware {reply['firmware_version']}, "
            f"expected {expected}"
        )
    return reply


# The bootrom's Board-ID on the BOOTSEL drive for each UF2 family.
UF2_BOARD_IDS = {0xE48BFF56: "RPI-RP2", 0xE48BFF59: "RP2350"}


def default_uf2() -> Path:
    """The image ``make firmware`` wrote last (build/firmware/manifest.json)."""
    record = firmware_build.OUT_DIR / "manifest.json"
    if not record.exists():
        raise BenchError("no frozen image: run make firmware first, or give --uf2 FILE")
    return firmware_build.OUT_DIR / json.loads(record.read_text())["uf2"]["name"]


def flash_uf2(
    port: str, uf2: Path, key_file: Path, drive: Path | None, wait_s: float
) -> dict[str, Any]:
    """A frozen image through the BOOTSEL drive, then keys over the pump port."""
    from bench.client import PumpClient

    try:
        image_bytes = uf2.read_bytes()
    except OSError as exc:
        raise BenchError(f"{uf2}: cannot read the image ({exc.strerror})") from None
    firmware_build.bin_from_uf2(image_bytes)  # a UF2 at all, before anything touches the board
    family = int.from_bytes(image_bytes[28:32], "little")
    drive = drive or bootsel.find_drive()
    found = bootsel.board_id(drive)
    expected = UF2_BOARD_IDS.get(family)
    if found != expected:
        raise BenchError(f"{drive}: a {found} board; {uf2.name} is for {expected}")
    keys = provisioning_keys(key_file)
    print(f"flash: writing {uf2.name} ({len(image_bytes):,} B) to {drive}", flush=True)
    bootsel.write_uf2(drive, uf2)
    deadline = time.monotonic() + wait_s
    last = "the port did not appear"
    while time.monotonic() < deadline:
        if os.path.exists(port) or "://" in port:
            try:
                with PumpClient(port, keys=keys, timeout_s=1.0, retries=1) as client:
                    reply = client.hello()
                    if client.provision(keys):
                        print(f"flash: {port}: keys provisioned", flush=True)
                    client.open_session()  # the pump holds these keys
                    client.close_session()
                    return reply
            except BenchError as exc:
                last = str(exc)
                if "flash matching firmware" in last or "proof is wrong" in last:
                    raise
        time.sleep(0.25)
    raise BenchError(f"{port}: no HELLO after writing the image ({last})")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Registers ``flash`` on the pumpbench command line (``args.func`` = run)."""
    parser = subparsers.add_parser(
        "flash",
        help="compile, copy to a Pico with mpremote, reset, check HELLO",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    _arguments(parser)
    parser.set_defaults(func=run)
    return parser


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", required=True, metavar="PORT", help="e.g. /dev/ttyACM0")
    parser.add_argument(
        "--arch",
        choices=sorted(set(ARCHES.values())),
        help="mpy-cross -march (default: the board's: armv6m Pico, armv7emsp Pico 2)",
    )
    parser.add_argument(
        "--key-file",
        type=Path,
        required=True,
        metavar="FILE",
        help="the pump's role keys to provision (made with fresh keys if FILE does not exist)",
    )
    parser.add_argument(
        "--uf2",
        nargs="?",
        const="",
        metavar="FILE",
        help="write a frozen image (default: the one make firmware built) to a board in "
        "BOOTSEL mode, then provision the keys over --port",
    )
    parser.add_argument(
        "--drive",
        type=Path,
        metavar="DIR",
        help="with --uf2: the board's BOOTSEL drive (default: the mounted one holding "
        "INFO_UF2.TXT)",
    )
    parser.add_argument(
        "--firmware",
        metavar="DIR",
        help=f"the firmware tree to flash (default: ${ENV_FIRMWARE}, else the checkout's "
        "or the installed package's)",
    )
    parser.add_argument("--mpremote", default=mpremote_command(), help=argparse.SUPPRESS)
    parser.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait for a reset when the firmware holds the REPL (default 30)",
    )
    parser.add_argument(
        "--boot-timeout",
        type=float,
        default=BOOT_TIMEOUT_S,
        metavar="S",
        help=f"seconds to wait for HELLO after the reset (default {BOOT_TIMEOUT_S:g}; "
        "more for an emulated Pico on a busy host)",
    )


def run(args: argparse.Namespace) -> int:
    """Flashes; prints the result or one error line. -> 0 ok, 2 error."""
    select_firmware(args.firmware)
    try:
        if args.uf2 is not None:
            uf2 = Path(args.uf2) if args.uf2 else default_uf2()
            reply = flash_uf2(args.port, uf2, args.key_file, args.drive, args.wait)
        else:
            reply = flash(
                args.port, args.arch, args.mpremote, args.wait, args.key_file, args.boot_timeout
            )
    except BenchError as exc:
        print(f"pumpbench: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(
        f"flash: {args.port}: HELLO ok: firmware {reply['firmware_version']}, "
        f"board {reply['board']}, device {reply['device_id']}, "
        f"schema {schema.FINGERPRINT:#010x}"
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    _arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
