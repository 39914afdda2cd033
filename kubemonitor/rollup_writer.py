"""Computing and keeping rollups (README "Rollups"): one hour of one metric at a time,
then its UTC day once all 24 hours are kept; the background task that keeps them up to
date and counts points that arrived after their hour was rolled up; and the ranges
`kubemonitor rollup` computes or rebuilds. What is kept, and reading it, is Rollups'
(kubemonitor/rollups.py).

Doing an hour again writes the same points (idempotent; two replicas may do it at
once); a SIGKILL in the middle leaves no marker, so the next pass does the hour again.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable

from .counters import increases
from .influx import InfluxError
from .influxql import counted_series, layout_of, statement
from .metrics import REQUEST_OF, Metric, MetricCatalog
from .rollups import (
    BG,
    DAILY,
    DAILY_NS,
    DAY_NS,
    DAYS,
    HELD,
    HOURS,
    USAGE,
    Rollups,
    collected_intervals,
    counter_of,
    derived_of,
    held_of,
    increase_of,
    merge_spans,
    raw_max_hours,
)
from .tasks import cancel_and_wait
from .telemetry import Telemetry
from .times import HOUR_NS, format_ns
from .usage import Counted, Scope, hour_of, raw_hours

log = logging.getLogger("kubemonitor.rollups")
BATCH_HOURS = 24          # hours one background pass rolls up per metric, at most
LATE_WINDOW_HOURS = 6     # the recent hours the task looks at every pass for points that arrived after them
LATE_CHUNK_HOURS = 24     # older kept hours looked at per pass, walking back through all of them and round again


class RollupWriter:
    def __init__(self, rollups: Rollups, catalog: MetricCatalog, *, settle: float,
                 interval_ns: Callable[[Metric], int], telemetry: Telemetry | None = None,
                 closes_ns: Callable[[int], int] | None = None, clock: Callable[[], int] = time.time_ns):
        self.rollups, self.catalog, self.influx = rollups, catalog, rollups.influx
        self.settle_ns = int(settle * 1e9)  # an hour is rolled up once it ended this long ago
        self.interval_ns = interval_ns
        self.telemetry = telemetry or rollups.influx.telemetry
        # when the billing period holding an instant closes (the rate card's month); None: never
        self.closes_ns, self.clock = closes_ns, clock
        self._late_seen: dict[tuple[str, int], int] = {}
        self._late_kept: dict[tuple[str, int], int] = {}   # late points of closed periods' hours, until a rebuild
        self._late_cursor: dict[str, int | None] = {}      # where the walk through older kept hours goes on
        self._task: asyncio.Task | None = None

    async def metrics(self) -> list[Metric]:
        """The configured metrics this data source has (KUBEMONITOR_ROLLUP_METRICS); a counter
        (cpu/usage) is kept as its increases (`increase(cpu/usage)`), what billing reads of it."""
        found = [m for m in [await self.catalog.resolve(name) for name in self.rollups.metric_names] if m is not None]
        # and, where a metric's request is rolled up too, what `basis: max` bills of it
        held = [held_of(m) for m in found if not m.cumulative and REQUEST_OF.get(m.name) in self.rollups.metric_names]
        return [increase_of(m) if m.cumulative else m for m in found] + held

    async def roll_up_range(self, metrics: list[Metric], first: int, end: int,
                            rebuild: bool = False) -> AsyncIterator[tuple[Metric, int, bool]]:
        """Roll up (or rebuild) every hour in [first, end) of each metric, in order, yielding
        (metric, hour, expired) as each is done; `expired`: kept as it was, its raw points gone."""
        for metric in metrics:
            for hour in range(first, end, HOUR_NS):
                yield metric, hour, await self.roll_up(metric, hour, rebuild=rebuild) is None

    async def roll_up(self, metric: Metric, hour: int, rebuild: bool = False) -> int | None:
        """Compute and keep one hour of one metric; returns the pod instances written, or None
        when a rebuild left the hour as it was kept because its raw points have expired."""
        raw_points = await self._raw_points(metric, hour, hour + HOUR_NS)
        if rebuild and raw_points == 0 and await self._kept_raw_points(metric, hour) > 0:
            # InfluxDB's retention removed the raw points: rebuilding would replace the kept
            # hour with nothing (and re-issue closed statements with less usage). Keep it.
            return None
        base = derived_of(metric, HELD)
        if counter_of(metric) is not None:  # a counter's increases, per pod instance and hour
            hours = await increases(self.influx, metric, hour, hour + HOUR_NS, Scope(), lane=BG)
        elif base is not None:  # the larger of used and requested, per pod instance and hour
            request = await self.catalog.resolve(REQUEST_OF[base])
            if request is None:
                return 0
            hours = await raw_max_hours(self.influx, metric, request, hour, hour + HOUR_NS - 1, Scope(), self.interval_ns(metric),
                                        self.interval_ns(request), lane=BG)
        else:
            hours = await raw_hours(self.influx, metric, hour, hour + HOUR_NS - 1, Scope(), self.interval_ns(metric), lane=BG)
        nodes = await collected_intervals(self.influx, metric, hour, hour + HOUR_NS, self.interval_ns(metric), lane=BG)
        points = [{"measurement": USAGE, "time": hour,
                   "tags": {"metric": metric.name, "namespace_name": ns, "pod_name": pod, "pod_id": pod_id,
                            "source": next(iter(c.sources))},
                   "fields": {"count": int(c.count), "sum": float(c.sum), "max": float(c.max if c.max is not None else 0.0)}}
                  for ((ns, pod, pod_id), _h), c in sorted(hours.items()) if c.count]
        marker = [{"measurement": HOURS, "time": hour, "tags": {"metric": metric.name},
                   "fields": {"pods": len(points), "raw_points": int(raw_points),
                              "covered": sum(len(seen) for seen in nodes.values()),
                              "intervals": HOUR_NS // self.interval_ns(metric),
                              "nodes": json.dumps({node: len(seen) for node, seen in sorted(nodes.items())})}}]
        if rebuild:
            params = {"metric": metric.name, "first": hour, "end": hour + HOUR_NS}
            for measurement in (HOURS, USAGE):  # the marker first: a reader never sees a half-deleted hour as done
                await self.influx.execute(f'DELETE FROM "{measurement}" WHERE "metric" = $metric AND time >= $first '
                                          "AND time < $end", params, kind="rollup", lane=BG)
        try:
            await self.influx.write(points, self.rollups.rp, lane=BG)
            await self.influx.write(marker, self.rollups.rp, lane=BG)  # after the usage points: only a complete hour is marked
        except InfluxError as exc:
            if exc.status == 502:
                self.rollups.turn_off("InfluxDB refused the rollup write (a read-only account?)", exc.message)
            raise
        self.telemetry.rollup_hours.labels(metric.name).inc()
        await self._roll_up_day(metric, hour - hour % DAY_NS, rebuild)
        return len(points)

    async def _kept_raw_points(self, metric: Metric, hour: int) -> int:
        """How many raw points the kept hour was computed from (0: not kept)."""
        series = await self.influx.query(f'SELECT sum("raw_points") FROM {self.rollups._hours} WHERE "metric" = $metric '
                                         "AND time = $hour", {"metric": metric.name, "hour": hour}, kind="rollup", lane=BG)
        return int(next((v for s in series for _, v in s.get("values", [])), 0) or 0)

    async def _roll_up_day(self, metric: Metric, day: int, rebuild: bool) -> None:
        """Once all 24 hours of a UTC day are kept, keep their sums once more, per day: a month
        then reads 31 points per pod instead of 744. Rebuilding an hour rebuilds its day."""
        if len(await self.rollups.covered_hours(metric, day, day + DAY_NS, lane=BG)) < 24:
            return
        params = {"metric": metric.name, "first": day, "end": day + DAY_NS}
        if rebuild:
            for measurement in (DAYS, DAILY, DAILY_NS):
                await self.influx.execute(f'DELETE FROM "{measurement}" WHERE "metric" = $metric AND time >= $first '
                                          "AND time < $end", params, kind="rollup", lane=BG)
        pods = await self.rollups.rolled(metric, day, day + DAY_NS, Scope(), lane=BG)
        points = [{"measurement": DAILY, "time": day,
                   "tags": {"metric": metric.name, "namespace_name": ns, "pod_name": pod, "pod_id": pod_id,
                            "source": next(iter(c.sources)) if len(c.sources) == 1 else "mixed"},
                   "fields": {"count": int(c.count), "sum": float(c.sum), "max": float(c.max if c.max is not None else 0.0)}}
                  for (ns, pod, pod_id), c in sorted(pods.items()) if c.count]
        namespaces: dict[str, Counted] = defaultdict(Counted)
        for (ns, _pod, _pod_id), counted in pods.items():
            namespaces[ns].add(counted)
        points += [{"measurement": DAILY_NS, "time": day,
                    "tags": {"metric": metric.name, "namespace_name": ns,
                             "source": next(iter(c.sources)) if len(c.sources) == 1 else "mixed"},
                    "fields": {"count": int(c.count), "sum": float(c.sum), "max": float(c.max if c.max is not None else 0.0)}}
                   for ns, c in sorted(namespaces.items()) if c.count]
        await self.influx.write(points, self.rollups.rp, lane=BG)
        await self.influx.write([{"measurement": DAYS, "time": day, "tags": {"metric": metric.name},
                                  "fields": {"pods": len(points)}}], self.rollups.rp, lane=BG)

    async def _raw_points(self, metric: Metric, first: int, end: int) -> int:
        texts, params = counted_series(metric)
        series = await self.influx.query(statement("count({v})", metric, [*texts, "time >= $first", "time < $end"]),
                                         {**params, "first": first, "end": end}, kind="rollup", lane=BG)
        return sum(v or 0 for s in series for _, v in s.get("values", []))

    async def last_hour(self, metric: Metric) -> int | None:
        series = await self.influx.query(f'SELECT last("pods") FROM {self.rollups._hours} WHERE "metric" = $metric',
                                         {"metric": metric.name}, kind="rollup", lane=BG)
        return next((t for s in series for t, _ in s.get("values", [])), None)

    async def first_data_hour(self, metric: Metric) -> int | None:
        texts, params = counted_series(metric)
        series = await self.influx.query(statement("first({v})", metric, texts), params,
                                         kind="rollup", lane=BG)
        first = next((t for s in series for t, _ in s.get("values", [])), None)
        return None if first is None else hour_of(first)

    def settled_end(self, now_ns: int | None = None) -> int:
        """Hours before this one have settled (ended more than the settle delay ago)."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        return hour_of(now_ns - self.settle_ns)

    # -- the background task --------------------------------------------------------------
    async def catch_up(self, metric: Metric, limit: int = BATCH_HOURS) -> int:
        """Roll up the next settled hours after the last rolled-up one; returns how many."""
        last = await self.last_hour(metric)
        start = last + HOUR_NS if last is not None else await self.first_data_hour(metric)
        if start is None:
            return 0
        done = 0
        for hour in range(start, self.settled_end(), HOUR_NS):
            if done >= limit:
                break
            await self.roll_up(metric, hour)
            done += 1
        return done

    def closed(self, hour: int) -> bool:
        """Whether the billing period holding `hour` is closed: its kept figures never change."""
        return self.closes_ns is not None and self.clock() >= self.closes_ns(hour)

    def late_hours(self) -> list[dict]:
        """The kept hours of closed periods with points that arrived after them (for /readyz):
        they stay as kept until `kubemonitor rollup --rebuild`, which the entry names."""
        out = []
        for (name, hour), points in sorted(self._late_kept.items(), key=lambda item: (item[0][1], item[0][0])):
            day = format_ns(hour)[:10]
            out.append({"metric": name, "hour": format_ns(hour), "points": points,
                        "fix": f"kubemonitor rollup --from {day} --to {day} --rebuild"})
        return out

    async def count_late_points(self, metric: Metric) -> int:
        """Points that arrived after their hour was rolled up, however late; returns how many
        are new. Each pass looks at the last LATE_WINDOW_HOURS settled hours and at the next
        LATE_CHUNK_HOURS kept hours further back (a walk through all of them, then round
        again), so an hour of any age is looked at again within (kept hours / chunk) passes,
        at the cost of two small queries. An hour whose period is still open is rolled up
        again at once; one of a closed period stays as kept and is listed (`late_hours`)."""
        end = self.settled_end()
        recent = end - LATE_WINDOW_HOURS * HOUR_NS
        kept = await self._kept_counts(metric, "time >= $first AND time < $end", {"first": recent, "end": end})
        cursor = self._late_cursor.get(metric.name) or recent
        older = await self._kept_counts(metric, "time < $cursor", {"cursor": cursor}, f" ORDER BY time DESC LIMIT {LATE_CHUNK_HOURS}")
        self._late_cursor[metric.name] = min(older) if len(older) == LATE_CHUNK_HOURS else None
        kept.update(older)
        if not kept:
            return 0
        now: dict[int, int] = {}
        for first, stop in merge_spans(sorted((h, h + HOUR_NS) for h in kept)):  # runs of hours: a query each
            now.update(await self._raw_counts(metric, first, stop))
        new = 0
        for hour, counted in sorted(kept.items()):
            late = max(0, now.get(hour, 0) - counted)
            key = (metric.name, hour)
            if late == 0:
                self._late_kept.pop(key, None)  # rebuilt (here or by `rollup --rebuild`)
                self._late_seen.pop(key, None)
                continue
            seen = self._late_seen.get(key, 0)
            if late > seen:
                self.telemetry.late_points.labels(metric.name).inc(late - seen)
                new += late - seen
                self._late_seen[key] = late
            if self.closed(hour):
                self._late_kept[key] = late
            else:
                log.info("%d point(s) of %s arrived after %s was rolled up; rolling it up again (its period is open)",
                         late, metric.name, format_ns(hour))
                await self.roll_up(metric, hour, rebuild=True)
                self._late_seen.pop(key, None)
        self.telemetry.late_hours.set(len(self._late_kept))
        return new

    async def _kept_counts(self, metric: Metric, where: str, params: dict, tail: str = "") -> dict[int, int]:
        """{hour: raw points it was computed from} of the kept hours matching `where` (fixed text)."""
        series = await self.influx.query(f'SELECT "raw_points" FROM {self.rollups._hours} WHERE "metric" = $metric AND '
                                         f"{where}{tail}", {"metric": metric.name, **params}, kind="rollup", lane=BG)
        return {t: int(v or 0) for s in series for t, v in s.get("values", [])}

    async def _raw_counts(self, metric: Metric, first: int, end: int) -> dict[int, int]:
        """{hour: raw points now} in [first, end): what `_raw_points` counts, hour by hour, in one
        query. A counter's rate is counted hour by hour: across an hour's start its derivative
        has one more point than within the hour alone, as the hour was counted when kept."""
        if layout_of(metric).rate:
            return {hour: await self._raw_points(metric, hour, hour + HOUR_NS) for hour in range(first, end, HOUR_NS)}
        texts, params = counted_series(metric)
        series = await self.influx.query(statement("count({v})", metric, [*texts, "time >= $first", "time < $end"],
                                                   "GROUP BY time(1h) fill(none)"),
                                         {**params, "first": first, "end": end}, kind="rollup", lane=BG)
        counts: dict[int, int] = defaultdict(int)
        for s in series:
            for t, v in s.get("values", []):
                counts[t] += int(v or 0)
        return counts

    async def run(self, every: float = 60.0) -> None:
        """Keep the rollups up to date until cancelled; InfluxDB failing only delays it."""
        while True:
            try:
                if self.rollups.state == "starting":
                    await self.rollups.prepare()
                if self.rollups.state == "on":
                    for name in self.rollups.metric_names:
                        metric = await self.catalog.resolve(name)
                        if metric is not None:
                            await self.catch_up(metric)
                            await self.count_late_points(metric)
            except InfluxError as exc:
                log.warning("rollup pass failed, trying again in %g s: %s", every, exc.message)
            except Exception:  # noqa: BLE001 - the task must survive anything
                log.exception("rollup pass failed")
            await asyncio.sleep(every)

    def start(self, every: float = 60.0) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self.run(every))

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
