"""Billing statements (README "Billing"): for one period, one row per group (or
namespace, or pod), each resource's usage in its billing unit, its price and cost,
the totals, and how complete the data was.

* Usage is the usage rule (kubemonitor/usage.py: each counted sample x the sample
  interval) divided by the resource's `divide_by`; cost = usage x price, rounded
  half-up to cents per group line and broken down among a group's namespaces or pods
  by largest remainder; totals are sums of the rounded lines, so a spreadsheet adds
  the CSV of any view up to the same total. Excluded namespaces are not billed.
* A period is open until `close_after` after its end, then closed: a closed
  period's statement is computed once, kept in InfluxDB beside the rollups (one
  point per row plus one for the header: a string field holds at most 64 KB) and
  served unchanged from then on, byte for byte. Rebuilding rollups of a closed
  period (`kubemonitor rollup --rebuild`) drops the kept statements and raises the
  period's revision.
* Coverage: per resource, the share of (node, sample interval) pairs in which the
  collector wrote anything at cluster or node level, over the nodes that reported in
  the period (Telegraf runs one collector per node: one node's outage must show), and
  the largest gaps, each naming its node.
"""
from __future__ import annotations

import asyncio
import bisect
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

from .counters import increases
from .influx import InfluxError, InfluxGateway
from .influxql import layout_of, merged, statement, tags_of
from .kept import Kept, kept_key
from .metrics import COUNTER_SCALE, Metric, MetricCatalog
from .ratecard import Period, RateCard, Resource
from .rollups import CLUSTER, KeptIndex, Rollups, collected_intervals, held_of, increase_of, merge_spans, raw_max_hours
from .rollups import USAGE as USAGE_HOURLY
from .statement import BY, MAX_GAPS, Statement
from .times import HOUR_NS, NS, format_ns
from .usage import Counted, PodKey, Scope, integral, per_pod, raw_hours

CENT = Decimal("0.01")


def cost_of(usage: float, price: float) -> Decimal:
    """usage x price, multiplied in decimal (a float product can fall below a half cent), half-up to cents."""
    return (Decimal(repr(usage)) * Decimal(repr(price))).quantize(CENT, rounding=ROUND_HALF_UP)


def largest_remainder(total: Decimal, exact: list[Decimal]) -> list[Decimal]:
    """`total` (in cents) split among lines whose exact amounts are `exact`: each line
    gets its amount cut to cents, and the cents left over go one each to the lines with
    the largest remainders (ties: the earlier line). The parts sum to `total` exactly."""
    if not exact:
        return []
    floors = [a.quantize(CENT, rounding=ROUND_FLOOR) for a in exact]
    left = int((total - sum(floors, Decimal(0))) / CENT)
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - floors[i]), i))
    if left < 0:  # rounding of the parts' usage put them above the group's cents: take from the smallest
        order.reverse()
    step = CENT if left > 0 else -CENT
    for n in range(abs(left)):
        floors[order[n % len(order)]] += step
    return floors


@dataclass(frozen=True)
class Amount:
    """One pod instance's share of a resource over a period, in billing units: what it is
    billed (by the resource's basis), what it used, and what it requested while held."""
    billed: float
    used: float
    requested: float = 0.0

    @classmethod
    def of_usage(cls, used: float) -> Amount:
        """Billed by usage: what is billed is what was used."""
        return cls(used, used)


async def _none() -> dict:
    return {}


Gap = tuple[int, int, "str | None"]   # [from, to) without data, and the node (None: every node that reported)


def uncovered_spans(covered: list[int], begin: int, end: int) -> list[tuple[int, int]]:
    """[begin, end) without the rolled-up hours in `covered`, as spans."""
    spans: list[tuple[int, int]] = []
    cursor = begin
    for hour in covered:
        if hour > cursor:
            spans.append((cursor, min(hour, end)))
        cursor = max(cursor, hour + HOUR_NS)
    if cursor < end:
        spans.append((cursor, end))
    return [(a, b) for a, b in spans if a < b]


class Billing:
    def __init__(self, influx: InfluxGateway, catalog: MetricCatalog, card: RateCard, rollups: Rollups | None,
                 excluded: tuple[str, ...], interval_ns: Callable[[Metric], int], clock: Callable[[], int] = time.time_ns,
                 problems: Callable[[], Awaitable[list[str]]] | None = None):
        self.influx, self.catalog, self.card, self.rollups = influx, catalog, card, rollups
        # "now" in ns since the epoch: which period is running, its state, its projection.
        # One clock for the statements, the daily bars and the pages that ask for them.
        self.clock = clock
        self.excluded, self.interval_ns = tuple(excluded), interval_ns
        self.kept = Kept(influx, rollups.rp) if rollups is not None else None
        self.problems = problems  # the data source's collection problems (notes on statements)
        self._closing: dict[str, asyncio.Future] = {}  # period -> the one computation of its kept statement

    def cannot_keep(self) -> str | None:
        """Why statements cannot be kept now (None: they can)."""
        rollups = self.rollups
        if self.kept is None or rollups is None:
            return "there are no rollups to keep them beside"
        if rollups.state != "on":
            return f"rollups are {rollups.state}" + (f": {rollups.reason}" if rollups.reason else "")
        return None

    def state(self, period: Period, now_ns: int) -> str:
        """open until `close_after` past its end; then closed, or ended where its statement
        cannot be kept (a read-only account): a period is never called closed when its
        figures could still change."""
        if now_ns < period.end_ns + int(self.card.close_after * NS):
            return "open"
        return "ended" if self.why_not_kept(period) else "closed"

    def why_not_kept(self, period: Period) -> str | None:
        """Why this period's statement is not kept (None: it is). Only months and days are:
        any other range is computed on request, so no caller can make the server keep one
        statement per distinct from/to pair."""
        if not (period.is_month or period.first == period.last):
            return "only months and days are kept; ask for its months or days for figures that never change"
        return self.cannot_keep()

    def ended_note(self, why: str) -> str:
        return (f"this period ended more than {self.card.close_after / 3600:g} h ago, but its statement cannot be kept "
                f"({why}): it is not closed, and its figures follow points that arrive late")

    async def statement(self, period: Period, by: str, now_ns: int | None = None) -> Statement:
        """The statement: kept (closed and computed before), or computed now.

        The three views of a period (by group, namespace, pod) come from one computation,
        and a closed period keeps all three at once: they carry the same prices, revision
        and time, and add up to the same cents. Its queries queue for InfluxDB's threads
        (`patient`): a month's statement never fails for want of a connection."""
        now_ns = self.clock() if now_ns is None else now_ns
        if self.state(period, now_ns) != "closed":
            return await self._statement(period, by, now_ns)
        # A closed period is computed and kept once, whoever asks at the same time: the others
        # wait for that one computation and then read what was kept (the same bytes for all).
        key = f"{period.label}|{period.timezone}"
        while True:
            running = self._closing.get(key)
            if running is None:
                break
            try:
                await asyncio.shield(running)
            except Exception:  # noqa: BLE001 - its caller reports it; this caller tries on its own
                pass
        self._closing[key] = done = asyncio.get_running_loop().create_future()
        try:
            return await self._statement(period, by, now_ns)
        finally:
            del self._closing[key]
            done.set_result(None)

    async def _statement(self, period: Period, by: str, now_ns: int) -> Statement:
        with self.influx.patient():
            state = self.state(period, now_ns)
            store = self.kept if state == "closed" else None  # only a closed period's statement is kept
            if store is not None:
                kept = await store.load(kept_key(period, by))
                if kept is not None:
                    return kept
            revision = await store.revision(period.label) + 1 if store is not None else 1
            views = await self.compute(period, now_ns, state, revision)
            if store is not None:
                try:
                    for level in BY:
                        # a view kept earlier (by an older release, or a concurrent caller) stays as it is
                        if level == by or await store.load(kept_key(period, level)) is None:
                            await store.keep(kept_key(period, level), views[level])
                except InfluxError as exc:
                    # not kept, so not closed: the next request computes it again and tries once more
                    view = views[by]
                    view["period"]["state"] = "ended"
                    view["notes"] = [*view.get("notes", []), self.ended_note(f"InfluxDB refused to keep it: {exc.public}")]
                    return Statement({**{k: v for k, v in view.items() if k != "rows"}, "rows": view["rows"]})
        return Statement(views[by])

    async def daily(self, period: Period, namespaces: frozenset[str] | None = None) -> dict:
        """Per local day and group, the cost (usage of the first resource without prices), from
        the rolled-up hours: the page's stacked bar chart. {"days": [...], "groups": {...}}.
        `namespaces`: a scoped user's (their namespaces alone)."""
        with self.influx.patient():
            return await self._daily(period, namespaces)

    async def _daily(self, period: Period, namespaces: frozenset[str] | None) -> dict:
        days = period.days()
        series: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(days))
        priced = self.card.priced
        starts = [d.start_ns for d in days]
        end_ns = min(period.end_ns, self.clock())
        scope = Scope(None, self.excluded, None if namespaces is None else tuple(sorted(namespaces)))
        for resource in self.card.resources:
            if priced and resource.price is None or not priced and resource is not self.card.resources[0]:
                continue
            metric = await self.catalog.resolve(resource.metric)
            if metric is None:
                continue
            price = resource.price if priced and resource.price is not None else 1.0
            factor = integral(1.0, self.interval_ns(metric)) / resource.divide_by * price  # per unit of summed samples

            def add(namespace: str, t: int, total: float, factor: float = factor) -> None:
                series[self.card.group_of(namespace).key][bisect.bisect_right(starts, t) - 1] += total * factor
            covered: list[int] = []
            if self.rollups is not None and self.rollups.covers(metric):
                conditions, params = scope.conditions()
                scope_text = "".join(f" AND {c}" for c in conditions)  # fixed fragments with $parameters
                rows = await self.influx.query(
                    f'SELECT sum("sum") FROM "{self.rollups.rp}"."{USAGE_HOURLY}" WHERE "metric" = $metric AND '
                    f'time >= $begin AND time < $end{scope_text} GROUP BY time(1h), "namespace_name" fill(none)',
                    {**params, "metric": metric.name, "begin": period.start_ns, "end": period.end_ns}, kind="statement")
                for s in rows:
                    for t, total in s.get("values", []):
                        add((s.get("tags") or {}).get("namespace_name", ""), t, total or 0.0)
                covered = await self.rollups.covered_hours(metric, period.start_ns, period.end_ns)
            # the hours not rolled up yet (the running day's last ones; every hour without
            # rollups) from raw points, as the statement counts them: the bars add up to the table
            for begin, stop in uncovered_spans(covered, period.start_ns, end_ns):
                for ((namespace, _pod, _id), hour), counted in (await raw_hours(self.influx, metric, begin, stop - 1, scope,
                                                                                 self.interval_ns(metric))).items():
                    add(namespace, max(hour, begin), counted.sum)
        measure = (f"cost ({self.card.currency})" if priced else
                   f"{self.card.resources[0].key} ({self.card.resources[0].unit})")
        return {"days": [d.label for d in days], "groups": {g: [round(v, 4) for v in vals] for g, vals in sorted(series.items())},
                "names": {g: next((gr.name for gr in self.card.groups if gr.key == g), g) for g in series},  # the legend's
                "measure": measure}

    async def negative_samples(self, metric: Metric, begin_ns: int, end_ns: int) -> int:
        """Samples below 0 in the range (a counter's rate never is): they are left out of usage."""
        layout = layout_of(metric)
        if layout.rate:
            return 0
        # Fixed fragments and the layout's quoted names only; the range is $parameters.
        only = "".join(f" AND {c}" for c in layout.only())
        series = await self.influx.query(f"SELECT count({layout.f}) FROM {layout.m} WHERE time >= $begin AND time < $end "
                                         f"AND {layout.f} < 0{only}", {"begin": begin_ns, "end": end_ns}, kind="statement")
        return int(next((v for s in series for _, v in s.get("values", [])), 0) or 0)

    async def usage(self, metric: Metric, period: Period, by: str, index: KeptIndex | None = None,
                    scope: Scope | None = None) -> dict[PodKey, Counted]:
        scope = scope or Scope(None, self.excluded)
        if self.rollups is not None:
            return await self.rollups.usage(metric, period.start_ns, period.end_ns - 1, scope, self.interval_ns(metric),
                                            per_namespace=by != "pod", index=index)
        return per_pod(await raw_hours(self.influx, metric, period.start_ns, period.end_ns - 1, scope, self.interval_ns(metric)))

    async def compute(self, period: Period, now_ns: int, state: str, revision: int) -> dict[str, dict]:
        """The period's statement by group, by namespace and by pod, from one reading of usage."""
        card = self.card
        end_ns = min(period.end_ns, now_ns)
        metrics = {r.key: await self.catalog.resolve(r.metric) for r in card.resources}
        notes = []
        usages: dict[str, dict[PodKey, Counted]] = {}
        coverage: dict[str, float] = {}
        gaps: list[Gap] = []
        present = await self.catalog.measurements()
        measured = [r for r in card.resources if (m := metrics[r.key]) is not None and layout_of(m).measurement in present]
        for resource in card.resources:
            if resource not in measured:
                usages[resource.key], coverage[resource.key] = {}, 0.0
                notes.append(f"{resource.metric} is not in the database: {resource.key} shows 0 and coverage 0"
                             + ("" if metrics[resource.key] is not None else
                                f" ({resource.metric} is neither a metric of the {self.catalog.source.name} source nor a "
                                "measurement in InfluxDB: check the rate card's spelling)"))
        if state == "ended":
            notes.append(self.ended_note(self.why_not_kept(period) or "it could not be kept"))
        if self.problems is not None:
            notes.extend(await self.problems())
        # every resource's usage, coverage and faulty samples at once: independent queries
        found = {r.key: m for r in measured if (m := metrics[r.key]) is not None}
        # what the rollups keep of each, read once for both usage and coverage
        indexes: dict[str, KeptIndex] = {}
        if (rollups := self.rollups) is not None:
            first_whole = -(-period.start_ns // HOUR_NS) * HOUR_NS
            indexes = dict(zip(found, await asyncio.gather(*(
                rollups.index(m, first_whole, period.end_ns - period.end_ns % HOUR_NS) for m in found.values()))))
        used, covered, negatives = await asyncio.gather(
            # (a counter's usage is its increase, and a basis other than usage reads hours: below)
            asyncio.gather(*(_none() if found[r.key].cumulative or r.requested else
                             self.usage(found[r.key], period, "pod", indexes.get(r.key)) for r in measured)),
            asyncio.gather(*(self.coverage(found[r.key], period.start_ns, end_ns, indexes.get(r.key)) for r in measured)),
            asyncio.gather(*(self.negative_samples(found[r.key], period.start_ns, end_ns) for r in measured)))
        # a resource billed by request depends on the inventory too: its coverage is the lower one
        requested = await asyncio.gather(*(self.request_coverage(r, period.start_ns, end_ns) for r in measured))
        for resource, pods, (share, holes), negative, asked in zip(measured, used, covered, negatives, requested):
            if asked is not None:
                share, holes = min(share, asked[0]), holes + asked[1]
            usages[resource.key], coverage[resource.key] = pods, share
            gaps.extend(holes)
            if negative:
                notes.append(f"{negative} sample(s) of {resource.metric} below 0 (a collector fault) were left out, "
                             "not billed as a credit")
        # every resource in billing units per pod instance: billed, used, requested
        amounts: dict[str, dict[PodKey, Amount]] = {}
        for resource in card.resources:
            metric = found.get(resource.key)
            if resource.requested and metric is not None:
                amounts[resource.key], said = await self.held(resource, metric, period, indexes.get(resource.key))
                notes.extend(said)
            elif metric is not None and metric.cumulative:
                amounts[resource.key] = {pod: Amount.of_usage(c.sum / resource.divide_by) for pod, c in
                                         per_pod(await self.increases(metric, period)).items()}
            else:
                interval = self.interval_ns(metric) if metric is not None else NS
                amounts[resource.key] = {pod: Amount.of_usage(integral(c.sum, interval) / resource.divide_by)
                                         for pod, c in usages[resource.key].items()}
        views = {"group": self.rows(amounts, "group")}
        # what the cluster offered, what the excluded namespaces took, and what nobody did
        capacity, system = await asyncio.gather(
            asyncio.gather(*(self.capacity(r, period.start_ns, end_ns) for r in card.resources)),
            asyncio.gather(*(self.system(r, found.get(r.key), period, indexes.get(r.key)) for r in card.resources)))
        billed = {r.key: sum(a.billed for a in amounts[r.key].values()) for r in card.resources}
        idle: dict[str, float | None] = {}
        for resource, offered, taken in zip(card.resources, capacity, system):
            if offered is None:
                idle[resource.key] = None
                continue
            idle[resource.key] = max(0.0, offered - billed[resource.key] - taken)
            if billed[resource.key] + taken > offered * (1 + 1e-9):
                notes.append(f"{resource.key}: billed and system ({billed[resource.key] + taken:.6g} {resource.unit}) exceed "
                             f"the capacity ({offered:.6g}): check the sample intervals (the interval check in /readyz)")
        if card.idle == "share" and card.priced:
            self.share_idle(views["group"], idle)
        for level in ("namespace", "pod"):
            views[level] = self.reconciled(views["group"], self.rows(amounts, level))
        header: dict[str, Any] = {
            "period": {"from": format_ns(period.start_ns), "to": format_ns(period.end_ns), "label": period.label,
                       "timezone": period.timezone, "state": {"open": "provisional"}.get(state, state),
                       "revision": revision, "computed_at": format_ns(now_ns // 10**9 * 10**9)},
            **({"cluster": self.catalog.source.cluster} if self.catalog.source.cluster else {}),
            "currency": card.currency,
            "resources": [{"key": r.key, "metric": r.metric, "unit": r.unit, "price": r.price, "basis": r.basis,
                           **({"request_metric": r.request_metric} if r.requested else {})} for r in card.resources],
            "coverage": {k: round(v, 6) for k, v in coverage.items()},
            "gaps": [{"from": format_ns(a), "to": format_ns(b), "node": node} for a, b, node in _largest(gaps)],
            "capacity": {r.key: None if c is None else round(c, 6) for r, c in zip(card.resources, capacity)},
            "system": {r.key: round(t, 6) for r, t in zip(card.resources, system)},
            "idle": {k: None if v is None else round(v, 6) for k, v in idle.items()},
            "totals": self.totals(views["group"]),  # every view's rows add up to these, to the cent
        }
        if notes:
            header["notes"] = notes
        if state == "open" and now_ns < period.end_ns and now_ns > period.start_ns:
            # The running period: usage so far, at the current rate to the period's end.
            header["projection"] = self.projection(header["totals"], (period.end_ns - period.start_ns) / (now_ns - period.start_ns))
        # rows last: a kept statement is its header's fields, then its rows, in this order
        return {level: {**header, "rows": rows} for level, rows in views.items()}

    async def request_coverage(self, resource: Resource, begin: int, end: int) -> tuple[float, list[Gap]] | None:
        """The coverage of a resource's request (kube_inventory's, per node) where it is billed
        by request or max: a collector of requests that was down bills less, and must show."""
        if not resource.requested or resource.request_metric is None:
            return None
        request = await self.catalog.resolve(resource.request_metric)
        if request is None or layout_of(request).measurement not in await self.catalog.measurements():
            return None
        return await self.coverage(request, begin, end)

    async def capacity(self, resource: Resource, begin: int, end: int) -> float | None:
        """What the cluster offered of `resource` in [begin, end), in billing units: its nodes'
        allocatable x time, per node and hour (mean x the intervals with data, at most the
        hour's: a second collector does not double it). None: not known (no such metric)."""
        if resource.capacity_metric is None:
            return None
        metric = await self.catalog.resolve(resource.capacity_metric)
        if metric is None or layout_of(metric).measurement not in await self.catalog.measurements():
            return None
        layout, interval = layout_of(metric), self.interval_ns(metric)
        texts, params = merged(layout.node_level)
        series = await self.influx.query(
            statement('mean({v}) AS "mean", count({v}) AS "count"', layout, [*texts, "time >= $begin", "time < $end"],
                      f"GROUP BY time(1h), {tags_of(layout, 'nodename')} fill(none)"),
            {**params, "begin": begin, "end": end}, kind="statement")
        total = 0.0
        for s in series:
            for t, mean, count in s.get("values", []):
                if not count or mean is None:
                    continue
                a, b = max(begin, t), min(end, t + HOUR_NS)
                intervals = max(1, -(-(b - a) // interval))
                total += float(layout.value(mean)) * min(count, intervals) * interval / HOUR_NS
        usage = await self.catalog.resolve(resource.metric)
        scale = COUNTER_SCALE.get(resource.metric, 1.0) if usage is not None and usage.cumulative else 1.0
        return total * scale / resource.divide_by

    async def system(self, resource: Resource, metric: Metric | None, period: Period, index: KeptIndex | None) -> float:
        """What the excluded namespaces (KUBEMONITOR_EXCLUDED_NAMESPACES) were billed of
        `resource`, by its basis: never billed to a group, not idle either."""
        if metric is None or not self.excluded:
            return 0.0
        scope = Scope(None, (), only=tuple(self.excluded))
        if resource.requested:
            amounts, _ = await self.held(resource, metric, period, index, scope)
            return sum(a.billed for a in amounts.values())
        if metric.cumulative:
            return sum(c.sum for c in (await self.increases(metric, period, scope)).values()) / resource.divide_by
        pods = await self.usage(metric, period, "namespace", index, scope)
        return sum(integral(c.sum, self.interval_ns(metric)) for c in pods.values()) / resource.divide_by

    def share_idle(self, group_rows: list[dict], idle: dict[str, float | None]) -> None:
        """`idle: share`: each resource's idle cost (idle x price, to cents) divided among the
        group lines by their billed amount (largest remainder: the parts sum to it), added to
        their totals: the statement then recovers the whole cluster's cost."""
        for resource in self.card.resources:
            amount = idle.get(resource.key)
            if resource.price is None or not amount:
                continue
            cost = cost_of(amount, resource.price)
            weights = [Decimal(repr(row["usage"][resource.key])) for row in group_rows]
            whole = sum(weights, Decimal(0))
            if not whole:
                continue
            for row, cents in zip(group_rows, largest_remainder(cost, [cost * w / whole for w in weights])):
                row.setdefault("idle_cost", {})[resource.key] = float(cents)
        for row in group_rows:
            if "idle_cost" in row:
                row["total"] = float(Decimal(repr(row["total"])) + sum((Decimal(repr(v)) for v in row["idle_cost"].values()),
                                                                        Decimal(0)))

    def reconciled(self, group_rows: list[dict], rows: list[dict]) -> list[dict]:
        """`rows` (by namespace or pod) with each group line's cents broken down among them
        by largest remainder: every view then sums to the group lines and the same total."""
        if not self.card.priced:
            return rows
        prices = {r.key: Decimal(repr(r.price)) for r in self.card.resources if r.price is not None}
        children: dict[str, list[dict]] = defaultdict(list)
        for row in rows:
            children[row["group"]].append(row)
        for group in group_rows:
            mine = children[group["group"]]
            for key, price in prices.items():
                exact = [Decimal(repr(row["usage"][key])) * price for row in mine]
                for row, cents in zip(mine, largest_remainder(Decimal(repr(group["cost"][key])), exact)):
                    row["cost"][key] = float(cents)
            for key, cents_of_group in group.get("idle_cost", {}).items():
                weights = [Decimal(repr(row["usage"][key])) for row in mine]
                whole = sum(weights, Decimal(0))
                shares = [Decimal(repr(cents_of_group)) * w / whole for w in weights] if whole else [Decimal(0)] * len(mine)
                for row, cents in zip(mine, largest_remainder(Decimal(repr(cents_of_group)), shares)):
                    row.setdefault("idle_cost", {})[key] = float(cents)
            for row in mine:
                row["total"] = float(sum((Decimal(repr(v)) for v in (*row["cost"].values(), *row.get("idle_cost", {}).values())),
                                         Decimal(0)))
        return rows

    def totals(self, rows: list[dict]) -> dict:
        """Sums of the rows: usage, and the rounded costs (so a spreadsheet adds up to the total)."""
        card = self.card
        shared = {key for row in rows for key in row.get("idle_cost", {})}
        return {"usage": {r.key: round(sum(row["usage"][r.key] for row in rows), 6) for r in card.resources},
                "cost": ({r.key: float(sum((Decimal(repr(row["cost"][r.key])) for row in rows), Decimal(0)))
                          for r in card.resources if r.price is not None} if card.priced else None),
                **({"idle_cost": {key: float(sum((Decimal(repr(row.get("idle_cost", {}).get(key, 0.0))) for row in rows),
                                                 Decimal(0))) for key in sorted(shared)}} if shared else {}),
                "total": float(sum((Decimal(repr(row["total"])) for row in rows), Decimal(0))) if card.priced else None}

    def projection(self, totals: dict, factor: float) -> dict:
        projected = {k: round(v * factor, 6) for k, v in totals["usage"].items()}
        return {"factor": factor, "usage": projected, "total": (float(sum(
            cost_of(projected[r.key], r.price) for r in self.card.resources if r.price is not None)) if self.card.priced else None)}

    def priced_row(self, row: dict, usage: dict[str, float]) -> dict:
        """`row` with its usage, each resource's cost (half-up to cents) and the total."""
        card = self.card
        row["usage"] = {r.key: round(usage.get(r.key, 0.0), 6) for r in card.resources}
        if card.priced:
            cost = {r.key: float(cost_of(row["usage"][r.key], r.price)) for r in card.resources if r.price is not None}
            row["cost"] = cost
            row["total"] = float(sum((Decimal(repr(v)) for v in cost.values()), Decimal(0)))
        else:
            row["cost"], row["total"] = None, None
        return row

    async def scoped_statement(self, period: Period, by: str, namespaces: frozenset[str]) -> Statement:
        """The statement for a scoped user or client: the full statement's rows of its
        namespaces (by namespace or pod, the very rows the billing office sees; by group,
        those rows added up per group), with totals of those rows. A closed period's
        figures come from its kept statement, so they never change either."""
        full = (await self.statement(period, "pod" if by == "pod" else "namespace")).data
        # copies: the full statement's rows stay as they are
        mine = [{**row, "namespaces": [n for n in row["namespaces"] if n in namespaces]}
                for row in full["rows"] if row["namespace"] in namespaces]
        if by == "group":
            merged: dict[str, dict] = {}
            sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
            cents: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
            held: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(float)))
            for row in mine:
                merged.setdefault(row["group"], {k: v for k, v in row.items()
                                                 if k in ("group", "name", "account", "namespaces")})
                for key, value in row["usage"].items():
                    sums[row["group"]][key] += value
                for field in ("used", "requested"):
                    for key, value in row.get(field, {}).items():
                        held[row["group"]][field][key] += value
                for key, value in (row["cost"] or {}).items():
                    cents[row["group"]][key] += Decimal(repr(value))
            mine = [self.held_fields(self.scoped_group_row(merged[g], sums[g], cents[g]), held[g]["used"], held[g]["requested"])
                    for g in sorted(merged)]
        header = {k: v for k, v in full.items() if k != "rows"}
        header["scope"] = sorted(namespaces)
        header["totals"] = self.totals(mine)
        if "projection" in full:
            header["projection"] = self.projection(header["totals"], full["projection"]["factor"])
        header["rows"] = mine
        return Statement(header)

    def scoped_group_row(self, row: dict, usage: dict[str, float], cents: dict[str, Decimal]) -> dict:
        """A group line of a scoped statement: its namespaces' usage and their cents as the
        office's by-namespace statement has them (so the scoped view adds up to those)."""
        row = self.priced_row(row, usage)
        if self.card.priced:
            row["cost"] = {key: float(cents[key]) for key in row["cost"]}
            row["total"] = float(sum(cents.values(), Decimal(0)))
        return row

    def rows(self, amounts: dict[str, dict[PodKey, Amount]], by: str) -> list[dict]:
        card = self.card
        totals: dict[tuple, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        used: dict[tuple, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        requested: dict[tuple, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for key, pods in amounts.items():
            for (ns, pod, _pod_id), amount in pods.items():
                group = card.group_of(ns)
                line: tuple[str, ...] = (group.key,) if by == "group" else (group.key, ns) if by == "namespace" else (group.key, ns, pod)
                totals[line][key] += amount.billed
                used[line][key] += amount.used
                requested[line][key] += amount.requested
        out = []
        for line in sorted(totals):
            group = next((g for g in card.groups if g.key == line[0]), None) or card.group_of(line[0])
            row: dict[str, Any] = {"group": group.key, "name": group.name, "account": group.account,
                                   "namespaces": sorted(group.namespaces)}
            if by in ("namespace", "pod"):
                row["namespace"] = line[1]
            if by == "pod":
                row["pod"] = line[2]
            out.append(self.held_fields(self.priced_row(row, totals[line]), used[line], requested[line]))
        return out

    def held_fields(self, row: dict, used: dict[str, float], requested: dict[str, float]) -> dict:
        """A row's `used`, `requested` and `efficiency` (used / billed) for the resources billed
        by request or max: what a group reserved against what it used."""
        keys = [r.key for r in self.card.resources if r.requested]
        if keys:
            row["used"] = {k: round(used.get(k, 0.0), 6) for k in keys}
            row["requested"] = {k: round(requested.get(k, 0.0), 6) for k in keys}
            row["efficiency"] = {k: (round(row["used"][k] / row["usage"][k], 6) if row["usage"][k] else None) for k in keys}
        return row

    async def hours(self, metric: Metric, period: Period, index: KeptIndex | None = None,
                    scope: Scope | None = None) -> dict[tuple[PodKey, int], Counted]:
        """{(pod instance, hour): Counted} over the period, from rollups where kept."""
        scope = scope or Scope(None, self.excluded)
        if self.rollups is not None and self.rollups.covers(metric):
            return await self.rollups.hours(metric, period.start_ns, period.end_ns - 1, scope, self.interval_ns(metric),
                                            index=index)
        return await raw_hours(self.influx, metric, period.start_ns, period.end_ns - 1, scope, self.interval_ns(metric),
                               hourly=True)

    async def increases(self, metric: Metric, period: Period, scope: Scope | None = None) -> dict[tuple[PodKey, int], Counted]:
        """A counter's increases per pod instance and hour over the period (kubemonitor/counters.py):
        from its hourly rollups where kept, raw points for the rest."""
        scope = scope or Scope(None, self.excluded)
        kept = increase_of(metric)
        if self.rollups is not None and self.rollups.covers(kept):
            def raw(a: int, b: int) -> Awaitable[dict[tuple[PodKey, int], Counted]]:
                return increases(self.influx, metric, a, b, scope)
            return await self.rollups.hours(kept, period.start_ns, period.end_ns - 1, scope, self.interval_ns(metric), raw=raw)
        return await increases(self.influx, metric, period.start_ns, period.end_ns, scope)

    async def held_from_rollups(self, resource: Resource, metric: Metric, request: Metric, period: Period,
                                index: KeptIndex | None, scope: Scope) -> tuple[dict[PodKey, Amount], list[str]]:
        """`held`, read per pod from the rollups (whole days at the daily level): the usage, the
        request, and for `max` the hourly larger of the two as the task keeps it."""
        rollups = self.rollups
        assert rollups is not None
        begin, end = period.start_ns, period.end_ns - 1
        used_ns, requested_ns = self.interval_ns(metric), self.interval_ns(request)

        def raw(a: int, b: int) -> Awaitable[dict[tuple[PodKey, int], Counted]]:
            return raw_max_hours(self.influx, metric, request, a, b, scope, used_ns, requested_ns)
        billed, used, asked = await asyncio.gather(
            rollups.usage(held_of(metric), begin, end, scope, used_ns, raw_spans=raw) if resource.basis == "max" else _none(),
            rollups.usage(metric, begin, end, scope, used_ns, index=index),
            rollups.usage(request, begin, end, scope, requested_ns))
        out: dict[PodKey, Amount] = {}
        for pod in used.keys() | asked.keys() | billed.keys():
            u = integral(used[pod].sum, used_ns) / resource.divide_by if pod in used else 0.0
            r = integral(asked[pod].sum, requested_ns) / resource.divide_by if pod in asked else 0.0
            b = (integral(billed[pod].sum, used_ns) / resource.divide_by if pod in billed else 0.0) if resource.basis == "max" else r
            out[pod] = Amount(b, u, r)
        return out, self.request_notes(resource, out, True)

    def request_notes(self, resource: Resource, amounts: dict[PodKey, Amount], have_requests: bool) -> list[str]:
        """The note on a resource billed by request or max: no request data at all, or how many
        pods had none."""
        if not have_requests:
            return [f"{resource.request_metric or 'a request'} is not in the database: {resource.key} (basis "
                    f"{resource.basis}) bills " + ("nothing" if resource.basis == "request" else "usage")]
        without = sum(1 for a in amounts.values() if a.requested <= 0 and a.used > 0)
        if without:
            return [f"{without} pod(s) had no {resource.key} request: billed "
                    + ("nothing for it" if resource.basis == "request" else "their usage") + f" (basis {resource.basis})"]
        return []

    async def held(self, resource: Resource, metric: Metric, period: Period,
                   index: KeptIndex | None, scope: Scope | None = None) -> tuple[dict[PodKey, Amount], list[str]]:
        """Per pod instance, in billing units: what `basis: request` or `basis: max` bills,
        what was used and what was requested, hour by hour (a request counts while held:
        each source's layout says which request samples are). `max` takes the larger of the
        hour's used and requested amounts; a pod with no request in an hour pays its usage
        then. Returns the amounts and a note on the pods billed without a request."""
        request = await self.catalog.resolve(resource.request_metric) if resource.request_metric else None
        present = await self.catalog.measurements()
        rollups = self.rollups
        # requests are there when InfluxDB has them raw, or kept (their raw points may have expired)
        have_requests = request is not None and (layout_of(request).measurement in present
                                                 or (rollups is not None and rollups.covers(request)))
        if (rollups is not None and request is not None and have_requests and not metric.cumulative
                and rollups.covers(metric) and rollups.covers(request)
                and (resource.basis == "request" or rollups.covers(held_of(metric)))):
            return await self.held_from_rollups(resource, metric, request, period, index, scope or Scope(None, self.excluded))
        used_hours, requested_hours = await asyncio.gather(
            self.increases(metric, period, scope) if metric.cumulative else self.hours(metric, period, index, scope),
            self.hours(request, period, None, scope) if have_requests and request is not None else _none())
        used_ns, requested_ns = self.interval_ns(metric), self.interval_ns(request) if request is not None else NS
        scale = COUNTER_SCALE.get(metric.name, 1.0) if metric.cumulative else 1.0  # request unit-hours -> counter units

        def combine() -> dict[PodKey, Amount]:
            used = {k: (c.sum if metric.cumulative else integral(c.sum, used_ns)) / resource.divide_by
                    for k, c in used_hours.items()}
            asked = {k: integral(c.sum, requested_ns) * scale / resource.divide_by for k, c in requested_hours.items() if c.count}
            out: dict[PodKey, Amount] = {}
            for key in used.keys() | asked.keys():
                pod = key[0]
                u, r = used.get(key, 0.0), asked.get(key)
                billed = (r or 0.0) if resource.basis == "request" else (u if r is None else max(u, r))
                amount = out.setdefault(pod, Amount(0.0, 0.0))
                out[pod] = Amount(amount.billed + billed, amount.used + u, amount.requested + (r or 0.0))
            return out
        amounts = await self.influx.compute(combine)
        return amounts, self.request_notes(resource, amounts, have_requests)

    async def coverage(self, metric: Metric, begin: int, end: int,
                       index: KeptIndex | None = None) -> tuple[float, list[Gap]]:
        """The share of (node, sample interval) pairs in [begin, end) with any cluster- or
        node-level sample, over the nodes that reported in the range, and the gaps, each
        naming its node (None: every node that reported). Rolled-up hours carry their counts
        per node; only the hours some node does not cover fully (and the rest of the range)
        are looked at interval by interval."""
        interval = self.interval_ns(metric)
        per_node = max(0, (end - begin) // interval)
        if per_node == 0:
            return 1.0, []
        kept: dict[int, dict[str, int]] = {}
        intervals = HOUR_NS // interval
        if self.rollups is not None and self.rollups.covers(metric):
            first_whole, last_whole = -(-begin // HOUR_NS) * HOUR_NS, end - end % HOUR_NS
            if index is None:
                index = await self.rollups.index(metric, first_whole, last_whole)
            # an hour kept before coverage was counted per node is looked at point by point
            kept = {h: nodes for h, nodes in index.nodes.items()
                    if first_whole <= h < last_whole and index.hours.get(h, (0, 0))[1] == intervals}
        known = {node for nodes in kept.values() for node in nodes}
        whole: dict[int, dict[str, int]] = {}  # kept hours every node covers fully or not at all
        look: list[tuple[int, int]] = []       # ranges to read interval by interval
        cursor = begin
        for hour in sorted(kept):
            if hour > cursor:
                look.append((cursor, hour))
            if all(kept[hour].get(node, 0) in (0, intervals) for node in known):
                whole[hour] = kept[hour]
            else:
                look.append((hour, hour + HOUR_NS))
            cursor = hour + HOUR_NS
        if cursor < end:
            look.append((cursor, end))
        look = merge_spans(look)  # adjacent ranges (runs of partly covered hours) are one query
        found = await asyncio.gather(*(collected_intervals(self.influx, metric, a, b, interval) for a, b in look))

        def walk() -> tuple[float, list[Gap]]:
            nodes = sorted(known | {node for seen in found for node in seen})
            if not nodes:
                return 0.0, [(a, b, None) for a, b in unseen_spans(begin, end, set(), interval)]
            have = 0
            holes: dict[str, list[tuple[int, int]]] = {node: [] for node in nodes}
            for hour, counts in whole.items():
                for node in nodes:
                    if counts.get(node, 0) == intervals:
                        have += intervals
                    else:
                        holes[node].append((hour, hour + HOUR_NS))
            for (a, b), seen in zip(look, found):
                for node in nodes:
                    have += len(seen.get(node, ()))
                    holes[node].extend(unseen_spans(a, b, seen.get(node, set()), interval))
            return min(1.0, have / (per_node * len(nodes))), node_gaps(holes)
        return await self.influx.compute(walk)


def node_gaps(holes: dict[str, list[tuple[int, int]]]) -> list[Gap]:
    """Each node's runs of missing intervals; a run missing on every node (a cluster-wide
    outage) is one gap naming no node, not one per node crowding out the rest."""
    spans = {node: merge_spans(sorted(h)) for node, h in holes.items()}
    everywhere = set.intersection(*(set(s) for s in spans.values())) if len(spans) > 1 else set()
    out: list[Gap] = [(a, b, None) for a, b in sorted(everywhere)]
    for node, runs in spans.items():
        name = node if node != CLUSTER else None
        out.extend((a, b, name) for a, b in runs if (a, b) not in everywhere)
    return out


def unseen_spans(begin: int, end: int, seen: set[int], interval: int) -> list[tuple[int, int]]:
    """The runs of sample intervals in [begin, end) (intervals aligned to the epoch, the last
    one whole) whose start is not in `seen`: from the seen intervals alone, not interval by
    interval, so a year with one day of data costs that day (not half a million steps)."""
    t = begin - begin % interval
    spans = []
    for start in sorted(s for s in seen if t <= s < end):
        if start > t:
            spans.append((t, start))
        t = max(t, start + interval)
    if t < end:
        spans.append((t, t + -(-(end - t) // interval) * interval))
    return spans


def _largest(gaps: list[Gap]) -> list[Gap]:
    merged = sorted(set(gaps), key=lambda g: (g[0], g[1], g[2] or ""))
    return sorted(merged, key=lambda g: (-(g[1] - g[0]), g[0], g[2] or ""))[:MAX_GAPS]


