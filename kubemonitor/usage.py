"""Usage under the counting rule (README "Aggregations"): InfluxQL with bind
parameters, and the rows the API returns. Shared by the API and the poller.

Nothing from a request is ever placed in InfluxQL text: values go as bind parameters
(`$name`), and the only identifier, the metric, is quoted after it matched the
catalog or the metric-name pattern (`quote_measurement`).

Everything here is blocking: it takes an `influxdb` client and a `select(client,
influxql, params)` function (times in the answer are integer nanoseconds) and is meant for the InfluxDB gateway's executor.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .metrics import METRIC_NAME, Metric
from .request import ApiQuery
from .times import HOUR_NS, NS, format_ns

TAG_KEYS = ("namespace_name", "pod_name", "container_name", "nodename", "type")
# How many container-only pods one fallback query names (keeps the URL and the OR short).
FALLBACK_CHUNK = 100
# A raw range at most this long is read with one statement (see RawPlan).
SHORT_RANGE_NS = 2 * HOUR_NS


# ---------------------------------------------------------------- InfluxQL
def quote_measurement(metric: Metric) -> str:
    """The metric as an InfluxQL identifier. Only names that match the metric pattern get here."""
    if not METRIC_NAME.fullmatch(metric.name):
        raise ValueError(f"refusing to quote {metric.name!r}")
    return '"' + metric.name + '"'


def statement(fields: str, metric: Metric, conditions: Iterable[str], tail: str = "") -> str:
    """Assemble a SELECT from fixed fragments; every value in `conditions` is a `$param`."""
    parts = ["SELECT", fields, "FROM", quote_measurement(metric), "WHERE", " AND ".join(conditions)]
    if tail:
        parts.append(tail)
    return " ".join(parts)


def raw_statement(metric: Metric, q: ApiQuery) -> tuple[str, dict]:
    conditions = ['"namespace_name" = $namespace', "time >= $begin", "time <= $end"]
    params: dict[str, Any] = {"namespace": q.namespace, "begin": q.begin_ns, "end": q.end_ns, "limit": q.limit}
    if q.pod is not None:
        conditions.append('"pod_name" = $pod')
        params["pod"] = q.pod
    if q.type is not None:
        conditions.append('"type" = $type')
        params["type"] = q.type
    return statement('"value", *::tag', metric, conditions, "ORDER BY time DESC LIMIT $limit"), params


def raw_points(select, client, metric: Metric, q: ApiQuery) -> list[dict]:
    """Up to `limit` points, newest first (no aggregation). Blocking: for the executor."""
    influxql, params = raw_statement(metric, q)
    rows = []
    for series in select(client, influxql, params):
        columns = series["columns"]
        for values in series.get("values", []):
            point = dict(zip(columns, values))
            row = {"time": format_ns(point.pop("time")), "value": _number(point.pop("value"))}
            for key in TAG_KEYS:
                row[key] = _tag(point.pop(key, None))
            row.update((k, v) for k, v in sorted(point.items()) if _tag(v) is not None)
            rows.append(row)
    return rows


def _tag(value: Any) -> Any:
    return None if value in (None, "") else value


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


# ---------------------------------------------------------------- the usage rule
# A pod instance: (namespace, pod, pod_id); pod_id is "" when the series carry none.
PodKey = tuple[str, str, str]


@dataclass(frozen=True)
class Scope:
    """Which namespaces an aggregation covers: one (`namespace`), or all but `excluded`
    (of `only`, when given: a scoped user's or client's namespaces)."""
    namespace: str | None = None
    excluded: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None

    def conditions(self) -> tuple[list[str], dict]:
        if self.namespace is not None:
            return ['"namespace_name" = $namespace'], {"namespace": self.namespace}
        names = sorted(set(self.excluded))
        conditions = [f'"namespace_name" != $excluded_{i}' for i in range(len(names))]
        params: dict[str, Any] = {f"excluded_{i}": name for i, name in enumerate(names)}
        if self.only is not None:
            allowed = sorted(set(self.only) - set(names))
            # An empty list matches nothing: a namespace name is never the empty string.
            conditions.append("(" + " OR ".join(f'"namespace_name" = $only_{i}' for i in range(max(1, len(allowed)))) + ")")
            params.update({f"only_{i}": name for i, name in enumerate(allowed or [""])})
        return conditions, params

    def covers(self, namespace: str) -> bool:
        if self.namespace is not None:
            return namespace == self.namespace
        return namespace not in self.excluded and (self.only is None or namespace in self.only)


@dataclass
class Counted:
    """The counted samples of one pod instance (over an hour, or summed over hours)."""
    count: int = 0
    sum: float = 0.0
    max: float | None = None
    sources: frozenset[str] = frozenset()   # "pod" and/or "pod_container": which series were counted

    def add(self, other: Counted) -> None:
        self.count += other.count
        self.sum += other.sum
        if other.max is not None and (self.max is None or other.max > self.max):
            self.max = other.max
        self.sources = self.sources | other.sources


def hour_of(t_ns: int) -> int:
    return t_ns - t_ns % HOUR_NS


def _key(tags: dict | None) -> PodKey:
    tags = tags or {}
    return (tags.get("namespace_name", ""), tags.get("pod_name", ""), tags.get("pod_id", ""))


class RawPlan:
    """The usage rule over raw points of one metric, for [begin, end] (inclusive).

    Within each clock hour a pod instance is counted from its pod-level samples when
    it has any in that hour — in the whole hour, even where the range covers only part
    of it, so that any split of a range adds up — else from its container-level
    samples, bucketed per sample interval. Steps:

    1. `first()`: four independent statements, run concurrently — per pod instance,
       the count, sum and max of its pod-level samples; the hours that have pod-level
       samples (count() is InfluxDB's cheap path); the first and the last container
       sample (cheap too: they read block headers). A range of two hours or less
       (the ends of a range answered from rollups) costs InfluxDB little per point but
       a lot per statement, so it uses one: per hour and series type, count, sum, max;
    2. `second()`: only for the pod instances whose containers reported in an hour
       without pod-level samples (none when every pod has pod-level series all along,
       as Heapster writes them): the sums of their containers per sample interval,
       and — for an hour the range covers only partly — whether the rest of that hour
       has pod-level samples;
    3. `combine()`: {(pod instance, hour): Counted}. Pod-level samples are keyed by the
       range's first hour (exact for a range within one hour, as rollups use it);
       container-counted samples by their own hour.

    ns, node, cluster and sys_container series are never read.
    """

    def __init__(self, metric: Metric, begin_ns: int, end_ns: int, scope: Scope, interval_ns: int):
        self.metric, self.begin, self.end, self.scope, self.interval_ns = metric, begin_ns, end_ns, scope, interval_ns
        self.interval = f"{interval_ns // NS}s"
        # the hours the range covers only partly
        self.edges = {h for h, covered in ((hour_of(begin_ns), begin_ns % HOUR_NS == 0),
                                            (hour_of(end_ns), (end_ns + 1) % HOUR_NS == 0)) if not covered}
        self.needs: dict[PodKey, set[int]] = {}
        self.checked_edges = False
        self.compact = end_ns - begin_ns < SHORT_RANGE_NS

    def _common(self) -> tuple[list[str], dict]:
        conditions, params = self.scope.conditions()
        return ["time >= $begin", "time <= $end", *conditions], {**params, "begin": self.begin, "end": self.end,
                                                                  "pod_type": "pod", "container_type": "pod_container"}

    def first(self) -> list[tuple[str, dict]]:
        conditions, params = self._common()
        if self.compact:
            return [(statement('count("value") AS "count", sum("value") AS "sum", max("value") AS "max"', self.metric,
                               ['("type" = $pod_type OR "type" = $container_type)', *conditions],
                               'GROUP BY time(1h), "namespace_name", "pod_name", "pod_id", "type" fill(none)'), params)]
        by_pod = 'GROUP BY "namespace_name", "pod_name", "pod_id"'
        pod, container = ['"type" = $pod_type', *conditions], ['"type" = $container_type', *conditions]
        return [(statement('count("value") AS "count", sum("value") AS "sum", max("value") AS "max"', self.metric, pod, by_pod), params),
                (statement('count("value") AS "count"', self.metric, pod,
                           'GROUP BY time(1h), "namespace_name", "pod_name", "pod_id" fill(none)'), params),
                (statement('first("value")', self.metric, container, by_pod), params),
                (statement('last("value")', self.metric, container, by_pod), params)]

    def second(self, first: list[list[dict]]) -> list[tuple[str, dict]]:
        """The container sums (and edge-hour checks) for pod instances whose containers
        reported in an hour without pod-level samples."""
        pod_hours: dict[PodKey, set[int]] = defaultdict(set)
        container_hours: dict[PodKey, set[int]] = defaultdict(set)
        if self.compact:
            for s in first[0]:
                kind = (s.get("tags") or {}).get("type")
                hours = pod_hours if kind == "pod" else container_hours
                hours[_key(s.get("tags"))].update(t for t, count, *_ in s.get("values", []) if count)
        else:
            for s in first[1]:
                pod_hours[_key(s.get("tags"))].update(t for t, count in s.get("values", []) if count)
            extent: dict[PodKey, list[int]] = {}
            for s in first[2] + first[3]:
                for t, _value in s.get("values", []):
                    extent.setdefault(_key(s.get("tags")), []).append(t)
            for key, times in extent.items():
                container_hours[key] = set(range(hour_of(min(times)), hour_of(max(times)) + HOUR_NS, HOUR_NS))
        self.needs = {}
        for key, hours in container_hours.items():
            missing = hours - pod_hours.get(key, set())
            if missing:
                self.needs[key] = missing
        conditions, params = self._common()
        out = []
        pods = sorted(self.needs)
        for start in range(0, len(pods), FALLBACK_CHUNK):
            which, chunk_params = _pods_condition(pods[start:start + FALLBACK_CHUNK])
            out.append((statement('sum("value") AS "sum"', self.metric, ['"type" = $container_type', *conditions, which],
                                  f'GROUP BY time({self.interval}), "namespace_name", "pod_name", "pod_id" fill(none)'),
                        {**params, **chunk_params}))
        at_edges = sorted(key for key, hours in self.needs.items() if hours & self.edges)
        self.checked_edges = bool(at_edges)
        if at_edges:
            scope_conditions, scope_params = self.scope.conditions()
            which, chunk_params = _pods_condition(at_edges)
            out.append((statement('count("value") AS "count"', self.metric,
                                  ['"type" = $pod_type', "time >= $hours_begin", "time < $hours_end", *scope_conditions, which],
                                  'GROUP BY time(1h), "namespace_name", "pod_name", "pod_id" fill(none)'),
                        {**scope_params, **chunk_params, "pod_type": "pod", "hours_begin": min(self.edges),
                         "hours_end": max(self.edges) + HOUR_NS}))
        return out

    def combine(self, first: list[list[dict]], second: list[list[dict]]) -> dict[tuple[PodKey, int], Counted]:
        hours: dict[tuple[PodKey, int], Counted] = {}
        for series in first[0]:
            if (series.get("tags") or {}).get("type", "pod") != "pod":
                continue  # compact: the container rows only told which hours need them
            key = _key(series.get("tags"))
            for values in series.get("values", []):
                row = dict(zip(series["columns"], values))
                if row.get("count"):
                    top = row.get("max")
                    hour = hour_of(row["time"]) if self.compact else hour_of(self.begin)
                    hours[(key, hour)] = Counted(row["count"], float(row.get("sum") or 0.0),
                                                 None if top is None else float(top), frozenset({"pod"}))
        sums = second[:-1] if self.checked_edges else second
        if self.checked_edges:  # pod-level samples elsewhere in an edge hour: that hour is the pod's, not its containers'
            for series in second[-1]:
                key = _key(series.get("tags"))
                for t, count in series.get("values", []):
                    if count and key in self.needs:
                        self.needs[key].discard(t)
        for result in sums:
            for series in result:
                key = _key(series.get("tags"))
                wanted = self.needs.get(key, set())
                for t, total in series.get("values", []):
                    hour = hour_of(t)
                    if total is None or hour not in wanted:
                        continue
                    counted = hours.get((key, hour))
                    if counted is None:
                        counted = hours[(key, hour)] = Counted()
                    counted.add(Counted(1, float(total), float(total), frozenset({"pod_container"})))
        return hours


def _pods_condition(pods: list[PodKey]) -> tuple[str, dict]:
    """`(namespace = .. AND pod = .. AND pod_id = ..) OR ...` for a chunk of pod instances, as bind parameters."""
    params: dict[str, Any] = {}
    alternatives = []
    for i, (ns, pod, pod_id) in enumerate(pods):
        alternatives.append(f'("namespace_name" = $ns_{i} AND "pod_name" = $pod_{i} AND "pod_id" = $id_{i})')
        params.update({f"ns_{i}": ns, f"pod_{i}": pod, f"id_{i}": pod_id})
    return "(" + " OR ".join(alternatives) + ")", params


def sample_interval_ns(metric: Metric, config) -> int:
    """How long each sample of `metric` stands for (the collector's interval)."""
    return int(round(config.sample_interval * NS))


def integral(total: float, interval_ns: int) -> float:
    """The usage rule: each counted sample stands for one sample interval (unit x hours)."""
    return total * interval_ns / HOUR_NS


def pod_rows(metric: Metric, pods: dict[PodKey, Counted], interval_ns: int) -> list[dict]:
    """One row per (namespace, pod): its instances summed, sorted by namespace, then pod."""
    by_name: dict[tuple[str, str], Counted] = defaultdict(Counted)
    for (ns, pod, _pod_id), counted in pods.items():
        by_name[(ns, pod)].add(counted)
    return [_row(metric, counted, interval_ns, namespace_name=ns, pod_name=pod, series_type=_series_type(counted))
            for (ns, pod), counted in sorted(by_name.items()) if counted.count]


def namespace_rows(metric: Metric, pods: dict[PodKey, Counted], interval_ns: int) -> list[dict]:
    """One row per namespace: the sum of its pods' rows (max: the largest sample)."""
    totals: dict[str, Counted] = defaultdict(Counted)
    names: dict[str, set[str]] = defaultdict(set)
    for (ns, pod, _pod_id), counted in pods.items():
        if counted.count:
            totals[ns].add(counted)
            names[ns].add(pod)
    return [_row(metric, counted, interval_ns, namespace_name=ns, pods=len(names[ns])) for ns, counted in sorted(totals.items())]


def _series_type(counted: Counted) -> str:
    return next(iter(counted.sources)) if len(counted.sources) == 1 else "mixed"


def _row(metric: Metric, counted: Counted, interval_ns: int, **keys: Any) -> dict:
    return {**keys, "count": counted.count, "sum": counted.sum,
            "mean": counted.sum / counted.count if counted.count else None, "max": counted.max,
            "integral": integral(counted.sum, interval_ns), "unit": metric.unit, "integral_unit": metric.integral_unit}


def per_pod(hours: dict[tuple[PodKey, int], Counted]) -> dict[PodKey, Counted]:
    pods: dict[PodKey, Counted] = defaultdict(Counted)
    for (key, _hour), counted in hours.items():
        pods[key].add(counted)
    return pods


async def raw_hours(influx, metric: Metric, begin_ns: int, end_ns: int, scope: Scope,
                    interval_ns: int, lane: str = "api") -> dict[tuple[PodKey, int], Counted]:
    """The usage rule over raw points: {(pod instance, hour): Counted} for [begin, end]."""
    plan = RawPlan(metric, begin_ns, end_ns, scope, interval_ns)
    first = list(await asyncio.gather(*(influx.query(text, params, kind="usage", lane=lane) for text, params in plan.first())))
    statements = await influx.compute(plan.second, first)
    second = list(await asyncio.gather(*(influx.query(text, params, kind="usage", lane=lane) for text, params in statements)))
    return await influx.compute(plan.combine, first, second)


async def aggregate(influx, metric: Metric, q: ApiQuery, excluded: Iterable[str], interval_ns: int,
                    rollups=None, only: Iterable[str] | None = None) -> list[dict]:
    """The rows of an aggregation (README "Aggregations"): from hourly rollups for the
    whole hours they cover, from raw points for the rest. `only`: a scoped client's
    namespaces (cluster-wide aggregations cover those alone)."""
    scope = Scope(q.namespace if q.agg == "pod-by-namespace" else None, tuple(excluded),
                  None if only is None else tuple(sorted(only)))
    if rollups is not None:
        pods = await rollups.usage(metric, q.begin_ns, q.end_ns, scope, interval_ns)
    else:
        pods = await influx.compute(per_pod, await raw_hours(influx, metric, q.begin_ns, q.end_ns, scope, interval_ns))
    if q.agg == "all-namespace":
        return await influx.compute(namespace_rows, metric, pods, interval_ns)
    return await influx.compute(pod_rows, metric, pods, interval_ns)


# ---------------------------------------------------------------- live views
@dataclass(frozen=True)
class Window:
    """A chart's range and its bucket width: the bucket grows with the range, so a
    line never carries more than about 500 points."""
    name: str
    span_ns: int
    bucket: str      # InfluxQL duration literal (from this fixed table, never from a request)
    bucket_ns: int


MINUTE_NS = 60 * 10**9
WINDOWS: dict[str, Window] = {w.name: w for w in (
    Window("1h", 60 * MINUTE_NS, "1m", MINUTE_NS),
    Window("6h", 360 * MINUTE_NS, "1m", MINUTE_NS),
    Window("24h", 1440 * MINUTE_NS, "5m", 5 * MINUTE_NS),
    Window("7d", 10080 * MINUTE_NS, "30m", 30 * MINUTE_NS),
)}
DEFAULT_WINDOW = "1h"
LATEST_WINDOW_NS = 60 * MINUTE_NS   # a container is listed while it has a point this recent
LATEST_ROWS = 500


def view_statements(metric: Metric, namespace: str | None, window: Window, excluded: Iterable[str],
                    now_ns: int) -> tuple[str, dict]:
    """Three statements sent as one request: the bucket means of pod-level series, of
    container-level series (per container), and the latest point of each series.
    `namespace` None is the cluster view (excluded namespaces left out)."""
    m = quote_measurement(metric)
    since = (now_ns - window.span_ns) // window.bucket_ns * window.bucket_ns
    params: dict[str, Any] = {"pod_type": "pod", "container_type": "pod_container", "since": since,
                              "latest_since": now_ns - LATEST_WINDOW_NS}
    if namespace is None:
        scope_text = ""
        for i, name in enumerate(sorted(set(excluded))):
            scope_text += f' AND "namespace_name" != $excluded_{i}'
            params[f"excluded_{i}"] = name
    else:
        scope_text = ' AND "namespace_name" = $namespace'
        params["namespace"] = namespace
    group = f'GROUP BY time({window.bucket}), "namespace_name", "pod_name"'
    pods = f'SELECT mean("value") FROM {m} WHERE "type" = $pod_type AND time >= $since{scope_text} {group} fill(none)'
    containers = (f'SELECT mean("value") FROM {m} WHERE "type" = $container_type AND time >= $since{scope_text} '
                  f'{group}, "container_name" fill(none)')
    latest = (f'SELECT last("value") AS "value" FROM {m} WHERE ("type" = $pod_type OR "type" = $container_type) '
              f'AND time >= $latest_since{scope_text} '
              'GROUP BY "namespace_name", "pod_name", "container_name", "nodename", "type"')
    return "; ".join((pods, containers, latest)), params


def bucket_usage(pod_series: list[dict], container_series: list[dict]) -> dict[tuple[str, str], dict[int, float]]:
    """Each pod's value per bucket under the counting rule: its pod-level mean when it
    has pod-level samples in that bucket, else the sum of its containers' means."""
    pods: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for s in pod_series:
        tags = s.get("tags") or {}
        line = pods[(tags.get("namespace_name", ""), tags.get("pod_name", ""))]
        for t, value in s.get("values", []):
            if value is not None:
                line[t] = value
    from_containers: dict[tuple[str, str], dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for s in container_series:
        tags = s.get("tags") or {}
        line = from_containers[(tags.get("namespace_name", ""), tags.get("pod_name", ""))]
        for t, value in s.get("values", []):
            if value is not None:
                line[t] += value
    for key, line in from_containers.items():
        counted = pods[key]
        for t, value in line.items():
            counted.setdefault(t, value)
    return pods


def view_lines(namespace: str | None, pods: dict[tuple[str, str], dict[int, float]]) -> dict[str, dict[int, float]]:
    """One line per namespace (cluster view) or per pod (namespace view): its pods summed."""
    lines: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for (ns, pod), points in pods.items():
        line = lines[ns if namespace is None else pod]
        for t, value in points.items():
            line[t] += value
    return lines


def latest_rows(latest_series: list[dict], stale_before_ns: int, limit: int | None = LATEST_ROWS) -> list[dict]:
    """The newest point of each pod's counted series (its containers when it has
    them, else its pod-level series), newest pods first within a namespace; a row
    older than `stale_before_ns` is marked stale (the pod stopped reporting)."""
    pods: dict[tuple[str, str], list[dict]] = {}
    for s in latest_series:
        tags = {k: (v or None) for k, v in (s.get("tags") or {}).items()}
        for t, value in s.get("values", []):
            row = {"time": format_ns(t), "value": None if value is None else float(value)}
            row.update({k: tags.get(k) for k in TAG_KEYS})
            row["stale"] = t < stale_before_ns
            pods.setdefault((row["namespace_name"] or "", row["pod_name"] or ""), []).append(row)
    rows: list[dict] = []
    for key in sorted(pods):
        candidates = pods[key]
        containers = [r for r in candidates if r["type"] == "pod_container"]
        rows.extend(sorted(containers, key=lambda r: r["container_name"] or "") or candidates)
    return rows[:limit]
