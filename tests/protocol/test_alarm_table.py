"""The firmware's alarm table agrees with the schema the bench reads."""

from __future__ import annotations

import ast

from bench.paths import FIRMWARE_DIR
from protocol import schema


def firmware_alarm_rows() -> list[tuple[int, int]]:
    # (id, priority) from firmware/pump/alarms.py TABLE, read as source: the
    # firmware module is MicroPython and names its constants.
    tree = ast.parse((FIRMWARE_DIR / "pump" / "alarms.py").read_text())
    constants = {
        node.targets[0].id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
    }
    table = next(
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id == "TABLE"
    )
    assert isinstance(table, ast.Tuple)
    rows = []
    for row in table.elts:
        assert isinstance(row, ast.Tuple)
        alarm, level = row.elts[0], row.elts[1]
        assert isinstance(alarm, ast.Name) and isinstance(level, ast.Name)
        rows.append((constants[alarm.id], constants[level.id]))
    return rows


def test_every_schema_alarm_has_its_priority_in_the_firmware() -> None:
    firmware = sorted(firmware_alarm_rows())
    assert firmware == sorted((code, level) for code, _name, level in schema.ALARMS)


def test_alarm_names_match_the_firmware_constants() -> None:
    source = (FIRMWARE_DIR / "pump" / "alarms.py").read_text()
    for code, name, _level in schema.ALARMS:
        assert f"\n{name} = {code}\n" in source, name
