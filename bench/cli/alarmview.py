"""How alarms look on a terminal: by priority, in colour where that helps.

High is red, medium yellow, low cyan (the colours of IEC 60601-1-8's visual
signals: red for high, yellow for medium). Colour only when writing to a
terminal and NO_COLOR is not set (https://no-color.org).
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from protocol import schema

_COLOURS = {3: "\033[1;31m", 2: "\033[33m", 1: "\033[36m"}
_RESET = "\033[0m"


def colour_wanted(stream: TextIO = sys.stdout) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


def paint(text: str, priority: int, colour: bool) -> str:
    if not colour or priority not in _COLOURS:
        return text
    return f"{_COLOURS[priority]}{text}{_RESET}"


def alarm_ids(mask: int) -> list[int]:
    """Alarm ids set in a mask (bit id - 1), highest priority first."""
    ids = [bit + 1 for bit in range(32) if mask >> bit & 1]
    return sorted(ids, key=lambda alarm: (-schema.alarm_priority(alarm), alarm))


def alarm_list(mask: int, colour: bool) -> str:
    """The active alarms of a mask, by priority, painted: the status line."""
    names = [
        paint(schema.alarm_name(alarm), schema.alarm_priority(alarm), colour)
        for alarm in alarm_ids(mask)
    ]
    return ", ".join(names) or "none"


def alarm_rows(status: dict[str, Any], colour: bool) -> list[str]:
    """One line per active alarm: name, priority, sound silenced or not."""
    rows = []
    for alarm in alarm_ids(status["alarms"]):
        priority = schema.alarm_priority(alarm)
        sound = (
            "silenced (acknowledged)" if status["acknowledged"] >> (alarm - 1) & 1 else "sounding"
        )
        name = paint(f"{schema.alarm_name(alarm):<20}", priority, colour)
        rows.append(f"{alarm:>3}  {name} {schema.priority_name(priority):<7} {sound}")
    return rows


_ALARM_LOG = {
    "ALARM_RAISED": "raised",
    "ALARM_CLEARED": "cleared",
    "ALARM_ACKNOWLEDGED": "acknowledged",
}


def history_rows(entries: list[dict[str, Any]], colour: bool) -> list[str]:
    """The alarm history from event-log entries (PumpClient.log())."""
    rows = []
    for entry in entries:
        what = _ALARM_LOG.get(entry["name"])
        if what is None:
            continue
        alarm = entry["a"]
        name = paint(schema.alarm_name(alarm), schema.alarm_priority(alarm), colour)
        seconds = entry["time_s"]
        days, rest = divmod(seconds, 86_400)
        stamp = f"{days}d {rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}"
        rows.append(f"{entry['index']:>6}  {stamp}  {what:<12} {name}")
    return rows
