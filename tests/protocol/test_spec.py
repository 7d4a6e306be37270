"""protocol/SPEC.md stays true: its worked example runs against the codec."""

from __future__ import annotations

import re

from bench.board.paths import ROOT
from protocol import schema

SPEC = (ROOT / "protocol" / "SPEC.md").read_text()


def test_worked_example_snippet_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", SPEC, flags=re.DOTALL)
    example = [block for block in blocks if '"status reply"' in block]
    assert example, "SPEC.md lost its worked STATUS example"
    exec(compile(example[0], "SPEC.md worked example", "exec"), {"__name__": "spec"})


def test_spec_states_the_current_fingerprint() -> None:
    assert f"0x{schema.FINGERPRINT:08X}" in SPEC, "update the fingerprint in SPEC.md"


def test_spec_names_every_message_and_error() -> None:
    for _msg_id, name, *_rest in schema.MESSAGES:
        assert name in SPEC, name
    for _code, name in schema.ERRORS:
        assert name in SPEC, name


def test_the_queries_are_requests_that_need_no_role_and_the_spec_lists_them() -> None:
    requests = {name: port for _id, name, port, _req, reply in schema.MESSAGES if reply is not None}
    roles = {name for name, _role in schema.MESSAGE_ROLES}
    row = next(line for line in SPEC.splitlines() if line.startswith("| Queries |"))
    for name in schema.QUERIES:
        assert name in requests, f"{name} is not a request"
        assert name not in roles, f"{name} needs a role: it changes something"
        assert name in row, f"SPEC section 7 does not list the query {name}"
    # what changes state is never a query
    effects = {"ADVANCE", "RESET", "AUTH_CHALLENGE", "AUTH_OPEN", "PROVISION"}
    assert not effects & set(schema.QUERIES)
