"""Logging set-up from conf/logging.yaml (README "Operations")."""
from __future__ import annotations

import io
import logging
import logging.config
import logging.handlers
import os
import queue
import time
from collections.abc import Callable
from typing import Any, cast

import yaml

from .resources import resource_dir


class Burst:
    """At most `burst` events per key within a `window` of seconds (from the key's first
    event); `admit` says whether this one goes through, and — at the first event of a new
    window — how many the previous window held back. Bounded: past `max_keys` it forgets."""

    def __init__(self, burst: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 10_000):
        self.burst, self.window, self.clock, self.max_keys = burst, window, clock, max_keys
        self._seen: dict[tuple, list] = {}  # key -> [window start, events in it]

    def admit(self, key: tuple) -> tuple[bool, int]:
        now = self.clock()
        entry = self._seen.get(key)
        if entry is None or now - entry[0] >= self.window:
            held = entry[1] - self.burst if entry and entry[1] > self.burst else 0
            if len(self._seen) >= self.max_keys:
                self._seen.clear()
            self._seen[key] = [now, 1]
            return True, held
        entry[1] += 1
        return entry[1] <= self.burst, 0


class RepeatFilter(logging.Filter):
    """Let through at most `burst` identical messages (same logger, level and formatted
    text; same exception and its message) per `window` seconds, then one line saying how many were held back.
    A flood (a client hammering a failing path, an accept loop out of file descriptors)
    can then never fill the disk or rotate the earlier log lines away."""

    def __init__(self, burst: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 10_000):
        super().__init__()
        self.window = window
        self._burst = Burst(burst, window, clock, max_keys)

    def filter(self, record: logging.LogRecord) -> bool:
        # One decision per record, whichever handlers (file, errors file, console) ask.
        decided = getattr(record, "_repeat_filter_passed", None)
        if decided is not None:
            return decided
        record._repeat_filter_passed = passed = self._decide(record)
        return passed

    def _decide(self, record: logging.LogRecord) -> bool:
        # The formatted text, not the template: every access line shares one template
        # ("%d %s %s (%s) %.2fms"), and so do distinct failed logins and tracebacks.
        exc_type, exc, _ = record.exc_info or (None, None, None)
        exc_key = f"{exc_type.__name__}: {exc}" if exc_type else ""
        passed, held = self._burst.admit((record.name, record.levelno, record.getMessage(), exc_key))
        if held:
            record.msg = f"{record.msg} [{held} more like this in the last {self.window:g} s were not logged]"
        return passed


class PrivateFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file readable by the server's user only (0600), like the users and
    clients files: the logs hold user names, addresses and paths."""

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.fchmod(fd, 0o600)  # a file an older version created 0644
        except OSError:
            pass  # not ours to change (then it stays as its owner set it)
        return cast(io.TextIOWrapper, open(fd, self.mode, encoding=self.encoding, errors=self.errors))


class BackgroundHandler(logging.handlers.QueueHandler):
    """The server's general logs (console, info.log, errors.log) written by a thread of their
    own: the event loop only queues a record. Writing, rotating and flushing them cost about a
    fifth of the loop's time per API call. `flush` (and `close`, at exit) waits until every
    queued record is written. The audit log stays written at once (a call's line is on disk
    before its answer is sent)."""

    def __init__(self, targets: list[logging.Handler]):
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        super().__init__(records)
        self.listener = logging.handlers.QueueListener(records, *targets, respect_handler_level=True)
        self.listener.start()
        self.running = True

    def flush(self) -> None:
        if self.running:  # stop (the thread writes what is queued first), then start again
            self.listener.stop()
            self.listener.start()
        for target in self.listener.handlers:
            target.flush()

    def close(self) -> None:
        if self.running:
            self.running = False
            self.listener.stop()
        super().close()


def _fill(node: Any, log_dir: str) -> Any:
    if isinstance(node, dict):
        return {k: _fill(v, log_dir) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, log_dir) for v in node]
    if isinstance(node, str):
        return node.replace("{log_dir}", log_dir)
    return node


def _spec(log_dir: str, config_path: str | None) -> dict:
    path = config_path or os.path.join(resource_dir("conf"), "logging.yaml")
    with open(path, encoding="utf-8") as fh:
        return _fill(yaml.safe_load(fh), log_dir)


AUDIT_LOGGER = "kubemonitor.audit"


def setup_audit(log_dir: str, config_path: str | None = None) -> None:
    """Only the audit logger, as logging.yaml configures it: for CLI commands that change
    access, which must leave their line in the server's audit.log and nothing else."""
    spec = _spec(log_dir, config_path)
    logger = spec["loggers"][AUDIT_LOGGER]
    handlers = {name: spec["handlers"][name] for name in logger.get("handlers", [])}
    formatters = {h["formatter"]: spec["formatters"][h["formatter"]] for h in handlers.values() if "formatter" in h}
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False, "formatters": formatters,
                               "handlers": handlers, "loggers": {AUDIT_LOGGER: logger}})


def setup_logging(log_dir: str, config_path: str | None = None, console: bool = True) -> None:
    spec = _spec(log_dir, config_path)
    if not console:
        spec["handlers"].pop("console", None)
        spec["root"]["handlers"] = [h for h in spec["root"]["handlers"] if h != "console"]
    logging.config.dictConfig(spec)
    root = logging.getLogger()
    if root.handlers:
        root.handlers = [BackgroundHandler(list(root.handlers))]
