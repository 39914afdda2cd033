"""The Tornado application: settings built in code, collaborators injected, one URL table."""
from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast
from urllib.parse import quote

import tornado.ioloop
import tornado.routing
import tornado.web
from tornado.httputil import HTTPServerRequest
from tornado.netutil import is_valid_ip
from tornado.web import _HandlerDelegate, url

from . import audit
from .access import ClientSlots
from .apiclients import ClientStore
from .billing import Billing
from .config import Config
from .filestore import WatchedFile
from .handlers import api, auth, billing, billing_pages, live, ops, pages
from .handlers.base import NotFoundHandler, RevokedSessions, StaticHandler
from .influx import InfluxError, InfluxGateway
from .metrics import MetricCatalog
from .poller import Poller
from .resources import resource_dir
from .rollup_writer import RollupWriter
from .rollups import Rollups
from .services import Services
from .source import Source
from .telemetry import Telemetry
from .users import UserStore

access_log = logging.getLogger("kubemonitor.access")


class PathURL(tornado.web.URLSpec):
    """A route whose argument is a path (`cpu/usage_rate/team-a`): reverse_url keeps its
    slashes instead of escaping them (metric and namespace names need no escaping)."""

    def reverse(self, *args: Any) -> str:
        path = cast(tornado.routing.PathMatches, self.matcher)._path
        assert path is not None, "this route cannot be reversed"
        return path % tuple(quote(str(a), safe="/") for a in args)
def take_forwarded(request: HTTPServerRequest) -> None:
    """Behind the proxy `--trust-proxy` trusts: the client is the right-most X-Forwarded-For
    hop (the address that proxy saw; a client can put anything before it, nothing after), the
    scheme the right-most X-Forwarded-Proto. X-Real-Ip is never read: a proxy that appends to
    X-Forwarded-For may pass a client's own X-Real-Ip through (Tornado's `xheaders` prefers it)."""
    hops = ",".join(request.headers.get_list("X-Forwarded-For")).split(",")
    hop = hops[-1].strip()
    if is_valid_ip(hop):
        request.remote_ip = hop
    proto = ",".join(request.headers.get_list("X-Forwarded-Proto")).split(",")[-1].strip().lower()
    if proto in ("http", "https"):
        request.protocol = proto


_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class KubeMonitorApp(tornado.web.Application):
    """Everything a handler needs hangs off this object; nothing is module-level state.

    It takes the services (kubemonitor/services.py builds them from a Config); tests
    build them with a Config pointing at their own InfluxDB, `serve` from the environment.
    """

    def __init__(self, services: Services, *, users: UserStore | None = None, clients: ClientStore | None = None,
                 static_path: str | None = None, debug: bool = False, rollup_every: float = 60.0):
        self.services = services
        config = services.config
        services.billing  # noqa: B018 - the rate card is read now: a bad one stops `serve` at its start
        self.users = users or UserStore(config.users_file)
        # Looked at (a stat) on every call of a named client, so that a revoked one is refused at once.
        self.clients = clients or ClientStore(config.api_clients_file)
        self.client_slots = ClientSlots(config.client_concurrency)  # API queries running, per client
        self.statement_slots = ClientSlots(1)  # statements being computed, per client or web user
        self.audit_sampler = audit.sampler()      # a flood of refused calls is counted, not written line by line
        self.rollup_every = rollup_every
        self.live = live.LiveSockets()  # the open websockets by user; they follow the users file
        self.login_throttle = auth.LoginThrottle()
        self.api_guesses = auth.ApiGuesses()
        self.sessions = RevokedSessions(os.path.join(config.log_dir, "revoked-sessions.jsonl"))  # outlives a restart
        self._reads: dict[object, asyncio.Future] = {}
        # bcrypt is slow on purpose; its own small pool keeps logins from starving queries,
        # and the users and clients files are read in another, never queued behind a bcrypt.
        self.auth_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bcrypt")
        self.files_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="files")
        settings: dict[str, Any] = dict(
            template_path=resource_dir("templates"),
            static_path=static_path or resource_dir("static"),
            cookie_secret=config.cookie_secret,
            xsrf_cookies=True,
            login_url=config.url_prefix + "/web/login",  # the "login" route (settings are read before the routes exist)
            static_url_prefix=config.url_prefix + "/static/",
            xsrf_cookie_kwargs={"path": self.cookie_path},
            default_handler_class=NotFoundHandler,
            static_handler_class=StaticHandler,
            websocket_ping_interval=20,
            websocket_ping_timeout=15,          # no longer than the interval (Tornado's rule)
            websocket_max_message_size=16 * 1024,  # past this Tornado closes the socket (1009); past 4 KiB we answer an error
            debug=debug,
        )
        super().__init__(self.routes(), **settings)

    # -- the shared services, typed (handlers reach them as self.app.<name>)
    @property
    def config(self) -> Config:
        return self.services.config

    @property
    def telemetry(self) -> Telemetry:
        return self.services.telemetry

    @property
    def influx(self) -> InfluxGateway:
        return self.services.influx

    @property
    def source(self) -> Source:
        return self.services.source

    @property
    def catalog(self) -> MetricCatalog:
        return self.services.catalog

    @property
    def rollups(self) -> Rollups:
        return self.services.rollups

    @property
    def rollup_writer(self) -> RollupWriter:
        return self.services.rollup_writer

    @property
    def billing(self) -> Billing:
        return self.services.billing

    @property
    def poller(self) -> Poller:
        return self.services.poller

    async def source_problems(self) -> list[str]:
        return await self.services.problems()

    @property
    def url_prefix(self) -> str:
        """'' or '/kubemonitor': every route, cookie, static and websocket URL is under it."""
        return self.config.url_prefix

    @property
    def cookie_path(self) -> str:
        return self.url_prefix + "/"

    def under(self, path: str, prefix: str) -> bool:
        """Whether a request path is `prefix` (e.g. "/api") or below it, under the URL prefix."""
        full = self.url_prefix + prefix
        return path == full or path.startswith(full + "/")

    def routes(self) -> list:
        at = self.url_prefix  # every pattern starts with it; reverse_url gives it back
        return [
            # -- operations: probes, scrapers, API description (no login)
            url(at + r"/healthz", ops.HealthHandler, name="healthz"),
            url(at + r"/readyz", ops.ReadyHandler, name="readyz"),
            url(at + r"/metrics", ops.MetricsHandler, name="metrics"),
            url(at + r"/openapi.json", ops.OpenAPIHandler, name="openapi"),
            # -- the billing API: POST /api/<metric>, credentials in headers
            url(at + r"/api/billing/statement", billing.StatementHandler, name="statement"),
            PathURL(at + r"/api/(.+)", api.MetricHandler, name="api"),
            # -- the dashboard: login, pages, the live websocket
            url(at + r"/web/?", pages.WebRootHandler, name="web"),
            url(at + r"/web/login", auth.LoginHandler, name="login"),
            url(at + r"/web/logout", auth.LogoutHandler, name="logout"),
            url(at + r"/web/stats/index", pages.OverviewHandler, name="overview"),
            PathURL(at + r"/web/stats/(.+)", pages.StatsHandler, name="stats"),   # <metric>[/<namespace>]
            url(at + r"/web/go", pages.PickerHandler, name="picker"),
            url(at + r"/web/live", live.LiveHandler, name="live"),
            url(at + r"/web/billing", billing_pages.BillingPageHandler, name="billing"),
            url(at + r"/web/billing/go", billing_pages.BillingPickerHandler, name="billing_picker"),
            url(at + r"/web/billing/([0-9-]+)\.csv", billing_pages.BillingCSVHandler, name="billing_csv"),
            url(at + r"/web/billing/([0-9-]+)", billing_pages.BillingPageHandler, name="billing_period"),
            url(at + r"/?" if at else r"/", pages.WebRootHandler, name="root"),
            # -- anything else: NotFoundHandler (default_handler_class), JSON under /api
        ]

    def find_handler(self, request: HTTPServerRequest, **kwargs: Any) -> _HandlerDelegate:
        if self.config.trust_proxy:
            take_forwarded(request)
        return super().find_handler(request, **kwargs)

    async def fresh(self, store: WatchedFile, now: bool = False) -> None:
        """Re-read the users or clients file when it is due (`now`: when it changed on disk),
        in an executor; concurrent callers share one read."""
        pending = self._reads.get(store)
        if pending is None or pending.done():
            pending = None
            if store.changed() if now else store.due():
                pending = self._reads[store] = asyncio.get_running_loop().run_in_executor(
                    self.files_executor, store.entries, now)
        if pending is not None:
            await asyncio.shield(pending)
        if store is self.users:
            self.live.follow(self.users)  # a changed file: open sockets close or re-scope now

    def log_request(self, handler: tornado.web.RequestHandler) -> None:
        """One access line per request, and the Prometheus request metrics."""
        request = handler.request
        status = handler.get_status()
        seconds = request.request_time()
        route = getattr(handler, "route_name", "static" if isinstance(handler, tornado.web.StaticFileHandler) else "other")
        method = request.method if request.method in _METHODS else "OTHER"
        self.telemetry.requests.labels(route, method, str(status)).inc()
        self.telemetry.request_seconds.labels(route).observe(seconds)
        user = handler.user_label() if hasattr(handler, "user_label") else "-"
        level = logging.ERROR if status >= 500 else logging.INFO
        # The path only: query strings may carry things we should not keep.
        access_log.log(level, "%s %s %s %s %d %.1fms", getattr(handler, "request_id", "-"), user, method,
                       request.path[:300], status, seconds * 1000)

    def watch_users(self) -> None:
        """Open live views follow the users file too (a narrowed scope, a deleted user), not
        only new requests: look at it every second (idempotent; the first websocket starts it)."""
        if getattr(self, "_users_watch", None) is None:
            self._users_watch = tornado.ioloop.PeriodicCallback(lambda: asyncio.ensure_future(self.fresh(self.users)), 1000)
            self._users_watch.start()

    async def start(self) -> None:
        """Warm caches, start the poller and the rollup task; InfluxDB being down is not fatal here."""
        self.watch_users()
        self.poller.start()
        self.rollup_writer.start(self.rollup_every)  # it prepares the retention policy itself, and retries
        try:
            await self.catalog.measurements(refresh=True)
        except InfluxError as exc:
            logging.getLogger("kubemonitor").warning("InfluxDB not reachable at start-up: %s", exc.message)

    async def shutdown(self) -> None:
        if getattr(self, "_users_watch", None) is not None:
            self._users_watch.stop()
        await self.poller.stop()
        await self.rollup_writer.stop()
        self.services.close()
        self.auth_executor.shutdown(wait=False)
        self.files_executor.shutdown(wait=False)
