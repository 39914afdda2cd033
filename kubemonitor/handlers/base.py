"""Shared handler behaviour: request ids, JSON writing, error pages, the current user.

`BaseHandler` serves HTML; `APIHandler` differs from it only where an API must:
JSON errors, 401 instead of a login redirect, no XSRF cookie (it authenticates by
header, not by cookie).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
import uuid
from asyncio import Future
from collections import OrderedDict
from collections.abc import Callable
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import tornado.web
import tornado.websocket

from ..access import Access
from ..audit import printable
from ..filestore import atomic_write
from ..wire import encode as encode_json

if TYPE_CHECKING:
    from ..app import KubeMonitorApp
    from ..influx import InfluxError

log = logging.getLogger("kubemonitor.app")
NOBODY = Access("-", frozenset(), False)

SESSION_COOKIE = "kubemonitor_session"
SESSION_HOURS = 10  # a working day


class RevokedSessions:
    """Session ids ended by logout, remembered until the cookie would have expired anyway.

    Kept in a file (`revoked-sessions.jsonl` in the log directory; a fingerprint of each id,
    never the id) so that a logged-out cookie stays refused after a restart. Per server:
    with several replicas, each keeps its own file (README "Login and sessions" says so);
    password changes and deleted users end sessions everywhere (checked against the users file)."""

    def __init__(self, path: str | None = None, clock: Callable[[], float] = time.time, max_entries: int = 200_000):
        self.path, self.clock, self.max_entries = path, clock, max_entries
        self._until: OrderedDict[str, float] = OrderedDict()
        if path:
            self._load()

    @staticmethod
    def _key(sid: str) -> str:
        return hashlib.sha256(sid.encode()).hexdigest()[:32]

    def _load(self) -> None:
        """Read the file once at start-up, and rewrite it with the entries still in force."""
        assert self.path is not None
        try:
            with open(self.path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except FileNotFoundError:
            return
        except OSError as exc:
            logging.getLogger("kubemonitor").warning("cannot read %s (%s): sessions logged out before this start "
                                                     "are not refused; fix its owner or mode", self.path, exc)
            return
        now = self.clock()
        for line in lines[-self.max_entries:]:
            try:
                entry = json.loads(line)
                key, until = entry["k"], float(entry["until"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash
            if isinstance(key, str) and until > now:
                self._until[key] = until
        try:
            atomic_write(self.path, "".join(json.dumps({"k": k, "until": u}) + "\n" for k, u in self._until.items()))
        except OSError:
            pass  # read-only: the entries still count in memory

    def revoke(self, sid: str | None) -> None:
        """Remember a logged-out session (the file line is appended by `persist`, off the event loop)."""
        if not isinstance(sid, str):
            return
        self._until[self._key(sid)] = self.clock() + SESSION_HOURS * 3600
        while len(self._until) > self.max_entries or (self._until and next(iter(self._until.values())) < self.clock()):
            self._until.popitem(last=False)

    def persist(self, sid: str | None) -> None:
        """Append the revocation to the file (blocking: call it in an executor)."""
        if not self.path or not isinstance(sid, str):
            return
        key = self._key(sid)
        line = json.dumps({"k": key, "until": self._until.get(key, self.clock() + SESSION_HOURS * 3600)}) + "\n"
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            logging.getLogger("kubemonitor").warning("cannot write %s (%s): this logout holds until the server "
                                                     "restarts; fix the log directory's owner or mode", self.path, exc)

    def revoked(self, sid: object) -> bool:
        return isinstance(sid, str) and self._until.get(self._key(sid), 0) > self.clock()


def password_stamp(password_hash: str) -> str:
    """A short fingerprint of the user's hash: changing the password ends old sessions."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


# On every response: no inline script, no framing, no sniffing, no referrer to other sites.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
                                "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


HSTS = "max-age=31536000"  # a year; sent only on answers that came over HTTPS (the proxy says so)


def set_security_headers(handler: tornado.web.RequestHandler, private: bool = True) -> None:
    """The headers every answer carries. `private`: usage, statements and pages are one
    user's, never kept by a shared cache or the browser's disk (static files are public)."""
    for name, value in SECURITY_HEADERS.items():
        handler.set_header(name, value)
    handler.set_header("Server", "kubemonitor")  # no version: nothing to look up for a stranger
    if private:
        handler.set_header("Cache-Control", "private, no-store")
    if handler.request.protocol == "https":
        handler.set_header("Strict-Transport-Security", HSTS)


class StaticHandler(tornado.web.StaticFileHandler):
    """The app's static files, with the security headers; a path with a NUL byte (or any
    other that cannot name a file) is a plain 404, not a 500 with a traceback."""

    def set_default_headers(self) -> None:
        set_security_headers(self, private=False)

    NOT_SERVED = ("package.json", "package-lock.json")

    @classmethod
    def get_absolute_path(cls, root: str, path: str) -> str:
        parts = path.replace("\\", "/").split("/")
        # npm's metadata (a checkout where `npm ci` once ran) says what is installed: not for strangers
        if "\x00" in path or "node_modules" in parts or parts[-1] in cls.NOT_SERVED:
            raise tornado.web.HTTPError(404)
        return super().get_absolute_path(root, path)

    def log_exception(self, typ: type[BaseException] | None, value: BaseException | None,
                      tb: TracebackType | None) -> None:
        if not isinstance(value, tornado.web.HTTPError):
            super().log_exception(typ, value, tb)


class ApiError(tornado.web.HTTPError):
    """An error answer with a message for the user (what is wrong and how to fix it)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(status)
        self.message = message
        self.headers = headers or {}


def from_influx(exc: InfluxError) -> ApiError:
    """An InfluxError as the answer: its status, the message without InfluxDB's host and port
    (the gateway has logged those, for the operator), and Retry-After when busy."""
    return ApiError(exc.status, exc.public, {"Retry-After": str(exc.retry_after)} if exc.retry_after else None)


def error_message(status: int, exc: BaseException | None) -> str:
    if isinstance(exc, ApiError):
        return exc.message
    if status >= 500:
        return ""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


class BaseHandler(tornado.web.RequestHandler):
    route_name = "other"  # Prometheus label: a route, never a raw path

    def initialize(self, **_kwargs: Any) -> None:
        incoming = self.request.headers.get("X-Request-ID", "")
        # Accept a caller's id only when it is short and plain, so it cannot forge log lines.
        self.request_id = incoming if 0 < len(incoming) <= 64 and incoming.replace("-", "").isalnum() \
            else uuid.uuid4().hex[:16]
        self.set_header("X-Request-ID", self.request_id)

    def clear(self) -> None:
        # send_error() clears the headers; the request id must survive into error answers.
        super().clear()
        if hasattr(self, "request_id"):
            self.set_header("X-Request-ID", self.request_id)

    def set_default_headers(self) -> None:
        set_security_headers(self)

    def flush(self, include_footers: bool = False) -> Future[None]:
        # An answer before the body was read (a 401 from prepare): Tornado then closes the
        # connection after it, so say so, or a keep-alive client sends its next request into a reset.
        if not self._headers_written and not getattr(self.request.connection, "_read_finished", True):
            self.set_header("Connection", "close")
        return super().flush(include_footers)

    def set_cookie(self, name: str, value: str | bytes, *args: Any, **kwargs: Any) -> None:
        if name == "_xsrf":  # Tornado sets it with no attributes: same-site only, and Secure over HTTPS
            kwargs.setdefault("samesite", "Strict")
            kwargs.setdefault("secure", self.request.protocol == "https")
        super().set_cookie(name, value, *args, **kwargs)

    async def _execute(self, transforms: list[Any], *args: bytes, **kwargs: bytes) -> None:
        # One deadline for all of this request's InfluxDB calls. Not for a websocket: its
        # messages are read in a loop that would inherit the deadline of the upgrade request.
        if isinstance(self, tornado.websocket.WebSocketHandler):
            return await super()._execute(transforms, *args, **kwargs)
        with self.app.influx.request_deadline(self.app.config.request_timeout):
            return await super()._execute(transforms, *args, **kwargs)

    async def prepare(self) -> None:
        # The users file is read (and parsed) in an executor, never on the event loop, one
        # read for all the requests that arrive meanwhile; a request then checks its session
        # against what was read.
        await self.app.fresh(self.app.users)

    @property
    def app(self) -> KubeMonitorApp:
        return cast("KubeMonitorApp", self.application)

    _access: Access | None = None

    @property
    def access(self) -> Access:
        """What this request may see: set by the API's credential check; for the web, the
        logged-in user's scope as the users file says now (so a changed scope counts at once)."""
        if self._access is not None:
            return self._access
        user = self.app.users.cached(self.current_user) if self.current_user else None
        return user.access if user is not None else NOBODY

    @access.setter
    def access(self, value: Access) -> None:
        self._access = value

    # -- sessions: a signed cookie naming the user and a stamp of their password hash ----
    def get_current_user(self) -> str | None:
        raw = self.get_signed_cookie(SESSION_COOKIE, max_age_days=SESSION_HOURS / 24)
        if not raw:
            return None
        try:
            data = json.loads(raw)
            username, stamp, sid = data["u"], data["p"], data["s"]
        except (ValueError, KeyError, TypeError):
            return None
        if self.app.sessions.revoked(sid):
            return None  # logged out
        user = self.app.users.cached(username) if isinstance(username, str) else None
        if user is None or stamp != password_stamp(user.password_hash):
            return None  # deleted, or the password changed since this session began
        return username

    def start_session(self, username: str) -> None:
        user = self.app.users.cached(username)
        assert user is not None, "a session starts after the password was checked"
        value = json.dumps({"u": username, "p": password_stamp(user.password_hash), "s": secrets.token_urlsafe(16)})
        self.set_signed_cookie(SESSION_COOKIE, value, expires_days=SESSION_HOURS / 24, httponly=True,
                               samesite="Lax", secure=self.request.protocol == "https", path=self.app.cookie_path)

    def end_session(self) -> str | None:
        """Log out: the session id is revoked on the server, so a copy of the cookie is
        worthless from now on, not only the browser's."""
        raw = self.get_signed_cookie(SESSION_COOKIE, max_age_days=SESSION_HOURS / 24)
        try:
            sid = json.loads(raw or b"")["s"]
        except (ValueError, KeyError, TypeError):
            sid = None
        self.app.sessions.revoke(sid)
        self.clear_cookie(SESSION_COOKIE, path=self.app.cookie_path)
        return sid

    def user_label(self) -> str:
        """Who made the request, for the access log ("-" when anonymous): one field, so a
        claimed name's spaces and control characters (NEL, newline) are escaped."""
        name = getattr(self, "_current_user", None) or "-"
        return printable(name).replace(" ", "\\x20")

    def write_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(encode_json(value))

    def log_exception(self, typ: type[BaseException] | None, value: BaseException | None,
                      tb: TracebackType | None) -> None:
        if isinstance(value, tornado.web.HTTPError):
            return  # an answer we chose; the access line records it
        log.error("internal error in request %s %s %s", self.request_id, self.request.method, self.request.path,
                  exc_info=value)

    def internal_error_message(self) -> str:
        return f"internal error (request id {self.request_id}); it has been logged, please report it with that id"

    def allowed_methods(self) -> tuple[str, ...]:
        """The methods this handler implements (the Allow header of a 405, as RFC 9110 asks)."""
        return tuple(m for m in self.SUPPORTED_METHODS
                     if getattr(type(self), m.lower(), None) not in (None, tornado.web.RequestHandler._unimplemented_method))

    def error_headers(self, status_code: int, exc: BaseException | None) -> str:
        """Set the headers an error answer carries; return its message."""
        if status_code == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        for name, value in getattr(exc, "headers", {}).items():
            self.set_header(name, value)
        return error_message(status_code, exc) or self.internal_error_message()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = self.error_headers(status_code, exc)
        self.render("error.html", code=status_code, message=message)


class APIHandler(BaseHandler):
    """JSON everywhere, including errors: {"code": status, "message": "..."}."""

    async def prepare(self) -> None:
        pass  # no sessions here: the users file is not needed (and never waited for)

    def check_xsrf_cookie(self) -> None:
        # The API authenticates each request by header, never by cookie, so a forged
        # cross-site request has nothing to ride on.
        return None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = self.error_headers(status_code, exc)
        if self.request.method == "HEAD":
            self.finish()
            return
        self.write_json({"code": status_code, "message": message}, status_code)


class NotFoundHandler(BaseHandler):
    """The catch-all: JSON under /api, a page elsewhere."""

    async def prepare(self) -> None:
        path, at = self.request.path, self.app.url_prefix
        if at and not (path == at or path.startswith(at + "/")):
            raise ApiError(404, f"kubemonitor is served under {at}/ (KUBEMONITOR_URL_PREFIX); "
                                f"start at {self.reverse_url('overview')}, or POST {at}/api/<metric> for the API")
        if self.app.under(path, "/api"):
            raise ApiError(404, f"no such API path; use POST {at}/api/<metric>, e.g. {at}/api/cpu/usage_rate "
                                f"(GET {self.reverse_url('openapi')} describes the API)")
        raise ApiError(404, f"there is no page at {path[:200]}; start at {self.reverse_url('overview')}")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if self.app.under(self.request.path, "/api"):
            APIHandler.write_error(cast(APIHandler, self), status_code, **kwargs)
        else:
            super().write_error(status_code, **kwargs)

    def check_xsrf_cookie(self) -> None:
        return None  # every method ends in 404 here; no state changes
