"""The Tornado application: settings built in code, collaborators injected, one URL table."""
from __future__ import annotations

import logging

import tornado.web

from .config import Config
from .handlers import api, ops
from .handlers.base import NotFoundHandler
from .influx import InfluxError, InfluxGateway
from .metrics import MetricCatalog
from .resources import resource_dir
from .telemetry import Telemetry

access_log = logging.getLogger("kubemonitor.access")
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class KubeMonitorApp(tornado.web.Application):
    """Everything a handler needs hangs off this object; nothing is module-level state.

    Tests build it with a Config pointing at their own InfluxDB; `serve` builds it
    from the environment.
    """

    def __init__(self, config: Config, *, influx: InfluxGateway | None = None,
                 telemetry: Telemetry | None = None, debug: bool = False):
        self.config = config
        self.telemetry = telemetry or (influx.telemetry if influx else Telemetry())
        self.influx = influx or InfluxGateway(config, self.telemetry)
        self.catalog = MetricCatalog(self.influx.list_measurements)
        settings = dict(
            template_path=resource_dir("templates"),
            static_path=resource_dir("static"),
            cookie_secret=config.cookie_secret,
            xsrf_cookies=True,
            login_url="/web/login",
            default_handler_class=NotFoundHandler,
            debug=debug,
        )
        super().__init__(self.routes(), **settings)

    def routes(self) -> list:
        return [
            # -- operations: probes, scrapers, API description (no login)
            (r"/healthz", ops.HealthHandler),
            (r"/readyz", ops.ReadyHandler),
            (r"/metrics", ops.MetricsHandler),
            (r"/openapi.json", ops.OpenAPIHandler),
            # -- the billing API: POST /api/<metric>, credentials in headers
            (r"/api/(.+)", api.MetricHandler),
            # -- anything else: NotFoundHandler (default_handler_class), JSON under /api
        ]

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

    async def start(self) -> None:
        """Warm caches before the first request; InfluxDB being down is not fatal here."""
        try:
            await self.catalog.measurements(refresh=True)
        except InfluxError as exc:
            logging.getLogger("kubemonitor").warning("InfluxDB not reachable at start-up: %s", exc.message)

    async def shutdown(self) -> None:
        self.influx.close()
