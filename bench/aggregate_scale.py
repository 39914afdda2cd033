"""Aggregations at scale: `all-pod` and `pod-by-namespace` over 24 h and 7 d for 200 and
1,000 pods (60 s samples, Heapster's schema), timed side by side in one run:

* old INTEGRAL — the statement the API sent before the usage rule (INTEGRAL per series,
  GROUP BY *), straight to InfluxDB: the baseline the rollups are measured against;
* simple — the simplest InfluxQL a user would write for the same sums (pod-level
  series, sum/count/max by namespace and pod), straight to InfluxDB;
* raw — the API (`kubemonitor serve`) with rollups off: the usage rule from raw points;
* rollups — the API with the hours rolled up (`kubemonitor rollup` first, timed).

Ranges: the last 24 h and 7 d up to now (their partial first and last hours come
from raw points), and the last 24 whole hours (no raw points at all).

Targets (README): from rollups, 1,000 pods x 7 d `all-pod` under 1 s and >= 10x faster
than old INTEGRAL for ranges of a day or more; without rollups, 200 pods x 24 h
`all-pod` within 1.3x of simple. Prints a Markdown table with the ratios, server and
influxd RSS. Medians of --rounds, the ways alternated within each round.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request

from common import API_PASS, API_USER, Server, heapster_usage, median_ms, rss_mb

from kubemonitor.influxd import Influxd

OLD = ('SELECT count("value") AS "count", sum("value") AS "sum", max("value") AS "max", integral("value", 1h) AS "integral" '
       'FROM "cpu/usage_rate" WHERE "type" = $t AND time >= $b AND time <= $e{scope} GROUP BY *')
SIMPLE = ('SELECT sum("value"), count("value"), max("value") FROM "cpu/usage_rate" WHERE "type" = $t AND time >= $b '
          'AND time <= $e{scope} GROUP BY "namespace_name", "pod_name"')


def direct(influxd: Influxd, text: str, params: dict) -> float:
    data = urllib.parse.urlencode({"q": text, "db": "k8s", "epoch": "ns", "params": json.dumps(params)}).encode()
    started = time.perf_counter()
    with urllib.request.urlopen(influxd.url + "/query", data=data, timeout=600) as r:
        json.loads(r.read())
    return time.perf_counter() - started


def api(server: Server, body: dict) -> tuple[float, int]:
    req = urllib.request.Request(server.url + "/api/cpu/usage_rate", data=json.dumps(body).encode(), method="POST",
                                 headers={"X-USERNAME": API_USER, "X-PASSWORD": API_PASS})
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        rows = json.loads(r.read())
    return time.perf_counter() - started, len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print("| pods | range | agg | old INTEGRAL | simple | raw (API) | rollups (API) | rows | raw / simple | old / rollups |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    notes = []
    for pods in args.pods:
        influxd = Influxd().start()
        influxd.query('CREATE DATABASE "k8s"')
        end_s = int(time.time()) // 60 * 60
        started = time.monotonic()
        points = heapster_usage(influxd, "k8s", pods, args.days * 24, end=end_s)
        notes.append(f"{pods} pods: {points:,} points written in {time.monotonic() - started:.0f} s")
        raw_server = Server(influxd, env={"KUBEMONITOR_ROLLUP_METRICS": ""})
        rolled_server = Server(influxd, env={"KUBEMONITOR_ROLLUP_METRICS": "cpu/usage_rate"})
        started = time.monotonic()
        first_day = time.strftime("%Y-%m-%d", time.gmtime(end_s - args.days * 86400))
        subprocess.run([sys.executable, "-m", "kubemonitor", "rollup", "--from", first_day, "--influxdb-host", "127.0.0.1",
                        "--influxdb-port", str(influxd.http_port), "--influxdb-db", "k8s", "--influxdb-timeout", "600",
                        "--rollup-metrics", "cpu/usage_rate"], check=True, stderr=subprocess.DEVNULL)
        notes.append(f"{pods} pods: `kubemonitor rollup` of {args.days:g} days took {time.monotonic() - started:.0f} s")
        # ranges ending now (their first and last hours are partial: read from raw points), and the
        # last whole 24 hours (whole hours only: what daily and monthly statements ask for)
        settled = (end_s - 700) // 3600 * 3600
        for hours, stop_s in ((24, end_s), (24, settled), (args.days * 24, end_s)):
            begin_s = stop_s - int(hours * 3600)
            times = {"timeBeginInterval": begin_s, "timeEndInterval": stop_s - (1e-9 if stop_s == settled else 0)}
            params = {"t": "pod", "b": begin_s * 10**9, "e": stop_s * 10**9 - (1 if stop_s == settled else 0)}
            for agg, scope, extra in (("all-pod", ' AND "namespace_name" != $x', {"x": "kube-system"}),
                                      ("pod-by-namespace", ' AND "namespace_name" = $x', {"x": "group-00"})):
                body = {"agg": agg, "namespace": "group-00", **times}
                samples: dict[str, list[float]] = {"old": [], "simple": [], "raw": [], "rollups": []}
                rows = 0
                for _ in range(args.rounds):
                    samples["old"].append(direct(influxd, OLD.format(scope=scope), {**params, **extra}))
                    samples["simple"].append(direct(influxd, SIMPLE.format(scope=scope), {**params, **extra}))
                    t, rows = api(raw_server, body)
                    samples["raw"].append(t)
                    samples["rollups"].append(api(rolled_server, body)[0])
                m = {k: median_ms(v) for k, v in samples.items()}
                label = ("24 h" if hours == 24 else f"{hours / 24:g} d") + (" (whole hours)" if stop_s == settled else "")
                print(f"| {pods} | {label} | {agg} | {m['old']:.0f} ms | {m['simple']:.0f} ms | {m['raw']:.0f} ms | "
                      f"{m['rollups']:.0f} ms | {rows} | {m['raw'] / m['simple']:.2f} | {m['old'] / m['rollups']:.1f}x |",
                      flush=True)
        notes.append(f"{pods} pods: RSS server {rss_mb(rolled_server.proc.pid):.0f} MB (rollups), "
                     f"{rss_mb(raw_server.proc.pid):.0f} MB (raw); influxd {rss_mb(influxd.process.pid):.0f} MB")
        raw_server.stop()
        rolled_server.stop()
        influxd.cleanup()
    print()
    for note in notes:
        print("-", note)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
