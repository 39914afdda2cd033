"""Usage under the counting rule (README "Aggregations"): InfluxQL with bind
parameters, and the rows the API returns. Shared by the API and the poller.

Nothing from a request is ever placed in InfluxQL text: values go as bind parameters
(`$name`), and the only identifier, the metric, is quoted after it matched the
catalog or the metric-name pattern (`quote_measurement`).

Everything here is blocking: it takes an `influxdb` client and a `select(client,
influxql, params)` function (times in the answer are integer nanoseconds) and is meant for the InfluxDB gateway's executor.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .metrics import METRIC_NAME, Metric
from .request import ApiQuery
from .times import HOUR_NS, format_ns

TAG_KEYS = ("namespace_name", "pod_name", "container_name", "nodename", "type")
# How many container-only pods one fallback query names (keeps the URL and the OR short).
FALLBACK_CHUNK = 100


# ---------------------------------------------------------------- InfluxQL
def quote_measurement(metric: Metric) -> str:
    """The metric as an InfluxQL identifier. Only names that match the metric pattern get here."""
    if not METRIC_NAME.match(metric.name):
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


def scope(q: ApiQuery, excluded: Iterable[str]) -> tuple[list[str], dict]:
    """Time range and namespace conditions of an aggregation."""
    conditions = ["time >= $begin", "time <= $end"]
    params: dict[str, Any] = {"begin": q.begin_ns, "end": q.end_ns}
    if q.agg == "pod-by-namespace":
        conditions.append('"namespace_name" = $namespace')
        params["namespace"] = q.namespace
    else:
        for i, name in enumerate(sorted(set(excluded))):
            conditions.append(f'"namespace_name" != $excluded_{i}')
            params[f"excluded_{i}"] = name
    return conditions, params


# ---------------------------------------------------------------- execution (blocking)
@dataclass
class Usage:
    """A pod's (or namespace's) samples under the counting rule."""
    count: int = 0
    sum: float = 0.0
    max: float | None = None
    integral: float = 0.0
    pods: int = 0
    series_type: str = "pod"

    def add(self, count: int, total: float, top: float | None, integral: float) -> None:
        self.count += count
        self.sum += total
        self.integral += integral
        if top is not None and (self.max is None or top > self.max):
            self.max = top

    def as_row(self, metric: Metric, **keys: Any) -> dict:
        return {**keys, "count": self.count, "sum": self.sum,
                "mean": self.sum / self.count if self.count else None, "max": self.max,
                "integral": self.integral, "unit": metric.unit, "integral_unit": metric.integral_unit}


def _tag(value: Any) -> Any:
    return None if value in (None, "") else value


def run(client, select, metric: Metric, q: ApiQuery, excluded: Iterable[str]) -> list[dict]:
    """Execute `q` (blocking). `select(client, influxql, params)` returns series."""
    if q.agg is None:
        return raw_points(client, select, metric, q)
    pods = {key: usage for key, usage in pod_usage(client, select, metric, q, excluded).items() if usage.count}
    if q.agg == "all-namespace":
        return namespace_rows(metric, pods)
    return [usage.as_row(metric, namespace_name=ns, pod_name=pod, series_type=usage.series_type)
            for (ns, pod), usage in sorted(pods.items())]


def raw_points(client, select, metric: Metric, q: ApiQuery) -> list[dict]:
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


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def pod_usage(client, select, metric: Metric, q: ApiQuery, excluded: Iterable[str]) -> dict[tuple[str, str], Usage]:
    """Each pod's usage, counted once (README "Aggregations").

    1. Pod-level series (`type = 'pod'`): InfluxDB computes count/sum/max/integral per
       series (GROUP BY *: a pod restarted on another node is two series); they add up.
    2. Pods that have container-level series but no pod-level series in the range are
       counted from the per-timestamp sum of their containers, computed here from the
       raw points of just those pods (rare: Heapster writes pod-level series).
    ns, node, cluster and sys_container series are never read.
    """
    conditions, params = scope(q, excluded)
    pods: dict[tuple[str, str], Usage] = defaultdict(Usage)
    influxql = statement('count("value") AS "count", sum("value") AS "sum", max("value") AS "max", '
                         'integral("value", 1h) AS "integral"', metric,
                         ['"type" = $pod_type', *conditions], "GROUP BY *")
    for series in select(client, influxql, {**params, "pod_type": "pod"}):
        tags = series.get("tags") or {}
        key = (tags.get("namespace_name", ""), tags.get("pod_name", ""))
        # InfluxDB 1.x may return INTEGRAL in a row of its own (time 0) beside the row of
        # the other aggregates, so merge by column name and treat null as "not in this row".
        for values in series.get("values", []):
            row = dict(zip(series["columns"], values))
            top = row.get("max")
            pods[key].add(row.get("count") or 0, float(row.get("sum") or 0.0),
                          None if top is None else float(top), float(row.get("integral") or 0.0))

    influxql = statement('count("value") AS "count"', metric, ['"type" = $container_type', *conditions],
                         'GROUP BY "namespace_name", "pod_name"')
    container_only = sorted(
        key for series in select(client, influxql, {**params, "container_type": "pod_container"})
        if (key := ((series.get("tags") or {}).get("namespace_name", ""),
                    (series.get("tags") or {}).get("pod_name", ""))) not in pods)
    for start in range(0, len(container_only), FALLBACK_CHUNK):
        chunk = container_only[start:start + FALLBACK_CHUNK]
        pod_params: dict[str, Any] = {}
        alternatives = []
        for i, (ns, pod) in enumerate(chunk):
            alternatives.append(f'("namespace_name" = $ns_{i} AND "pod_name" = $pod_{i})')
            pod_params[f"ns_{i}"], pod_params[f"pod_{i}"] = ns, pod
        influxql = statement('"value"', metric,
                             ['"type" = $container_type', *conditions, "(" + " OR ".join(alternatives) + ")"],
                             'GROUP BY "namespace_name", "pod_name"')
        for series in select(client, influxql, {**params, **pod_params, "container_type": "pod_container"}):
            tags = series.get("tags") or {}
            by_time: dict[int, float] = defaultdict(float)
            for t, value in series.get("values", []):
                if value is not None:
                    by_time[t] += value
            usage = pods[(tags.get("namespace_name", ""), tags.get("pod_name", ""))]
            usage.series_type = "pod_container"
            usage.add(*summarize(sorted(by_time.items())))
    return pods


def summarize(points: list[tuple[int, float]]) -> tuple[int, float, float | None, float]:
    """count, sum, max and trapezoidal integral (value x hours) of time-sorted (ns, value) points."""
    integral = 0.0
    for (t0, v0), (t1, v1) in zip(points, points[1:]):
        integral += (t1 - t0) * (v0 + v1) / 2 / HOUR_NS
    values = [v for _, v in points]
    return len(values), float(sum(values)), (float(max(values)) if values else None), integral


def namespace_rows(metric: Metric, pods: dict[tuple[str, str], Usage]) -> list[dict]:
    namespaces: dict[str, Usage] = defaultdict(Usage)
    for (ns, _pod), usage in pods.items():
        total = namespaces[ns]
        total.add(usage.count, usage.sum, usage.max, usage.integral)
        total.pods += 1
    return [usage.as_row(metric, namespace_name=ns, pods=usage.pods) for ns, usage in sorted(namespaces.items())]


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


def latest_rows(latest_series: list[dict], stale_before_ns: int) -> list[dict]:
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
    return rows[:LATEST_ROWS]
