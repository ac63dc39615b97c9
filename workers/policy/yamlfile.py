"""Reading YAML for configuration: safe loading, and the line of every key for error messages."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from workers.policy.errors import ConfigError

KeyPath = tuple[str | int, ...]


MAX_DEPTH = 64  # a configuration is a few levels deep; deeper nesting is refused before it costs seconds


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans, so that the key `on:` stays the string "on", and a nesting limit."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        """Compose as SafeLoader does, refusing collections nested deeper than MAX_DEPTH (PyYAML would walk
        a `[[[[...` file down to Python's recursion limit first: seconds for 100 KB)."""
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise ConfigError(mark.line + 1, f"invalid YAML: nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> tuple[Node | None, Any]:
    """Compose and construct one YAML document, keeping the node tree for line numbers."""
    loader = None
    try:
        loader = _Loader(text)  # the reader refuses control characters (NUL, ...) here already
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        detail = ", ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigError(mark.line + 1 if mark else None, f"invalid YAML: {detail}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(None, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(None, "invalid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def key_lines(root: Node) -> dict[KeyPath, int]:
    """Map each key path (as pydantic reports it) to its 1-based line; reject duplicate keys."""
    lines: dict[KeyPath, int] = {(): root.start_mark.line + 1}
    stack: list[tuple[KeyPath, Node]] = [((), root)]
    seen: set[int] = set()
    while stack:
        path, node = stack.pop()
        if id(node) in seen:  # an alias: walk each node once (also defuses "billion laughs")
            continue
        seen.add(id(node))
        for name, where, child in _children(node):
            if path + (name,) in lines and isinstance(node, MappingNode):
                raise ConfigError(where.start_mark.line + 1, f"{dotted(path + (name,))}: duplicate key")
            lines[path + (name,)] = where.start_mark.line + 1
            stack.append((path + (name,), child))
    return lines


def line_of(loc: KeyPath, lines: dict[KeyPath, int]) -> int:
    """Return the line of the longest part of `loc` that is in the file."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def dotted(loc: Iterable[str | int]) -> str:
    """Write a key path as `environments.staging.on` or `branches[0].pattern`."""
    text = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for an invalid mapping key
            continue
        key = str(part) if part != "" else "''"
        text += f"[{part}]" if isinstance(part, int) else (f".{key}" if text else key)
    return text


def _children(node: Node) -> list[tuple[str | int, Node, Node]]:
    """List (key or index, node that marks its line, child node) of a mapping or sequence."""
    if isinstance(node, MappingNode):
        return [(key.value, key, value) for key, value in node.value if isinstance(key, ScalarNode)]
    if isinstance(node, SequenceNode):
        return [(index, item, item) for index, item in enumerate(node.value)]
    return []
