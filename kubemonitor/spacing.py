"""The interval check (README "Collecting data today"): how far apart the collector's
samples really are, against the sample interval setting each sample is billed for.

A setting shorter than the real spacing under-bills (a 60 s sample billed for 10 s);
a longer one only loses resolution (each interval counts the mean of its samples),
or reveals a second collector. Either way the operator is told the measured spacing
and the setting to change, in /readyz (`source.problems`) and in statements' notes.

Cheap by design: over the last hour, per series of a sample of at most SERIES series,
the count and the first and last sample (InfluxDB's cheap paths); a series' spacing
is (last - first) / (count - 1), and the check takes the median over the series.
"""
from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable

from .influxql import counted_series, layout_of, statement
from .metrics import Metric, MetricCatalog
from .source import Querier
from .times import HOUR_NS, NS

SERIES = 100             # series sampled per check
MISMATCH = 1.5           # a spacing this many times the setting (or its inverse) is reported
# a metric whose samples stand for each setting: the collector's, and DCGM's (a source's GPU
# layout says whether its GPUs have an interval of their own; Heapster's do not)
CHECKED = ("cpu/usage_rate", "gpu/usage")
SAMPLE, GPU_SAMPLE = "KUBEMONITOR_SAMPLE_INTERVAL", "KUBEMONITOR_GPU_SAMPLE_INTERVAL"


async def measured_spacing(influx: Querier, metric: Metric, now_ns: int) -> tuple[float, int] | None:
    """The median spacing in seconds of `metric`'s counted series over the hour before
    `now_ns`, and how many series it is the median of (None: too few samples to tell)."""
    layout = layout_of(metric)
    texts, params = counted_series(metric)
    conditions = [*texts, "time >= $begin", "time <= $end"]
    params = {**params, "begin": now_ns - HOUR_NS, "end": now_ns}
    tail = f"GROUP BY * SLIMIT {SERIES}"
    counts, firsts, lasts = await asyncio.gather(*(
        influx.query(statement(fields, layout, conditions, tail), params, kind="interval check")
        for fields in ('count({v}) AS "count"', "first({v})", "last({v})")))

    def by_series(answer: list[dict]) -> dict[tuple, list]:
        return {tuple(sorted((s.get("tags") or {}).items())): s["values"][0] for s in answer if s.get("values")}
    first_t, last_t = by_series(firsts), by_series(lasts)
    spacings = []
    for series, (_t, count) in by_series(counts).items():
        if count and count >= 3 and series in first_t and series in last_t:
            spacings.append((last_t[series][0] - first_t[series][0]) / (count - 1) / NS)
    return (statistics.median(spacings), len(spacings)) if spacings else None


class IntervalCheck:
    """The interval check over the source's billed metrics, as problem sentences."""

    def __init__(self, influx: Querier, catalog: MetricCatalog, interval_ns: Callable[[Metric], int],
                 clock: Callable[[], int] = time.time_ns):
        self.influx, self.catalog, self.interval_ns, self.clock = influx, catalog, interval_ns, clock

    async def problems(self) -> list[str]:
        out = []
        for name in CHECKED:
            metric = await self.catalog.resolve(name)  # a catalog name: answered without asking InfluxDB
            if metric is None:
                continue
            setting = GPU_SAMPLE if layout_of(metric).gpu else SAMPLE
            found = await measured_spacing(self.influx, metric, self.clock())
            if found is None:
                continue
            spacing, series = found
            configured = self.interval_ns(metric) / NS
            measured = f"{name} samples are {_seconds(spacing)} apart (the median of {series} series over the last hour)"
            if spacing > configured * MISMATCH:
                out.append(f"{measured} but {setting} is {_seconds(configured)}: each sample is billed for "
                           f"{_seconds(configured)} of its {_seconds(spacing)}, so usage is under-billed "
                           f"{spacing / configured:.1f}x. Set {setting}={_seconds(spacing)} (the collector's interval; "
                           "README \"Collecting data today\")")
            elif spacing * MISMATCH < configured:
                out.append(f"{measured} but {setting} is {_seconds(configured)}: each {_seconds(configured)} interval "
                           "counts the mean of its samples, so nothing is billed twice, but usage is resolved to "
                           f"{_seconds(configured)} only - or a second collector writes the same series. Set "
                           f"{setting}={_seconds(spacing)} when that is the collector's interval (README \"Collecting "
                           "data today\")")
        return out


def _seconds(value: float) -> str:
    return f"{round(value)}s" if value >= 1 else f"{value:.1f}s"
