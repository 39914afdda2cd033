"""The shared poller (README "The web dashboard"): one per process, one InfluxDB request per watched view
per interval, however many people watch it.

A view is (metric, namespace) with namespace "all" for the cluster-wide view. Each
round queries every view that has at least one subscriber (concurrently, through
the InfluxDB gateway's executor), encodes the snapshot once, and hands the same text
to every subscriber's `deliver`. Subscribers must not block: the websocket handler
drops a snapshot for a client whose previous one is still being written, so a slow
client never delays the others. Views nobody watches stop being polled at once and
are forgotten after a short grace period (kept so that a page reload paints at once).

InfluxDB failing turns into a `status` message (`degraded`, with the reason) to every
subscriber; the next successful round sends `ok`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from .influx import InfluxError, InfluxGateway
from .metrics import Metric
from .times import format_ns
from .usage import TAG_KEYS, quote_measurement

log = logging.getLogger("kubemonitor.poller")
ALL = "all"
WINDOW = "1h"          # the chart's span
LATEST_WINDOW = "1h"   # a container is listed while it has a point this recent (the chart's span)
LATEST_ROWS = 500


class Subscriber(Protocol):
    def deliver(self, text: str) -> None: ...


@dataclass(eq=False)
class View:
    metric: Metric
    namespace: str
    subscribers: set = field(default_factory=set)
    snapshot: dict | None = None
    text: str | None = None         # the snapshot, JSON-encoded once for all subscribers
    idle_since: float | None = None
    pending: asyncio.Future | None = None


def view_statements(metric: Metric, namespace: str, excluded: tuple[str, ...]) -> tuple[str, dict]:
    """Two statements sent as one request: 1-minute means of pod-level series, and the
    latest point of each pod- and container-level series. Values are bind parameters."""
    m = quote_measurement(metric)
    params: dict[str, Any] = {"pod_type": "pod", "container_type": "pod_container"}
    if namespace == ALL:
        scope = ""
        for i, name in enumerate(sorted(excluded)):
            scope += f' AND "namespace_name" != $excluded_{i}'
            params[f"excluded_{i}"] = name
    else:
        scope = ' AND "namespace_name" = $namespace'
        params["namespace"] = namespace
    chart = " ".join(["SELECT mean(\"value\") FROM", m, "WHERE \"type\" = $pod_type AND time > now() -", WINDOW, scope,
                      'GROUP BY time(1m), "namespace_name", "pod_name" fill(none)'])
    latest = " ".join(["SELECT last(\"value\") AS \"value\" FROM", m,
                       "WHERE (\"type\" = $pod_type OR \"type\" = $container_type) AND time > now() -", LATEST_WINDOW,
                       scope, 'GROUP BY "namespace_name", "pod_name", "container_name", "nodename", "type"'])
    return chart + "; " + latest, params


def build_snapshot(metric: Metric, namespace: str, chart_series: list[dict], latest_series: list[dict]) -> dict:
    """The `snapshot` message (README "The web dashboard") from the two statements' series."""
    lines: dict[str, dict[int, float]] = {}
    for s in chart_series:
        tags = s.get("tags") or {}
        # cluster view: one line per namespace (its pods' means summed); namespace view: one per pod
        name = tags.get("namespace_name", "") if namespace == ALL else tags.get("pod_name", "")
        line = lines.setdefault(name, {})
        for t, value in s.get("values", []):
            if value is not None:
                line[t] = line.get(t, 0.0) + value
    series = {name: [[t // 1_000_000, round(v, 6)] for t, v in sorted(points.items())] for name, points in sorted(lines.items())}

    pods: dict[tuple[str, str], list[dict]] = {}
    for s in latest_series:
        tags = {k: (v or None) for k, v in (s.get("tags") or {}).items()}
        for t, value in s.get("values", []):
            row = {"time": format_ns(t), "value": None if value is None else float(value)}
            row.update({k: tags.get(k) for k in TAG_KEYS})
            pods.setdefault((row["namespace_name"] or "", row["pod_name"] or ""), []).append(row)
    latest: list[dict] = []
    for key in sorted(pods):
        rows = pods[key]
        containers = [r for r in rows if r["type"] == "pod_container"]
        # the counting rule again: a pod's container rows when it has them, else its pod row
        latest.extend(sorted(containers, key=lambda r: r["container_name"] or "") or rows)
    return {"type": "snapshot", "metric": metric.name, "namespace": namespace, "unit": metric.unit,
            "polled_at": format_ns(time.time_ns() // 1_000_000 * 1_000_000), "series": series,
            "latest": latest[:LATEST_ROWS]}


class Poller:
    def __init__(self, influx: InfluxGateway, interval: float, excluded: tuple[str, ...] = (), telemetry=None,
                 grace: float | None = None, concurrency: int = 4):
        self.influx = influx
        # At most this many poll queries at once, so that a slow InfluxDB cannot fill
        # the gateway's executor with polls and leave API requests waiting behind them.
        self.concurrency = concurrency
        self._slots: asyncio.Semaphore | None = None
        self.interval = interval
        self.excluded = tuple(excluded)
        self.telemetry = telemetry or influx.telemetry
        self.grace = grace if grace is not None else max(3 * interval, 30.0)
        self.views: dict[tuple[str, str], View] = {}
        self.state = "ok"
        self.message = ""
        self.rounds = 0
        self.requests = 0  # InfluxDB requests made, for tests and benchmarks
        self._task: asyncio.Task | None = None

    # -- subscriptions --------------------------------------------------------------
    def subscribe(self, metric: Metric, namespace: str, subscriber: Subscriber) -> View:
        view = self.views.get((metric.name, namespace))
        if view is None:
            view = self.views[(metric.name, namespace)] = View(metric, namespace)
        view.subscribers.add(subscriber)
        view.idle_since = None
        self._update_gauge()
        self.start()  # idempotent: the first subscriber starts the rounds
        return view

    def unsubscribe(self, subscriber: Subscriber, key: tuple[str, str] | None = None) -> None:
        views = [self.views[key]] if key in self.views else ([] if key else list(self.views.values()))
        for view in views:
            view.subscribers.discard(subscriber)
            if not view.subscribers and view.idle_since is None:
                view.idle_since = time.monotonic()
        self._update_gauge()

    def _update_gauge(self) -> None:
        self.telemetry.poller_views.set(sum(1 for v in self.views.values() if v.subscribers))

    def status_message(self) -> str:
        return json.dumps({"type": "status", "state": self.state, "message": self.message})

    # -- polling --------------------------------------------------------------------
    async def fetch(self, view: View) -> dict:
        """Refresh one view now (de-duplicated: concurrent callers share one query)."""
        if view.pending is not None and not view.pending.done():
            return await asyncio.shield(view.pending)
        view.pending = asyncio.ensure_future(self._query(view))
        return await asyncio.shield(view.pending)

    async def _query(self, view: View) -> dict:
        if self._slots is None:  # made on first use, inside the running loop
            self._slots = asyncio.Semaphore(self.concurrency)
        async with self._slots:
            return await self._query_now(view)

    async def _query_now(self, view: View) -> dict:
        statements, params = view_statements(view.metric, view.namespace, self.excluded)

        def run(client):
            # Shaping and encoding happen here, in the executor: the event loop only hands out text.
            results = client.query(statements, bind_params=params, epoch="ns")
            results = results if isinstance(results, list) else [results]
            chart, latest = ([r.raw.get("series", []) for r in results] + [[], []])[:2]
            snapshot = build_snapshot(view.metric, view.namespace, chart, latest)
            return snapshot, json.dumps(snapshot, separators=(",", ":"))

        self.requests += 1
        view.snapshot, view.text = await self.influx.call(run, kind="poll")
        return view.snapshot

    async def snapshot(self, metric: Metric, namespace: str) -> dict | None:
        """The cached snapshot of a view, or a fresh one (for a page's first paint).
        None when InfluxDB cannot be reached."""
        view = self.views.get((metric.name, namespace))
        if view is None:
            view = self.views[(metric.name, namespace)] = View(metric, namespace, idle_since=time.monotonic())
        if view.snapshot is not None:
            return view.snapshot
        try:
            return await self.fetch(view)
        except InfluxError as exc:
            self._set_state("degraded", exc.message)
            return None

    async def poll_once(self) -> None:
        now = time.monotonic()
        for key, view in list(self.views.items()):
            if not view.subscribers and view.idle_since is not None and now - view.idle_since > self.grace:
                del self.views[key]
        watched = [v for v in self.views.values() if v.subscribers]
        if not watched:
            return
        started = time.perf_counter()
        results = await asyncio.gather(*(self.fetch(v) for v in watched), return_exceptions=True)
        self.telemetry.poll_seconds.observe(time.perf_counter() - started)
        failures = [r for r in results if isinstance(r, BaseException)]
        for r in failures:
            if not isinstance(r, InfluxError):
                log.error("poll failed", exc_info=r)
        if failures:
            first = failures[0]
            self._set_state("degraded", first.message if isinstance(first, InfluxError) else "internal error while polling")
        else:
            self._set_state("ok", "")
        for view, result in zip(watched, results):
            if not isinstance(result, BaseException) and view.text is not None:
                self._broadcast(view, view.text)
        self.rounds += 1

    def _set_state(self, state: str, message: str) -> None:
        if state == self.state and (state == "ok" or message == self.message):
            return
        if state != self.state:
            log.warning("live views %s: %s", state, message or "InfluxDB answers again")
        self.state, self.message = state, message
        text = self.status_message()
        for view in list(self.views.values()):
            self._broadcast(view, text)

    def _broadcast(self, view: View, text: str) -> None:
        for subscriber in list(view.subscribers):
            try:
                subscriber.deliver(text)
            except Exception:  # noqa: BLE001 - one broken client must not stop the round
                log.exception("dropping a subscriber that failed")
                self.unsubscribe(subscriber)

    async def run(self) -> None:
        """Poll every `interval` seconds until cancelled; a round that overruns delays the next."""
        next_round = time.monotonic()
        while True:
            try:
                await self.poll_once()
            except Exception:  # noqa: BLE001 - the loop must survive anything
                log.exception("poll round failed")
            finished = time.monotonic()
            self.telemetry.poller_lag.set(max(0.0, finished - next_round))
            next_round = max(next_round + self.interval, finished)
            await asyncio.sleep(max(0.0, next_round - time.monotonic()))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        """Stop polling, and cancel the queries in flight (their threads finish on their own)."""
        pending = [v.pending for v in self.views.values() if v.pending is not None and not v.pending.done()]
        if self._task is not None:
            pending.append(self._task)
            self._task = None
        for future in pending:
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
