"""The metric catalog (README "Metrics"): Heapster's 37 metrics, their units, the three main ones.

A name outside the catalog is still queryable when InfluxDB has a measurement of that
name (e.g. `accelerator/memory_used`); `MetricCatalog.resolve` looks it up in a cached
`SHOW MEASUREMENTS` list that is refreshed now and then and on a miss (rate-limited).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .source import Source

if TYPE_CHECKING:
    from .influx import InfluxGateway

log = logging.getLogger("kubemonitor.metrics")
LEARN_WAIT = 0.5  # seconds a request waits for the source's first look at the data
METRIC_NAME = re.compile(r"^[a-z0-9_]+(/[a-z0-9_]+)*$")

# unit -> what its time-integral is measured in (value x hours)
INTEGRAL_UNITS = {
    "millicores": "millicore-hours",
    "nanoseconds": "nanosecond-hours",
    "milliseconds": "millisecond-hours",
    "bytes": "byte-hours",
    "megabytes": "megabyte-hours",
    "inodes": "inode-hours",
    "faults": "fault-hours",
    "errors": "error-hours",
    "fraction": "fraction-hours",
    "bytes/s": "(bytes/s)-hours",
    "percent": "percent-hours",
    "faults/s": "(faults/s)-hours",
    "errors/s": "(errors/s)-hours",
}


CUMULATIVE = frozenset({"cpu/usage", "memory/page_faults", "memory/major_page_faults", "network/rx", "network/tx",
                        "network/rx_errors", "network/tx_errors"})
# the request of a usage metric: what `basis: request` and `basis: max` bill, and a row's `requested`
REQUEST_OF = {"cpu/usage_rate": "cpu/request", "cpu/usage": "cpu/request", "memory/usage": "memory/request",
              "memory/working_set": "memory/request", "memory/rss": "memory/request"}
# a counter's units per unit-hour of the gauges beside it (its request, the nodes' allocatable):
# a millicore for an hour is 3.6e9 nanoseconds of CPU time
COUNTER_SCALE = {"cpu/usage": 3.6e9}


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    unit: str | None
    main: bool = False
    in_catalog: bool = True
    layout: Any = field(default=None, compare=False, repr=False)  # where the data source keeps it (source.Layout)

    @property
    def cumulative(self) -> bool:
        """A counter (CPU time, bytes, faults since the container started): billed by its
        increase (kubemonitor/counters.py), not by the usage rule."""
        return self.name in CUMULATIVE

    @property
    def integral_unit(self) -> str | None:
        return INTEGRAL_UNITS.get(self.unit) if self.unit else None


def _m(name: str, unit: str, description: str, main: bool = False) -> Metric:
    return Metric(name, description, unit, main)


CATALOG: dict[str, Metric] = {m.name: m for m in (
    _m("cpu/limit", "millicores", "CPU hard limit in millicores."),
    _m("cpu/node_capacity", "millicores", "CPU capacity of a node."),
    _m("cpu/node_allocatable", "millicores", "CPU allocatable of a node."),
    _m("cpu/node_reservation", "fraction", "Share of CPU that is reserved on the node allocatable."),
    _m("cpu/node_utilization", "fraction", "CPU utilization as a share of node allocatable."),
    _m("cpu/request", "millicores", "CPU request (the guaranteed amount of resources) in millicores."),
    _m("cpu/usage", "nanoseconds", "Cumulative CPU usage on all cores."),
    _m("cpu/usage_rate", "millicores", "CPU usage on all cores in millicores.", main=True),
    _m("filesystem/usage", "bytes", "Total number of bytes consumed on a filesystem."),
    _m("filesystem/limit", "bytes", "The total size of filesystem in bytes."),
    _m("filesystem/available", "bytes", "The number of available bytes remaining in the filesystem."),
    _m("filesystem/inodes", "inodes", "The number of available inodes in the filesystem."),
    _m("filesystem/inodes_free", "inodes", "The number of free inodes remaining in the filesystem."),
    _m("accelerator/duty_cycle", "percent", "Percent of time the accelerator (GPU) was busy (Heapster)."),
    _m("accelerator/memory_total", "bytes", "Total accelerator (GPU) memory in bytes (Heapster)."),
    _m("accelerator/memory_used", "bytes", "Accelerator (GPU) memory allocated in bytes (Heapster; gpu/usage in megabytes "
                                           "is read from it when the database has no gpu/usage)."),
    _m("gpu/usage", "megabytes", "The usage of all GPUs in megabytes.", main=True),
    _m("gpu/utilization", "percent", "GPU utilization in percent (DCGM; not in Heapster's schema)."),
    _m("memory/limit", "bytes", "Memory hard limit in bytes."),
    _m("memory/major_page_faults", "faults", "Number of major page faults."),
    _m("memory/major_page_faults_rate", "faults/s", "Number of major page faults per second."),
    _m("memory/node_capacity", "bytes", "Memory capacity of a node."),
    _m("memory/node_allocatable", "bytes", "Memory allocatable of a node."),
    _m("memory/node_reservation", "fraction", "Share of memory that is reserved on the node allocatable."),
    _m("memory/node_utilization", "fraction", "Memory utilization as a share of memory allocatable."),
    _m("memory/page_faults", "faults", "Number of page faults."),
    _m("memory/page_faults_rate", "faults/s", "Number of page faults per second."),
    _m("memory/request", "bytes", "Memory request (the guaranteed amount of resources) in bytes."),
    _m("memory/usage", "bytes", "Total memory usage in bytes.", main=True),
    _m("memory/cache", "bytes", "Cache memory usage."),
    _m("memory/rss", "bytes", "RSS memory usage."),
    _m("memory/working_set", "bytes",
       "Total working set usage. Working set is the memory being used and not easily dropped by the kernel."),
    _m("network/rx", "bytes", "Cumulative number of bytes received over the network."),
    _m("network/rx_errors", "errors", "Cumulative number of errors while receiving over the network."),
    _m("network/rx_errors_rate", "errors/s", "Number of errors while receiving over the network per second."),
    _m("network/rx_rate", "bytes/s", "Number of bytes received over the network per second."),
    _m("network/tx", "bytes", "Cumulative number of bytes sent over the network."),
    _m("network/tx_errors", "errors", "Cumulative number of errors while sending over the network."),
    _m("network/tx_errors_rate", "errors/s", "Number of errors while sending over the network per second."),
    _m("network/tx_rate", "bytes/s", "Number of bytes sent over the network per second."),
    _m("uptime", "milliseconds", "Number of milliseconds since the container was started."),
)}

MAIN_METRICS: tuple[str, ...] = tuple(name for name, m in CATALOG.items() if m.main)


def of_source(source: Source, name: str) -> Metric:
    """A catalog metric as `source` stores it (with its layout); KeyError for one it does not collect."""
    layout = source.layout(name)
    if layout is None or name not in CATALOG:
        raise KeyError(f"the {source.name} source does not collect {name!r}")
    return replace(CATALOG[name], layout=layout)


class MetricCatalog:
    """Resolves metric names: the catalog first, then the database's measurements.

    `list_measurements` is an async callable returning the measurement names (the
    InfluxDB gateway's). The list is cached for `ttl` seconds; an unknown name forces
    a refresh, but at most once per `miss_interval` so a client probing random names
    cannot turn every request into a SHOW MEASUREMENTS.
    """

    def __init__(self, source: Source, list_measurements: Callable[[], Awaitable[list[str]]],
                 list_namespaces: Callable[[], Awaitable[list[str]]] | None = None, ttl: float = 300.0,
                 miss_interval: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 learn: Callable[[], Awaitable[None]] | None = None, learn_every: float = 60.0):
        self.source = source
        self._known: tuple[int, dict[str, Metric]] | None = None
        self._learn, self._learn_every = learn, learn_every
        self._learned_at: float | None = None
        self._learned_once = False
        self._learning: asyncio.Future[None] | None = None
        self._list = list_measurements
        self._ttl = ttl
        self._miss_interval = miss_interval
        self._clock = clock
        self._names: frozenset[str] = frozenset()
        self._fetched_at: float | None = None
        self._namespaces: list[str] = []
        self._namespaces_at: float | None = None
        self.list_namespaces = list_namespaces

    @classmethod
    def of(cls, influx: InfluxGateway, source: Source) -> MetricCatalog:
        """The catalog of `source` over an InfluxDB gateway."""
        return cls(source, influx.list_measurements, lambda: influx.list_namespaces(source.namespace_queries()),
                   learn=lambda: source.learn(influx))

    @property
    def known(self) -> dict[str, Metric]:
        """The catalog as the source stores it: each metric with its layout (metrics it does
        not collect left out), rebuilt when the source has learned another layout."""
        if self._known is None or self._known[0] != self.source.version:
            self._known = (self.source.version, {name: of_source(self.source, name) for name in CATALOG
                                                 if self.source.layout(name) is not None})
        return self._known[1]

    async def learned(self) -> None:
        """Let the source look at the data (once a `learn_every`, one look at a time) before a
        metric is handed out: a layout may depend on what the collector's version writes.

        Only until the first look succeeds does a caller wait, and then at most LEARN_WAIT
        seconds: a slow InfluxDB must not spend a request's deadline twice. Later looks run
        behind the requests. InfluxDB's errors leave the layouts as they were; the query that
        follows reports them."""
        if self._learn is None:
            return
        now = self._clock()
        if self._learned_at is not None and now - self._learned_at < self._learn_every:
            return
        if self._learning is None:
            learn = self._learn

            async def look() -> None:
                try:
                    await learn()
                    self._learned_at = self._clock()
                    self._learned_once = True
                except Exception as exc:  # InfluxDB down, a 5xx: the query that follows reports it, with its fix
                    log.warning("could not look at the data's layout: %s", getattr(exc, "message", exc))
                    self._learned_at = self._clock() - self._learn_every + self._miss_interval
                finally:
                    self._learning = None
            self._learning = asyncio.ensure_future(look())
        if not self._learned_once:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._learning), LEARN_WAIT)

    async def namespaces(self) -> list[str]:
        """Namespace names seen in any measurement (for the page picker), cached for a minute."""
        now = self._clock()
        if self.list_namespaces and (self._namespaces_at is None or now - self._namespaces_at > 60):
            self._namespaces = sorted(await self.list_namespaces())
            self._namespaces_at = now
        return self._namespaces

    async def has_namespace(self, name: str) -> bool:
        """Whether the data has this namespace; an unknown name looks again, at most once per
        `miss_interval`, so probing random names cannot turn into a query each."""
        if name in await self.namespaces():
            return True
        now = self._clock()
        if self.list_namespaces and self._namespaces_at is not None and now - self._namespaces_at >= self._miss_interval:
            self._namespaces = sorted(await self.list_namespaces())
            self._namespaces_at = now
        return name in self._namespaces

    def unknown(self, name: str, url_prefix: str = "") -> str:
        """Why `name` is not a metric here, and what to ask for instead (for a 404)."""
        if name in CATALOG:
            return (f"metric {name!r} is in the catalog, but the {self.source.name} source (KUBEMONITOR_SOURCE) does "
                    f"not collect it; it collects {', '.join(sorted(self.known))}")
        return (f"unknown metric {name[:100]!r}: it is neither in the catalog nor a measurement in InfluxDB; "
                f"GET {url_prefix}/openapi.json lists the catalog, e.g. {url_prefix}/api/cpu/usage_rate")

    @staticmethod
    def valid_name(name: str) -> bool:
        return bool(METRIC_NAME.fullmatch(name)) and len(name) <= 200

    async def measurements(self, refresh: bool = False) -> frozenset[str]:
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at > self._ttl
        if refresh or stale:
            self._names = frozenset(await self._list())
            self._fetched_at = now
        return self._names

    async def available(self) -> list[Metric]:
        """Every metric a user can pick: the catalog (what the source collects) plus, for a source
        with a measurement per metric, the database's extra measurements."""
        if not self.source.extra_measurements:
            return list(self.known.values())
        names = await self.measurements()
        extra = [self._extra(n) for n in sorted(names) if n not in CATALOG and self.valid_name(n)]
        return list(self.known.values()) + extra

    async def resolve(self, name: str) -> Metric | None:
        """The Metric for `name`, or None when it is neither in the catalog nor in the database.

        Raises the gateway's errors (503...) only when the name is outside the catalog
        and the database has to be asked.
        """
        await self.learned()
        if name in self.known:
            return self.known[name]
        if not self.valid_name(name) or not self.source.extra_measurements or name in CATALOG:
            return None
        names = await self.measurements()
        if name not in names and self._fetched_at is not None and self._clock() - self._fetched_at >= self._miss_interval:
            names = await self.measurements(refresh=True)
        return self._extra(name) if name in names else None

    def resolve_cached(self, name: str) -> Metric | None:
        """Like resolve, without asking the database (for page routing on the event loop)."""
        if name in self.known:
            return self.known[name]
        return (self._extra(name) if self.source.extra_measurements and name not in CATALOG and self.valid_name(name)
                and name in self._names else None)

    def _extra(self, name: str) -> Metric:
        return Metric(name, "A measurement found in InfluxDB (not in Heapster's catalog).", None, in_catalog=False,
                      layout=self.source.layout(name))
