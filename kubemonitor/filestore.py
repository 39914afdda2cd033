"""The small YAML files the CLI edits and the server reads (the users file, the API
clients file): one way to read, check, lock, write and reload them.

Every change happens under an exclusive lock on `<file>.lock` (not on the file
itself: it is replaced on every write, so a lock on it would guard a file nobody
reads any more), re-reads the file under that lock, and writes it atomically:
temp file in the same directory, fsync, os.replace, fsync of the directory, mode
0600. Concurrent runs lose nothing; a crash leaves the old file or the new one.

The server reads through `entries()`, which notices a changed file (inode, size,
mtime) and reloads it without a restart, keeping the last good content when the
file is broken (the error is kept in `error` and logged).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from .access import KEEP, check_namespaces
from .errors import UserError

log = logging.getLogger("kubemonitor.files")
MAX_FILE_BYTES = 4 * 1024 * 1024  # tens of thousands of entries; a bigger file is a mistake (or an attack)
Entry = TypeVar("Entry")


class StoreFileError(UserError):
    """A file cannot be used; the message names the file (and line) and the fix."""


def atomic_write(path: str, text: str, mode: int = 0o600) -> None:
    """Temp file beside `path`, fsync, rename over it, fsync the directory."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".kubemonitor-", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class WatchedFile(Generic[Entry]):
    """A YAML file of named entries, read lazily and re-read when it changes on disk.

    Subclasses say what the file is (`what`, `setting`, `error_class`) and how its text
    becomes entries (`parse`) and back (`dump`)."""

    what = "file"                 # "users file": how messages name it
    setting = "the setting"       # the environment variable that points at it
    error_class: type[StoreFileError] = StoreFileError

    def __init__(self, path: str, recheck_seconds: float = 1.0):
        self.path = path
        self._recheck = recheck_seconds
        self._entries: dict[str, Entry] = {}
        self._signature: tuple | None = None
        self._checked_at = 0.0
        self.error: str | None = None  # the last load error, shown to operators

    def parse(self, text: str) -> dict[str, Entry]:
        raise NotImplementedError

    def dump(self, entries: dict[str, Entry]) -> str:
        raise NotImplementedError

    # -- reading -----------------------------------------------------------------
    def _stat_signature(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def check_readable(self) -> None:
        """For start-up: raise when the file exists but cannot be used."""
        if os.path.exists(self.path):
            if not os.access(self.path, os.R_OK):
                raise self.error_class(f"{self.setting}={self.path!r} is not readable by this user; "
                                 "fix its owner or mode (chmod 600, owned by the server's user)")
            self.read()

    def read(self) -> dict[str, Entry]:
        try:
            size = os.path.getsize(self.path)
            if size > MAX_FILE_BYTES:
                raise self.error_class(f"{self.what} {self.path} is {size:,} bytes, over the {MAX_FILE_BYTES:,} kubemonitor "
                                 "reads; it is not a file kubemonitor wrote: restore it from a backup")
            with open(self.path, encoding="utf-8") as fh:
                text = fh.read()
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise self.error_class(f"{self.what} {self.path} cannot be read: {exc}") from None
        return self.parse(text)

    def entries(self, recheck: bool = False) -> dict[str, Entry]:
        """The entries; the file is looked at (a stat) at most every `recheck_seconds`, or now with `recheck`."""
        now = time.monotonic()
        if not recheck and now - self._checked_at < self._recheck and self._signature is not None:
            return self._entries
        self._checked_at = now
        signature = self._stat_signature()
        if signature != self._signature:
            try:
                self._entries = self.read()
                self.error = None
            except StoreFileError as exc:
                # Keep serving the last good content; the operator sees the error in the log.
                self.error = str(exc)
                log.error("%s", exc)
            self._signature = signature
        return self._entries

    @property
    def version(self) -> tuple | None:
        """Changes whenever the entries were read again (the file's signature when read)."""
        return self._signature

    def cached(self, name: str) -> Entry | None:
        """The entry as last read, without touching the file (for the event loop)."""
        return self._entries.get(name)

    def cached_names(self) -> list[str]:
        return list(self._entries)

    def changed(self) -> bool:
        """Whether the file differs from what was read (one stat: microseconds, a local file's
        metadata is cached, as Tornado's own static files are looked at on the event loop)."""
        return self._stat_signature() != self._signature

    def due(self) -> bool:
        """Whether `entries()` would look at the file now (the event loop asks, an executor reads)."""
        return self._signature is None or time.monotonic() - self._checked_at >= self._recheck

    # -- writing (CLI) -------------------------------------------------------------
    missing = "no entry {name!r}"  # the message for an unknown name (subclasses name their list command)
    input_error: type[Exception] = ValueError

    def existing(self, entries: dict[str, Entry], name: str) -> Entry:
        if name not in entries:
            raise self.input_error(self.missing.format(name=name))
        return entries[name]

    def set_scope(self, name: str, namespaces: Any = KEEP, billing: Any = KEEP) -> Entry:
        """Change an entry's namespaces (None: every namespace) and/or billing; KEEP leaves
        one as it is. A billing never written down keeps following the namespaces."""
        if namespaces is not KEEP and namespaces is not None:
            namespaces = check_namespaces(namespaces, "--namespaces")
        with self.update() as entries:
            old: Any = self.existing(entries, name)  # a User or a Client: both have namespaces and billing
            entries[name] = dataclasses.replace(old, namespaces=old.namespaces if namespaces is KEEP else namespaces,
                                                billing=old.billing if billing is KEEP else billing)
        return entries[name]

    @contextlib.contextmanager
    def update(self) -> Iterator[dict[str, Entry]]:
        """Lock, read, let the caller change the entries, write them back atomically.
        Nothing is written when the caller raises."""
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise self.error_class(f"the folder of the {self.what} {self.path} does not exist; create it "
                             f"(mkdir -p {folder}) or set {self.setting}")
        with open(self.path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                entries = self.read()
                yield entries
                atomic_write(self.path, self.dump(entries))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
