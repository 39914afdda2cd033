"""Reading a hand-edited YAML file (users, rate card) into nodes that keep their line numbers.

Both files are composed, not loaded, so every later complaint can name the line; a
file that is not YAML at all gets the same one-line error, naming where it broke.
"""
from __future__ import annotations

from collections.abc import Callable

import yaml


def compose(text: str, what: str, fix: str, error: Callable[[str], Exception]) -> yaml.Node | None:
    """The document's root node (None for an empty file); bad YAML raises `error(message)`."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(f"{what} is not valid YAML{where}: {getattr(exc, 'problem', exc)}; {fix}") from None
