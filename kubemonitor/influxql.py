"""The InfluxQL kubemonitor sends, assembled from fixed fragments (README "Aggregations").

Nothing from a request is ever placed in InfluxQL text: values go as bind parameters
(`$name`). The identifiers — measurement, field and tag names — come from the data
source's layout of the metric (kubemonitor/source.py: a fixed table, or for Heapster a
measurement name that matched the catalog or the metric-name pattern), quoted.

Here: the SELECT builder every statement goes through (`statement`), a layout's
conditions, and the raw-points query of GET /api/query without an aggregation.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

from .metrics import Metric
from .request import ApiQuery
from .source import Condition, Layout, quote
from .times import format_ns

TAG_KEYS = ("namespace_name", "pod_name", "container_name", "nodename", "type")


def layout_of(metric: Metric) -> Layout:
    """Where the metric is stored: the layout its source's catalog attached. There is no
    default source: a metric without one is a bug (take it from MetricCatalog or
    metrics.of_source), not Heapster's schema assumed."""
    if metric.layout is None:
        raise ValueError(f"metric {metric.name!r} has no layout; take it from its source's catalog (metrics.of_source)")
    return metric.layout


def quote_measurement(metric: Metric) -> str:
    return layout_of(metric).m


def tags_of(layout: Layout, *canonical: str) -> str:
    """`"namespace", "pod_name"`: the source's names of these tags (the ones it has), quoted;
    the node's other name too, where versions of the collector differ (DCGM's)."""
    names = [layout.tag(c) for c in canonical]
    if "nodename" in canonical and layout.node_alias is not None:
        names.append(layout.node_alias)
    return ", ".join(quote(t) for t in names if t is not None)


def statement(fields: str, metric: Metric | Layout, conditions: Iterable[str | None], tail: str = "") -> str:
    """Assemble a SELECT from fixed fragments; every value in `conditions` is a `$param`.
    `{v}` in `fields` stands for the metric's value: its field, or — for a counter whose
    rate is the metric — the non-negative per-second derivative of each series (a reset
    drops one interval instead of going negative)."""
    layout = metric if isinstance(metric, Layout) else layout_of(metric)
    # Only fixed fragments and the layout's quoted names are joined here; values are $parameters.
    present = [c for c in conditions if c] + layout.only()
    if not layout.rate:
        # Usage is never below 0: a negative sample (a collector fault) would be billed as a
        # credit, so it is left out as if missing (statements say how many there were).
        present.append(f"{layout.f} >= 0")
    where = " AND ".join(present)
    where = f" WHERE {where}" if where else ""
    if layout.rate:
        inner = f'SELECT non_negative_derivative({layout.f}, 1s) AS "value" FROM {layout.m}{where} GROUP BY *'
        # The outer query's time range too: without one, InfluxDB ends it at its own now(),
        # and a point stamped ahead of InfluxDB's clock (a collector's clock, kubemonitor's)
        # is dropped from the outer query although the inner one read it.
        outer = " AND ".join(c for c in present if c.startswith("time "))
        parts = ["SELECT", fields.format(v='"value"'), f"FROM ({inner})" + (f" WHERE {outer}" if outer else "")]
    else:
        parts = ["SELECT", fields.format(v=layout.f), f"FROM {layout.m}{where}"]
    if tail:
        parts.append(tail)
    return " ".join(parts)


def merged(*conditions: Condition | None) -> tuple[list[str], dict]:
    """Conditions (text, params) of a layout, as a list of texts and one dict of params."""
    texts, params = [], {}
    for c in conditions:
        if c is not None:
            texts.append(c[0])
            params.update(c[1])
    return texts, params


def counted_series(metric: Metric) -> tuple[list[str], dict]:
    """The condition for the series the counting rule reads (pod- and container-level)."""
    L = layout_of(metric)
    texts, params = merged(L.pod_level, L.container_level)
    return ([f"({' OR '.join(texts)})"] if len(texts) > 1 else texts), params


def type_condition(layout: Layout, series_type: str) -> Condition | None | Literal[False]:
    """The condition for the API's `type` filter: a condition, None (all series are of that
    type) or False (the source has no series of that type)."""
    if layout.series_type is not None:
        return (f"{quote(layout.series_type)} = $type", {"type": series_type})
    return layout.container_level if series_type == "pod_container" else False


def raw_statement(metric: Metric, q: ApiQuery) -> tuple[str, dict] | None:
    layout = layout_of(metric)
    conditions = [f"{quote(layout.namespace)} = $namespace", "time >= $begin", "time <= $end"]
    params: dict[str, Any] = {"namespace": q.namespace, "begin": q.begin_ns, "end": q.end_ns, "limit": q.limit}
    if q.pod is not None:
        conditions.append(f"{quote(layout.pod)} = $pod")
        params["pod"] = q.pod
    if q.type is not None:
        which = type_condition(layout, q.type)
        if which is False:
            return None
        texts, extra = merged(which)
        conditions += texts
        params.update(extra)
    else:
        texts, extra = merged(layout.container_level) if layout.pod_level is None else ([], {})
        conditions += texts
        params.update(extra)
    if layout.rate:
        # InfluxDB 1.x computes a derivative in the query's time order, so a subquery read newest
        # first is wrong: the rates come oldest first, per series, and raw_points keeps the newest.
        return (f'SELECT non_negative_derivative({layout.f}, 1s) AS "value" FROM {layout.m} WHERE '
                + " AND ".join(conditions + layout.only()) + " GROUP BY *"), params
    return statement('{v} AS "value", *::tag', layout, conditions, "ORDER BY time DESC LIMIT $limit"), params


def raw_points(select: Callable[..., list[dict]], client: Any, metric: Metric, q: ApiQuery) -> list[dict]:
    """Up to `limit` points, newest first (no aggregation). Blocking: for the executor."""
    built = raw_statement(metric, q)
    if built is None:
        return []
    layout = layout_of(metric)
    rows = []
    for series in select(client, *built):
        columns = series["columns"]
        for values in series.get("values", []):
            point = {**(series.get("tags") or {}), **dict(zip(columns, values))}
            t, value = point.pop("time"), point.pop("value")
            point = layout.canonical({k: v for k, v in point.items() if _tag(v) is not None})
            row = {"time": format_ns(t), "value": _number(layout.value(value))}
            for key in TAG_KEYS:
                row[key] = _tag(point.pop(key, None))
            row.update((k, v) for k, v in sorted(point.items()) if _tag(v) is not None)
            rows.append((t, row))
    if layout.rate:
        rows.sort(key=lambda pair: -pair[0])
        del rows[q.limit:]
    return [row for _, row in rows]


def _tag(value: Any) -> Any:
    return None if value in (None, "") else value


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value
