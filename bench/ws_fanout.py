"""Live views fan out: InfluxDB cost must not grow with the number of watchers.

Seeds a private influxd with the simulator, starts `kubemonitor serve` with a
short poll interval, logs in, and opens N authenticated websocket clients:
1, 100 and 1,000 on one view, then 1,000 spread over 20 views. For each scenario
it reports InfluxDB query requests per poll interval (InfluxDB's own `SHOW STATS`
httpd `queryReq` counter), p50/p99 delay from a poll's completion (`polled_at`) to
each client's receipt, and the server's RSS.
Targets: queries per interval independent of clients; p99 < 250 ms with 1,000
clients; RSS < 200 MB.

    python bench/ws_fanout.py [--interval 2] [--rounds 5]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from datetime import datetime

import requests
from common import WEB_PASS, WEB_USER, Server, percentile, seeded_influxd
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

VIEWS = [(m, ns) for m in ("cpu/usage_rate", "memory/usage", "gpu/usage", "uptime")
         for ns in ("all", "astro-lab", "bio-sim", "climate", "nlp-group")]


POLLED_AT = re.compile(r'"polled_at":"([^"]+)"')


def query_requests(influxd) -> int:
    stats = influxd.query("SHOW STATS FOR 'httpd'")
    series = stats["results"][0]["series"][0]
    return int(dict(zip(series["columns"], series["values"][0]))["queryReq"])


def login(server) -> str:
    s = requests.Session()
    token = re.search(r'name="_xsrf" value="([^"]+)"', s.get(server.url + "/web/login").text).group(1)
    r = s.post(server.url + "/web/login", data={"_xsrf": token, "username": WEB_USER, "password": WEB_PASS},
               allow_redirects=False)
    assert r.status_code == 302, r.text
    return "; ".join(f"{k}={v}" for k, v in s.cookies.items())


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def scenario(server, influxd, cookie, clients: int, views: list, interval: float, rounds: int) -> dict:
    req = HTTPRequest(server.url.replace("http", "ws") + "/web/live", headers={"Cookie": cookie, "Origin": server.url})
    conns = []
    for i in range(clients):
        conn = await websocket_connect(req, max_message_size=64 * 1024 * 1024)
        metric, ns = views[i % len(views)]
        conn.write_message(json.dumps({"subscribe": {"metric": metric, "namespace": ns}}))
        conns.append(conn)
    delays: list[float] = []
    measuring = False

    async def reader(conn):
        while True:
            msg = await conn.read_message()
            if msg is None:
                return
            received = time.time()
            if measuring and msg.startswith('{"type":"snapshot"'):
                # a regex, not json.loads: the measuring client must not be the bottleneck it measures
                delays.append(received - parse_time(POLLED_AT.search(msg).group(1)))
    tasks = [asyncio.ensure_future(reader(c)) for c in conns]
    await asyncio.sleep(interval * 2)  # everyone has had a snapshot and a round
    before = query_requests(influxd)
    measuring = True
    await asyncio.sleep(interval * rounds)
    measuring = False
    after = query_requests(influxd)
    for c in conns:
        c.close()
    await asyncio.sleep(0.5)
    for t in tasks:
        t.cancel()
    return {"clients": clients, "views": len(set(views[: clients])), "queries": (after - before - 1) / rounds,
            "p50": percentile(delays, 50) * 1000 if delays else float("nan"),
            "p99": percentile(delays, 99) * 1000 if delays else float("nan"),
            "received": len(delays), "rss": server.rss_mb()}


async def run(server, influxd, interval, rounds) -> list[dict]:
    cookie = login(server)
    out = []
    for clients, views in ((1, VIEWS[:1]), (100, VIEWS[:1]), (1000, VIEWS[:1]), (1000, VIEWS)):
        out.append(await scenario(server, influxd, cookie, clients, views, interval, rounds))
        r = out[-1]
        print(f"{r['clients']:>6} clients {r['views']:>3} views: {r['queries']:5.1f} InfluxDB queries/interval, "
              f"delivery p50 {r['p50']:6.1f} ms p99 {r['p99']:6.1f} ms ({r['received']} snapshots), "
              f"server RSS {r['rss']:.0f} MB", flush=True)
        await asyncio.sleep(interval * 2)  # let the poller forget the views
    return out


def main() -> None:
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # 1,000 sockets on each side; the server process inherits the limit
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8192)), hard))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    influxd = seeded_influxd(hours=2, pods=30, namespaces=5)
    server = Server(influxd, poll_interval=args.interval)
    try:
        asyncio.run(run(server, influxd, args.interval, args.rounds))
    finally:
        server.stop()
        influxd.cleanup()


if __name__ == "__main__":
    main()
