"""protocol/SPEC.md stays true: its worked example runs against the codec."""

from __future__ import annotations

import re

from bench.paths import ROOT
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
