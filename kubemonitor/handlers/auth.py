"""Login and logout (README "The web dashboard"): an XSRF-protected form, bcrypt off the event loop,
failed attempts throttled per user and per client address."""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from urllib.parse import urlparse

from .. import audit
from .base import BaseHandler

log = logging.getLogger("kubemonitor.auth")


class Throttle:
    """At most `limit` failures per key within `window` seconds; then refuse until the
    oldest failure leaves the window. Bounded memory: the least recently failed keys go."""

    def __init__(self, limit: int = 5, window: float = 15 * 60, max_keys: int = 50_000,
                 clock: Callable[[], float] = time.monotonic):
        self.limit, self.window, self.max_keys, self.clock = limit, window, max_keys, clock
        self._failures: OrderedDict[str, deque] = OrderedDict()

    def _recent(self, key: str) -> deque | None:
        q = self._failures.get(key)
        if q is None:
            return None
        cutoff = self.clock() - self.window
        while q and q[0] <= cutoff:
            q.popleft()
        if not q:
            del self._failures[key]
            return None
        return q

    def retry_after(self, *keys: str) -> float:
        """Seconds until every key may try again (0 = allowed now)."""
        wait = 0.0
        for key in keys:
            q = self._recent(key)
            if q is not None and len(q) >= self.limit:
                wait = max(wait, q[-self.limit] + self.window - self.clock())
        return wait

    def fail(self, *keys: str, at: float | None = None) -> float:
        """Count a failure for each key now (or `at`); returns its time stamp (for `unfail`)."""
        now = self.clock() if at is None else at
        for key in keys:
            q = self._failures.pop(key, None) or deque()
            q.append(now)
            while len(q) > self.limit:
                q.popleft()
            self._failures[key] = q
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)
        return now

    def unfail(self, key: str, stamp: float) -> None:
        """Take back one failure counted at `stamp` (an attempt reserved, then right)."""
        q = self._failures.get(key)
        if q is not None:
            try:
                q.remove(stamp)
            except ValueError:
                pass
            if not q:
                del self._failures[key]

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)


class ApiGuesses:
    """Wrong API credentials: 10 in 15 minutes per name and address, 50 per address; then
    every call from there is refused (429) until the oldest failure leaves the window. No
    per-name limit from anywhere: a billing job's address changes with its pod, and client
    secrets are too long to guess, so only one address's guessing needs stopping."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.pair = Throttle(limit=10, window=15 * 60, clock=clock)
        self.address = Throttle(limit=50, window=15 * 60, clock=clock)

    def retry_after(self, name: str, address: str) -> float:
        return max(self.pair.retry_after(f"{name}|{address}"), self.address.retry_after(address))

    def fail(self, name: str, address: str) -> None:
        self.pair.fail(f"{name}|{address}")
        self.address.fail(address)


class Attempt:
    """A login attempt admitted by LoginThrottle.begin: counted as a failure until `end` says it was right."""

    __slots__ = ("name", "client", "stamp", "known")

    def __init__(self, name: str, client: str, stamp: float, known: bool):
        self.name, self.client, self.stamp, self.known = name, client, stamp, known


class LoginThrottle:
    """Failed logins, counted so that a stranger cannot lock a user out:

    * per user and client address: 5 in 15 minutes — a guesser at one address stops there;
    * per client address: 20 in 15 minutes — one address trying many names;
    * per user from anywhere: 50 in 15 minutes, then a wait that doubles with each further
      failure (up to an hour) — many addresses against one name slow down. It never applies
      at an address the user has logged in from (the last 30 days, in this process), so
      strangers elsewhere cannot lock the user out there.

    An attempt is counted *before* its password is checked (`begin`) and taken back when it
    was right (`end`): a burst is refused once the limit is reached, however slow bcrypt is.
    At most one check per address and two per user run at a time; more are refused at once
    (429, retry in a second), so one address never holds both bcrypt threads.

    Names are normalised once (spaces trimmed, lower case), so `User7` and ` user7`
    count as one.
    """

    KNOWN_FOR = 30 * 86400.0
    IN_FLIGHT_PER_ADDRESS = 1
    IN_FLIGHT_PER_USER = 2

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.pair = Throttle(limit=5, window=15 * 60, clock=clock)
        self.address = Throttle(limit=20, window=15 * 60, clock=clock)
        self.user = Throttle(limit=50, window=15 * 60, clock=clock)
        self._user_failures: OrderedDict[str, tuple[int, float]] = OrderedDict()  # name -> (failures past the limit, last)
        self._known: OrderedDict[str, float] = OrderedDict()  # "name|address" -> last successful login
        self._checking: dict[str, int] = {}  # "a:<address>" / "u:<name>" -> checks in flight

    @staticmethod
    def normal(username: str) -> str:
        return username.strip().lower()

    def known(self, name: str, client: str) -> bool:
        when = self._known.get(f"{name}|{client}")
        return when is not None and self.clock() - when < self.KNOWN_FOR

    def retry_after(self, username: str, client: str) -> float:
        name = self.normal(username)
        wait = max(self.pair.retry_after(f"{name}|{client}"), self.address.retry_after(client))
        over = self._user_failures.get(name)
        if over is not None and self.user.retry_after(name) > 0 and not self.known(name, client):
            count, last = over
            wait = max(wait, min(3600.0, 2.0 ** count) - (self.clock() - last))
        return max(0.0, wait)

    def busy(self, username: str, client: str) -> bool:
        """True when this address, or this user, already has as many checks running as allowed."""
        name = self.normal(username)
        return (self._checking.get(f"a:{client}", 0) >= self.IN_FLIGHT_PER_ADDRESS
                or self._checking.get(f"u:{name}", 0) >= self.IN_FLIGHT_PER_USER)

    def begin(self, username: str, client: str) -> Attempt:
        """Reserve an attempt (call after `retry_after` and `busy` said yes): counted as failed now."""
        name = self.normal(username)
        known = self.known(name, client)
        # One stamp for the three counts, so a right password takes back each of them (`end`):
        # with a stamp of its own per count, the address's was never found, and 20 people
        # logging in from one address (a lab behind NAT) locked that address out.
        stamp = self.pair.fail(f"{name}|{client}")
        self.address.fail(client, at=stamp)
        if not known:
            self.user.fail(name, at=stamp)
            if self.user.retry_after(name) > 0:  # past the per-user limit: back off, doubling
                count, _ = self._user_failures.pop(name, (0, 0.0))
                self._user_failures[name] = (count + 1, self.clock())
                while len(self._user_failures) > 50_000:
                    self._user_failures.popitem(last=False)
        for key in (f"a:{client}", f"u:{name}"):
            self._checking[key] = self._checking.get(key, 0) + 1
        return Attempt(name, client, stamp, known)

    def end(self, attempt: Attempt, ok: bool) -> None:
        """The check is over: free its slot; a right password takes its failure back."""
        for key in (f"a:{attempt.client}", f"u:{attempt.name}"):
            left = self._checking.get(key, 1) - 1
            if left > 0:
                self._checking[key] = left
            else:
                self._checking.pop(key, None)
        if ok:
            self.pair.forget(f"{attempt.name}|{attempt.client}")
            self.address.unfail(attempt.client, attempt.stamp)
            if not attempt.known:
                self.user.unfail(attempt.name, attempt.stamp)
            key = f"{attempt.name}|{attempt.client}"
            self._known.pop(key, None)
            self._known[key] = self.clock()
            while len(self._known) > 50_000:
                self._known.popitem(last=False)

    def fail(self, username: str, client: str) -> None:
        """Count one failed attempt at once (what begin + end(ok=False) do)."""
        self.end(self.begin(username, client), ok=False)


def safe_next(target: str | None, default: str, prefix: str = "") -> str:
    """Only this app's paths: '/x' (under `prefix`, the URL prefix) yes; '//evil', 'http://evil',
    '/\\evil', a path of another app on the host no (then `default`)."""
    if not target or not target.startswith(prefix + "/") or target.startswith("//") or "\\" in target:
        return default
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or any(ord(ch) < 32 for ch in target):
        return default
    return target


class LoginHandler(BaseHandler):
    route_name = "login"

    def next_page(self) -> str:
        return safe_next(self.get_argument("next", None), self.reverse_url("overview"), self.app.url_prefix)

    def get(self) -> None:
        if self.current_user:
            self.redirect(self.next_page())
            return
        self.render_form()

    def render_form(self, error: str | None = None, status: int = 200, username: str = "") -> None:
        self.set_status(status)
        self.render("login.html", error=error, username=username, next=self.next_page())

    async def post(self) -> None:
        username = self.get_body_argument("username", "").strip()
        password = self.get_body_argument("password", "")
        client = self.request.remote_ip or "?"
        throttle = self.app.login_throttle
        wait = throttle.retry_after(username, client) if username else 0.0
        if wait > 0 or (username and throttle.busy(username, client)):
            self.app.telemetry.logins.labels("throttled").inc()
            log.warning("login throttled for user %r from %s", username[:64], client)
            write, held = self.app.audit_sampler.admit(("login", client, 429))  # a flood of refusals: sampled by address
            if write:
                audit.record("login", username[:64], result="throttled", address=client, held_back=held or None)
            if wait > 0:
                self.set_header("Retry-After", str(int(wait) + 1))
                self.render_form(f"Too many failed logins. Try again in {int(wait // 60) + 1} minute(s).", 429, username)
            else:
                self.set_header("Retry-After", "1")
                self.render_form("A login for this name or from this address is being checked. Try again in a second.",
                                 429, username)
            return
        users = self.app.users
        ok = False
        if username:
            attempt = throttle.begin(username, client)  # counted before the check, so a burst cannot outrun it
            try:
                ok = await asyncio.get_running_loop().run_in_executor(self.app.auth_executor, users.verify, username, password)
            finally:
                throttle.end(attempt, ok)
        if not ok:
            self.app.telemetry.logins.labels("failure").inc()
            log.warning("failed login for user %r from %s", username[:64], client)  # never the password
            audit.record("login", username[:64], result="failed", address=client)
            self.render_form("Wrong username or password.", 401, username)
            return
        self.app.telemetry.logins.labels("success").inc()
        log.info("user %r logged in from %s", username, client)
        audit.record("login", username, result="ok", address=client)
        self.start_session(username)
        self._current_user = username
        self.redirect(self.next_page())


class LogoutHandler(BaseHandler):
    route_name = "logout"

    async def post(self) -> None:
        if self.current_user:
            audit.record("logout", self.current_user, address=self.request.remote_ip)
        sid = self.end_session()
        # written before the answer, so a restart right after the logout still refuses the old cookie
        await asyncio.get_running_loop().run_in_executor(self.app.files_executor, self.app.sessions.persist, sid)
        self.redirect(self.reverse_url("login"))

    def get(self) -> None:
        # Logging out changes state, so it is a POST (with the XSRF token); a GET shows why.
        self.set_status(405)
        self.set_header("Allow", "POST")
        self.render("error.html", code=405, message="Log out with the button in the sidebar (a POST form).")
