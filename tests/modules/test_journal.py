"""The persistent journal (firmware/pump/journal.py) under the real MicroPython
interpreter, on the virtual board's filesystem adapter (firmware/hal/simfs.py),
with a simulated power cut at every byte offset."""

from __future__ import annotations

import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from bench.board.image import mpy_cross_command
from bench.board.paths import FIRMWARE_DIR
from tests.modules import upy

UPY = Path(__file__).with_name("upy")
FIRMWARE_FILES = (FIRMWARE_DIR / "pump" / "journal.py", FIRMWARE_DIR / "hal" / "simfs.py")


def run_upy_code(code: str, *args: str, path: str = "", heap: str = "96k") -> dict:
    return upy.run("", *args, code=code, path=path, heap=heap)


@pytest.fixture(scope="module")
def check_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    # The firmware modules load from the compiled image, as on the virtual
    # board, inside a 96 KB heap (the journal alone keeps about 8 KB). The
    # test script is precompiled with mpy-cross too (compiling its ~500
    # lines would otherwise take heap the firmware never needs).
    build = tmp_path_factory.mktemp("upy")
    scratch = tmp_path_factory.mktemp("journal")
    subprocess.run(
        [
            mpy_cross_command(),
            "-o",
            str(build / "check_journal.mpy"),
            str(UPY / "check_journal.py"),
        ],
        check=True,
    )
    return run_upy_code(
        "import pump.journal, hal.simfs; import check_journal",
        str(scratch),
        path=str(build),
    )


def test_journal_cases_pass_in_a_small_heap(check_results: dict) -> None:
    # Round trip across reboots, A/B alternation, torn snapshot, torn delta,
    # damaged slots and log records, event rotation, no allocation in append.
    assert check_results["ok"] is True


def test_power_cut_at_every_byte_recovers_old_or_new_state(check_results: dict) -> None:
    # snapshot, 20 deltas, snapshot, 5 deltas: cut after each byte written.
    every = check_results["every_cut"]
    assert every["cuts"] == every["bytes"] + 1 > 500
    assert every["old"] + every["new"] == every["cuts"]
    # The new state appears exactly when the cut falls on the last byte of
    # one of the 27 operations (the record is whole even though the call
    # never returned); every other cut gives the state before that op.
    assert every["new"] == 27


def test_power_cut_during_recovery_repair_and_event_writes(check_results: dict) -> None:
    assert check_results["repair_cuts"] > 100
    assert check_results["event_cuts"] > 100


FORMAT_WRITER = """
import json, sys
from hal.simfs import SimFs
from pump.journal import Journal
j = Journal(SimFs(sys.argv[1]), 4)
j.recover()
j.snapshot(b"snapshot payload")
j.append(7, b"\\x01\\x02\\x03")
j.append(200, b"")
for i in range(6):
    j.log_event(1000 + i, 300 + i, -i, 70000 * i)
print(json.dumps({"seq": j.next_seq(), "events": j.event_count()}))
"""


def test_record_formats_are_the_documented_ones(tmp_path: Path) -> None:
    # A host tool can read a journal dump: little-endian records, standard
    # CRC-32 (zlib) over everything before it.
    assert run_upy_code(FORMAT_WRITER, str(tmp_path)) == {"seq": 4, "events": 6}

    snap = (tmp_path / "state.a").read_bytes()
    magic, version, flags, seq, size = struct.unpack_from("<HBBIH", snap)
    assert (magic, version, flags, seq, size) == (0x4A53, 1, 0, 1, 16)
    assert snap[10:26] == b"snapshot payload"
    assert struct.unpack_from("<I", snap, 26)[0] == zlib.crc32(snap[:26])
    assert len(snap) == 30
    assert not (tmp_path / "state.b").exists()

    log = (tmp_path / "log.a").read_bytes()
    records = []
    pos = 0
    while pos < len(log):
        size, kind, seq = struct.unpack_from("<BBI", log, pos)
        end = pos + 6 + size
        assert struct.unpack_from("<I", log, end)[0] == zlib.crc32(log[pos:end])
        records.append((seq, kind, log[pos + 6 : end]))
        pos = end + 4
    assert records == [(2, 7, b"\x01\x02\x03"), (3, 200, b"")]

    events = []
    for name in ("events.0", "events.1"):
        data = (tmp_path / name).read_bytes()
        assert len(data) % 22 == 0
        for pos in range(0, len(data), 22):
            assert struct.unpack_from("<I", data, pos + 18)[0] == zlib.crc32(data[pos : pos + 18])
            events.append(struct.unpack_from("<IIHii", data, pos))
    assert sorted(events) == [(i, 1000 + i, 300 + i, -i, 70000 * i) for i in range(6)]


@pytest.mark.parametrize("source", FIRMWARE_FILES, ids=lambda p: p.name)
def test_firmware_files_compile_with_mpy_cross(source: Path, tmp_path: Path) -> None:
    out = tmp_path / source.with_suffix(".mpy").name
    result = subprocess.run(
        [mpy_cross_command(), "-o", str(out), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
