"""Prometheus instruments (README "Operations"), one registry per application so tests can run several."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Telemetry:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("kubemonitor_http_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.request_seconds = Histogram("kubemonitor_http_request_duration_seconds", "HTTP request latency by route",
                                         ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.influx_seconds = Histogram("kubemonitor_influxdb_query_duration_seconds",
                                        "Time spent in InfluxDB calls (executor wait excluded)", ["kind"],
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.influx_errors = Counter("kubemonitor_influxdb_errors", "Failed InfluxDB calls by HTTP status we answered with",
                                     ["status"], registry=r)
        self.influx_inflight = Gauge("kubemonitor_influxdb_inflight", "InfluxDB calls running or queued", registry=r)
        self.poller_lag = Gauge("kubemonitor_poller_lag_seconds",
                                "How late the last poll round finished compared to its schedule", registry=r)
        self.poller_views = Gauge("kubemonitor_poller_views", "Views (metric, namespace) the poller refreshes", registry=r)
        self.poll_seconds = Histogram("kubemonitor_poller_round_duration_seconds", "Duration of a poll round",
                                      buckets=_LATENCY_BUCKETS, registry=r)
        self.ws_clients = Gauge("kubemonitor_websocket_clients", "Open live-view websocket connections", registry=r)
        self.rollup_hours = Counter("kubemonitor_rollup_hours", "Hours rolled up (or rebuilt), by metric", ["metric"], registry=r)
        self.late_points = Counter("kubemonitor_rollup_late_points",
                                   "Points that arrived after their hour was rolled up, however late (an open period's "
                                   "hour is rolled up again; a closed one's waits for rollup --rebuild)",
                                   ["metric"], registry=r)
        self.late_hours = Gauge("kubemonitor_rollup_late_hours",
                                "Kept hours of closed periods with late points, waiting for rollup --rebuild (/readyz lists them)",
                                registry=r)
        self.logins = Counter("kubemonitor_logins", "Login attempts by outcome", ["outcome"], registry=r)
