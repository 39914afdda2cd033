"""What the API adds on top of InfluxDB, measured side by side in one run.

Seeds a private influxd with the simulator (200 pods, 24 h at 60 s), starts
`kubemonitor serve` (rollups off: this measures the API over raw points), then
alternates each API request with what a user would do instead: the simplest
InfluxQL that gives the same answer, sent straight to InfluxDB's HTTP API and
decoded as JSON. Prints both medians and their ratio.
Targets: ratio <= 1.3 for `all-pod` over 24 h, <= 2.0 for a raw query (limit 100).
Then: the same raw query by a scoped named client (three namespaces, checked against
the clients file on every call) against the full-access pair: authorising must not
add measurable latency (target: within 10 %). Then: /healthz latency while slow
aggregations keep the server busy. Last: the same pods and range in Telegraf's schema
(a second database, a second server with KUBEMONITOR_SOURCE=telegraf), its API time as a
ratio to the Heapster case's (target <= 1.5: Telegraf has no pod-level series, so every
pod is a sum of its containers).

    python bench/api_overhead.py [--rounds 25]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time

import requests
from common import API_PASS, API_USER, Server, median_ms, percentile, seeded_influxd

# What a user would write for the same answers: the points, newest first; and the
# sums, counts and maxima of each pod's pod-level series (the simulator writes them).
BASELINES = {
    "raw, limit 100": 'SELECT "value", *::tag FROM "cpu/usage_rate" WHERE "namespace_name" = $ns AND time >= $b AND '
                      'time <= $e ORDER BY time DESC LIMIT 100',
    "all-pod, 24 h": 'SELECT sum("value"), count("value"), max("value") FROM "cpu/usage_rate" WHERE "type" = $pod AND '
                     'time >= $b AND time <= $e AND "namespace_name" != $excluded GROUP BY "namespace_name", "pod_name"',
}


def compare(api, headers, cases, heapster_url, telegraf_url, rounds) -> None:
    """Each case alternately on the Heapster and the Telegraf server: medians and their ratio."""
    print(f"{'case':<16} {'Heapster':>10} {'Telegraf':>10} {'ratio':>6}  (rows)")
    for name, body in cases.items():
        payload = json.dumps(body)
        timings: dict[str, list[float]] = {"heapster": [], "telegraf": []}
        rows = {}
        for _ in range(rounds + 3):
            for schema, url in (("heapster", heapster_url), ("telegraf", telegraf_url)):
                started = time.perf_counter()
                r = api.post(f"{url}/api/cpu/usage_rate", data=payload, headers=headers, timeout=120)
                r.raise_for_status()
                timings[schema].append(time.perf_counter() - started)
                rows[schema] = len(r.json())
        h, t = median_ms(timings["heapster"][3:]), median_ms(timings["telegraf"][3:])
        print(f"{name:<16} {h:8.1f} ms {t:8.1f} ms {t / h:6.2f}  ({rows['heapster']}, {rows['telegraf']})"
              + ("  (target <= 1.5)" if name.startswith("all-pod") else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()

    influxd = seeded_influxd(hours=24, pods=200, namespaces=10)
    server = Server(influxd, env={"KUBEMONITOR_ROLLUP_METRICS": ""})
    try:
        now = time.time()
        cases = {
            "raw, limit 100": {"namespace": "astro-lab", "limit": 100, "timeBeginInterval": now - 86400,
                               "timeEndInterval": now},
            "all-pod, 24 h": {"agg": "all-pod", "timeBeginInterval": now - 86400, "timeEndInterval": now},
        }
        api, direct = requests.Session(), requests.Session()
        headers = {"X-USERNAME": API_USER, "X-PASSWORD": API_PASS}
        results = {}
        for name, body in cases.items():
            statements = [(BASELINES[name], {"ns": "astro-lab", "pod": "pod", "excluded": "kube-system",
                                             "b": int(now - 86400) * 10**9, "e": int(now) * 10**9}, "ns")]
            payload = json.dumps(body)

            def via_api(payload=payload):
                r = api.post(f"{server.url}/api/cpu/usage_rate", data=payload, headers=headers, timeout=120)
                r.raise_for_status()
                return r.json()

            def straight(statements=statements):
                out = []
                for influxql, params, epoch in statements:
                    p = {"db": "k8s", "q": influxql, "params": json.dumps(params)}
                    if epoch:
                        p["epoch"] = epoch
                    r = direct.get(f"{influxd.url}/query", params=p, timeout=120)
                    r.raise_for_status()
                    out.append(r.json())
                return out
            for _ in range(3):  # warm caches on both paths
                via_api()
                straight()
            t_api, t_direct = [], []
            for _ in range(args.rounds):
                for fn, bucket in ((via_api, t_api), (straight, t_direct)):
                    started = time.perf_counter()
                    fn()
                    bucket.append(time.perf_counter() - started)
            results[name] = (median_ms(t_api), median_ms(t_direct), len(statements), len(via_api()))

        print()
        print(f"{'case':<16} {'API median':>11} {'simplest InfluxQL':>18} {'ratio':>6}  (statements, rows)")
        for name, (a, d, n, rows) in results.items():
            print(f"{name:<16} {a:9.1f} ms {d:14.1f} ms {a / d:6.2f}  ({n}, {rows})")

        # authorisation: the same raw query, full-access pair and scoped named client, alternating
        payload = json.dumps(cases["raw, limit 100"])
        timings: dict[str, list[float]] = {"full-access": [], "scoped client": []}
        for _ in range(3 * args.rounds):
            for who, h in (("full-access", headers), ("scoped client", server.scoped_headers)):
                started = time.perf_counter()
                r = api.post(f"{server.url}/api/cpu/usage_rate", data=payload, headers=h, timeout=120)
                r.raise_for_status()
                timings[who].append(time.perf_counter() - started)
        full, scoped = median_ms(timings["full-access"]), median_ms(timings["scoped client"])
        print(f"raw, limit 100: full-access {full:.2f} ms, scoped client {scoped:.2f} ms, ratio {scoped / full:.3f} "
              "(target <= 1.10)")

        # /healthz while two clients keep slow aggregations running
        stop = threading.Event()
        slow = json.dumps({"agg": "all-namespace", "timeBeginInterval": now - 86400, "timeEndInterval": now})

        def load():
            s = requests.Session()
            while not stop.is_set():
                s.post(f"{server.url}/api/memory/usage", data=slow, headers=headers, timeout=120)
        threads = [threading.Thread(target=load, daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        health, probe = [], requests.Session()
        for _ in range(100):
            started = time.perf_counter()
            probe.get(f"{server.url}/healthz", timeout=10).raise_for_status()
            health.append(time.perf_counter() - started)
            time.sleep(0.02)
        stop.set()
        for t in threads:
            t.join()
        print(f"/healthz during slow aggregations: p50 {median_ms(health):.1f} ms, "
              f"p99 {percentile(health, 99) * 1000:.1f} ms, max {max(health) * 1000:.1f} ms")
        print(f"server RSS {server.rss_mb():.0f} MB")

        # the Telegraf schema: the same cluster, pods and range, each case alternating with the Heapster server
        seeded_influxd(hours=24, pods=200, namespaces=10, db="telegraf", influxd=influxd, source="telegraf")
        telegraf = Server(influxd, db="telegraf", env={"KUBEMONITOR_ROLLUP_METRICS": "", "KUBEMONITOR_SOURCE": "telegraf",
                                                     "KUBEMONITOR_SAMPLE_INTERVAL": "60s"})
        try:
            print("\nrollups off (raw points only):")
            compare(api, headers, cases, server.url, telegraf.url, args.rounds)
        finally:
            telegraf.stop()
        # as deployed: hourly rollups of cpu/usage_rate (kubemonitor rollup, as the server's task does
        # an hour at a time), so only a range's partial first and last hours come from raw points
        rolled = {"KUBEMONITOR_ROLLUP_METRICS": "cpu/usage_rate", "KUBEMONITOR_SAMPLE_INTERVAL": "60s"}
        for db, source in (("k8s", "heapster"), ("telegraf", "telegraf")):
            started = time.monotonic()
            subprocess.run([sys.executable, "-m", "kubemonitor", "rollup", "--from",
                            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 26 * 3600)), "--influxdb-host", "127.0.0.1",
                            "--influxdb-port", str(influxd.http_port), "--influxdb-db", db, "--source", source,
                            "--rollup-metrics", "cpu/usage_rate", "--sample-interval", "60s"],
                           check=True, capture_output=True, timeout=1800)
            print(f"rolled up 26 h of {source}'s cpu/usage_rate in {time.monotonic() - started:.1f} s")
        with_rollups = {name: body for name, body in cases.items() if name.startswith("all-pod")}
        heapster_r = Server(influxd, db="k8s", env=rolled)
        telegraf_r = Server(influxd, db="telegraf", env={**rolled, "KUBEMONITOR_SOURCE": "telegraf"})
        try:
            print("rollups on (the default):")
            compare(api, headers, with_rollups, heapster_r.url, telegraf_r.url, args.rounds)
        finally:
            heapster_r.stop()
            telegraf_r.stop()
    finally:
        server.stop()
        influxd.cleanup()


if __name__ == "__main__":
    main()
