"""The firmware's alarm table agrees with the schema the bench reads.

The alarm ids come from protocol/table.py (generated from the schema); the
priorities in firmware/pump/alarms.py TABLE are the firmware's own choice
per row, checked here against the schema's by importing the module under the
real MicroPython interpreter (no parsing of firmware source).
"""

from __future__ import annotations

from protocol import schema
from tests.modules import upy

_ROWS = """
import json
from pump import alarms
print(json.dumps({"rows": [[row[0], row[1]] for row in alarms.TABLE],
                  "names": {name: getattr(alarms, name) for name in %r}}))
"""


def _firmware() -> dict:
    names = [name for _code, name, _level in schema.ALARMS]
    return upy.run("", code=_ROWS % (names,))


def test_every_schema_alarm_has_its_priority_in_the_firmware() -> None:
    firmware = sorted(tuple(row) for row in _firmware()["rows"])
    assert firmware == sorted((code, level) for code, _name, level in schema.ALARMS)


def test_alarm_names_are_the_schema_ids_in_the_firmware() -> None:
    names = _firmware()["names"]
    assert names == {name: code for code, name, _level in schema.ALARMS}
