"""Reading a hand-edited YAML file (users, rate card) into nodes that keep their line numbers.

Both files are composed, not loaded, so every later complaint can name the line; a
file that is not YAML at all gets the same one-line error, naming where it broke.
"""
from __future__ import annotations

from collections.abc import Callable

import yaml


class _PlainLoader(yaml.SafeLoader):
    """SafeLoader without aliases: these files are written by hand and never need `*name`,
    and an alias of an alias of a list (a "billion laughs" in 640 bytes) makes any walk
    over the nodes exponential."""

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "an alias (*name) is not allowed in this file; "
                                              "write the value out", event.start_mark)
        return super().compose_node(parent, index)


def compose(text: str, what: str, fix: str, error: Callable[[str], Exception]) -> yaml.Node | None:
    """The document's root node (None for an empty file); bad YAML raises `error(message)`.
    Every mapping key must be a plain value (a list or mapping as a key is refused)."""
    try:
        root = yaml.compose(text, Loader=_PlainLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(f"{what} is not valid YAML{where}: {getattr(exc, 'problem', exc)}; {fix}") from None
    stack = [root] if root is not None else []
    while stack:  # no aliases, so each node is visited once; in the file's order, so the first bad key is named
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            for key, _ in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    raise error(f"{what}{line_of(key)}: a key must be a plain name, not a list or a mapping; {fix}")
            stack.extend(value for _, value in reversed(node.value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
    return root


def line_of(node: yaml.Node | None) -> str:
    return f" (line {node.start_mark.line + 1})" if node is not None else ""


def named_entries(text: str, what: str, section: str, hint: str,
                  error: Callable[[str], Exception]) -> list[tuple[str, dict[str, yaml.Node], yaml.Node]]:
    """The entries of a `section:` mapping of names to mappings (the users file, the API
    clients file), as (name, {field: node}, entry node); each complaint names the line.
    A name listed twice is refused: the second entry would silently win otherwise."""
    root = compose(text, what, "fix it by hand or restore it from a backup", error)
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        raise error(f"{what}{line_of(root)}: {hint}")
    node = next((v for k, v in root.value if k.value == section), None)
    if node is None or (isinstance(node, yaml.ScalarNode) and node.value in ("", "null", "~")):
        return []
    if not isinstance(node, yaml.MappingNode):
        raise error(f"{what}{line_of(node)}: {hint}")
    out: list[tuple[str, dict[str, yaml.Node], yaml.Node]] = []
    seen: set[str] = set()
    for key, value in node.value:
        name = str(key.value)
        if name in seen:
            raise error(f"{what}{line_of(key)}: {name[:80]!r} is listed twice; keep one entry")
        seen.add(name)
        if not isinstance(value, yaml.MappingNode):
            raise error(f"{what}{line_of(value)}: {name[:80]!r} must be a mapping; {hint}")
        out.append((name, {k.value: v for k, v in value.value}, value))
    return out
