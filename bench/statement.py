"""A month's billing statement for 1,000 and 5,000 pods, timed three ways in one run:

* raw — the same totals a user would compute from raw points: the simplest InfluxQL
  (sum of each namespace's pod-level samples over the month), straight to InfluxDB;
* rollups — kubemonitor computing the statement from its hourly rollups (in-process:
  `Billing.compute`, as the API does for a period it has not kept yet);
* kept — the API serving a closed period's kept statement.

Raw points for 5,000 pods x a month (216 M points) do not fit this machine's time
budget, so that case writes the rollups directly and has no raw column; the 1,000-pod
case writes raw pod-level points (43 M) and rolls them up with `kubemonitor rollup`
(timed). Targets (README): 5,000 pods from rollups < 2 s; kept < 50 ms; >= 10x faster
than raw. Rate card: cpu and memory, 10 groups, UTC; the month is the last complete one.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime

from common import API_PASS, API_USER, Server, median_ms, rss_mb

from kubemonitor.billing import Billing
from kubemonitor.config import Config
from kubemonitor.influxd import Influxd
from kubemonitor.ratecard import example_resources, month_period, parse
from kubemonitor.rollups import DAILY, DAILY_NS, DAYS, HOURS, USAGE
from kubemonitor.services import Services

CARD = "currency: CHF\ntimezone: UTC\nclose_after: 6h\n" + example_resources("cpu", "memory")
# the allocation card: cpu by the larger of request and use (per pod and hour), memory by request
ALLOCATION = ("currency: CHF\ntimezone: UTC\nclose_after: 6h\n"
              + example_resources("cpu", "memory", basis={"cpu": "max", "memory": "request"}))
ROLLED = ("cpu/usage_rate", "memory/usage", "cpu/request", "memory/request")
REQUEST_M = 1000.0  # each pod requests 1000 m and uses 500 m: by max it pays its request
GROUPS = 10


def last_month() -> str:
    now = datetime.now(UTC)
    year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    return f"{year:04d}-{month:02d}"


# the hour's intervals per node, as the task keeps them: the cluster-level samples name no node
NODES = 'nodes="{\\"\\": 60}"'


def write(influxd: Influxd, lines: list[str], rp: str | None = None) -> None:
    for start in range(0, len(lines), 200_000):
        influxd.write("k8s", lines[start:start + 200_000], precision="s", rp=rp)


def rollups_directly(influxd: Influxd, pods: int, first: int, hours: int, allocation: bool = False) -> int:
    """Hourly rollup points (and the hours' markers) as the task would write them; with
    `allocation`, the requests' and max(cpu/usage_rate)'s too."""
    influxd.query('CREATE RETENTION POLICY "kubemonitor" ON "k8s" DURATION INF REPLICATION 1')
    written, lines = 0, []
    kinds = [("cpu/usage_rate", 60 * 500.0), ("memory/usage", 60 * 2.0 * 1024**3)]
    if allocation:
        kinds += [("cpu/request", 60 * REQUEST_M), ("memory/request", 60 * 2.0 * 1024**3), ("max(cpu/usage_rate)", 60 * REQUEST_M)]
    for h in range(hours):
        t = first + h * 3600
        for metric, value in kinds:
            for p in range(pods):
                lines.append(f"{USAGE},metric={metric},namespace_name=group-{p % GROUPS:02d},pod_id=uid-{p:05d},"
                             f"pod_name=pod-{p:05d},source=pod count=60i,sum={value},max={value / 60} {t}")
            lines.append(f"{HOURS},metric={metric} pods={pods}i,raw_points={pods * 60}i,covered=60i,intervals=60i,{NODES} {t}")
        if len(lines) >= 200_000:
            write(influxd, lines, "kubemonitor")
            written += len(lines)
            lines = []
    write(influxd, lines, "kubemonitor")
    return written + len(lines) + daily_directly(influxd, pods, first, hours, [m for m, _ in kinds])


def daily_directly(influxd: Influxd, pods: int, first: int, hours: int, metrics) -> int:
    """The daily level the task keeps once a UTC day's 24 hours are rolled up."""
    lines = []
    for d in range(hours // 24):
        t = first + d * 86400
        for metric in metrics:
            per_sample = {"cpu/usage_rate": 500.0, "cpu/request": REQUEST_M, "max(cpu/usage_rate)": REQUEST_M}.get(metric, 2.0 * 1024**3)
            value, top = 24 * 60 * per_sample, per_sample
            lines += [f"{DAILY},metric={metric},namespace_name=group-{p % GROUPS:02d},pod_id=uid-{p:05d},pod_name=pod-{p:05d},"
                      f"source=pod count=1440i,sum={value},max={top} {t}" for p in range(pods)]
            per_group = [sum(1 for p in range(pods) if p % GROUPS == g) for g in range(GROUPS)]
            lines += [f"{DAILY_NS},metric={metric},namespace_name=group-{g:02d},source=pod count={1440 * n}i,sum={value * n},"
                      f"max={top} {t}" for g, n in enumerate(per_group) if n]
            lines.append(f"{DAYS},metric={metric} pods={pods}i {t}")
    write(influxd, lines, "kubemonitor")
    return len(lines)


def raw_points(influxd: Influxd, pods: int, first: int, hours: int) -> int:
    written, lines = 0, []
    for i in range(hours * 60):
        t = first + i * 60
        for p in range(pods):
            lines.append(f"cpu/usage_rate,namespace_name=group-{p % GROUPS:02d},pod_id=uid-{p:05d},pod_name=pod-{p:05d},"
                         f"type=pod value=500.0 {t}")
        if len(lines) >= 200_000:
            write(influxd, lines)
            written += len(lines)
            lines = []
    write(influxd, lines)
    return written + len(lines)


def cluster_points(influxd: Influxd, first: int, hours: int) -> None:
    """Cluster-level samples: what coverage counts."""
    write(influxd, [f"{m},type=cluster value=1.0 {first + i * 60}" for i in range(hours * 60)
                    for m in ("cpu/usage_rate", "memory/usage")])


def case(pods: int, args, label: str, period, first: int, hours: int, notes: list[str]) -> None:
    allocation = args.allocation and pods > 1000  # rollups written directly, the requests' and max's too
    influxd = Influxd().start()
    influxd.query('CREATE DATABASE "k8s"')
    cluster_points(influxd, first, hours)
    raw_ms = None
    started = time.monotonic()
    if pods <= 1000:
        n = raw_points(influxd, pods, first, hours)
        notes.append(f"{pods} pods: {n:,} raw pod-level points written in {time.monotonic() - started:.0f} s")
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "kubemonitor", "rollup", "--from", f"{label}-01", "--to",
                        period.last.isoformat(), "--influxdb-host", "127.0.0.1", "--influxdb-port",
                        str(influxd.http_port), "--influxdb-db", "k8s", "--influxdb-timeout", "600",
                        "--rollup-metrics", "cpu/usage_rate"], check=True, stderr=subprocess.DEVNULL)
        notes.append(f"{pods} pods: `kubemonitor rollup` of the month took {time.monotonic() - started:.0f} s (cpu)")
        # memory's rollups are written directly (no raw memory points in this case)
    else:
        notes.append(f"{pods} pods: raw points would be {pods * hours * 60:,}: rollups written directly, no raw column")
    n = rollups_directly(influxd, pods, first, hours, allocation) if pods > 1000 else 0
    if pods <= 1000:
        lines = [f"{USAGE},metric=memory/usage,namespace_name=group-{p % GROUPS:02d},pod_id=uid-{p:05d},pod_name=pod-{p:05d},"
                 f"source=pod count=60i,sum={60 * 2.0 * 1024**3},max={2.0 * 1024**3} {first + h * 3600}"
                 for h in range(hours) for p in range(pods)]
        lines += [f"{HOURS},metric=memory/usage pods={pods}i,raw_points={pods * 60}i,covered=60i,intervals=60i,{NODES} {first + h * 3600}"
                  for h in range(hours)]
        write(influxd, lines, "kubemonitor")
        daily_directly(influxd, pods, first, hours, ("memory/usage",))  # the daily level, as the task keeps it

    def raw_query() -> float:
        q = ('SELECT sum("value") FROM "cpu/usage_rate" WHERE "type" = $pod AND time >= $b AND time < $e '
             'GROUP BY "namespace_name"')
        data = ("q=" + urllib.request.quote(q) + "&db=k8s&params=" +
                urllib.request.quote(json.dumps({"pod": "pod", "b": period.start_ns, "e": period.end_ns}))).encode()
        t = time.perf_counter()
        urllib.request.urlopen(influxd.url + "/query", data=data, timeout=600).read()
        return time.perf_counter() - t

    card_dir = tempfile.mkdtemp()
    card_path = os.path.join(card_dir, "billing.yaml")
    with open(card_path, "w") as fh:
        fh.write(CARD)
    config = Config(influxdb_host="127.0.0.1", influxdb_port=influxd.http_port, influxdb_db="k8s", influxdb_timeout=600,
                    rollup_metrics=ROLLED if allocation else ("cpu/usage_rate", "memory/usage"), billing_file=card_path)

    async def from_rollups() -> tuple[list[float], int]:
        services = Services(config)  # what `serve` builds
        billing = services.billing
        await services.rollups.prepare()
        times, rows = [], 0
        for _ in range(args.rounds):
            t = time.perf_counter()
            statement = (await billing.compute(period, time.time_ns(), "closed", 1))["namespace"]
            times.append(time.perf_counter() - t)
            rows = len(statement["rows"])
        if allocation:  # the allocation card on the same rollups, alternating with the usage card
            held = Billing(services.influx, services.catalog, parse(ALLOCATION, "allocation.yaml"), services.rollups,
                           config.excluded_namespaces, services.interval_ns)
            pairs = []
            for _ in range(args.rounds):
                t = time.perf_counter()
                s = (await held.compute(period, time.time_ns(), "closed", 1))["namespace"]
                a = time.perf_counter() - t
                t = time.perf_counter()
                await billing.compute(period, time.time_ns(), "closed", 1)
                pairs.append((a, time.perf_counter() - t))
            expected = pods * hours * REQUEST_M / 1000  # each pod pays its 1000 m request for every hour
            assert abs(s["totals"]["usage"]["cpu"] - expected) < 1e-6 * expected, s["totals"]
            alloc_ms, usage_ms = median_ms([a for a, _ in pairs]), median_ms([u for _, u in pairs])
            notes.append(f"{pods} pods, allocation card (cpu by max, memory by request): {alloc_ms:.0f} ms against "
                         f"{usage_ms:.0f} ms for the usage card in the same rounds: {alloc_ms / usage_ms:.2f}x")
        services.close()
        return times, rows

    times, rows = asyncio.run(from_rollups())
    if pods <= 1000:
        raw_ms = median_ms([raw_query() for _ in range(args.rounds)])
    server = Server(influxd, env={"KUBEMONITOR_BILLING_FILE": card_path, "KUBEMONITOR_ROLLUP_METRICS": "cpu/usage_rate,memory/usage"})
    body = json.dumps({"period": label, "by": "namespace"}).encode()

    def api() -> float:
        req = urllib.request.Request(server.url + "/api/billing/statement", data=body, method="POST",
                                     headers={"X-USERNAME": API_USER, "X-PASSWORD": API_PASS})
        t = time.perf_counter()
        urllib.request.urlopen(req, timeout=600).read()
        return time.perf_counter() - t
    api()  # computes and keeps it (the period is closed)
    kept_ms = median_ms([api() for _ in range(max(10, args.rounds))])
    rollup_ms = median_ms(times)
    raw_text = f"{raw_ms:.0f} ms" if raw_ms is not None else "–"
    ratio = f"{raw_ms / rollup_ms:.1f}x" if raw_ms is not None else "–"
    print(f"| {pods} | {raw_text} | {rollup_ms:.0f} ms | {kept_ms:.1f} ms | {ratio} | {rows} |", flush=True)
    notes.append(f"{pods} pods: RSS server {rss_mb(server.proc.pid):.0f} MB, influxd {rss_mb(influxd.process.pid):.0f} MB"
                 + (f"; {n:,} rollup points written directly" if n else ""))
    server.stop()
    influxd.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--allocation", action="store_true",
                        help="also time the allocation card (cpu by max, memory by request) on the 5,000-pod rollups")
    args = parser.parse_args()
    label = last_month()
    period = month_period(label, "UTC")
    first, hours = period.start_ns // 10**9, (period.end_ns - period.start_ns) // (3600 * 10**9)
    print(f"statement of {label} ({hours} h), cpu and memory, {GROUPS} groups\n")
    print("| pods | raw (simplest InfluxQL) | from rollups | kept (API) | raw / rollups | rows |")
    print("|---|---|---|---|---|---|")
    notes: list[str] = []
    for pods in args.pods:
        case(pods, args, label, period, first, hours, notes)
    print()
    for note in notes:
        print("-", note)


if __name__ == "__main__":
    main()
