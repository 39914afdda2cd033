"""Usage from counters (README "Billing"): a cumulative metric (`cpu/usage`, CPU time in
nanoseconds since the container started) is billed by its increase, not by the usage rule.

* An increase between two samples of a series belongs to the later sample (its hour), so
  any split of a period adds up, and a collector outage loses nothing: the increase
  across the gap is counted when the collector comes back.
* A reset (the container restarted: the counter went down) counts from zero: the new
  value is the increase.
* The first sample of a range is compared with the series' last sample before it (up
  to LOOKBACK back); a series with none before is new, and counts from zero.
* Duplicates (a second collector: the same series under another `host`) are one counter:
  the samples of all series of one identity are taken together, in time order.
* The counting rule, per pod instance and hour: its pod-level series where it has any
  in that hour, else the sum of its containers' (and their parts').
"""
from __future__ import annotations

import asyncio
from collections import defaultdict

from .influx import InfluxGateway
from .influxql import counted_series, layout_of, statement
from .metrics import Metric
from .source import quote
from .times import NS
from .usage import Counted, PodKey, Scope, hour_of

LOOKBACK = 7 * 86400 * NS  # how far before a range its series' previous samples are looked for


async def increases(influx: InfluxGateway, metric: Metric, begin: int, end: int, scope: Scope,
                    lane: str = "api") -> dict[tuple[PodKey, int], Counted]:
    """{(pod instance, hour): Counted(samples, increase)} of a counter for [begin, end)."""
    layout = layout_of(metric)
    texts, params = counted_series(metric)
    conditions, scope_params = scope.conditions(quote(layout.namespace))
    where = [*texts, *conditions]
    values = {**params, **scope_params, "look": begin - LOOKBACK, "begin": begin, "end": end}
    before, during = await asyncio.gather(
        influx.query(statement("last({v})", layout, [*where, "time >= $look", "time < $begin"], "GROUP BY *"), values,
                     kind="usage", lane=lane),
        influx.query(statement("{v}", layout, [*where, "time >= $begin", "time < $end"], "GROUP BY *"), values,
                     kind="usage", lane=lane))

    def count() -> dict[tuple[PodKey, int], Counted]:
        # The series of one identity (a second collector's copy of a counter) are one counter:
        # their samples merged in time order, so an increase is never counted twice, and the
        # copy's first sample continues from the other's last, not from zero.
        last: dict[tuple, tuple[int, float]] = {}
        for s in before:
            identity = layout.identity(s.get("tags"))
            for t, v in s.get("values", []):
                if v is not None and (identity not in last or t > last[identity][0]):
                    last[identity] = (t, float(layout.value(v)))
        merged: dict[tuple, list[tuple[int, float]]] = defaultdict(list)
        kinds: dict[tuple, tuple[PodKey, bool]] = {}
        for s in during:
            tags = s.get("tags") or {}
            canonical = layout.canonical(tags)
            identity = layout.identity(tags)
            kinds[identity] = ((canonical.get("namespace_name") or "", canonical.get("pod_name") or "",
                                canonical.get("pod_id") or ""),
                               layout.series_type is not None and tags.get(layout.series_type) == "pod")
            merged[identity].extend((t, float(layout.value(v))) for t, v in s.get("values", []) if v is not None)
        pods: dict[tuple[PodKey, int], dict[bool, Counted]] = defaultdict(dict)
        for identity, points in merged.items():
            key, pod_level = kinds[identity]
            previous = last[identity][1] if identity in last else None
            mine: dict[int, list[float]] = defaultdict(lambda: [0, 0.0])
            for t, value in sorted(points):
                step = value if previous is None or value < previous else value - previous  # a reset counts from zero
                previous = value
                counted = mine[hour_of(t)]
                counted[0] += 1
                counted[1] += step
            for hour, (n, total) in mine.items():
                level = pods[(key, hour)].setdefault(pod_level, Counted(sources=frozenset({"pod" if pod_level else "pod_container"})))
                level.add(Counted(int(n), total, None, level.sources))
        # the counting rule: the pod's own series in an hour where it has any, else its containers'
        return {k: levels[True] if True in levels else levels[False] for k, levels in pods.items()}
    return await influx.compute(count)


