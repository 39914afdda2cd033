"""The shared poller (README "The web dashboard"): one per process, one InfluxDB
request per watched view per interval, however many people watch it.

A view is (metric, namespace, range), namespace "all" for the cluster-wide view.
A scoped user's "all" is the same view, filtered to their namespaces when it is
handed out (`text_for`): scopes never add InfluxDB requests.
Each round queries every view that has at least one subscriber (concurrently,
through the InfluxDB gateway's executor, at most `concurrency` at once), builds and
encodes the snapshot once (in the executor), and hands the same text to every
subscriber's `deliver`. Subscribers must not block; each connection keeps only the
newest snapshot per view it has not sent yet (handlers/live.py). Views nobody
watches stop being polled at once and are forgotten after a short grace period
(kept so that a page reload paints at once).

InfluxDB failing turns into a `status` message (`degraded`, with the reason) to
every subscriber as soon as one poll fails or a round runs past its interval; the
next successful round sends `ok`.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from .influx import InfluxError, InfluxGateway
from .influxql import layout_of
from .metrics import Metric
from .tasks import cancel_and_wait
from .telemetry import Telemetry
from .times import format_ns
from .views import LATEST_ROWS, MINUTE_NS, WINDOWS, Window, bucket_usage, latest_rows, view_lines, view_results, view_statements
from .wire import encode

log = logging.getLogger("kubemonitor.poller")
ALL = "all"


class Subscriber(Protocol):
    def deliver(self, text: str | bytes, key: object = None) -> None: ...


@dataclass(eq=False)
class View:
    metric: Metric
    namespace: str
    window: Window
    subscribers: set = field(default_factory=set)
    snapshot: dict | None = None
    text: bytes | None = None       # the snapshot, JSON-encoded (UTF-8) once for all subscribers
    idle_since: float | None = None
    pending: asyncio.Future | None = None
    latest: list[dict] = field(default_factory=list)   # every latest row, before the cap (for scoped copies)
    scoped: dict = field(default_factory=dict)          # namespaces -> the snapshot text for that scope

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.metric.name, self.namespace, self.window.name)


def build_snapshot(metric: Metric, namespace: str, window: Window, results: list[list[dict]], now_ns: int,
                   stale_ns: int, answered_ns: int | None = None) -> tuple[dict, list[dict]]:
    """The `snapshot` message (README "The web dashboard") from the three statements'
    series, and every latest row (the message carries the first LATEST_ROWS). The window
    ends at `now_ns` (when the poll asked); `polled_at` is when InfluxDB's answer was in."""
    answers = view_results(metric, results) + [[]] * 5
    pod_series, container_series, latest_series = answers[:3]
    layout = layout_of(metric)
    shown = None if namespace == ALL else namespace
    lines = view_lines(shown, bucket_usage(pod_series, container_series, layout))
    series = {name: [[t // 1_000_000, round(v, 6)] for t, v in sorted(points.items())]
              for name, points in sorted(lines.items()) if points}
    # "Current" is the newest complete minute, on every range: a minute still filling
    # holds only the pods that already reported in it, and would make the totals flicker.
    minute_lines = lines if window.bucket_ns == MINUTE_NS else view_lines(shown, bucket_usage(answers[3], answers[4], layout))
    current_at = now_ns // MINUTE_NS * MINUTE_NS - MINUTE_NS
    values = {name: round(points[current_at], 6) for name, points in sorted(minute_lines.items()) if current_at in points}
    latest = latest_rows(latest_series, now_ns - stale_ns, layout, limit=None)
    return {"type": "snapshot", "metric": metric.name, "namespace": namespace, "range": window.name,
            "unit": metric.unit, "polled_at": format_ns((answered_ns or now_ns) // 1_000_000 * 1_000_000),
            "bucket_ms": window.bucket_ns // 1_000_000, "series": series,
            "current": {"at": current_at // 1_000_000, "span_ms": MINUTE_NS // 1_000_000, "values": values,
                        "total": round(sum(values.values()), 6)},
            "latest": latest[:LATEST_ROWS]}, latest


def scoped_snapshot(snapshot: dict, latest: list[dict], namespaces: frozenset[str]) -> dict:
    """A cluster view's snapshot as a scoped user sees it: their namespaces' lines, values
    and latest rows, and the total of those ("your namespaces"). Made from the shared
    view, so a thousand scoped watchers cost InfluxDB nothing more than one."""
    current = snapshot["current"]
    values = {ns: v for ns, v in current["values"].items() if ns in namespaces}
    return {**snapshot, "series": {ns: points for ns, points in snapshot["series"].items() if ns in namespaces},
            "current": {**current, "values": values, "total": round(sum(values.values()), 6)},
            "latest": [r for r in latest if r.get("namespace_name") in namespaces][:LATEST_ROWS],
            "scope": sorted(namespaces)}


class Poller:
    def __init__(self, influx: InfluxGateway, interval: float, excluded: tuple[str, ...] = (),
                 telemetry: Telemetry | None = None,
                 grace: float | None = None, concurrency: int = 4, sample_interval: float = 60.0, max_views: int = 200,
                 gpu_sample_interval: float | None = None):
        self.influx = influx
        # At most this many poll queries at once, so that a slow InfluxDB cannot fill
        # the gateway's executor with polls and leave API requests waiting behind them.
        self.concurrency = concurrency
        # At most this many views at once, whatever clients ask for: the poller's work per
        # interval is bounded (views exist only for metrics and namespaces the data has).
        self.max_views = max_views
        self._slots: asyncio.Semaphore | None = None
        self.interval = interval
        self.excluded = tuple(excluded)
        # A pod whose newest point is older than two samples (and a poll) stopped reporting.
        self.stale_ns = int((2 * sample_interval + interval) * 1e9)
        # GPU metrics of a source that samples them on their own clock (DCGM's 30 s)
        self.gpu_stale_ns = int((2 * (gpu_sample_interval or sample_interval) + interval) * 1e9)
        self.telemetry = telemetry or influx.telemetry
        self.grace = grace if grace is not None else max(3 * interval, 30.0)
        self.views: dict[tuple[str, str, str], View] = {}
        self.state = "ok"
        self.message = ""
        self.rounds = 0
        self.requests = 0  # InfluxDB requests made, for tests and benchmarks
        self._task: asyncio.Task | None = None

    # -- subscriptions --------------------------------------------------------------
    def view(self, metric: Metric, namespace: str, window: str) -> View:
        key = (metric.name, namespace, window)
        view = self.views.get(key)
        if view is None:
            view = self.views[key] = View(metric, namespace, WINDOWS[window], idle_since=time.monotonic())
        return view

    def subscribe(self, metric: Metric, namespace: str, subscriber: Subscriber, window: str = "1h") -> View:
        view = self.view(metric, namespace, window)
        view.subscribers.add(subscriber)
        view.idle_since = None
        self._update_gauge()
        self.start()  # idempotent: the first subscriber starts the rounds
        return view

    def unsubscribe(self, subscriber: Subscriber, key: tuple[str, str, str] | None = None) -> None:
        views = [self.views[key]] if key in self.views else ([] if key else list(self.views.values()))
        for view in views:
            view.subscribers.discard(subscriber)
            if not view.subscribers and view.idle_since is None:
                view.idle_since = time.monotonic()
        self._update_gauge()

    def _update_gauge(self) -> None:
        self.telemetry.poller_views.set(sum(1 for v in self.views.values() if v.subscribers))

    def status_message(self) -> str:
        return encode({"type": "status", "state": self.state, "message": self.message})

    # -- polling --------------------------------------------------------------------
    async def fetch(self, view: View) -> dict:
        """Refresh one view now (de-duplicated: concurrent callers share one query)."""
        if view.pending is None or view.pending.done():
            view.pending = asyncio.ensure_future(self._query(view))
        return await asyncio.shield(view.pending)

    async def _query(self, view: View) -> dict | None:
        if self._slots is None:  # made on first use, inside the running loop
            self._slots = asyncio.Semaphore(self.concurrency)
        async with self._slots:
            return await self._query_now(view)

    async def _query_now(self, view: View) -> dict | None:
        now_ns = time.time_ns()
        namespace = None if view.namespace == ALL else view.namespace
        statements, params = view_statements(view.metric, namespace, view.window, self.excluded, now_ns)
        # the scoped copies its watchers will need (a cluster view seen by groups' members)
        scopes = {s for s in (getattr(sub, "scope", None) for sub in view.subscribers) if s is not None} \
            if view.namespace == ALL else set()

        def run(client: Any) -> tuple[dict, list[dict], bytes, dict]:
            # Shaping and encoding happen here, in the executor: the event loop only hands out text.
            results = client.query(statements, bind_params=self.influx.bind(params), epoch="ns")
            results = results if isinstance(results, list) else [results]
            snapshot, latest = build_snapshot(view.metric, view.namespace, view.window,
                                              [r.raw.get("series", []) for r in results], now_ns,
                                              self.gpu_stale_ns if layout_of(view.metric).gpu else self.stale_ns,
                                              answered_ns=time.time_ns())
            scoped = {scope: encode(scoped_snapshot(snapshot, latest, scope)).encode() for scope in scopes}
            return snapshot, latest, encode(snapshot).encode(), scoped

        self.requests += 1
        try:
            view.snapshot, view.latest, view.text, view.scoped = await self.influx.call(run, kind="poll", lane="live")
        except InfluxError as exc:
            self._set_state("degraded", exc.public, exc.message)  # at once, not when the round ends
            raise
        return view.snapshot

    async def snapshot(self, metric: Metric, namespace: str, window: str = "1h",
                       scope: frozenset[str] | None = None) -> dict | None:
        """The cached snapshot of a view, or a fresh one (for a page's first paint), as
        `scope` (a scoped user's namespaces) sees it. None when InfluxDB cannot be reached."""
        view = self.view(metric, namespace, window)
        if view.snapshot is None:
            try:
                await self.fetch(view)
            except InfluxError:
                return None
        if scope is None or view.namespace != ALL or view.snapshot is None:
            return view.snapshot
        return scoped_snapshot(view.snapshot, view.latest, scope)

    def text_for(self, view: View, scope: frozenset[str] | None) -> bytes | None:
        """The view's snapshot text for a subscriber of this scope: the shared text, or a
        scoped copy of a cluster view, made once per scope and round."""
        if view.text is None or view.snapshot is None or scope is None or view.namespace != ALL:
            return view.text
        text = view.scoped.get(scope)
        if text is None:
            text = view.scoped[scope] = encode(scoped_snapshot(view.snapshot, view.latest, scope)).encode()
        return text

    async def poll_once(self) -> None:
        now = time.monotonic()
        for key, view in list(self.views.items()):
            if not view.subscribers and view.idle_since is not None and now - view.idle_since > self.grace:
                del self.views[key]
        watched = [v for v in self.views.values() if v.subscribers]
        if not watched:
            return
        started = time.perf_counter()

        async def refresh(view: View) -> None:
            await self.fetch(view)
            if view.text is not None:
                self._broadcast(view)  # as soon as its answer is in, not after the round's slowest view
        results = await asyncio.gather(*(refresh(v) for v in watched), return_exceptions=True)
        self.telemetry.poll_seconds.observe(time.perf_counter() - started)
        failures = [r for r in results if isinstance(r, BaseException)]
        for r in failures:
            if not isinstance(r, InfluxError):
                log.error("poll failed", exc_info=r)
        if failures:
            first = failures[0]
            self._set_state("degraded", first.public if isinstance(first, InfluxError) else "internal error while polling",
                            first.message if isinstance(first, InfluxError) else None)
        else:
            self._set_state("ok", "")
        self.rounds += 1

    def _set_state(self, state: str, message: str, detail: str | None = None) -> None:
        """`message` goes to the viewers (no host or port); `detail` (or the message) to the log."""
        if state == self.state and (state == "ok" or message == self.message):
            return
        if state != self.state:
            log.warning("live views %s: %s", state, detail or message or "InfluxDB answers again")
        self.state, self.message = state, message
        text = self.status_message()
        subscribers = {s for view in self.views.values() for s in view.subscribers}
        for subscriber in subscribers:
            self._deliver(subscriber, text, "status")

    def _broadcast(self, view: View) -> None:
        for subscriber in list(view.subscribers):
            # The scope is asked now, not at subscription: a narrowed scope counts from the next round.
            self._deliver(subscriber, self.text_for(view, getattr(subscriber, "scope", None)), view.key)

    def _deliver(self, subscriber: Subscriber, text: str | bytes | None, key: object) -> None:
        if text is None:  # nothing fetched yet
            return
        try:
            subscriber.deliver(text, key)
        except Exception:  # noqa: BLE001 - one broken client must not stop the round
            log.exception("dropping a subscriber that failed")
            self.unsubscribe(subscriber)

    async def run(self) -> None:
        """Poll every `interval` seconds until cancelled. A round that is still running
        when the next is due says "degraded" at once (InfluxDB is late) and delays it."""
        next_round = time.monotonic()
        while True:
            round_ = asyncio.ensure_future(self.poll_once())
            try:
                async with asyncio.timeout(self.interval):
                    await asyncio.shield(round_)
            except TimeoutError:
                self._set_state("degraded", f"InfluxDB has not answered the live views for {self.interval:g} s "
                                            f"(the poll is late); the figures shown may be out of date")
            except Exception:  # noqa: BLE001 - the loop must survive anything
                log.exception("poll round failed")
            try:
                await round_
            except Exception:  # noqa: BLE001 - already logged or reported
                pass
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
        await cancel_and_wait(*pending)
