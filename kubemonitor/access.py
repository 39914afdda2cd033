"""Who may see what (README "Groups and access"): a web user's or API client's scope.

A scope is every namespace (`namespaces` None) or a listed set; `billing` says
whether statements may be seen. Handlers ask the scope, never the file it came
from, so web users and API clients follow one rule:

* a namespace outside the scope is answered as if it did not exist (pages: 404,
  live views: "no such namespace"), or with a 403 naming it for the API, whose
  callers are programs that need to know why;
* cluster-wide answers (overview totals, `all-pod`, `all-namespace`,
  statements) cover the scope's namespaces only.

When `billing` is not written down it follows the namespaces: a user or client
of every namespace sees statements (as every user did before scopes existed), a
scoped one only when given `billing: true`.
"""
from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import yaml

from .errors import UserError
from .request import NAMESPACE

# A web user's or API client's name: one rule for both (they share the audit log and the caps)
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
KEEP = object()  # "leave this part of a scope as it is"


class ScopeError(UserError, ValueError):
    """A namespace list the CLI or a file refuses."""


def parse_namespaces(text: str, where: str = "--namespaces") -> tuple[str, ...]:
    """`a,b` -> ("a", "b"); refuses an empty list and names that are not namespace names."""
    names = [n.strip() for n in text.split(",")]
    if not any(names):
        raise ScopeError(f"{where} is empty; give a comma-separated list of namespaces, e.g. {where} astro-lab,astro-dev "
                         "(for every namespace leave it out, or use --all-namespaces)")
    return check_namespaces(names, where)


def check_namespaces(names: Iterable, where: str) -> tuple[str, ...]:
    out = []
    for name in names:
        if not isinstance(name, str) or not NAMESPACE.matches(name):
            raise ScopeError(f"{where}: {str(name)[:80]!r} is not {NAMESPACE.what}, e.g. astro-lab")
        out.append(name)
    if not out:
        raise ScopeError(f"{where} is empty; list at least one namespace (leave it out for every namespace)")
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class Access:
    """What one user or client may see."""
    who: str
    namespaces: frozenset[str] | None = None   # None: every namespace
    billing: bool = True

    @classmethod
    def of(cls, who: str, namespaces: tuple[str, ...] | None, billing: bool | None) -> Access:
        """The access of a users-file or clients-file entry: its namespaces, and billing as
        written down or else following the namespaces (`effective_billing`)."""
        return cls(who, None if namespaces is None else frozenset(namespaces), effective_billing(billing, namespaces))

    @property
    def scoped(self) -> bool:
        return self.namespaces is not None

    def sees(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces

    def visible(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if self.sees(n)]

    def describe(self) -> str:
        spaces = "all namespaces" if self.namespaces is None else ",".join(sorted(self.namespaces))
        return f"{spaces}; statements: {'yes' if self.billing else 'no'}"


def effective_billing(billing: bool | None, namespaces: tuple[str, ...] | None) -> bool:
    """`billing` when written down; otherwise yes for every namespace, no for a list."""
    return billing if billing is not None else namespaces is None



def scope_from_yaml(fields: dict, where: str, entry: str, error: type[Exception]) -> tuple[tuple[str, ...] | None, bool | None]:
    """An entry's `namespaces:` (a list of names, or absent) and `billing:` (true/false, or
    absent) from its YAML nodes; a bad one is `error`, naming the file and the line."""
    namespaces = billing = None
    node = fields.get("namespaces")
    if node is not None and not (isinstance(node, yaml.ScalarNode) and node.value in ("", "null", "~")):
        line = f" (line {node.start_mark.line + 1})"
        if not isinstance(node, yaml.SequenceNode) or not all(isinstance(n, yaml.ScalarNode) for n in node.value):
            raise error(f"{where}{line}: the namespaces of {entry} must be a list such as [astro-lab, astro-dev]")
        try:
            namespaces = check_namespaces([n.value for n in node.value], f"{where}{line}: the namespaces of {entry}")
        except ScopeError as exc:
            raise error(str(exc)) from None
    node = fields.get("billing")
    if node is not None:
        if not isinstance(node, yaml.ScalarNode) or node.value.lower() not in ("true", "false"):
            raise error(f"{where} (line {node.start_mark.line + 1}): billing of {entry} must be true or false")
        billing = node.value.lower() == "true"
    return namespaces, billing


def scope_to_yaml(namespaces: tuple[str, ...] | None, billing: bool | None) -> dict:
    """The entry's scope fields as written: only what was set."""
    out: dict = {}
    if namespaces is not None:
        out["namespaces"] = list(namespaces)
    if billing is not None:
        out["billing"] = billing
    return out


class ClientSlots:
    """At most `limit` API calls of one client at once. A call past it waits up to `wait`
    seconds for a slot (a short burst is served, in order), then is refused (429): a
    runaway script gets one answer a second per connection instead of spinning the
    event loop on instant refusals, and never takes the others' share of InfluxDB."""

    def __init__(self, limit: int, wait: float = 1.0):
        self.limit, self.wait = limit, wait
        self._running: dict[str, int] = {}
        self._waiting: dict[str, deque] = {}

    def running(self, who: str) -> int:
        return self._running.get(who, 0)

    async def acquire(self, who: str) -> bool:
        if self._running.get(who, 0) < self.limit:
            self._running[who] = self._running.get(who, 0) + 1
            return True
        turn = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(who, deque()).append(turn)
        try:
            async with asyncio.timeout(self.wait):
                await asyncio.shield(turn)
            return True  # a finishing call handed its slot over
        except TimeoutError:
            if turn.done():  # handed over just as the wait ran out: give it back
                self.release(who)
            return False
        finally:
            queue = self._waiting.get(who)
            if queue is not None:
                if turn in queue:
                    queue.remove(turn)
                if not queue:
                    del self._waiting[who]

    def release(self, who: str) -> None:
        for turn in self._waiting.get(who, ()):
            if not turn.done():
                turn.set_result(None)  # the slot passes on; the count stays
                return
        left = self._running.get(who, 1) - 1
        if left > 0:
            self._running[who] = left
        else:
            self._running.pop(who, None)
