"""Named API clients (README "Groups and access"): `conf/api-clients.yaml`, edited by
`kubemonitor apiclient add/list/scope/rotate/revoke/delete`.

Each client has a generated secret (32 random bytes, URL-safe), shown once by
`apiclient add`; the file keeps only its SHA-256, so a copy of the file lets no
one in. A secret is long and random, so one unsalted hash is enough (a slow hash
like bcrypt guards guessable passwords, and would cost every API call tens of
milliseconds). A revoked client stays in the file, marked with the time, so its
name is not reused by mistake and the audit log's lines about it stay unambiguous;
`apiclient delete` removes it on purpose (and the audit log says so).

Written like the users file (kubemonitor/filestore.py): locked, atomic, 0600,
re-read by the server when it changes.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, replace

import yaml

from . import yamlfile
from .access import ACCOUNT_NAME, Access, check_namespaces, scope_from_yaml, scope_to_yaml
from .errors import UserError
from .filestore import StoreFileError, WatchedFile
from .yamlfile import line_of

CLIENT_NAME = ACCOUNT_NAME
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
SECRET_BYTES = 32
_DUMMY_DIGEST = "0" * 64  # compared against for an unknown name, so it costs the same time


class ClientsFileError(StoreFileError):
    """The API clients file cannot be used; the message names the file and the line."""


class ClientInputError(UserError, ValueError):
    """A client name or command the CLI refuses."""


@dataclass(frozen=True)
class ApiClient:
    name: str
    sha256: str
    created: str
    namespaces: tuple[str, ...] | None = None
    billing: bool | None = None
    revoked: str | None = None   # when it was revoked (UTC), or None

    @property
    def access(self) -> Access:
        return Access.of(self.name, self.namespaces, self.billing)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def validate_name(name: str) -> str:
    if not CLIENT_NAME.fullmatch(name or ""):
        raise ClientInputError("a client name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or "
                               "digit, e.g. billing-office")
    return name


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_clients(text: str, path: str) -> dict[str, ApiClient]:
    where = f"API clients file {path}"
    hint = "expected `clients:` mapping names to {sha256, created, namespaces, billing}"
    clients: dict[str, ApiClient] = {}
    for name, fields, value in yamlfile.named_entries(text, where, "clients", hint, ClientsFileError):
        if not CLIENT_NAME.fullmatch(name):
            raise ClientsFileError(f"{where}{line_of(value)}: {name[:80]!r} is not a client name "
                                   "(letters, digits, '.', '_', '-')")
        for plain in ("secret", "password", "token"):
            if plain in fields:
                raise ClientsFileError(f"{where}{line_of(fields[plain])}: client {name!r} has a plain-text {plain}; the "
                                       "file keeps only a secret's SHA-256: remove the entry and run "
                                       f"`kubemonitor apiclient add {name}`")
        sha = fields.get("sha256")
        if not isinstance(sha, yaml.ScalarNode) or not SHA256_HEX.fullmatch(sha.value):
            raise ClientsFileError(f"{where}{line_of(sha if sha is not None else value)}: the sha256 of client {name!r} "
                                   "must be 64 lower-case hex digits (what `kubemonitor apiclient add` writes)")
        namespaces, billing = scope_from_yaml(fields, where, f"client {name!r}", ClientsFileError)
        created, revoked = fields.get("created"), fields.get("revoked")
        clients[name] = ApiClient(
            name, sha.value, created.value if isinstance(created, yaml.ScalarNode) else "", namespaces, billing,
            revoked.value if isinstance(revoked, yaml.ScalarNode) and revoked.value not in ("", "null", "~") else None)
    return clients


def dump_clients(clients: dict[str, ApiClient]) -> str:
    data = {"clients": {c.name: {"sha256": c.sha256, "created": c.created, **scope_to_yaml(c.namespaces, c.billing),
                                 **({"revoked": c.revoked} if c.revoked else {})}
                        for c in sorted(clients.values(), key=lambda c: c.name)}}
    header = ("# kubemonitor API clients: edit with `kubemonitor apiclient add/revoke`. Only each secret's SHA-256 is kept.\n"
              "# namespaces: the only namespaces the client sees (absent: all); billing: may fetch statements.\n")
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


class ClientStore(WatchedFile[ApiClient]):
    what = "API clients file"
    setting = "KUBEMONITOR_API_CLIENTS_FILE"
    error_class = ClientsFileError
    input_error = ClientInputError
    missing = "no API client {name!r}; `kubemonitor apiclient list` lists them"

    def parse(self, text: str) -> dict[str, ApiClient]:
        return parse_clients(text, self.path)

    def dump(self, entries: dict[str, ApiClient]) -> str:
        return dump_clients(entries)

    def check(self, name: str, secret: str) -> tuple[ApiClient | None, str]:
        """(the client, "ok") when `secret` is its secret; else (client or None, why not):
        "unknown", "revoked" or "wrong secret". One comparison, in constant time, either way.
        Reads the cached entries: the caller re-reads the file first (in an executor)."""
        client = self.cached(name)
        matches = hmac.compare_digest(digest(secret), client.sha256 if client else _DUMMY_DIGEST)
        if client is None:
            return None, "unknown"
        if not matches:
            return client, "wrong secret"
        if client.revoked:
            return client, "revoked"
        return client, "ok"

    # -- writing (CLI) -------------------------------------------------------------
    def add(self, name: str, namespaces: tuple[str, ...] | None = None, billing: bool | None = None) -> tuple[ApiClient, str]:
        """A new client and its secret (shown once; only its hash is written)."""
        validate_name(name)
        if namespaces is not None:
            namespaces = check_namespaces(namespaces, "--namespaces")
        secret = secrets.token_urlsafe(SECRET_BYTES)
        with self.update() as clients:
            old = clients.get(name)
            if old is not None and old.revoked:
                raise ClientInputError(f"client {name!r} already exists (revoked at {old.revoked}); choose another name, "
                                       f"or delete the revoked one first: kubemonitor apiclient delete {name}")
            if old is not None:
                raise ClientInputError(f"client {name!r} already exists; choose another name, or give it a new secret: "
                                       f"kubemonitor apiclient rotate {name}")
            clients[name] = ApiClient(name, digest(secret), _now(), namespaces, billing)
        return clients[name], secret

    def revoke(self, name: str) -> ApiClient:
        with self.update() as clients:
            old = self.existing(clients, name)
            if old.revoked:
                raise ClientInputError(f"API client {name!r} was already revoked at {old.revoked}")
            clients[name] = replace(old, revoked=_now())
        return clients[name]

    def rotate(self, name: str) -> tuple[ApiClient, str]:
        """A new secret for an active client; the old one is refused from the moment the
        file is written (the server re-reads it before each named client's call)."""
        secret = secrets.token_urlsafe(SECRET_BYTES)
        with self.update() as clients:
            old = self.existing(clients, name)
            if old.revoked:
                raise ClientInputError(f"API client {name!r} was revoked at {old.revoked}; a revoked client gets no new "
                                       f"secret: add a new client instead (kubemonitor apiclient add NAME)")
            clients[name] = replace(old, sha256=digest(secret))
        return clients[name], secret

    def delete(self, name: str) -> ApiClient:
        """Remove a revoked client from the file (its name can then be added again)."""
        with self.update() as clients:
            old = self.existing(clients, name)
            if not old.revoked:
                raise ClientInputError(f"API client {name!r} is active; revoke it first (kubemonitor apiclient revoke "
                                       f"{name}), then delete it")
            del clients[name]
        return old
