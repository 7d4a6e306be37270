"""`pumpbench alarms` and the status colours, against a virtual board."""

from __future__ import annotations

import pytest

from bench.board.sim import VirtualBoard
from bench.cli import alarmview
from bench.cli.main import main
from bench.link.pump import PumpClient
from bench.link.rig import RigClient
from protocol import schema
from tests.system.kit import HOUR_MS, MINUTE_MS, program, start_therapy


def test_alarms_lists_by_priority_and_acknowledges(capsys: pytest.CaptureFixture) -> None:
    with VirtualBoard() as board, RigClient(board.rig_port) as rig:
        # one client on the pump port at a time: close ours before the CLI's
        with PumpClient(board.pump_port) as pump:
            start_therapy(pump, rig, program())
        rig.advance(HOUR_MS)
        rig.inject_fault("SENSOR_STUCK")  # medium
        rig.inject_fault("STALL")  # high
        rig.advance(5 * MINUTE_MS)
        assert main(["alarms", "--port", board.pump_port]) == 0
        out = capsys.readouterr().out
        assert out.index("MOTOR_STALL") < out.index("SENSOR_FAULT")  # high first
        assert "HIGH" in out and "MEDIUM" in out and "sounding" in out
        assert "raised" in out  # the history from the log
        assert main(["alarms", "--ack", "all", "--port", board.pump_port]) == 0
        out = capsys.readouterr().out
        assert "sounding" not in out and "silenced" in out
        assert "acknowledged" in out


def test_unknown_alarm_name_is_a_clear_error(capsys: pytest.CaptureFixture) -> None:
    with VirtualBoard() as board, pytest.raises(SystemExit) as exit_:
        main(["alarms", "--ack", "GREMLINS", "--port", board.pump_port])
    assert exit_.value.code == 2
    assert "GREMLINS" in capsys.readouterr().err


def test_status_paints_alarms_by_priority_only_for_a_terminal() -> None:
    high = schema.ALARMS[1][0]  # EMPTY_RESERVOIR, high
    low = schema.ALARMS[0][0]  # LOW_RESERVOIR, low
    mask = 1 << (high - 1) | 1 << (low - 1)
    painted = alarmview.alarm_list(mask, colour=True)
    assert painted.startswith("\033[1;31mEMPTY_RESERVOIR") and "\033[36mLOW_RESERVOIR" in painted
    assert alarmview.alarm_list(mask, colour=False) == "EMPTY_RESERVOIR, LOW_RESERVOIR"
    assert alarmview.alarm_list(0, colour=True) == "none"
