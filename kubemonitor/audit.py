"""The audit log (README "Groups and access"): who looked at what, and who changed access.

`audit.log` in the log directory, one JSON object per line, rotated like the
other logs (conf/logging.yaml, handler `audit_file`). The server writes logins,
logouts, API calls, statement pages and CSV downloads; the CLI writes every
change to users, scopes, API clients and rollups, with the OS user who ran it.

What never goes in: passwords, secrets, hashes, cookies, session ids. Callers
pass only the fields below, and request bodies are reduced to their known fields
(`request_fields`): a secret pasted into an unknown field is not kept either.
"""
from __future__ import annotations

import getpass
import glob
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from .logs import Burst

log = logging.getLogger("kubemonitor.audit")
FILE = "audit.log"
MAX_TEXT = 200


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _short(value: Any) -> Any:
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if isinstance(value, bool | int | float) or value is None:
        return value
    return json.dumps(value, default=str)[:MAX_TEXT]


def record(event: str, who: str | None, **fields: Any) -> None:
    """One audit line: {"time", "event", "who", ...fields} (None fields left out)."""
    entry = {"time": _now(), "event": event, "who": (who or "-")[:MAX_TEXT]}
    entry.update({k: v for k, v in fields.items() if v is not None})
    log.info("%s", json.dumps(entry, separators=(",", ":"), ensure_ascii=False, default=str))


def sampler(burst: int = 20, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> Burst:
    """Refusals that cost the server nothing (401, 429) are where a flood would come from:
    at most `burst` lines per key (who, address, status) a `window`, then one line with
    the count held back, so a stranger cannot rotate the audit history away. Every
    answered call is always written."""
    return Burst(burst, window, clock)


def request_fields(data: dict | None, known: Iterable[str]) -> dict | None:
    """The request's known fields, values shortened; unknown fields only counted."""
    if not isinstance(data, dict):
        return None
    known = tuple(known)
    out = {k: _short(data[k]) for k in known if k in data}
    unknown = sum(1 for k in data if k not in known)
    if unknown:
        out["unknown_fields"] = unknown
    return out


def os_user() -> str:
    """Who ran a CLI command: the login name (and the sudo caller, if any)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = str(os.getuid())
    sudo = os.environ.get("SUDO_USER")
    return f"{name} (sudo by {sudo})" if sudo and sudo != name else name


def cli_change(action: str, target: str, **details: Any) -> None:
    """A CLI change to users, scopes, clients or rollups."""
    record("cli", f"os:{os_user()}", action=action, target=target, **details)


# ---------------------------------------------------------------- reading it back
def files(log_dir: str) -> list[str]:
    """audit.log and its rotations, oldest first (audit.log.20 ... audit.log.1, audit.log)."""
    base = os.path.join(log_dir, FILE)
    rotated = [p for p in glob.glob(base + ".*") if p.rsplit(".", 1)[1].isdigit()]
    rotated.sort(key=lambda p: -int(p.rsplit(".", 1)[1]))
    return rotated + ([base] if os.path.exists(base) else [])


def entries(log_dir: str, cutoff: datetime | None = None, who: str | None = None) -> Iterator[dict]:
    """The lines at or after `cutoff` (all without one), by or about `who` (everyone's without)."""
    for path in files(log_dir):
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                    at = datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue  # a line cut by a crash
                if cutoff is not None and at < cutoff:
                    continue
                if who is not None and entry.get("who") != who and entry.get("target") != who:
                    continue
                yield entry


COLUMNS = ("time", "who", "event", "what", "status", "detail")


def _what(entry: dict) -> str:
    for key in ("action", "metric", "statement", "period", "path"):
        if key in entry:
            return str(entry[key])
    return ""


def _detail(entry: dict) -> str:
    skip = {"time", "who", "event", "status", "action", "metric", "statement", "path"}
    return " ".join(f"{k}={v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}"
                    for k, v in entry.items() if k not in skip)


def printable(text: str) -> str:
    """Control and format characters (newline, CR, ESC, bidi marks...) as escapes (`\\n`,
    `\\x1b`): a stored name or path can then neither forge table rows nor send escape
    sequences to the operator's terminal."""
    return "".join(ch if ch == " " or ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def table(rows: Iterable[dict]) -> str:
    cells = [[printable(str(v)) for v in (e.get("time", ""), e.get("who", ""), e.get("event", ""), _what(e),
                                          e.get("status", ""), _detail(e))]
             for e in rows]
    if not cells:
        return ""
    widths = [max(len(COLUMNS[i]), *(len(c[i]) for c in cells)) for i in range(len(COLUMNS) - 1)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(COLUMNS, widths)) + "  DETAIL"]
    for c in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths)) + "  " + c[-1])
    return "\n".join(lines) + "\n"
