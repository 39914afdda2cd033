"""The usage rule (README "Aggregations"): which samples of a pod instance count, hour by
hour, and the rows the API returns. Shared by the API, rollups and statements.

Within each clock hour a pod instance counts from its pod-level samples when it has any
there, else from its containers' samples summed per sample interval; each counted sample
stands for one sample interval. The InfluxQL comes from kubemonitor/influxql.py (values as
bind parameters only); the statements run through the InfluxDB gateway (its executor),
and shaping their answers is CPU work the callers hand to `influx.compute`.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .influxql import counted_series, layout_of, merged, statement, tags_of
from .metrics import Metric
from .request import ApiQuery
from .source import Condition, Layout, quote
from .times import HOUR_NS, NS

if TYPE_CHECKING:
    from .config import Config
    from .influx import InfluxGateway
    from .rollups import Rollups

# How many container-only pods one fallback query names (keeps the URL and the OR short).
FALLBACK_CHUNK = 100
# A raw range at most this long is read with one statement (see RawPlan).
SHORT_RANGE_NS = 2 * HOUR_NS


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

    def conditions(self, tag: str = '"namespace_name"') -> tuple[list[str], dict]:
        """`tag`: the quoted namespace tag (the source's, or the rollups' canonical one)."""
        if self.namespace is not None:
            return [f"{tag} = $namespace"], {"namespace": self.namespace}
        names = sorted(set(self.excluded))
        conditions = [f"{tag} != $excluded_{i}" for i in range(len(names))]
        params: dict[str, Any] = {f"excluded_{i}": name for i, name in enumerate(names)}
        if self.only is not None:
            allowed = sorted(set(self.only) - set(names))
            # An empty list matches nothing: a namespace name is never the empty string.
            conditions.append("(" + " OR ".join(f"{tag} = $only_{i}" for i in range(max(1, len(allowed)))) + ")")
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


def _key(layout: Layout, tags: dict | None) -> PodKey:
    tags = tags or {}
    return (tags.get(layout.namespace, ""), tags.get(layout.pod, ""), tags.get(layout.pod_id, "") if layout.pod_id else "")


STATS = 'count({v}) AS "count", sum({v}) AS "sum", max({v}) AS "max"'
# per series (every tag) and sample interval: how many samples, and their sum (their mean, once)
PER_INTERVAL = 'count({v}) AS "count", sum({v}) AS "sum"'


@dataclass(frozen=True)
class Fallback:
    """RawPlan's second step: its statements, and what `combine` needs to know of them —
    the hours each pod instance's containers count in, whether a statement checks the edge
    hours for pod-level samples, and the (pod instance, hour)s whose pod-level samples are
    recounted one value per series and interval (a series there may have been written twice)."""
    statements: list[tuple[str, dict]]
    needs: dict[PodKey, frozenset[int]]
    checked_edges: bool
    suspect: dict[PodKey, frozenset[int]] = field(default_factory=dict)
    sums: int = 0       # how many of `statements` are the container values per interval
    hourly: int = 0     # then (after the edge check) how many are a suspect pod's pod-level stats per hour


class RawPlan:
    """The usage rule over raw points of one metric, for [begin, end] (inclusive).

    Within each clock hour a pod instance is counted from its pod-level samples when
    it has any in that hour — in the whole hour, even where the range covers only part
    of it, so that any split of a range adds up — else from its container-level
    samples, bucketed per sample interval. A series counts at most one value per
    sample interval, the mean of its samples there: a second collector, a retried flush
    or a collector writing more often than the interval never counts twice. Steps:

    1. `first()`: independent statements, run concurrently — per pod instance, the
       count, sum and max of its pod-level samples; per pod-level series (all its tags)
       and hour, the number of samples (count() is InfluxDB's cheap path); per series,
       its first and its last sample (cheap too: they read block headers). A range of
       two hours or less (the ends of a range answered from rollups) costs InfluxDB
       little per point but a lot per statement, so its counts, sums and maxima come per
       series and hour in one statement;
    2. `second()`: for the pod instances whose containers reported in an hour without
       pod-level samples (none when every pod has pod-level series all along, as
       Heapster writes them): their containers' samples per series and interval (count
       and sum: each series' mean), and — for an hour the range covers only partly —
       whether the rest of that hour has pod-level samples. For the (pod instance,
       hour)s where a pod-level series may hold two samples in one interval (two series
       of one pod, or more samples than the intervals the series spans): the same per
       interval. Finding them costs counts; averaging each interval in InfluxDB costs
       several times the plain sums, so it is done only where needed;
    3. `combine()`: {(pod instance, hour): Counted}. Pod-level samples are keyed by the
       range's first hour (exact for a range within one hour, as rollups use it) — per
       hour for a recounted pod instance; container-counted samples by their own hour.

    ns, node, cluster and sys_container series are never read.
    """

    def __init__(self, metric: Metric, begin_ns: int, end_ns: int, scope: Scope, interval_ns: int, hourly: bool = False):
        # A sample belongs to the range that holds its timestamp (to the nanosecond), so
        # ranges that partition the samples add up.
        self.metric, self.begin, self.end, self.scope, self.interval_ns = metric, begin_ns, end_ns, scope, interval_ns
        self.layout = layout_of(metric)
        self.interval = f"{interval_ns // NS}s"
        # the hours the range covers only partly
        self.edges = {h for h, covered in ((hour_of(begin_ns), begin_ns % HOUR_NS == 0),
                                            (hour_of(end_ns), (end_ns + 1) % HOUR_NS == 0)) if not covered}
        # `hourly`: every hour's own figures are wanted (basis: max), not only the range's: the
        # compact plan has them per series and hour, at a cost over long ranges
        self.compact = end_ns - begin_ns < SHORT_RANGE_NS or hourly

    def _common(self) -> tuple[list[str], dict]:
        conditions, params = self.scope.conditions(quote(self.layout.namespace))
        return ["time >= $begin", "time <= $end", *conditions], {**params, "begin": self.begin, "end": self.end}

    def _level(self, level: Condition | None) -> tuple[list[str], dict]:
        conditions, params = self._common()
        texts, extra = merged(level)
        return [*texts, *conditions], {**params, **extra}

    def by_pod(self, *extra: str) -> str:
        return "GROUP BY " + ", ".join(x for x in (*extra, tags_of(self.layout, "namespace_name", "pod_name", "pod_id")) if x)

    @property
    def containers_only(self) -> bool:
        """A source without pod-level series (Telegraf): every pod is its containers' sum in
        every sample interval, so one statement (the samples per series and interval, for
        every pod at once) does it, and no second step is needed."""
        return self.layout.pod_level is None

    def _per_interval(self, conditions: list[str], params: dict) -> tuple[str, dict]:
        return (statement(PER_INTERVAL, self.layout, conditions, f"GROUP BY time({self.interval}), * fill(none)"), params)

    def first(self) -> list[tuple[str, dict]]:
        """The statements of step 1."""
        L = self.layout
        if self.containers_only:
            return [self._per_interval(*self._level(L.container_level))]
        pod = self._level(L.pod_level)
        spans = [(statement(f"{which}({{v}})", L, pod[0], "GROUP BY *"), pod[1]) for which in ("first", "last")]
        if self.compact:  # either kind of series, told apart by the series type
            texts, params = counted_series(self.metric)
            common, common_params = self._common()
            return [(statement(STATS, L, [*texts, *common], "GROUP BY time(1h), * fill(none)"),
                     {**common_params, **params}), *spans]
        container = self._level(L.container_level)
        return [(statement(STATS, L, pod[0], self.by_pod()), pod[1]),
                (statement('count({v}) AS "count"', L, pod[0], "GROUP BY time(1h), * fill(none)"), pod[1]),
                (statement("first({v})", L, container[0], self.by_pod()), container[1]),
                (statement("last({v})", L, container[0], self.by_pod()), container[1]),
                *spans]

    def _kind(self, tags: dict | None) -> str:
        if self.layout.series_type is None:
            return "pod_container"
        return (tags or {}).get(self.layout.series_type, "pod")

    def _series(self, tags: dict | None) -> tuple[str, ...]:
        return self.layout.identity(tags)

    def _buckets(self, a: int, b: int) -> int:
        """How many sample intervals (InfluxDB's time grid) [a, b] touches."""
        return b // self.interval_ns - a // self.interval_ns + 1 if b >= a else 0

    def suspects(self, counts: list[dict], firsts: list[dict], lasts: list[dict]) -> dict[PodKey, set[int]]:
        """The (pod instance, hour)s where a pod-level series may hold two samples in one
        sample interval: two series of the same pod in the hour (a second collector that
        tags its own name; a changed label looks alike and is merely recounted), or a series
        with more samples in the hour than the intervals it spans there. `counts`: per
        series and hour; `firsts`, `lasts`: per series. Not found: a series that, within one
        hour, both misses samples and holds no more duplicates than it misses."""
        span: dict[tuple, list[int]] = {}
        for which, answer in ((0, firsts), (1, lasts)):
            for s in answer:
                for t, _value in s.get("values", []):
                    span.setdefault(tuple(sorted((s.get("tags") or {}).items())), [t, t])[which] = t
        seen: dict[tuple[tuple[str, ...], int], int] = defaultdict(int)
        out: dict[PodKey, set[int]] = defaultdict(set)
        for s in counts:
            tags = s.get("tags") or {}
            if self._kind(tags) != "pod":
                continue
            first_t, last_t = span.get(tuple(sorted(tags.items())), (self.begin, self.end))
            series = self._series(tags)
            for hour, count, *_ in s.get("values", []):
                if not count:
                    continue
                seen[(series, hour)] += 1
                spanned = self._buckets(max(first_t, hour, self.begin), min(last_t, hour + HOUR_NS - 1, self.end))
                if count > spanned or seen[(series, hour)] > 1:
                    out[_key(self.layout, tags)].add(hour)
        return out

    def second(self, first: list[list[dict]]) -> Fallback:
        """The containers' values per interval (and edge-hour checks) for pod instances whose
        containers reported in an hour without pod-level samples, and the recount of the
        suspect (pod instance, hour)s (nothing is kept on the plan)."""
        L = self.layout
        if self.containers_only:
            return Fallback([], {}, False)
        pod_hours: dict[PodKey, set[int]] = defaultdict(set)
        container_hours: dict[PodKey, set[int]] = defaultdict(set)
        if self.compact:
            counts, firsts, lasts = first
            for s in counts:
                hours = pod_hours if self._kind(s.get("tags")) == "pod" else container_hours
                hours[_key(L, s.get("tags"))].update(t for t, count, *_ in s.get("values", []) if count)
        else:
            _stats, counts, container_first, container_last, firsts, lasts = first
            for s in counts:
                pod_hours[_key(L, s.get("tags"))].update(t for t, count in s.get("values", []) if count)
            extent: dict[PodKey, list[int]] = {}
            for s in container_first + container_last:
                for t, _value in s.get("values", []):
                    extent.setdefault(_key(L, s.get("tags")), []).append(t)
            for key, times in extent.items():
                container_hours[key] = set(range(hour_of(min(times)), hour_of(max(times)) + HOUR_NS, HOUR_NS))
        needs: dict[PodKey, frozenset[int]] = {}
        for key, held in container_hours.items():
            missing = held - pod_hours.get(key, set())
            if missing:
                needs[key] = frozenset(missing)
        container, container_params = self._level(L.container_level)
        out = [self._per_interval([*container, which], {**container_params, **chunk_params})
               for which, chunk_params in _pod_chunks(L, sorted(needs))]
        sums = len(out)
        at_edges = sorted(key for key, hours in needs.items() if hours & self.edges)
        if at_edges:
            scope_conditions, scope_params = self.scope.conditions(quote(L.namespace))
            pod_texts, pod_params = merged(L.pod_level)
            which, chunk_params = _pods_condition(L, at_edges)
            out.append((statement('count({v}) AS "count"', L,
                                  [*pod_texts, "time >= $hours_begin", "time < $hours_end", *scope_conditions, which],
                                  self.by_pod("time(1h)") + " fill(none)"),
                        {**scope_params, **chunk_params, **pod_params, "hours_begin": min(self.edges),
                         "hours_end": max(self.edges) + HOUR_NS}))
        suspect = {key: frozenset(hours) for key, hours in self.suspects(counts, firsts, lasts).items()}
        pod, pod_params = self._level(L.pod_level)
        hourly = []
        if not self.compact:  # a recounted pod instance's pod-level samples per hour (step 1 has them per range)
            hourly = [(statement(STATS, L, [*pod, which], "GROUP BY time(1h), * fill(none)"), {**pod_params, **chunk_params})
                      for which, chunk_params in _pod_chunks(L, sorted(suspect))]
        recount = []
        if suspect:
            begin = max(self.begin, min(min(h) for h in suspect.values()))
            end = min(self.end, max(max(h) for h in suspect.values()) + HOUR_NS - 1)
            if L.rate:  # a rate needs the sample before: read what the range's statements read
                begin, end = self.begin, self.end
            texts, params = merged(L.pod_level)
            scope_conditions, scope_params = self.scope.conditions(quote(L.namespace))
            recount = [self._per_interval([*texts, "time >= $recount_begin", "time <= $recount_end", *scope_conditions, which],
                                          {**params, **scope_params, **chunk_params, "recount_begin": begin, "recount_end": end})
                       for which, chunk_params in _pod_chunks(L, sorted(suspect))]
        return Fallback(out + hourly + recount, needs, bool(at_edges), suspect, sums, len(hourly))

    def _interval_values(self, results: Iterable[list[dict]]) -> dict[PodKey, dict[int, float]]:
        """{pod instance: {interval: value}} from samples per series and interval: each
        series' mean (a series written twice, under one tag set or two, is one mean), the
        pod's series summed, in the catalog's unit."""
        totals: dict[tuple[PodKey, tuple[str, ...], int], list[float]] = {}
        for result in results:
            for series in result:
                tags = series.get("tags")
                key, identity = _key(self.layout, tags), self._series(tags)
                for t, count, total in series.get("values", []):
                    if count:
                        sums = totals.setdefault((key, identity, t), [0, 0])
                        sums[0] += count
                        sums[1] += total
        values: dict[PodKey, dict[int, Any]] = defaultdict(dict)
        for (key, _identity, t), (count, total) in totals.items():
            mean = total if count == 1 else total / count
            values[key][t] = values[key].get(t, 0) + mean
        return {key: {t: float(self.layout.value(v)) for t, v in by_t.items()} for key, by_t in values.items()}

    def _stats_rows(self, results: Iterable[list[dict]], hours: dict[tuple[PodKey, int], Counted],
                    hour: int | None = None) -> None:
        """Pod-level counts, sums and maxima per series (and hour, unless `hour` is given)
        added up per pod instance and hour."""
        L = self.layout
        for result in results:
            for series in result:
                if self._kind(series.get("tags")) != "pod":
                    continue
                key = _key(L, series.get("tags"))
                for values in series.get("values", []):
                    row = dict(zip(series["columns"], values))
                    if row.get("count"):
                        top = row.get("max")
                        at = hour_of(row["time"]) if hour is None else hour
                        counted = hours.setdefault((key, at), Counted(sources=frozenset({"pod"})))
                        counted.add(Counted(row["count"], float(L.value(row.get("sum") or 0.0)),
                                            None if top is None else float(L.value(top)), frozenset({"pod"})))

    def combine(self, first: list[list[dict]], fallback: Fallback,
                second: list[list[dict]]) -> dict[tuple[PodKey, int], Counted]:
        """{(pod instance, hour): Counted} from both steps' answers (`second`: the answers
        to `fallback.statements`, in order)."""
        hours: dict[tuple[PodKey, int], Counted] = {}
        if self.containers_only:
            _add_intervals(hours, self._interval_values(first), None, "pod_container")
            return hours
        needs = {key: set(hours) for key, hours in fallback.needs.items()}
        sums, second = second[:fallback.sums], second[fallback.sums:]
        if fallback.checked_edges:  # pod-level samples elsewhere in an edge hour: that hour is the pod's, not its containers'
            edge_counts, second = second[0], second[1:]
            for series in edge_counts:
                key = _key(self.layout, series.get("tags"))
                for t, count in series.get("values", []):
                    if count and key in needs:
                        needs[key].discard(t)
        hourly, recount = second[:fallback.hourly], second[fallback.hourly:]
        if self.compact:
            self._stats_rows([first[0]], hours)
        else:
            pod_stats = [[s for s in first[0] if _key(self.layout, s.get("tags")) not in fallback.suspect]]
            self._stats_rows(pod_stats, hours, hour_of(self.begin))
            self._stats_rows(hourly, hours)  # per hour for the recounted pod instances
        for key, suspect_hours in fallback.suspect.items():
            for hour in suspect_hours:
                hours.pop((key, hour), None)
        _add_intervals(hours, self._interval_values(recount), fallback.suspect, "pod")
        _add_intervals(hours, self._interval_values(sums), needs, "pod_container")
        return hours


def _add_intervals(hours: dict[tuple[PodKey, int], Counted], values: dict[PodKey, dict[int, float]],
                   wanted: Mapping[PodKey, Collection[int]] | None, source: str) -> None:
    """Count one value per interval into its pod instance's hour (only the `wanted` hours)."""
    sources = frozenset({source})
    for key, by_t in values.items():
        allowed = None if wanted is None else wanted.get(key, ())
        for t, value in by_t.items():
            hour = hour_of(t)
            if allowed is not None and hour not in allowed:
                continue
            counted = hours.get((key, hour))
            if counted is None:
                hours[(key, hour)] = Counted(1, value, value, sources)
            else:
                counted.count += 1
                counted.sum += value
                if counted.max is None or value > counted.max:
                    counted.max = value
                counted.sources = counted.sources | sources


def _pod_chunks(layout: Layout, pods: list[PodKey]) -> list[tuple[str, dict]]:
    return [_pods_condition(layout, pods[start:start + FALLBACK_CHUNK]) for start in range(0, len(pods), FALLBACK_CHUNK)]


def _pods_condition(layout: Layout, pods: list[PodKey]) -> tuple[str, dict]:
    """`(namespace = .. AND pod = .. [AND pod_id = ..]) OR ...` for a chunk of pod instances, as bind parameters."""
    ns, pod, pod_id = quote(layout.namespace), quote(layout.pod), layout.pod_id and quote(layout.pod_id)
    params: dict[str, Any] = {}
    alternatives = []
    for i, (ns_value, pod_value, id_value) in enumerate(pods):
        alternatives.append(f"({ns} = $ns_{i} AND {pod} = $pod_{i}" + (f" AND {pod_id} = $id_{i})" if pod_id else ")"))
        params.update({f"ns_{i}": ns_value, f"pod_{i}": pod_value, **({f"id_{i}": id_value} if pod_id else {})})
    return "(" + " OR ".join(alternatives) + ")", params


def sample_interval_ns(metric: Metric, config: Config) -> int:
    """How long each sample of `metric` stands for (the collector's interval; DCGM's for GPU
    metrics; kube_inventory's for requests and limits under Telegraf)."""
    layout = metric.layout
    if layout is not None and layout.gpu:
        return int(round(config.gpu_sample_interval * NS))
    if layout is not None and layout.inventory and config.inventory_interval:
        return int(round(config.inventory_interval * NS))
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


async def raw_hours(influx: InfluxGateway, metric: Metric, begin_ns: int, end_ns: int, scope: Scope,
                    interval_ns: int, lane: str = "api", hourly: bool = False) -> dict[tuple[PodKey, int], Counted]:
    """The usage rule over raw points: {(pod instance, hour): Counted} for [begin, end].
    Over a long range, a pod counted from its pod-level series has its range's figures
    under the range's first hour, unless `hourly` asks for each hour's own."""
    plan = RawPlan(metric, begin_ns, end_ns, scope, interval_ns, hourly)
    async def nothing() -> list:
        return []
    first = list(await asyncio.gather(*(nothing() if built is None else influx.query(*built, kind="usage", lane=lane)
                                        for built in plan.first())))
    fallback = await influx.compute(plan.second, first)
    second = list(await asyncio.gather(*(influx.query(text, params, kind="usage", lane=lane)
                                         for text, params in fallback.statements)))
    return await influx.compute(plan.combine, first, fallback, second)


async def aggregate(influx: InfluxGateway, metric: Metric, q: ApiQuery, excluded: Iterable[str], interval_ns: int,
                    rollups: Rollups | None = None, only: Iterable[str] | None = None) -> list[dict]:
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
