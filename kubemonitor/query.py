"""From an API request to rows: validation (SPEC §4.1), InfluxQL with bind parameters,
and the counting rule of §4.3.

Nothing from a request is ever placed in InfluxQL text: values go as bind parameters
(`$name`), and the only identifier, the metric, is quoted after it matched the
catalog or the metric-name pattern (`quote_measurement`).

The blocking part (`run`) takes an `influxdb` client and is meant for the executor.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from .metrics import METRIC_NAME, Metric

AGGREGATIONS = ("pod-by-namespace", "all-namespace", "all-pod")
SERIES_TYPES = ("pod_container", "pod", "ns", "node", "cluster", "sys_container")
FIELDS = ("namespace", "limit", "agg", "timeBeginInterval", "timeEndInterval", "pod", "type")
TAG_KEYS = ("namespace_name", "pod_name", "container_name", "nodename", "type")

DEFAULT_LIMIT = 100
DEFAULT_WINDOW_NS = 60 * 60 * 10**9
NS = 10**9
HOUR_NS = 3600 * NS
# InfluxDB 1.x stores int64 nanoseconds; these are the ends it accepts.
MIN_TIME_NS = -9223372036854775806
MAX_TIME_NS = 9223372036854775806

_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_POD = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_TIME = re.compile(
    r"^(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})"
    r"(?:[T ](?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<frac>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TIME_FORMATS = ("YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS[.ffffff]] (T or a space, optionally Z or +HH:MM), "
                "or a number of Unix seconds")

# How many container-only pods one fallback query names (keeps the URL and the OR short).
FALLBACK_CHUNK = 100


class BadRequest(ValueError):
    """Invalid request input; the message names the field and the fix (-> 400)."""


@dataclass(frozen=True)
class ApiQuery:
    namespace: str = "default"
    limit: int = DEFAULT_LIMIT
    agg: str | None = None
    begin_ns: int = 0
    end_ns: int = 0
    pod: str | None = None
    type: str | None = None
    ignored_agg: Any = None  # an `agg` value that is not an aggregation (seed contract: raw mode)


# ---------------------------------------------------------------- request validation
def parse_body(body: bytes) -> dict:
    """The request body as a dict; an empty body is {} (all defaults)."""
    if not body.strip():
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text; send a JSON object such as "
                         '{"namespace": "default", "limit": 100}') from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                         'send a JSON object such as {"namespace": "default", "limit": 100}') from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object, not {_json_type(data)}; "
                         'send e.g. {"namespace": "default", "agg": "pod-by-namespace"}')
    return data


def _reject_constant(name: str):
    raise BadRequest(f"the body contains {name}, which is not valid JSON; send numbers as finite values")


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def validate(data: dict, *, now_ns: int, max_limit: int) -> ApiQuery:
    """Check every field of SPEC §4.1 and apply the defaults."""
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise BadRequest(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                         f"allowed fields are {', '.join(FIELDS)}")

    namespace = data.get("namespace", "default")
    if not isinstance(namespace, str):
        raise BadRequest(f"'namespace' must be a string, not {_json_type(namespace)}; e.g. \"default\"")
    if len(namespace) > 63 or not _NAMESPACE.match(namespace):
        raise BadRequest("'namespace' must be a Kubernetes namespace name (lower-case letters, digits and '-', "
                         "at most 63 characters), e.g. \"team-a\"")

    limit = _limit(data.get("limit", DEFAULT_LIMIT), max_limit)

    raw_agg = data.get("agg")
    agg = raw_agg if isinstance(raw_agg, str) and raw_agg in AGGREGATIONS else None
    ignored = raw_agg if agg is None and raw_agg not in (None, "") else None

    begin = _time("timeBeginInterval", data.get("timeBeginInterval"), end_of_day=False)
    end = _time("timeEndInterval", data.get("timeEndInterval"), end_of_day=True)
    end_ns = now_ns if end is None else end
    # Without a begin, the hour before the end (before now when no end is given either).
    begin_ns = end_ns - DEFAULT_WINDOW_NS if begin is None else begin
    if begin_ns > end_ns:
        raise BadRequest(f"timeBeginInterval ({format_ns(begin_ns)}) is after timeEndInterval ({format_ns(end_ns)}); "
                         "swap them or widen the range")

    pod = data.get("pod")
    if pod is not None:
        if not isinstance(pod, str) or len(pod) > 253 or not _POD.match(pod):
            raise BadRequest("'pod' must be a Kubernetes pod name (lower-case letters, digits, '-' and '.', "
                             "at most 253 characters), e.g. \"web-1\"")
    series_type = data.get("type")
    if series_type is not None and (not isinstance(series_type, str) or series_type not in SERIES_TYPES):
        raise BadRequest(f"'type' must be one of {', '.join(SERIES_TYPES)}")
    if agg is not None and (pod is not None or series_type is not None):
        raise BadRequest(f"'pod' and 'type' apply only without aggregation; drop them or drop \"agg\": \"{agg}\"")

    return ApiQuery(namespace=namespace, limit=limit, agg=agg, begin_ns=begin_ns, end_ns=end_ns,
                    pod=pod, type=series_type, ignored_agg=ignored)


def _limit(value: Any, max_limit: int) -> int:
    hint = f"give a whole number from 1 to {max_limit}, e.g. 100"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadRequest(f"'limit' must be a whole number, not {_json_type(value)}; {hint}")
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]{1,12}", value):
            raise BadRequest(f"'limit' {value[:40]!r} is not a whole number; {hint}")
        value = int(value)
    if not 1 <= value <= max_limit:
        raise BadRequest(f"'limit' {value} is out of range; {hint} (KUBEMONITOR_MAX_LIMIT={max_limit})")
    return value


def _time(field: str, value: Any, *, end_of_day: bool) -> int | None:
    """Nanoseconds since the epoch, or None for a missing/null/empty value (default)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRequest(f"'{field}' must be a time as text or a number, not {_json_type(value)}; use {TIME_FORMATS}")
    if isinstance(value, (int, float)):
        try:
            ns = int(Decimal(repr(value)) * NS)
        except (InvalidOperation, ValueError):
            raise BadRequest(f"'{field}' {value!r} is not a usable number of Unix seconds") from None
    else:
        ns = _parse_time_text(field, value, end_of_day)
    if not MIN_TIME_NS <= ns <= MAX_TIME_NS:
        raise BadRequest(f"'{field}' is outside the range InfluxDB can store (1677-09-22 to 2262-04-11)")
    return ns


def _parse_time_text(field: str, text: str, end_of_day: bool) -> int:
    m = _TIME.match(text.strip())
    if not m:
        raise BadRequest(f"'{field}' {text[:60]!r} is not a time; use {TIME_FORMATS}")
    g = m.groupdict()
    tz = UTC
    if g["tz"] and g["tz"] != "Z":
        sign = 1 if g["tz"][0] == "+" else -1
        hh, mm = int(g["tz"][1:3]), int(g["tz"][4:6])
        if hh > 23 or mm > 59:
            raise BadRequest(f"'{field}' has an impossible UTC offset {g['tz']!r}; use ±HH:MM with HH ≤ 23")
        tz = timezone(sign * timedelta(hours=hh, minutes=mm))
    try:
        dt = datetime(int(g["y"]), int(g["mo"]), int(g["d"]), int(g["h"] or 0), int(g["mi"] or 0),
                      int(g["s"] or 0), tzinfo=tz)
    except ValueError as exc:
        raise BadRequest(f"'{field}' {text[:60]!r} is not a real date or time ({exc}); "
                         "check the day of the month and the hour") from None
    delta = dt - _EPOCH
    ns = (delta.days * 86400 + delta.seconds) * NS + int((g["frac"] or "0").ljust(9, "0"))
    if g["h"] is None and end_of_day:
        ns += 86400 * NS - 1  # a date-only end covers the whole day
    return ns


def format_ns(ns: int) -> str:
    """RFC 3339 UTC with Z, nanoseconds trimmed like InfluxDB does."""
    secs, frac = divmod(ns, NS)
    text = (_EPOCH + timedelta(seconds=secs)).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


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
    """Execute `q` (blocking). `select(client, influxql, params, epoch)` returns series."""
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
    for series in select(client, influxql, params, None):
        columns = series["columns"]
        for values in series.get("values", []):
            point = dict(zip(columns, values))
            row = {"time": point.pop("time"), "value": _number(point.pop("value"))}
            for key in TAG_KEYS:
                row[key] = _tag(point.pop(key, None))
            row.update((k, v) for k, v in sorted(point.items()) if _tag(v) is not None)
            rows.append(row)
    return rows


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def pod_usage(client, select, metric: Metric, q: ApiQuery, excluded: Iterable[str]) -> dict[tuple[str, str], Usage]:
    """Each pod's usage, counted once (SPEC §4.3).

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
    for series in select(client, influxql, {**params, "pod_type": "pod"}, None):
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
        key for series in select(client, influxql, {**params, "container_type": "pod_container"}, None)
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
        for series in select(client, influxql, {**params, **pod_params, "container_type": "pod_container"}, "ns"):
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
