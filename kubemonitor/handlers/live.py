"""The live websocket /web/live (README "The web dashboard").

Authentication and origin are checked before the handshake: `prepare()` answers 401
without a valid session (an `@authenticated` on `open()` would only run after the
upgrade), and `check_origin` accepts only this server's own origin.

Sending: each connection has an outbox keyed by what a message is about (a view's
snapshot, the status) and one writer. A newer snapshot of a view replaces the
unsent older one of the same view, and the newest status replaces an unsent older
status, so a slow client skips stale messages but every view on a page and every
change of state still arrives, and the outbox never grows past one entry per
view (plus a few error replies).

Who may see what is settled when a socket opens and again when the users file changes
(`LiveSockets.follow`), never per message: a round's delivery to a thousand sockets
looks nothing up (a scope is a plain attribute the poller reads).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import tornado.web
import tornado.websocket

from ..influx import InfluxError
from ..poller import ALL
from ..request import NAMESPACE
from ..views import DEFAULT_WINDOW, WINDOWS
from ..wire import encode as encode_json
from .base import BaseHandler

if TYPE_CHECKING:
    from ..filestore import WatchedFile
    from ..users import User

log = logging.getLogger("kubemonitor.live")
MAX_SUBSCRIPTIONS = 20
MAX_MESSAGE = 4096
MAX_QUEUED_ERRORS = 8
MAX_CONNECTIONS_PER_USER = 20
MAX_VIEWS_PER_USER = 20  # distinct views over all of a user's connections: a tenth of the server's 200
# A page sends one message per view when it connects; a client sending more than this
# (a burst of RATE_BURST, refilled at RATE_PER_SECOND) is closed with 1008.
RATE_PER_SECOND = 5.0
RATE_BURST = 40.0
# New connections per user: a burst of 20, then one a second (a page reconnects with a
# back-off from 1 s to 30 s); a client reconnecting in a loop is refused (429) cheaply.
CONNECT_PER_SECOND = 1.0
CONNECT_BURST = 20.0


class TokenBucket:
    """`burst` tokens, refilled at `per_second`: `take()` spends one when there is one."""

    __slots__ = ("burst", "per_second", "clock", "tokens", "at")

    def __init__(self, burst: float, per_second: float, clock: Callable[[], float] = time.monotonic):
        self.burst, self.per_second, self.clock = burst, per_second, clock
        self.tokens, self.at = burst, clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.per_second)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Outbox:
    """A socket's unsent messages, keyed by what each is about: a newer message about the
    same thing (a view's snapshot, the status) replaces the unsent older one and goes to
    the back; error replies (no key) are kept in order, at most `max_errors` of them."""

    def __init__(self, max_errors: int = MAX_QUEUED_ERRORS):
        self._messages: OrderedDict[object, str | bytes] = OrderedDict()  # bytes: UTF-8 JSON, sent as text
        self._errors, self.max_errors = 0, max_errors
        self.dropped = 0  # messages replaced before they were sent (a slow client)

    def put(self, text: str | bytes, key: object = None) -> bool:
        """Queue `text`; False when it was an error reply past the cap (not queued)."""
        if key is None:
            if self._errors >= self.max_errors:
                return False
            self._errors += 1
            key = ("error", object())
        elif key in self._messages:
            del self._messages[key]
            self.dropped += 1
        self._messages[key] = text
        return True

    def take(self) -> str | bytes | None:
        """The oldest unsent message, or None."""
        if not self._messages:
            return None
        key, text = self._messages.popitem(last=False)
        if isinstance(key, tuple) and len(key) == 2 and key[0] == "error":
            self._errors -= 1
        return text

    def discard(self, key: object) -> None:
        self._messages.pop(key, None)

    def clear(self) -> None:
        self._messages.clear()
        self._errors = 0

    def __len__(self) -> int:
        return len(self._messages)


class LiveSockets:
    """The process's open live sockets by user: the per-user caps, the reconnect rate, and
    what a change of the users file does to them — a deleted user or a new password closes
    their sockets, a changed scope re-scopes them at once."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.by_user: dict[str, set[LiveHandler]] = {}
        self._connects: dict[str, TokenBucket] = {}  # per user (names the users file has)
        self._followed: object = None  # the users file's version last applied

    def refusal(self, user: str) -> str | None:
        """Why this user may not open another socket now (429), or None."""
        if len(self.by_user.get(user, ())) >= MAX_CONNECTIONS_PER_USER:
            return "too many live connections for this user"
        bucket = self._connects.get(user)
        if bucket is None:
            bucket = self._connects[user] = TokenBucket(CONNECT_BURST, CONNECT_PER_SECOND, self.clock)
        return None if bucket.take() else "reconnecting too fast"

    def opened(self, handler: LiveHandler) -> None:
        self.by_user.setdefault(handler.user, set()).add(handler)

    def closed(self, handler: LiveHandler) -> None:
        mine = self.by_user.get(handler.user)
        if mine is not None:
            mine.discard(handler)
            if not mine:
                del self.by_user[handler.user]

    def views_of(self, user: str) -> set[tuple[str, str, str]]:
        """The views a user watches over all their sockets."""
        return {key for handler in self.by_user.get(user, ()) for key in handler.subscriptions}

    def follow(self, users: WatchedFile[User]) -> None:
        """After the users file was read: apply what changed to the open sockets (once per version)."""
        if users.version == self._followed:
            return
        self._followed = users.version
        for name, handlers in list(self.by_user.items()):
            user = users.cached(name)
            for handler in list(handlers):
                handler.follow(user)


class LiveHandler(BaseHandler, tornado.websocket.WebSocketHandler):
    route_name = "live"

    def initialize(self, **kwargs: Any) -> None:
        super().initialize(**kwargs)
        self.subscriptions: set[tuple[str, str, str]] = set()
        # The user's namespaces (None: all), set at open and by `follow`; the poller reads it.
        self.scope: frozenset[str] | None = frozenset()
        self.outbox = Outbox()
        self._opened = False
        self._writing: asyncio.Future | None = None  # the write in flight; the outbox waits behind it
        self._messages = TokenBucket(RATE_BURST, RATE_PER_SECOND)
        self._tasks: set[asyncio.Task] = set()

    async def prepare(self) -> None:
        await super().prepare()
        if not self.current_user:
            raise tornado.web.HTTPError(401, "log in first")
        refusal = self.app.live.refusal(self.current_user)
        if refusal is not None:
            raise tornado.web.HTTPError(429, refusal)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.error_headers(status_code, kwargs.get("exc_info", (None, None, None))[1])
        self.write_json({"code": status_code, "message": f"log in at {self.reverse_url('login')} first" if status_code == 401
                         else "refused"}, status_code)

    def check_origin(self, origin: str) -> bool:
        # Same origin only: the Origin's host:port must be the Host this request came to.
        parsed = urlparse(origin)
        return bool(parsed.netloc) and parsed.netloc.lower() == (self.request.host or "").lower()

    def get_compression_options(self) -> None:
        return None

    def open(self) -> None:
        self.app.watch_users()
        self.app.telemetry.ws_clients.inc()
        self._opened = True
        self.user: str = self.current_user
        user = self.app.users.cached(self.user)
        assert user is not None, "get_current_user found this user"
        self._password_hash = user.password_hash
        self.scope = user.access.namespaces
        self.app.live.opened(self)

    def on_close(self) -> None:
        if self._opened:
            self._opened = False
            self.app.telemetry.ws_clients.dec()
            self.app.live.closed(self)
        for task in self._tasks:
            task.cancel()
        self.outbox.clear()
        self.app.poller.unsubscribe(self)

    # -- who may see what: at open, and when the users file changes -----------------------
    def follow(self, user: User | None) -> None:
        """The users file changed. A deleted user or a new password ends their sessions (as
        for pages): the socket closes. A changed scope counts at once: views of namespaces
        no longer visible stop (said once each), and each cluster view is sent again as
        the new scope sees it, replacing an unsent copy of the old."""
        if user is None or user.password_hash != self._password_hash:
            self.close(1008, "your session has ended; log in again")
            return
        access = user.access
        if access.namespaces == self.scope:
            return
        self.scope = access.namespaces
        poller = self.app.poller
        for key in sorted(self.subscriptions):
            if key[1] != ALL and not access.sees(key[1]):
                self.subscriptions.discard(key)
                poller.unsubscribe(self, key)
                self.outbox.discard(key)
                self.send_error_message(f"namespace {key[1]!r} is no longer one you may see; its view has stopped")
            elif key[1] == ALL and key in poller.views:
                text = poller.text_for(poller.views[key], self.scope)
                if text is not None:
                    self.deliver(text, key)

    # -- sending ------------------------------------------------------------------------
    def deliver(self, text: str | bytes, key: object = None) -> None:
        """Queue a message (the poller calls this for every subscriber): never blocks.
        `key` names what it is about; an unsent message with the same key is replaced."""
        if not self._opened or self.ws_connection is None or self.ws_connection.is_closing():
            self.app.poller.unsubscribe(self)
            return
        if self.outbox.put(text, key):
            self._pump()

    def _pump(self) -> None:
        """Write the oldest queued message now, unless a write is still in flight: then the
        outbox waits (and newer snapshots replace older ones in it) until that one is done.
        No task per socket: a round's delivery to a thousand sockets is a thousand writes."""
        if self._writing is not None or not self._opened:
            return
        text = self.outbox.take()
        if text is None:
            return
        try:
            self._writing = self.write_message(text)
        except tornado.websocket.WebSocketClosedError:
            self.app.poller.unsubscribe(self)
            return
        self._writing.add_done_callback(self._written)

    def _written(self, future: asyncio.Future) -> None:
        self._writing = None
        if future.cancelled() or future.exception() is not None:  # closed meanwhile
            self.app.poller.unsubscribe(self)
            return
        self._pump()

    def send_error_message(self, message: str) -> None:
        self.deliver(encode_json({"type": "error", "message": message}))

    # -- the protocol -------------------------------------------------------------------
    def on_message(self, message: str | bytes) -> None:
        """Check the message at once; the slow part of a subscription (the first snapshot)
        runs as a task, so this connection keeps reading frames and answering pings."""
        if not self._messages.take():
            self.close(1008, "too many messages; a page sends one per view")
            return
        task = asyncio.ensure_future(self.handle(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def handle(self, message: str | bytes) -> None:
        if isinstance(message, bytes) or len(message) > MAX_MESSAGE:
            self.send_error_message("send JSON text messages under 4 KiB")
            return
        try:
            data = json.loads(message)
        except (ValueError, RecursionError):
            self.send_error_message('not JSON; send {"subscribe": {"metric": "cpu/usage_rate", "namespace": "all"}}')
            return
        if not isinstance(data, dict) or len(data) != 1 or not ({"subscribe", "unsubscribe"} & set(data)):
            self.send_error_message('expected {"subscribe": {...}} or {"unsubscribe": {...}}')
            return
        action, body = next(iter(data.items()))
        if not isinstance(body, dict) or not isinstance(body.get("metric"), str):
            self.send_error_message(f'"{action}" needs {{"metric": "<name>", "namespace": "<name>|all", "range": "1h"}}')
            return
        namespace = body.get("namespace", ALL)
        if not isinstance(namespace, str) or (namespace != ALL and not NAMESPACE.matches(namespace)):
            self.send_error_message('"namespace" must be a namespace name or "all"')
            return
        window = body.get("range", DEFAULT_WINDOW)
        if window not in WINDOWS:
            self.send_error_message(f'"range" must be one of {", ".join(WINDOWS)}')
            return
        try:
            metric = await self.app.catalog.resolve(body["metric"])
        except InfluxError as exc:
            self.send_error_message(f"cannot check that metric now: {exc.public}")
            return
        if metric is None:
            self.send_error_message(f"unknown metric {body['metric'][:100]!r}")
            return
        if action == "subscribe" and namespace != ALL and not (
                (self.scope is None or namespace in self.scope) and await self.app.catalog.has_namespace(namespace)):
            # A view only for a namespace the data has (strangers cannot make the poller query anything
            # else) and the user may see; the same words either way, so a name outside one's scope
            # cannot be probed for.
            self.send_error_message(f"there is no namespace {namespace!r} you can see in the data")
            return
        key = (metric.name, namespace, window)
        poller = self.app.poller
        if action == "unsubscribe":
            self.subscriptions.discard(key)
            poller.unsubscribe(self, key)
            return
        if key not in self.subscriptions and len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            self.send_error_message(f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection")
            return
        held = self.app.live.views_of(self.user) if key not in self.subscriptions else set()
        if key not in self.subscriptions and key not in held and len(held) >= MAX_VIEWS_PER_USER:
            self.send_error_message(f"at most {MAX_VIEWS_PER_USER} live views per user, over all your pages; "
                                    "close a page or a chart, then try again")
            return
        if key not in poller.views and len(poller.views) >= poller.max_views:
            self.send_error_message("this server already refreshes as many views as it may; try again later")
            return
        self.subscriptions.add(key)
        view = poller.subscribe(metric, namespace, self, window)
        if poller.state != "ok":
            self.deliver(poller.status_message(), "status")
        if view.text is None:
            try:
                await poller.fetch(view)
            except InfluxError:
                return  # the poller has told every subscriber (this one too) that it is degraded
        text = poller.text_for(view, self.scope)
        if text is not None and self.ws_connection is not None:
            self.deliver(text, view.key)
