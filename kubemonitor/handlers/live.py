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
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import urlparse

import tornado.web
import tornado.websocket

from ..influx import InfluxError
from ..poller import ALL
from ..request import NAMESPACE
from ..usage import DEFAULT_WINDOW, WINDOWS
from ..wire import encode as encode_json
from .base import BaseHandler

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


class LiveHandler(BaseHandler, tornado.websocket.WebSocketHandler):
    route_name = "live"

    def initialize(self, **kwargs: Any) -> None:
        super().initialize(**kwargs)
        self.subscriptions: set[tuple[str, str, str]] = set()
        self._outbox: OrderedDict[object, str] = OrderedDict()
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task | None = None
        self._errors = 0
        self.dropped = 0  # snapshots replaced before they were sent (a slow client)
        self._tokens, self._tokens_at = RATE_BURST, time.monotonic()
        self._tasks: set[asyncio.Task] = set()

    async def prepare(self) -> None:
        await super().prepare()
        if not self.current_user:
            raise tornado.web.HTTPError(401, "log in first")
        if self.app.live_connections.get(self.current_user, 0) >= MAX_CONNECTIONS_PER_USER:
            raise tornado.web.HTTPError(429, "too many live connections for this user")
        now = time.monotonic()
        tokens, at = self.app.live_attempts.get(self.current_user, (CONNECT_BURST, now))
        tokens = min(CONNECT_BURST, tokens + (now - at) * CONNECT_PER_SECOND)
        if tokens < 1:
            raise tornado.web.HTTPError(429, "reconnecting too fast")
        self.app.live_attempts[self.current_user] = (tokens - 1, now)

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
        self._user = self.current_user
        user = self.app.users.cached(self._user)
        assert user is not None, "get_current_user found this user"
        self._password_hash = user.password_hash
        self.app.live_connections[self._user] = self.app.live_connections.get(self._user, 0) + 1
        self._wake = asyncio.Event()
        self._writer = asyncio.ensure_future(self._write_loop())

    def on_close(self) -> None:
        if getattr(self, "_opened", False):
            self._opened = False
            self.app.telemetry.ws_clients.dec()
            left = self.app.live_connections.get(self._user, 1) - 1
            if left > 0:
                self.app.live_connections[self._user] = left
            else:
                self.app.live_connections.pop(self._user, None)
        for task in self._tasks:
            task.cancel()
        if self._writer is not None:
            self._writer.cancel()
        self._outbox.clear()
        self.app.poller.unsubscribe(self)

    # -- scope ----------------------------------------------------------------------------
    @property
    def scope(self) -> frozenset[str] | None:
        """The user's namespaces as the users file says now (None: every namespace); the
        poller asks before each delivery, so a changed scope counts without a reconnect."""
        return self.access.namespaces

    def session_ended(self) -> bool:
        """The user was deleted, or their password changed, since this socket opened: their
        sessions are over (as for pages), so the socket closes instead of streaming on."""
        if not hasattr(self, "_password_hash"):
            return False  # not open (yet)
        user = self.app.users.cached(self._user)
        if user is not None and user.password_hash == self._password_hash:
            return False
        self.close(1008, "your session has ended; log in again")
        return True

    def out_of_scope(self, key: object) -> bool:
        """A namespace view the user may no longer see: stop it and say so, once."""
        if not (isinstance(key, tuple) and len(key) == 3 and key[1] != ALL) or self.access.sees(key[1]):
            return False
        self.subscriptions.discard(key)
        self.app.poller.unsubscribe(self, key)
        self._outbox.pop(key, None)
        self.send_error_message(f"namespace {key[1]!r} is no longer one you may see; its view has stopped")
        return True

    # -- sending ------------------------------------------------------------------------
    def deliver(self, text: str, key: object = None) -> None:
        """Queue a message (the poller calls this for every subscriber): never blocks.
        `key` names what it is about; an unsent message with the same key is replaced."""
        if self.ws_connection is None or self.ws_connection.is_closing() or self._wake is None:
            self.app.poller.unsubscribe(self)
            return
        if self.session_ended() or self.out_of_scope(key):
            return
        if key is None:  # an error reply: kept in order, but only a few
            if self._errors >= MAX_QUEUED_ERRORS:
                return
            self._errors += 1
            key = ("error", object())
        elif key in self._outbox:
            del self._outbox[key]  # the newer one goes to the back, in arrival order
            self.dropped += 1
        self._outbox[key] = text
        self._wake.set()

    async def _write_loop(self) -> None:
        assert self._wake is not None
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._outbox:
                    key, text = self._outbox.popitem(last=False)
                    if isinstance(key, tuple) and key and key[0] == "error":
                        self._errors -= 1
                    await self.write_message(text)
        except tornado.websocket.WebSocketClosedError:
            self.app.poller.unsubscribe(self)
        except asyncio.CancelledError:
            pass

    def send_error_message(self, message: str) -> None:
        self.deliver(encode_json({"type": "error", "message": message}))

    def user_views(self) -> set[tuple[str, str, str]]:
        """The views this user watches, over all their connections (one user cannot take the server's)."""
        user = self.current_user
        return {key for key, view in self.app.poller.views.items()
                if any(getattr(s, "current_user", None) == user for s in view.subscribers)}

    # -- the protocol -------------------------------------------------------------------
    def on_message(self, message: str | bytes) -> None:
        """Check the message at once; the slow part of a subscription (the first snapshot)
        runs as a task, so this connection keeps reading frames and answering pings."""
        now = time.monotonic()
        self._tokens = min(RATE_BURST, self._tokens + (now - self._tokens_at) * RATE_PER_SECOND)
        self._tokens_at = now
        if self._tokens < 1:
            self.close(1008, "too many messages; a page sends one per view")
            return
        self._tokens -= 1
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
                self.access.sees(namespace) and await self.app.catalog.has_namespace(namespace)):
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
        held = self.user_views() if key not in self.subscriptions else set()
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
