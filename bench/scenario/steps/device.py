"""Step kinds that talk to the link: hello, rig_hello, ping, status.

Each kind: its parser (YAML to bench/scenario/model.py), its runner (on the board,
through the Executor) and its row of bench/README.md, in ``KINDS``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from bench.scenario.context import StepFailed, show_value
from bench.scenario.steps.kind import StepKind
from protocol import schema

if TYPE_CHECKING:
    from bench.scenario.executor import Executor

from bench.scenario.model import (
    HelloStep,
    PingStep,
    RigHelloStep,
    StatusStep,
    Step,
)
from bench.scenario.parse import _STATUS_UNITS, STATE_CODES, _Context, _duration
from bench.scenario.yamlnode import Node, listing


def _parse_hello(node: Node, line: int, _ctx: _Context) -> Step:
    node.mapping()
    return HelloStep(line, node.path)


def _parse_rig_hello(node: Node, line: int, _ctx: _Context) -> Step:
    node.mapping()
    return RigHelloStep(line, node.path)


def _parse_ping(node: Node, line: int, _ctx: _Context) -> Step:
    values = node.mapping(optional=("port",))
    port = schema.PORT_PUMP
    if "port" in values:
        port = values["port"].string()
        if port not in (schema.PORT_PUMP, schema.PORT_RIG):
            raise values["port"].fail(f"{port!r} is not a port: pump or rig")
    return PingStep(line, node.path, port=port)


def _parse_status(node: Node, line: int, _ctx: _Context) -> Step:
    values = node.mapping(optional=("expect",))
    expect: dict[str, int] = {}
    if "expect" in values:
        for name, value in values["expect"].mapping(optional=tuple(_STATUS_UNITS)).items():
            if name == "state":
                state = value.string()
                if state not in STATE_CODES:
                    raise value.fail(f"unknown state {state!r}; states: {listing(STATE_CODES)}")
                expect[name] = STATE_CODES[state]
            elif _STATUS_UNITS[name] == "ms" and not isinstance(value.scalar(), int):
                expect[name] = _duration(value)
            else:
                expect[name] = value.integer(0, 2**64 - 1)
    return StatusStep(line, node.path, expect=expect)


def run_status(ex: Executor, step: StatusStep) -> str:
    reply = ex.need_pump().status()
    ex.now_ms = reply["device_time_ms"]
    ex.replies["status"] = reply
    wrong = [
        f"{name} is {show_value(name, reply[name])}, expected {show_value(name, want)}"
        for name, want in step.expect.items()
        if reply[name] != want
    ]
    if wrong:
        raise StepFailed("; ".join(wrong))
    return (
        f"{reply['state_name']}, device time {reply['device_time_ms']} ms, "
        f"uptime {reply['uptime_ms']} ms, boot {reply['boot_count']}"
    )


def run_hello(ex: Executor, _step: HelloStep) -> str:
    reply = ex.need_pump().hello()
    ex.replies["hello"] = reply
    return f"firmware {reply['firmware_version']}, schema ok"


def run_rig_hello(ex: Executor, _step: RigHelloStep) -> str:
    reply = ex.need_rig().hello()
    ex.replies["rig_hello"] = reply
    return f"rig {reply['rig_kind']}, schema ok"


def run_ping(ex: Executor, step: PingStep) -> str:
    client = ex.need_rig() if step.port == schema.PORT_RIG else ex.need_pump()
    start = time.perf_counter()
    token = client.ping()
    round_trip_ms = round((time.perf_counter() - start) * 1000, 3)
    ex.replies["ping"] = {"token": token, "round_trip_ms": round_trip_ms}
    return f"{round_trip_ms} ms"


KINDS = (
    StepKind(
        "hello",
        HelloStep,
        _parse_hello,
        run_hello,
        fields="",
        does="pump HELLO; ERROR on a protocol or schema mismatch",
    ),
    StepKind(
        "rig_hello",
        RigHelloStep,
        _parse_rig_hello,
        run_rig_hello,
        fields="",
        does="rig RIG_HELLO, same check (needs rig)",
    ),
    StepKind(
        "ping",
        PingStep,
        _parse_ping,
        run_ping,
        fields="`port`: `pump` (default) or `rig`",
        does="PING with a random token, checks the echo",
    ),
    StepKind(
        "status",
        StatusStep,
        _parse_status,
        run_status,
        fields="`expect`: STATUS fields to values (optional)",
        does="STATUS; FAIL if a field differs. `state` by name; `*_ms` fields take a duration",
    ),
)
