"""Web users (README "Users"): a YAML file of bcrypt hashes and scopes, edited by
`kubemonitor adduser` & co.

The file is a `filestore.WatchedFile`: locked, atomic, 0600 writes, so concurrent
runs lose nothing and a crash leaves the old file or the new one; the server
notices a changed file (inode, size, mtime) and reloads it without a restart.
A user's `namespaces` and `billing` are their scope (kubemonitor/access.py).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass

import bcrypt
import yaml

from . import yamlfile
from .access import ACCOUNT_NAME, Access, check_namespaces, scope_from_yaml, scope_to_yaml
from .errors import UserError
from .filestore import MAX_FILE_BYTES, StoreFileError, WatchedFile
from .yamlfile import line_of

USERNAME = ACCOUNT_NAME
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_PASSWORD_BYTES = 72  # bcrypt reads no more; bcrypt 5 raises on longer input
BCRYPT_ROUNDS = 12
# Compared against when the user does not exist, so an unknown name costs the same time.
_DUMMY_HASH = b"$2b$12$WHGDU.x7QeU9WfU2F.lkhuJjnJLF8Yk1S5N2K7qHwVl7gKK.EeOcm"
__all__ = ["MAX_FILE_BYTES", "User", "UserStore", "UsersFileError", "UserInputError"]


class UsersFileError(StoreFileError):
    """The users file cannot be used; the message names the file (and line) and the fix."""


class UserInputError(UserError, ValueError):
    """A username, e-mail or password the CLI refuses."""


@dataclass(frozen=True)
class User:
    username: str
    email: str
    password_hash: str
    created: str
    namespaces: tuple[str, ...] | None = None  # None: every namespace
    billing: bool | None = None                # None: not written down (follows the namespaces)

    @property
    def access(self) -> Access:
        return Access.of(self.username, self.namespaces, self.billing)

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


def parse_users(text: str, path: str) -> dict[str, User]:
    """Parse and check the file's content; errors name the file and the line."""
    hint = "expected `users:` mapping names to {email, password, created, namespaces, billing}"
    users: dict[str, User] = {}
    for name, fields, value in yamlfile.named_entries(text, f"users file {path}", "users", hint, UsersFileError):
        for required in ("email", "password"):
            node = fields.get(required)
            if not isinstance(node, yaml.ScalarNode) or not node.value:
                raise UsersFileError(f"users file {path}{line_of(value)}: user {name!r} has no {required}")
        if not fields["password"].value.startswith("$2"):
            raise UsersFileError(f"users file {path}{line_of(fields['password'])}: the password of {name!r} is not a "
                                 "bcrypt hash; set it with `kubemonitor passwd " + name + "`")
        created = fields.get("created")
        namespaces, billing = scope_from_yaml(fields, f"users file {path}", f"user {name!r}", UsersFileError)
        users[name] = User(name, fields["email"].value, fields["password"].value,
                           created.value if isinstance(created, yaml.ScalarNode) else "", namespaces, billing)
    return users


def dump_users(users: dict[str, User]) -> str:
    data = {"users": {u.username: {"email": u.email, "password": u.password_hash, "created": u.created,
                                   **scope_to_yaml(u.namespaces, u.billing)}
                      for u in sorted(users.values(), key=lambda u: u.username)}}
    header = ("# kubemonitor web users: edit with `kubemonitor adduser/passwd/deluser/scope`. Passwords are bcrypt hashes.\n"
              "# namespaces: the only namespaces the user sees (absent: all); billing: may see statements.\n")
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


class UserStore(WatchedFile[User]):
    """The users file, read lazily and re-read when it changes on disk."""

    what = "users file"
    setting = "KUBEMONITOR_USERS_FILE"
    error_class = UsersFileError
    input_error = UserInputError
    missing = "no user {name!r}; `kubemonitor users` lists them"

    def __init__(self, path: str, rounds: int = BCRYPT_ROUNDS, recheck_seconds: float = 1.0):
        super().__init__(path, recheck_seconds)
        self.rounds = rounds

    def parse(self, text: str) -> dict[str, User]:
        return parse_users(text, self.path)

    def dump(self, entries: dict[str, User]) -> str:
        return dump_users(entries)

    def users(self, recheck: bool = False) -> dict[str, User]:
        return self.entries(recheck)

    def get(self, username: str) -> User | None:
        # An unknown name looks at the file again at once: a user just added by
        # `kubemonitor adduser` can log in without waiting for the next re-check.
        return self.users().get(username) or self.users(recheck=True).get(username)

    def verify(self, username: str, password: str) -> bool:
        """Blocking (bcrypt): run it in an executor."""
        user = self.get(username)
        return check_password(password, user.password_hash if user else None)

    # -- writing (CLI) -------------------------------------------------------------
    def add(self, username: str, email: str, password: str, namespaces: tuple[str, ...] | None = None,
            billing: bool | None = None) -> User:
        validate_username(username)
        validate_email(email)
        if namespaces is not None:
            namespaces = check_namespaces(namespaces, "--namespaces")
        password_hash = hash_password(password, self.rounds)  # slow part outside the lock
        with self.update() as users:
            if username in users:
                raise UserInputError(f"user {username!r} already exists; use `kubemonitor passwd {username}` "
                                     "to change the password")
            created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            users[username] = User(username, email, password_hash, created, namespaces, billing)
        return users[username]

    def set_password(self, username: str, password: str) -> None:
        password_hash = hash_password(password, self.rounds)
        with self.update() as users:
            old = self.existing(users, username)
            users[username] = dataclasses.replace(old, password_hash=password_hash)

    def delete(self, username: str) -> None:
        with self.update() as users:
            self.existing(users, username)
            del users[username]
