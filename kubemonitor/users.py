"""Web users (README "Users"): a YAML file of bcrypt hashes, edited by `kubemonitor adduser` & co.

Every change happens under an exclusive lock on `<file>.lock` (not on the file
itself: it is replaced on every write, so a lock on it would guard a file nobody
reads any more), re-reads the file under that lock, and writes it atomically:
temp file in the same directory, fsync, os.replace, fsync of the directory, mode
0600. Concurrent runs lose nothing; a crash leaves the old file or the new one.

The server reads through `UserStore.get`, which notices a changed file (inode,
size, mtime) and reloads it without a restart.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass

import bcrypt
import yaml

from . import yamlfile
from .errors import UserError

log = logging.getLogger("kubemonitor.users")
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_PASSWORD_BYTES = 72  # bcrypt reads no more; bcrypt 5 raises on longer input
MAX_FILE_BYTES = 4 * 1024 * 1024  # tens of thousands of users; a bigger file is a mistake (or an attack)
BCRYPT_ROUNDS = 12
# Compared against when the user does not exist, so an unknown name costs the same time.
_DUMMY_HASH = b"$2b$12$WHGDU.x7QeU9WfU2F.lkhuJjnJLF8Yk1S5N2K7qHwVl7gKK.EeOcm"


class UsersFileError(UserError):
    """The users file cannot be used; the message names the file (and line) and the fix."""


class UserInputError(UserError, ValueError):
    """A username, e-mail or password the CLI refuses."""


@dataclass(frozen=True)
class User:
    username: str
    email: str
    password_hash: str
    created: str


def validate_username(username: str) -> str:
    if not USERNAME.fullmatch(username or ""):
        raise UserInputError("username must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return username


def validate_email(email: str) -> str:
    if not EMAIL.fullmatch(email or "") or len(email) > 254:
        raise UserInputError(f"{email!r} is not an e-mail address (expected name@example.org)")
    return email


def validate_password(password: str) -> bytes:
    raw = password.encode("utf-8")
    if not raw:
        raise UserInputError("the password is empty")
    if len(raw) > MAX_PASSWORD_BYTES:
        raise UserInputError(f"the password is {len(raw)} bytes; bcrypt uses at most {MAX_PASSWORD_BYTES}, "
                             "so choose a shorter one")
    return raw


def hash_password(password: str, rounds: int = BCRYPT_ROUNDS) -> str:
    return bcrypt.hashpw(validate_password(password), bcrypt.gensalt(rounds)).decode("ascii")


def check_password(password: str, password_hash: str | None) -> bool:
    """Constant-ish time; never raises (a >72-byte password is simply wrong)."""
    raw = password.encode("utf-8", "surrogateescape")
    if not raw or len(raw) > MAX_PASSWORD_BYTES:
        bcrypt.checkpw(b"x", _DUMMY_HASH)
        return False
    if not password_hash:
        bcrypt.checkpw(raw, _DUMMY_HASH)
        return False
    try:
        return bcrypt.checkpw(raw, password_hash.encode("ascii"))
    except ValueError:  # a malformed hash in the file
        return False


def _line_of(node: yaml.Node | None) -> str:
    return f" (line {node.start_mark.line + 1})" if node is not None else ""


def parse_users(text: str, path: str) -> dict[str, User]:
    """Parse and check the file's content; errors name the file and the line."""
    root = yamlfile.compose(text, f"users file {path}", "fix it by hand or restore it from a backup", UsersFileError)
    if root is None:
        return {}
    hint = "expected `users:` mapping names to {email, password, created}"
    if not isinstance(root, yaml.MappingNode):
        raise UsersFileError(f"users file {path}{_line_of(root)}: {hint}")
    users_node = next((v for k, v in root.value if k.value == "users"), None)
    if users_node is None or (isinstance(users_node, yaml.ScalarNode) and users_node.value in ("", "null", "~")):
        return {}
    if not isinstance(users_node, yaml.MappingNode):
        raise UsersFileError(f"users file {path}{_line_of(users_node)}: {hint}")
    users: dict[str, User] = {}
    for key, value in users_node.value:
        name = key.value
        if not isinstance(value, yaml.MappingNode):
            raise UsersFileError(f"users file {path}{_line_of(value)}: user {name!r} must be a mapping; {hint}")
        fields = {k.value: v for k, v in value.value}
        for required in ("email", "password"):
            node = fields.get(required)
            if not isinstance(node, yaml.ScalarNode) or not node.value:
                raise UsersFileError(f"users file {path}{_line_of(value)}: user {name!r} has no {required}")
        if not fields["password"].value.startswith("$2"):
            raise UsersFileError(f"users file {path}{_line_of(fields['password'])}: the password of {name!r} is not a "
                                 "bcrypt hash; set it with `kubemonitor passwd " + name + "`")
        created = fields.get("created")
        users[name] = User(name, fields["email"].value, fields["password"].value,
                           created.value if isinstance(created, yaml.ScalarNode) else "")
    return users


def dump_users(users: dict[str, User]) -> str:
    data = {"users": {u.username: {"email": u.email, "password": u.password_hash, "created": u.created}
                      for u in sorted(users.values(), key=lambda u: u.username)}}
    header = "# kubemonitor web users: edit with `kubemonitor adduser/passwd/deluser`. Passwords are bcrypt hashes.\n"
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def atomic_write(path: str, text: str, mode: int = 0o600) -> None:
    """Temp file beside `path`, fsync, rename over it, fsync the directory."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".users-", suffix=".tmp", dir=folder)
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


class UserStore:
    """The users file, read lazily and re-read when it changes on disk."""

    def __init__(self, path: str, rounds: int = BCRYPT_ROUNDS, recheck_seconds: float = 1.0):
        self.path = path
        self.rounds = rounds
        self._recheck = recheck_seconds
        self._users: dict[str, User] = {}
        self._signature: tuple | None = None
        self._checked_at = 0.0
        self.error: str | None = None  # the last load error, shown to operators

    # -- reading -----------------------------------------------------------------
    def _stat_signature(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def check_readable(self) -> None:
        """For start-up: raise UsersFileError when the file exists but cannot be used."""
        if os.path.exists(self.path):
            if not os.access(self.path, os.R_OK):
                raise UsersFileError(f"KUBEMONITOR_USERS_FILE={self.path!r} is not readable by this user; "
                                     "fix its owner or mode (chmod 600, owned by the server's user)")
            self.read()

    def read(self) -> dict[str, User]:
        try:
            size = os.path.getsize(self.path)
            if size > MAX_FILE_BYTES:
                raise UsersFileError(f"users file {self.path} is {size:,} bytes, over the {MAX_FILE_BYTES:,} kubemonitor reads; "
                                     "it is not a users file kubemonitor wrote: restore it from a backup")
            with open(self.path, encoding="utf-8") as fh:
                text = fh.read()
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise UsersFileError(f"users file {self.path} cannot be read: {exc}") from None
        return parse_users(text, self.path)

    def users(self, recheck: bool = False) -> dict[str, User]:
        """The users; the file is looked at (a stat) at most every `recheck_seconds`, or now with `recheck`."""
        now = time.monotonic()
        if not recheck and now - self._checked_at < self._recheck and self._signature is not None:
            return self._users
        self._checked_at = now
        signature = self._stat_signature()
        if signature != self._signature:
            try:
                self._users = self.read()
                self.error = None
            except UsersFileError as exc:
                # Keep serving the last good list; the operator sees the error in the log.
                self.error = str(exc)
                log.error("%s", exc)
            self._signature = signature
        return self._users

    def cached(self, username: str) -> User | None:
        """The user as last read, without touching the file (for the event loop)."""
        return self._users.get(username)

    def due(self) -> bool:
        """Whether `users()` would look at the file now (the event loop asks, an executor reads)."""
        return self._signature is None or time.monotonic() - self._checked_at >= self._recheck

    def get(self, username: str) -> User | None:
        # An unknown name looks at the file again at once: a user just added by
        # `kubemonitor adduser` can log in without waiting for the next re-check.
        return self.users().get(username) or self.users(recheck=True).get(username)

    def verify(self, username: str, password: str) -> bool:
        """Blocking (bcrypt): run it in an executor."""
        user = self.get(username)
        return check_password(password, user.password_hash if user else None)

    # -- writing (CLI) -------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self):
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise UsersFileError(f"the folder of the users file {self.path} does not exist; create it "
                                 f"(mkdir -p {folder}) or set KUBEMONITOR_USERS_FILE")
        with open(self.path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self.read()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def add(self, username: str, email: str, password: str) -> User:
        validate_username(username)
        validate_email(email)
        password_hash = hash_password(password, self.rounds)  # slow part outside the lock
        with self._locked() as users:
            if username in users:
                raise UserInputError(f"user {username!r} already exists; use `kubemonitor passwd {username}` "
                                     "to change the password")
            created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            users[username] = User(username, email, password_hash, created)
            atomic_write(self.path, dump_users(users))
        return users[username]

    def set_password(self, username: str, password: str) -> None:
        password_hash = hash_password(password, self.rounds)
        with self._locked() as users:
            if username not in users:
                raise UserInputError(f"no user {username!r}; `kubemonitor users` lists them")
            old = users[username]
            users[username] = User(username, old.email, password_hash, old.created)
            atomic_write(self.path, dump_users(users))

    def delete(self, username: str) -> None:
        with self._locked() as users:
            if username not in users:
                raise UserInputError(f"no user {username!r}; `kubemonitor users` lists them")
            del users[username]
            atomic_write(self.path, dump_users(users))
