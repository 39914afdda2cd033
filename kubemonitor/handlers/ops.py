"""Operations endpoints (README "Operations"): /healthz, /readyz, /metrics, /openapi.json."""
from __future__ import annotations

import hmac

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..influx import InfluxError
from ..openapi import openapi_document
from .base import ApiError, APIHandler


class OpsHandler(APIHandler):
    """GET only, no login: probes and scrapers call these (JSON errors, no XSRF, like the API)."""


class HealthHandler(OpsHandler):
    route_name = "healthz"

    def get(self) -> None:
        # Alive means the event loop answers; it deliberately does not ask InfluxDB.
        self.write_json({"status": "ok"})


class ReadyHandler(OpsHandler):
    route_name = "readyz"

    async def get(self) -> None:
        # Anonymous callers (probes, anyone) learn whether it is ready, never where InfluxDB is
        # or which version it runs; the operator finds the details in the log.
        try:
            await self.app.influx.ping()
        except InfluxError:
            self.write_json({"status": "unavailable", "code": 503,
                             "message": "InfluxDB does not answer; the server's log says which and why"}, 503)
            return
        rollups = self.app.rollups
        try:
            problems = await self.app.source_problems()
        except InfluxError:
            problems = []
        # closed statements are kept beside the rollups; without them no period is ever closed
        why_not = self.app.billing.cannot_keep()
        self.write_json({"status": "ready", "rollups": {"state": rollups.state, "retention_policy": rollups.rp,
                                                        **({"reason": rollups.reason} if rollups.state == "off" else {}),
                                                        # closed periods' hours with late points, until a rebuild
                                                        "late": self.app.rollup_writer.late_hours()},
                         "statements": {"kept": why_not is None, **({"reason": why_not} if why_not else {})},
                         # the collector's set-up is the operator's, not a secret: say what would bill wrongly
                         "source": {"name": self.app.source.name, "problems": problems}})


class MetricsHandler(OpsHandler):
    route_name = "metrics"

    def get(self) -> None:
        token = self.app.config.metrics_token
        if token and not hmac.compare_digest(self.request.headers.get("Authorization", "").encode(),
                                             f"Bearer {token}".encode()):
            raise ApiError(401, "this server's /metrics needs `Authorization: Bearer <token>` with the token in "
                                "KUBEMONITOR_METRICS_TOKEN (Prometheus: the scrape job's authorization credentials)",
                           {"WWW-Authenticate": 'Bearer realm="metrics"'})
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(self.app.telemetry.registry))


class OpenAPIHandler(OpsHandler):
    route_name = "openapi"

    def get(self) -> None:
        self.write_json(openapi_document(self.app.config, list(self.app.catalog.known)))
