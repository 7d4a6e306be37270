"""The shape of bench/: its wings import only the wings below them, no module
grows past about 700 lines, and the wheel carries every package.

bench/README.md states the rule of each wing; this is its check.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"

# What each wing may import besides itself (protocol/ and the standard library
# are always allowed). scenario.model, the step dataclasses, imports only the
# schema: the board's targets take the names of a scenario's needs from it.
ALLOWED = {
    "units": set(),
    "vocab": set(),
    "link": {"units", "vocab"},
    "program": {"units", "vocab", "link"},
    "board": {"units", "vocab", "link", "scenario.model"},
    "report": {"units", "vocab"},
    "scenario": {"units", "vocab", "link", "program", "board", "report"},
    "robustness": {"units", "vocab", "link", "program", "board"},
    "benchmarks": {
        "units",
        "vocab",
        "link",
        "program",
        "board",
        "report",
        "scenario",
        "robustness",
    },
    "cli": {"units", "vocab", "link", "program", "board", "report", "scenario"},
    "plugin": {"units", "vocab", "link", "program", "board", "report", "scenario"},
}
MAX_LINES = 700


def _wing(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "bench" or len(parts) < 2:
        return None
    if parts[1:3] == ["scenario", "model"]:
        return "scenario.model"
    return parts[1]


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(BENCH.rglob("*.py")):
        if "upy" in path.relative_to(BENCH).parts:
            continue  # MicroPython scripts the benchmarks run on a board
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out.append((name.removesuffix(".__init__"), path))
    return out


# Imports read as text (tests never parse sources: tests/protocol/test_vocabulary.py).
_FROM = re.compile(r"^[ \t]*from[ \t]+(bench[\w.]*)[ \t]+import[ \t]+(\([\w\s,#]+\)|[\w ,]+)", re.M)
_IMPORT = re.compile(r"^[ \t]*import[ \t]+(bench[\w.]*)", re.M)


def _imports(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    found = set(_IMPORT.findall(text))
    for module, names in _FROM.findall(text):
        if module == "bench":
            names = re.sub(r"#[^\n]*", "", names).strip("()")
            found |= {f"bench.{name.split()[0]}" for name in names.split(",") if name.strip()}
        else:
            found.add(module)
    return found


def test_each_wing_imports_only_the_wings_below_it():
    wrong = []
    for name, path in _modules():
        wing = _wing(name)
        for target in sorted(_imports(path)):
            other = _wing(target)
            if wing is None or other is None:
                continue
            if wing == "scenario.model":
                wrong.append(f"{name} (the step model) imports {target}")
            elif other.split(".")[0] != wing and not (
                other in ALLOWED[wing] or other.split(".")[0] in ALLOWED[wing]
            ):
                wrong.append(f"{name} ({wing}) imports {target} ({other})")
    assert not wrong, "\n".join(wrong)


def test_no_bench_module_is_over_about_700_lines():
    long = {}
    for _name, path in _modules():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        key = str(path.relative_to(ROOT))
        if lines > MAX_LINES:
            long[key] = lines
    assert not long, f"split these (bench/README.md says how the wings divide): {long}"


def test_the_wheel_lists_every_bench_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    packages = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in BENCH.rglob("__init__.py")
    }
    assert packages <= listed, f"missing from pyproject.toml: {sorted(packages - listed)}"
