"""The dose path's source rule: integers only, MicroPython modules only."""

from __future__ import annotations

import tokenize
from pathlib import Path

ALLOWED_IMPORTS = {"struct", "array", "binascii", "pump", "protocol", "micropython", "sys"}


def assert_integer_only(path: Path) -> None:
    """No float literal, no true division, no float(); imports limited to
    what MicroPython has and the firmware's own packages."""
    with path.open("rb") as handle:
        tokens = list(tokenize.tokenize(handle.readline))
    for tok in tokens:
        where = f"{path.name}:{tok.start[0]}"
        if tok.type == tokenize.NUMBER:
            text = tok.string.lower().replace("_", "")
            is_int = text.isdigit() or text.startswith(("0x", "0b", "0o"))
            assert is_int, f"{where}: non-integer literal {tok.string}"
        elif tok.type == tokenize.OP:
            assert tok.string not in ("/", "/="), f"{where}: true division"
        elif tok.type == tokenize.NAME:
            assert tok.string != "float", f"{where}: float"
    imports = {
        line.split()[1].split(".")[0]
        for line in path.read_text().splitlines()
        if line.startswith(("import ", "from "))
    }
    assert imports <= ALLOWED_IMPORTS, imports
