"""The live views' statements and answers (README "Live dashboard"): a chart's windows and
buckets, the one request per view the poller sends each tick, and the lines and latest
rows the dashboard draws — the usage rule per bucket (a pod's pod-level mean when it has
one in that bucket, else the sum of its containers' means)."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .influxql import TAG_KEYS, counted_series, layout_of, merged, statement, tags_of
from .metrics import Metric
from .source import Layout, quote
from .times import format_ns
from .usage import Scope


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
    `namespace` None is the cluster view (excluded namespaces left out). A source without
    pod-level series sends the last two (`view_results` puts the answers in place)."""
    L = layout_of(metric)
    since = (now_ns - window.span_ns) // window.bucket_ns * window.bucket_ns
    scope, params = Scope(namespace, tuple(excluded)).conditions(quote(L.namespace))
    # Bounded on both sides by kubemonitor's clock: without an upper bound InfluxDB groups
    # up to its own now(), and a clock that differs (or a point stamped ahead) would move
    # the chart's end and "current" with it.
    params.update({"since": since, "latest_since": now_ns - LATEST_WINDOW_NS, "until": now_ns})
    pod_texts, _ = merged(L.pod_level)
    container_texts, _ = merged(L.container_level)
    either, either_params = counted_series(metric)  # the params of both kinds
    params.update(either_params)
    group = f"GROUP BY time({window.bucket}), {tags_of(L, 'namespace_name', 'pod_name')}"
    statements = []
    if L.pod_level is not None:
        statements.append(statement("mean({v})", L, [*pod_texts, "time >= $since", "time <= $until", *scope], f"{group} fill(none)"))
    parts = "".join(f", {quote(p)}" for p in L.parts)
    statements.append(statement("mean({v})", L, [*container_texts, "time >= $since", "time <= $until", *scope],
                                f"{group}, {tags_of(L, 'container_name')}{parts} fill(none)"))
    statements.append(statement('last({v}) AS "value"', L, [*either, "time >= $latest_since", "time <= $until", *scope],
                                "GROUP BY " + tags_of(L, "namespace_name", "pod_name", "container_name", "nodename", "type")
                                + parts))
    if window.bucket_ns > MINUTE_NS:
        # "Current" is the newest complete minute on every range, not the newest 30-minute
        # bucket of the 7-day chart: two more statements over the last two minutes.
        params["minute_since"] = now_ns // MINUTE_NS * MINUTE_NS - MINUTE_NS
        minute = f"GROUP BY time(1m), {tags_of(L, 'namespace_name', 'pod_name')}"
        if L.pod_level is not None:
            statements.append(statement("mean({v})", L, [*pod_texts, "time >= $minute_since", "time <= $until", *scope], f"{minute} fill(none)"))
        statements.append(statement("mean({v})", L, [*container_texts, "time >= $minute_since", "time <= $until", *scope],
                                    f"{minute}, {tags_of(L, 'container_name')}{parts} fill(none)"))
    return "; ".join(statements), params


def view_results(metric: Metric, results: list[list[dict]]) -> list[list[dict]]:
    """The answers of `view_statements` as [pod-level, container-level, latest] and, for a
    range whose buckets are wider than a minute, [pod-level, container-level] of the
    newest minutes."""
    if layout_of(metric).pod_level is not None:
        return results
    return [[], *results[:2], *([[], *results[2:]] if len(results) > 2 else [])]


def bucket_usage(pod_series: list[dict], container_series: list[dict],
                 layout: Layout) -> dict[tuple[str, str], dict[int, float]]:
    """Each pod's value per bucket under the counting rule: its pod-level mean when it
    has pod-level samples in that bucket, else the sum of its containers' means."""
    L = layout
    pods: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for s in pod_series:
        tags = s.get("tags") or {}
        line = pods[(tags.get(L.namespace, ""), tags.get(L.pod, ""))]
        for t, value in s.get("values", []):
            if value is not None:
                line[t] = L.value(value)
    from_containers: dict[tuple[str, str], dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for s in container_series:
        tags = s.get("tags") or {}
        line = from_containers[(tags.get(L.namespace, ""), tags.get(L.pod, ""))]
        for t, value in s.get("values", []):
            if value is not None:
                line[t] += L.value(value)
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


def latest_rows(latest_series: list[dict], stale_before_ns: int, layout: Layout,
                limit: int | None = LATEST_ROWS) -> list[dict]:
    """The newest point of each pod's counted series (its containers when it has
    them, else its pod-level series), newest pods first within a namespace; a row
    older than `stale_before_ns` is marked stale (the pod stopped reporting)."""
    L = layout
    pods: dict[tuple[str, str], list[dict]] = {}
    for s in latest_series:
        tags = {k: (v or None) for k, v in L.canonical(s.get("tags")).items()}
        for t, value in s.get("values", []):
            row: dict[str, Any] = {"time": format_ns(t), "value": None if value is None else float(L.value(value))}
            row.update({k: tags.get(k) for k in TAG_KEYS})
            row["stale"] = t < stale_before_ns
            same = pods.setdefault((row["namespace_name"] or "", row["pod_name"] or ""), [])
            twin = next((r for r in same if L.parts and r["container_name"] == row["container_name"]
                         and r["time"] == row["time"]), None)
            if twin is not None and row["value"] is not None:  # another part of the same container (a GPU): add up
                twin["value"] = (twin["value"] or 0.0) + row["value"]
                continue
            for part in L.parts:
                row.pop(part, None)
            same.append(row)
    rows: list[dict] = []
    for key in sorted(pods):
        candidates = pods[key]
        containers = [r for r in candidates if r["type"] == "pod_container"]
        rows.extend(sorted(containers, key=lambda r: r["container_name"] or "") or candidates)
    return rows[:limit]
