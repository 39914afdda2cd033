"""Live views fan out: InfluxDB cost must not grow with the number of watchers.

Seeds a private influxd with the simulator, starts `kubemonitor serve` with a
short poll interval, logs in as many web users, and opens N authenticated websocket
clients spread over them, ten per user, as real viewers are (every other user is a
group's, scoped to one namespace: its "all" views are scoped copies): 1 client, 100
and 1,000 on one view, then 1,000 over 20 views. For each scenario it reports
InfluxDB query requests per poll interval (InfluxDB's own `SHOW STATS` httpd
`queryReq` counter), p50/p99 delay from a poll's completion (`polled_at`) to each
client's receipt, and the server's RSS.
Targets: queries per interval independent of clients; p99 < 250 ms with 1,000
clients; RSS < 200 MB. `--moonshot` adds 10,000 clients over 1,000 users (p99 < 1 s).

    python bench/ws_fanout.py [--interval 2] [--rounds 5] [--moonshot]
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

NAMESPACES = ("astro-lab", "bio-sim", "climate", "nlp-group")
VIEWS = [(m, ns) for m in ("cpu/usage_rate", "memory/usage", "gpu/usage", "uptime") for ns in ("all", *NAMESPACES)]
PER_USER = 10  # connections per web user (the server allows 20)


def viewers(count: int) -> dict[str, tuple[str, ...] | None]:
    """viewer-0000 …: every other one scoped to one namespace (a group's member)."""
    return {f"viewer-{i:04d}": (NAMESPACES[i // 2 % len(NAMESPACES)],) if i % 2 else None for i in range(count)}


POLLED_AT = re.compile(r'"polled_at":"([^"]+)"')


def query_requests(influxd) -> int:
    stats = influxd.query("SHOW STATS FOR 'httpd'")
    series = stats["results"][0]["series"][0]
    return int(dict(zip(series["columns"], series["values"][0]))["queryReq"])


def login(server, username: str = WEB_USER) -> str:
    s = requests.Session()
    token = re.search(r'name="_xsrf" value="([^"]+)"', s.get(server.url + "/web/login").text).group(1)
    r = s.post(server.url + "/web/login", data={"_xsrf": token, "username": username, "password": WEB_PASS},
               allow_redirects=False)
    assert r.status_code == 302, r.text
    return "; ".join(f"{k}={v}" for k, v in s.cookies.items())


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def scenario(server, influxd, sessions: dict[str, tuple[str, tuple[str, ...] | None]], clients: int, views: list,
                   interval: float, rounds: int) -> dict:
    people = list(sessions.values())[:max(1, clients // PER_USER)]
    conns, watched = [], set()
    for i in range(clients):
        cookie, scope = people[i % len(people)]
        req = HTTPRequest(server.url.replace("http", "ws") + "/web/live", headers={"Cookie": cookie, "Origin": server.url})
        conn = await websocket_connect(req, max_message_size=64 * 1024 * 1024)
        metric, ns = views[i // len(people) % len(views)]
        if scope is not None and ns != "all":
            ns = scope[0]  # a group's member watches its own namespace
        watched.add((metric, ns))
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
                delays.append(received - parse_time(POLLED_AT.search(msg, 0, 400).group(1)))  # near the start
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
    return {"clients": clients, "users": len(people), "views": len(watched), "queries": (after - before - 1) / rounds,
            "p50": percentile(delays, 50) * 1000 if delays else float("nan"),
            "p99": percentile(delays, 99) * 1000 if delays else float("nan"),
            "received": len(delays), "rss": server.rss_mb()}


async def run(server, influxd, people, interval, rounds, moonshot) -> list[dict]:
    started = time.monotonic()
    sessions = {name: (login(server, name), scope) for name, scope in people.items()}
    print(f"{len(sessions)} users logged in in {time.monotonic() - started:.1f} s", flush=True)
    out = []
    plan = [(1, VIEWS[:1]), (100, VIEWS[:1]), (1000, VIEWS[:1]), (1000, VIEWS)] + ([(10_000, VIEWS)] if moonshot else [])
    for clients, views in plan:
        out.append(await scenario(server, influxd, sessions, clients, views, interval, rounds))
        r = out[-1]
        print(f"{r['clients']:>6} clients {r['users']:>4} users {r['views']:>3} views: {r['queries']:5.1f} InfluxDB queries/interval, "
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
    parser.add_argument("--moonshot", action="store_true", help="also 10,000 clients over 1,000 users")
    args = parser.parse_args()
    if args.moonshot:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    influxd = seeded_influxd(hours=2, pods=30, namespaces=5)
    people = viewers(1000 if args.moonshot else 100)
    server = Server(influxd, poll_interval=args.interval, viewers=people)
    try:
        asyncio.run(run(server, influxd, people, args.interval, args.rounds, args.moonshot))
    finally:
        server.stop()
        influxd.cleanup()


if __name__ == "__main__":
    main()
