"""The live websocket /web/live (README "The web dashboard").

Authentication and origin are checked before the handshake: `prepare()` answers 401
without a valid session (an `@authenticated` on `open()` would only run after the
upgrade), and `check_origin` accepts only this server's own origin. Snapshots come
from the shared poller; a client still receiving its previous message skips a
snapshot rather than queueing it, so a slow client never holds anyone up.
"""
from __future__ import annotations

import json
import logging
from urllib.parse import urlparse

import tornado.web
import tornado.websocket

from ..influx import InfluxError
from ..poller import ALL
from .base import BaseHandler
from .pages import NAMESPACE

log = logging.getLogger("kubemonitor.live")
MAX_SUBSCRIPTIONS = 20
MAX_MESSAGE = 4096


class LiveHandler(BaseHandler, tornado.websocket.WebSocketHandler):
    route_name = "live"

    def initialize(self, **kwargs) -> None:
        super().initialize(**kwargs)
        self.subscriptions: set[tuple[str, str]] = set()
        self._sending = None
        self.dropped = 0

    async def prepare(self) -> None:
        if not self.current_user:
            raise tornado.web.HTTPError(401, "log in first")

    def write_error(self, status_code: int, **kwargs) -> None:
        self.error_headers(status_code, kwargs.get("exc_info", (None, None, None))[1])
        self.write_json({"code": status_code, "message": "log in at /web/login first" if status_code == 401
                         else "refused"}, status_code)

    def check_origin(self, origin: str) -> bool:
        # Same origin only: the Origin's host:port must be the Host this request came to.
        parsed = urlparse(origin)
        return bool(parsed.netloc) and parsed.netloc.lower() == (self.request.host or "").lower()

    def get_compression_options(self):
        return None

    def open(self) -> None:
        self.app.telemetry.ws_clients.inc()
        self._opened = True

    def on_close(self) -> None:
        if getattr(self, "_opened", False):
            self._opened = False
            self.app.telemetry.ws_clients.dec()
        self.app.poller.unsubscribe(self)

    # -- the protocol -------------------------------------------------------------------
    def send_error_message(self, message: str) -> None:
        self.deliver(json.dumps({"type": "error", "message": message}), force=True)

    async def on_message(self, message) -> None:
        if isinstance(message, bytes) or len(message) > MAX_MESSAGE:
            self.send_error_message("send JSON text messages under 4 KiB")
            return
        try:
            data = json.loads(message)
        except ValueError:
            self.send_error_message('not JSON; send {"subscribe": {"metric": "cpu/usage_rate", "namespace": "all"}}')
            return
        if not isinstance(data, dict) or len(data) != 1 or not ({"subscribe", "unsubscribe"} & set(data)):
            self.send_error_message('expected {"subscribe": {...}} or {"unsubscribe": {...}}')
            return
        action, body = next(iter(data.items()))
        if not isinstance(body, dict) or not isinstance(body.get("metric"), str):
            self.send_error_message(f'"{action}" needs {{"metric": "<name>", "namespace": "<name>|all"}}')
            return
        namespace = body.get("namespace", ALL)
        if not isinstance(namespace, str) or (namespace != ALL and not (NAMESPACE.match(namespace) and len(namespace) <= 63)):
            self.send_error_message('"namespace" must be a namespace name or "all"')
            return
        try:
            metric = await self.app.catalog.resolve(body["metric"])
        except InfluxError as exc:
            self.send_error_message(f"cannot check that metric now: {exc.message}")
            return
        if metric is None:
            self.send_error_message(f"unknown metric {body['metric'][:100]!r}")
            return
        key = (metric.name, namespace)
        poller = self.app.poller
        if action == "unsubscribe":
            self.subscriptions.discard(key)
            poller.unsubscribe(self, key)
            return
        if key not in self.subscriptions and len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            self.send_error_message(f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection")
            return
        self.subscriptions.add(key)
        view = poller.subscribe(metric, namespace, self)
        if poller.state != "ok":
            self.deliver(poller.status_message(), force=True)
        if view.text is None:
            try:
                await poller.fetch(view)
            except InfluxError as exc:
                self.deliver(json.dumps({"type": "status", "state": "degraded", "message": exc.message}), force=True)
                return
        if view.text is not None and self.ws_connection is not None:
            self.deliver(view.text, force=True)

    def deliver(self, text: str, force: bool = False) -> None:
        """Called by the poller for every subscriber: must never block or raise for one client."""
        if self.ws_connection is None or self.ws_connection.is_closing():
            self.app.poller.unsubscribe(self)
            return
        if not force and self._sending is not None and not self._sending.done():
            self.dropped += 1  # still writing the last one: this client is slow, skip
            return
        try:
            self._sending = self.write_message(text)
        except tornado.websocket.WebSocketClosedError:
            self.app.poller.unsubscribe(self)
            return
        self._sending.add_done_callback(self._sent)

    def _sent(self, future) -> None:
        if future.exception() is not None:  # closed while writing: stop sending to it
            self.app.poller.unsubscribe(self)
