"""Key files, where the bench finds keys, and the CLI around them (bench/link/keys.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bench.cli.main import main
from bench.link import keys
from bench.link.errors import BenchError
from protocol import schema

ENV = ("PUMPBENCH_KEY_FILE", "PUMPBENCH_CLINICIAN_KEY", "PUMPBENCH_PATIENT_KEY")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_keys_new_writes_a_private_file_with_both_roles(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "pump.keys"
    assert main(["keys", "new", str(path)]) == 0
    assert "clinician and patient keys" in capsys.readouterr().out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = keys.load(path)
    assert loaded.clinician and loaded.patient and loaded.clinician != loaded.patient
    # a key file is never overwritten: the old keys may be the only copy
    assert main(["keys", "new", str(path)]) == 2
    assert "never overwritten" in capsys.readouterr().err
    assert keys.load(path) == loaded


def test_a_patient_copy_holds_the_patient_key_only(tmp_path: Path) -> None:
    full, copy = tmp_path / "pump.keys", tmp_path / "patient.keys"
    assert main(["keys", "new", str(full)]) == 0
    assert main(["keys", "new", str(copy), "--role", "patient", "--from", str(full)]) == 0
    patient = keys.load(copy)
    assert patient == keys.DeviceKeys(patient=keys.load(full).patient)
    assert patient.highest_role == schema.ROLE_PATIENT


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pump.keys"
    keys.write(path, keys.generate())
    path.chmod(0o644)
    with pytest.raises(BenchError, match="chmod 600"):
        keys.load(path)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no key"),
        ("clinician 1234\n", "64 hex digits"),
        ("clinician " + "zz" * 32 + "\n", "64 hex digits"),
        ("admin " + "00" * 32 + "\n", "expected 'clinician HEX'"),
    ],
)
def test_a_bad_key_file_is_one_clear_error(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.keys"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(BenchError, match=problem):
        keys.load(path)


def test_the_environment_names_keys_for_a_hardware_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert keys.find("/dev/ttyACM7") is None
    made = keys.generate()
    monkeypatch.setenv("PUMPBENCH_PATIENT_KEY", (made.patient or b"").hex())
    assert keys.find("/dev/ttyACM7") == keys.DeviceKeys(patient=made.patient)
    path = tmp_path / "pump.keys"
    keys.write(path, made)
    monkeypatch.setenv("PUMPBENCH_KEY_FILE", str(path))  # a file wins over hex keys
    assert keys.find("/dev/ttyACM7") == made


def test_a_virtual_boards_own_keys_win_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "other.keys"
    keys.write(path, keys.generate())
    monkeypatch.setenv("PUMPBENCH_KEY_FILE", str(path))
    board_keys = keys.generate()
    keys.register_virtual("/dev/pts/77", board_keys)
    try:
        assert keys.find("/dev/pts/77") == board_keys
    finally:
        keys.forget_virtual("/dev/pts/77")


def test_a_key_is_never_taken_from_the_command_line(capsys: pytest.CaptureFixture) -> None:
    assert main(["stop", "--target", "sim", "--key-file", "ab" * 32]) == 2
    assert "takes a file, never a key" in capsys.readouterr().err


def test_cli_roles_on_a_board_provisioned_from_a_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "pump.keys"
    assert main(["keys", "new", str(path)]) == 0
    capsys.readouterr()
    sim = ["--target", "sim", "--key-file", str(path)]
    assert main(["stop", *sim]) == 0
    assert main(["stop", *sim, "--role", "patient"]) == 1
    assert "WRONG_ROLE" in capsys.readouterr().err
    # a patient's file cannot open a clinician session at all
    patient = tmp_path / "patient.keys"
    assert main(["keys", "new", str(patient), "--role", "patient", "--from", str(path)]) == 0
    capsys.readouterr()
    assert main(["stop", "--target", "sim", "--key-file", str(patient), "--role", "clinician"]) == 2
    assert "no clinician key" in capsys.readouterr().err


def test_a_wrapping_url_finds_the_virtual_board_it_wraps() -> None:
    board_keys = keys.generate()
    keys.register_virtual("/dev/pts/78", board_keys)
    try:
        assert keys.find("fault:///dev/pts/78?drop=0.01&seed=3") == board_keys
        assert keys.find("spy:///dev/pts/78") == board_keys
        assert keys.find("fault:///dev/pts/79?drop=0.01") is None
    finally:
        keys.forget_virtual("/dev/pts/78")


def test_a_virtual_boards_key_store_is_private_even_in_a_shared_directory(
    tmp_path: Path,
) -> None:
    # keys.bin is the pump's secret: 0600 even in a caller-chosen journal
    # directory, and made so when an earlier tool left it readable.
    store = tmp_path / schema.KEYSTORE_FILE
    store.write_bytes(keys.generate().keystore())
    store.chmod(0o644)  # left readable by an earlier tool
    from bench.board.sim import BoardOptions, VirtualBoard

    with VirtualBoard(BoardOptions(journal_dir=str(tmp_path))):
        assert stat.S_IMODE(store.stat().st_mode) == 0o600
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with VirtualBoard(BoardOptions(journal_dir=str(fresh))):
        assert stat.S_IMODE((fresh / schema.KEYSTORE_FILE).stat().st_mode) == 0o600


def test_a_fault_url_works_from_the_cli(capsys: pytest.CaptureFixture) -> None:
    # `--port fault://...` opens from the CLI too (the handler is registered
    # wherever a port is opened, not only where bench.link.transports is).
    from bench.board.sim import BoardOptions, VirtualBoard

    with VirtualBoard(BoardOptions()) as board:
        url = f"fault://{board.pump_port}?drop=0&seed=1"
        assert main(["status", "--port", url]) == 0, capsys.readouterr().err
    assert "state" in capsys.readouterr().out.lower()
