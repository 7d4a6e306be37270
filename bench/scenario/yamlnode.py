"""YAML nodes that know their file, line and field path, for precise errors.

A scenario file is read with ``yaml.compose`` rather than ``yaml.safe_load``:
the node tree keeps the mark of every key and value, so every problem can be
reported as ``file:line: field: problem`` (``steps[2].advance.duration``).
Values are built with PyYAML's SafeConstructor only, so no tag can run code.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class Invalid(Exception):
    """The first problem found in one file, already formatted with file and line."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def listing(choices: Iterable[str]) -> str:
    return ", ".join(choices) or "none"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Node:
    """A YAML node with its file and dotted field path."""

    def __init__(
        self, node: yaml.Node, file: str, path: str, constructor: Any, key_line: int = 0
    ) -> None:
        self.node = node
        self.file = file
        self.path = path
        self.key_line = key_line  # the line of the key naming this value, if any
        self._constructor = constructor

    @classmethod
    def root(cls, node: yaml.Node, file: str) -> Node:
        return cls(node, file, "", yaml.constructor.SafeConstructor())

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1

    def fail(self, problem: str, line: int = 0) -> Invalid:
        where = self.path or "(top level)"
        return Invalid(f"{self.file}:{line or self.line}: {where}: {problem}")

    def child(self, node: yaml.Node, key: str, key_line: int = 0) -> Node:
        path = f"{self.path}.{key}" if self.path else key
        return Node(node, self.file, path, self._constructor, key_line)

    def item(self, node: yaml.Node, index: int) -> Node:
        return Node(node, self.file, f"{self.path}[{index}]", self._constructor)

    # --- shapes ---
    def mapping(
        self, required: Sequence[str] = (), optional: Sequence[str] = ()
    ) -> dict[str, Node]:
        """The entries of a mapping, refusing unknown keys and missing required ones."""
        if self.is_null():
            values: dict[str, Node] = {}
        elif not isinstance(self.node, yaml.MappingNode):
            raise self.fail(f"expected a mapping, got {self.kind_name()}")
        else:
            values = self.entries()
        allowed = (*required, *optional)
        for key, value in values.items():
            if key not in allowed:
                hint = did_you_mean(key, allowed)
                raise value.fail(
                    f"unknown field {key!r}{hint}; allowed: {listing(allowed)}", value.key_line
                )
        for key in required:
            if key not in values:
                raise self.child(self.node, key).fail("missing (required)")
        return values

    def entries(self) -> dict[str, Node]:
        values: dict[str, Node] = {}
        for key_node, value_node in self.node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                raise self.fail("keys must be plain names", key_node.start_mark.line + 1)
            key = key_node.value
            if key in values:
                raise self.child(value_node, key).fail(
                    f"duplicate field (first on line {values[key].line})",
                    key_node.start_mark.line + 1,
                )
            values[key] = self.child(value_node, key, key_node.start_mark.line + 1)
        return values

    def sequence(self) -> list[Node]:
        if self.is_null():
            return []
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.fail(f"expected a list, got {self.kind_name()}")
        return [self.item(node, i) for i, node in enumerate(self.node.value)]

    def is_null(self) -> bool:
        return isinstance(self.node, yaml.ScalarNode) and self.node.tag == "tag:yaml.org,2002:null"

    def is_mapping(self) -> bool:
        return isinstance(self.node, yaml.MappingNode)

    def kind_name(self) -> str:
        if isinstance(self.node, yaml.MappingNode):
            return "a mapping"
        if isinstance(self.node, yaml.SequenceNode):
            return "a list"
        return repr(self.node.value) if self.node.value != "" else "nothing"

    # --- values ---
    def value(self) -> Any:
        """The plain Python value of this node, however deep (safe tags only)."""
        try:
            return self._constructor.construct_object(self.node, deep=True)
        except yaml.YAMLError as exc:
            raise self.fail(f"cannot read value ({first_line(exc)})") from None

    def scalar(self) -> Any:
        if not isinstance(self.node, yaml.ScalarNode):
            raise self.fail(f"expected a single value, got {self.kind_name()}")
        return self.value()

    def string(self, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        value = self.scalar()
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"expected text, got {self.kind_name()}")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(f"{value!r} is not {what}")
        return value

    def text(self) -> str:
        """A scalar as text, whatever YAML made of it (``0.5 mL`` and ``5`` alike)."""
        value = self.scalar()
        if value is None or isinstance(value, bool) or isinstance(value, list | dict):
            raise self.fail(f"expected a value, got {self.kind_name()}")
        return str(value)

    def integer(self, low: int, high: int) -> int:
        value = self.scalar()
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"expected an integer, got {self.kind_name()}")
        if not low <= value <= high:
            raise self.fail(f"{value} is out of range {low}..{high}")
        return value

    def number(self) -> int | float:
        value = self.scalar()
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"expected a number, got {self.kind_name()}")
        return value

    def boolean(self) -> bool:
        value = self.scalar()
        if not isinstance(value, bool):
            raise self.fail(f"expected true or false, got {self.kind_name()}")
        return value

    def parsed(self, parse: Callable[[Any], T]) -> T:
        """``parse(value)``, with a ValueError turned into this node's error."""
        try:
            return parse(self.scalar())
        except ValueError as exc:
            raise self.fail(str(exc)) from None

    def string_list(self, pattern: re.Pattern[str] | None = None, what: str = "") -> list[str]:
        if isinstance(self.node, yaml.ScalarNode) and not self.is_null():
            raise self.fail(f"expected a list, got {self.kind_name()}")
        return [item.string(pattern, what) for item in self.sequence()]

    def find(self, path: str) -> Node:
        """The descendant at ``a.b[2].c`` (as deep as it exists), for pointing at a line."""
        node: Node = self
        for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
            if part.startswith("["):
                items = node.sequence() if isinstance(node.node, yaml.SequenceNode) else []
                index = int(part[1:-1])
                if index >= len(items):
                    return node
                node = items[index]
            elif node.is_mapping():
                entries = node.entries()
                if part not in entries:
                    return node
                node = entries[part]
            else:
                return node
        return node


def compose(text: str, file: str) -> Node:
    """The root node of a YAML document; raises Invalid naming the line of a syntax error."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "unreadable"
        context = exc.context_mark
        if exc.problem and exc.context and context is not None and context is not mark:
            # PyYAML often notices a missing bracket only at the end of the
            # file; the line where the unclosed construct started helps more.
            problem += f" ({exc.context} on line {context.line + 1})"
        raise Invalid(f"{file}:{line}: (yaml): {problem}") from None
    except yaml.YAMLError as exc:
        raise Invalid(f"{file}:1: (yaml): {first_line(exc)}") from None
    if root is None:
        raise Invalid(f"{file}:1: (top level): the file is empty")
    return Node.root(root, file)
