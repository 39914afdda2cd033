"""Hourly rollups in InfluxDB (README "Rollups"): the usage rule, computed once per
pod instance, clock hour and metric, and kept beside the raw points.

They live in a retention policy of kubemonitor's own (`KUBEMONITOR_ROLLUP_RP`,
infinite), so replicas share them and nothing lives on a pod's disk:

* `kubemonitor_usage_hourly` — tags metric, namespace_name, pod_name, pod_id, source
  (pod | pod_container); fields count, sum, max; time = the hour.
* `kubemonitor_rollup_hours` — one point per (metric, hour) that is complete: tag
  metric; fields pods, raw_points (samples seen, to notice late points), covered and
  intervals (the coverage: (node, interval) pairs with data, intervals per node), nodes
  (JSON {node: intervals with data}); written
  after the hour's usage points, so a half-written hour is never taken as done.

An hour is rolled up once it ended more than `KUBEMONITOR_ROLLUP_SETTLE` ago, by
kubemonitor/rollup_writer.py (the background task, `kubemonitor rollup`); `rebuild`
deletes the hour first (late points, corrections). This module is the kept side:
setting up the retention policy and reading the rollups back.

An aggregation takes the whole hours that have a marker from the rollups and the
rest (the partial hours at a range's ends, hours not rolled up yet) from raw
points: the same rule, so the same numbers.

If kubemonitor may not create the retention policy or write to it (a read-only
account), rollups are off: it says so once, in the log and in /readyz, and every
answer comes from raw points.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from .influx import InfluxError, InfluxGateway
from .influxql import layout_of, merged, statement
from .metrics import REQUEST_OF, Metric, MetricCatalog
from .source import Layout, quote
from .times import HOUR_NS
from .usage import Counted, PodKey, Scope, hour_of, per_pod, raw_hours

log = logging.getLogger("kubemonitor.rollups")
BG = "background"  # the gateway's lane for the rollup task: it never takes the API's threads
USAGE = "kubemonitor_usage_hourly"
HOURS = "kubemonitor_rollup_hours"
DAILY = "kubemonitor_usage_daily"     # the sums of a UTC day's 24 rolled-up hours
DAILY_NS = "kubemonitor_usage_daily_namespace"  # the same per namespace: what statements by group or namespace read
DAYS = "kubemonitor_rollup_days"
DAY_NS = 24 * HOUR_NS


INCREASE = "increase"  # a counter's rollups: its increases per pod instance and hour


def increase_of(metric: Metric) -> Metric:
    """The rollups' name for a counter's increases (kubemonitor/counters.py), with its layout."""
    return replace(metric, name=f"{INCREASE}({metric.name})")


HELD = "max"  # basis max's rollups: per pod instance and hour, the larger of used and requested


def held_of(metric: Metric) -> Metric:
    """The rollups' name for what `basis: max` bills of a usage metric (`max(cpu/usage_rate)`)."""
    return replace(metric, name=f"{HELD}({metric.name})")


def derived_of(metric: Metric, kind: str) -> str | None:
    """The metric a derived rollup (`kind(name)`) is made from, or None."""
    prefix = kind + "("
    return metric.name[len(prefix):-1] if metric.name.startswith(prefix) and metric.name.endswith(")") else None


async def raw_max_hours(influx: InfluxGateway, used: Metric, requested: Metric, begin: int, end: int, scope: Scope,
                        used_ns: int, requested_ns: int, lane: str = "api") -> dict[tuple[PodKey, int], Counted]:
    """Per pod instance and hour over [begin, end]: the larger of its used and requested amounts
    (a pod with no request pays its usage), as a Counted of the usage metric's samples (its
    sum x the usage interval is the amount), so the rollups' daily sums and `integral` serve."""
    u_hours, r_hours = await asyncio.gather(raw_hours(influx, used, begin, end, scope, used_ns, lane=lane, hourly=True),
                                            raw_hours(influx, requested, begin, end, scope, requested_ns, lane=lane, hourly=True))

    def combine() -> dict[tuple[PodKey, int], Counted]:
        out: dict[tuple[PodKey, int], Counted] = {}
        for key in u_hours.keys() | r_hours.keys():
            u = u_hours[key].sum * used_ns if key in u_hours else 0.0
            r = r_hours[key].sum * requested_ns if key in r_hours and r_hours[key].count else 0.0
            amount = max(u, r)  # (unit x ns)
            if amount:
                out[key] = Counted(1, amount / used_ns, None, frozenset({"pod"}))
        return out
    return await influx.compute(combine)


def counter_of(metric: Metric) -> str | None:
    """The counter whose increases `metric` names, or None."""
    return derived_of(metric, INCREASE)


@dataclass(frozen=True)
class KeptIndex:
    """What the rollups keep of one metric over a range: {hour: (intervals with collector
    data, intervals)} for each rolled-up hour, the UTC days kept whole, and - for hours kept
    since coverage is counted per node - {hour: {node: intervals with data}}."""
    hours: dict[int, tuple[int, int]]
    days: frozenset[int]
    nodes: dict[int, dict[str, int]] = field(default_factory=dict)


CLUSTER = ""  # the "node" of samples that name none (Heapster's cluster-level series, when it wrote no node's)


async def collected_intervals(influx: InfluxGateway, metric: Metric, begin: int, end: int, interval_ns: int,
                              lane: str = "api") -> dict[str, set[int]]:
    """Per node, the starts of the sample intervals in [begin, end) in which the collector
    wrote any cluster- or node-level sample of `metric`: what a statement's coverage counts.

    Per node, because Telegraf runs one collector on each: a node whose collector is down
    leaves the cluster-wide series (the other nodes') whole. Samples naming no node
    (Heapster's cluster totals) stand for the cluster only when no node's are there."""
    layout = layout_of(metric)
    if layout.collected is None:
        return {}
    measurement, field_name, condition = layout.collected
    texts, params = merged(condition)
    node_tags = [t for t in (layout.node, layout.node_alias) if t]
    group = "".join(f", {quote(t)}" for t in node_tags)
    series = await influx.query(
        statement("count({v})", Layout(measurement, field_name, cluster=layout.cluster), [*texts, "time >= $begin", "time < $end"],
                  f"GROUP BY time({interval_ns // 10**9}s){group} fill(none)"),
        {**params, "begin": begin, "end": end}, kind="coverage", lane=lane)
    nodes: dict[str, set[int]] = defaultdict(set)
    for s in series:
        tags = s.get("tags") or {}
        node = next((tags[t] for t in node_tags if tags.get(t)), CLUSTER)
        nodes[node].update(t for t, count in s.get("values", []) if count)
    if len(nodes) > 1:
        nodes.pop(CLUSTER, None)
    return dict(nodes)


def merge_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted [a, b) spans with adjacent ones joined (one query each; one gap each)."""
    out: list[tuple[int, int]] = []
    for a, b in spans:
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


class Rollups:
    """The kept rollups: their retention policy (set up, or off), and reading them back.
    Computing and keeping hours, and the background task, are RollupWriter's
    (kubemonitor/rollup_writer.py)."""

    def __init__(self, influx: InfluxGateway, catalog: MetricCatalog, *, rp: str, metrics: tuple[str, ...]):
        self.influx, self.catalog = influx, catalog
        self.rp, self.metric_names = rp, tuple(metrics)
        self.state = "starting"        # starting | on | off
        self.reason = ""

    # -- InfluxQL pieces: the identifiers come from the configuration, checked by config.py
    @property
    def _usage(self) -> str:
        return f'"{self.rp}"."{USAGE}"'

    @property
    def _hours(self) -> str:
        return f'"{self.rp}"."{HOURS}"'

    def covers(self, metric: Metric) -> bool:
        """Whether `metric` is rolled up. A counter (cpu/usage) is kept as its increases, under
        `increase(cpu/usage)` (see `increase_of`): the counter itself is read from raw points."""
        if self.state != "on":
            return False
        counter = counter_of(metric)
        if counter is not None:
            return counter in self.metric_names
        base = derived_of(metric, HELD)
        if base is not None:  # max(cpu/usage_rate): both the metric and its request are rolled up
            return base in self.metric_names and REQUEST_OF.get(base) in self.metric_names
        return metric.name in self.metric_names and not metric.cumulative

    def status(self) -> dict:
        return {"state": self.state, "retention_policy": self.rp, "metrics": list(self.metric_names),
                **({"reason": self.reason} if self.reason else {})}

    def turn_off(self, reason: str, detail: str = "") -> None:
        """`reason` is public (/readyz); `detail` (InfluxDB's own words, its address) goes to the log only."""
        if self.state != "off":
            log.warning("hourly rollups are off: %s%s; every answer comes from raw points", reason, f" ({detail})" if detail else "")
        self.state, self.reason = "off", reason

    # -- set-up ---------------------------------------------------------------------
    async def prepare(self) -> None:
        """Create the retention policy if needed; rollups are off when we may not."""
        if not self.metric_names:
            self.state, self.reason = "off", "KUBEMONITOR_ROLLUP_METRICS is empty"
            return
        db = self.influx.config.influxdb_db
        try:
            series = await self.influx.query(f'SHOW RETENTION POLICIES ON "{db}"', kind="rollup")
            names = {row[0] for s in series for row in s.get("values", [])}
            if self.rp not in names:
                await self.influx.execute(f'CREATE RETENTION POLICY "{self.rp}" ON "{db}" DURATION INF REPLICATION 1',
                                          kind="rollup")
        except InfluxError as exc:
            if exc.status in (503, 504):
                self.state, self.reason = "starting", exc.public  # try again later
                return
            if "database not found" in exc.message:
                # not a permission: the name is wrong, or the database is not created yet (try again later)
                self.state, self.reason = "starting", (f"InfluxDB has no database {db!r}: check INFLUXDB_DB, or create it "
                                                       f"(CREATE DATABASE \"{db}\")")
                return
            self.turn_off(f"cannot create the retention policy {self.rp!r} (a read-only InfluxDB account?)", exc.message)
            return
        self.state, self.reason = "on", ""

    # -- reading ------------------------------------------------------------------------
    async def index(self, metric: Metric, first: int, end: int, lane: str = "api") -> KeptIndex:
        """What is kept of `metric` in [first, end): its hours (with their coverage counts) and
        its whole days, in one query of both markers. A statement reads it once per resource
        and gives it to `usage` and to the coverage, which would otherwise each read it."""
        if not self.covers(metric) or first >= end:
            return KeptIndex({}, frozenset())
        try:
            series = await self.influx.query(
                f'SELECT "pods", "covered", "intervals", "nodes" FROM {self._hours}, "{self.rp}"."{DAYS}" WHERE "metric" = $metric '
                "AND time >= $first AND time < $end", {"metric": metric.name, "first": first, "end": end},
                kind="rollup", lane=lane)
        except InfluxError as exc:
            if exc.status != 502:
                raise
            # e.g. the retention policy was dropped: answer from raw points, set up again later
            log.warning("rollups unreadable, answering from raw points: %s", exc.message)
            self.state, self.reason = "starting", exc.public
            return KeptIndex({}, frozenset())
        hours: dict[int, tuple[int, int]] = {}
        nodes: dict[int, dict[str, int]] = {}
        days: set[int] = set()
        for s in series:
            rows = [dict(zip(s["columns"], values)) for values in s.get("values", [])]
            if s.get("name") == DAYS:
                days.update(row["time"] for row in rows)
            else:
                # an hour kept before coverage was counted has no "covered": (0, 0), i.e. unknown
                hours.update((row["time"], (int(row["covered"] or 0), int(row["intervals"] or 0))) for row in rows)
                # an hour kept before coverage was counted per node has no "nodes": read again from raw points
                nodes.update((row["time"], json.loads(row["nodes"])) for row in rows if row.get("nodes"))
        return KeptIndex(hours, frozenset(days), nodes)

    async def covered_hours(self, metric: Metric, first: int, end: int, lane: str = "api") -> list[int]:
        """The hours in [first, end) that are rolled up, in order."""
        series = await self.influx.query(f'SELECT "pods" FROM {self._hours} WHERE "metric" = $metric AND time >= $first '
                                         "AND time < $end", {"metric": metric.name, "first": first, "end": end},
                                         kind="rollup", lane=lane)
        return sorted({t for s in series for t, _ in s.get("values", [])})

    async def rolled(self, metric: Metric, first: int, end: int, scope: Scope, daily: bool = False,
                      per_namespace: bool = False, lane: str = "api") -> dict[PodKey, Counted]:
        conditions, params = scope.conditions()
        scope_text = "".join(f" AND {c}" for c in conditions)  # fixed fragments with $parameters
        source = f'"{self.rp}"."{DAILY_NS if per_namespace else DAILY}"' if daily else self._usage  # configured names
        group = '"namespace_name", "source"' if daily and per_namespace else '"namespace_name", "pod_name", "pod_id", "source"'
        series = await self.influx.query(
            f'SELECT sum("count") AS "count", sum("sum") AS "sum", max("max") AS "max" FROM {source} WHERE "metric" = $metric '
            f"AND time >= $first AND time < $end{scope_text} GROUP BY {group}",
            {**params, "metric": metric.name, "first": first, "end": end}, kind="usage", lane=lane)

        def shape() -> dict[PodKey, Counted]:
            pods: dict[PodKey, Counted] = defaultdict(Counted)
            for s in series:
                tags = s.get("tags") or {}
                key = (tags.get("namespace_name", ""), tags.get("pod_name", ""), tags.get("pod_id", ""))
                for values in s.get("values", []):
                    row = dict(zip(s["columns"], values))
                    top = row.get("max")
                    pods[key].add(Counted(int(row.get("count") or 0), float(row.get("sum") or 0.0),
                                          None if top is None else float(top), frozenset({tags.get("source", "pod")})))
            return pods
        return await self.influx.compute(shape)

    async def hours(self, metric: Metric, begin: int, end: int, scope: Scope, interval_ns: int,
                    index: KeptIndex | None = None,
                    raw: Callable[[int, int], Awaitable[dict[tuple[PodKey, int], Counted]]] | None = None,
                    ) -> dict[tuple[PodKey, int], Counted]:
        """{(pod instance, hour): Counted} for [begin, end]: the kept hours at the hourly level
        (one row per pod and hour, tags as columns: no per-series grouping), raw points for
        the rest. What `basis: max` needs: the larger of used and requested, hour by hour."""
        whole_first, whole_end = -(-begin // HOUR_NS) * HOUR_NS, hour_of(end + 1)
        if index is None:
            index = await self.index(metric, whole_first, whole_end)
        covered = merge_spans([(h, h + HOUR_NS) for h in sorted(index.hours) if whole_first <= h < whole_end])
        spans, cursor = [], begin
        for a, b in covered:
            if a > cursor:
                spans.append((cursor, a - 1))
            cursor = b
        if cursor <= end:
            spans.append((cursor, end))
        conditions, params = scope.conditions()
        scope_text = "".join(f" AND {c}" for c in conditions)  # fixed fragments with $parameters
        kept, raw_parts = await asyncio.gather(
            asyncio.gather(*(self.influx.query(
                f'SELECT "count", "sum", "max", "namespace_name", "pod_name", "pod_id", "source" FROM {self._usage} '
                f'WHERE "metric" = $metric AND time >= $first AND time < $end{scope_text}',
                {**params, "metric": metric.name, "first": a, "end": b}, kind="usage") for a, b in covered)),
            asyncio.gather(*(raw(a, b + 1) if raw is not None else  # `raw`: [a, b) (a counter's increases)
                             raw_hours(self.influx, metric, a, b, scope, interval_ns, hourly=True) for a, b in spans)))

        def shape() -> dict[tuple[PodKey, int], Counted]:
            out: dict[tuple[PodKey, int], Counted] = defaultdict(Counted)
            for series in kept:
                for s in series:
                    for values in s.get("values", []):
                        row = dict(zip(s["columns"], values))
                        key = ((row.get("namespace_name") or "", row.get("pod_name") or "", row.get("pod_id") or ""), row["time"])
                        top = row.get("max")
                        out[key].add(Counted(int(row.get("count") or 0), float(row.get("sum") or 0.0),
                                             None if top is None else float(top), frozenset({row.get("source") or "pod"})))
            for part in raw_parts:
                for (pod, hour), counted in part.items():
                    out[(pod, hour)].add(counted)
            return out
        return await self.influx.compute(shape)

    async def usage(self, metric: Metric, begin: int, end: int, scope: Scope, interval_ns: int,
                    per_namespace: bool = False, index: KeptIndex | None = None,
                    raw_spans: Callable[[int, int], Awaitable[dict[tuple[PodKey, int], Counted]]] | None = None,
                    ) -> dict[PodKey, Counted]:
        """{pod instance: Counted} for [begin, end]: rollups for the whole hours that have
        them, raw points for everything else. With `per_namespace`, {(namespace, "", ""):
        Counted}: what a statement by group or namespace needs, read from far fewer series.
        `index`: what is kept over at least the range's whole hours, if already read;
        `raw_spans`: how the rest is read ([a, b], inclusive), for a derived rollup."""
        whole_first = -(-begin // HOUR_NS) * HOUR_NS
        whole_end = hour_of(end + 1)
        if index is None:
            index = await self.index(metric, whole_first, whole_end)
        covered = sorted(h for h in index.hours if whole_first <= h < whole_end)
        # days kept whole, and wholly inside the range, are read at the daily level
        days = {d for d in index.days if whole_first <= d and d + DAY_NS <= whole_end} if covered else set()
        hourly: list[tuple[int, int]] = []
        daily: list[tuple[int, int]] = []
        spans: list[tuple[int, int]] = []
        cursor = begin
        for hour in covered:
            day = hour - hour % DAY_NS
            if day in days:
                if not daily or daily[-1] != (day, day + DAY_NS):
                    daily.append((day, day + DAY_NS))
            else:
                hourly.append((hour, hour + HOUR_NS))
            if hour > cursor:
                spans.append((cursor, hour - 1))
            cursor = hour + HOUR_NS
        if cursor <= end:
            spans.append((cursor, end))
        hourly, daily = merge_spans(hourly), merge_spans(daily)
        rolled_parts, raw_parts = await asyncio.gather(  # all at once
            asyncio.gather(*(self.rolled(metric, a, b, scope) for a, b in hourly),
                           *(self.rolled(metric, a, b, scope, daily=True, per_namespace=per_namespace) for a, b in daily)),
            asyncio.gather(*(raw_spans(a, b) if raw_spans is not None else raw_hours(self.influx, metric, a, b, scope, interval_ns)
                             for a, b in spans)))

        def merge() -> dict[PodKey, Counted]:
            pods: dict[PodKey, Counted] = defaultdict(Counted)

            def key(k: PodKey) -> PodKey:
                return (k[0], "", "") if per_namespace else k
            for part in rolled_parts:
                for k, counted in part.items():
                    pods[key(k)].add(counted)
            for raw_part in raw_parts:
                for k, counted in per_pod(raw_part).items():
                    pods[key(k)].add(counted)
            return pods
        return await self.influx.compute(merge)
