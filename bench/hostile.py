"""Hostile clients against a real `kubemonitor serve` (README "Hardening"), side by side
with what a normal user sees at rest and under each attack:

* big bodies — 250 connections send `POST /web/login` with `Content-Length: 8387608`
  and 100 bytes, then stall;
* slowloris — 2,000 connections that never finish their headers;
* websocket flood — a logged-in client sends one-byte frames as fast as it can
  (reconnecting when closed);
* view flood — 100 connections x 20 subscriptions to random namespace-shaped names;
* 500 API clients — 500 concurrent calls of one named client (a runaway script) asking
  for the last hour's points; the normal user calls the API as another client;
* login burst — 120 parallel wrong guesses of the normal user's password, again and
  again, from one address; afterwards the user logs in from another address;
* audit flood — 50 parallel API calls with random user names (401s);
* statement flood — one scoped client with billing, 4 parallel year-long (366-day)
  statements, again and again (its cap is 4);
* billing page flood — one web user reloading this month's billing page, 4 in parallel.

During each attack (`--seconds`, default 30) a normal user polls `/healthz` (every
50 ms), calls the API (every 250 ms) and watches one live view; the table shows
the server's peak RSS, `/healthz` p99, the user's API p99, the longest gap between
live updates (poll interval 2 s), and whether `/healthz` answers afterwards without
a restart. Targets: RSS < 200 MB and back near the idle figure afterwards, `/healthz`
p99 < 100 ms, the normal user's API p99 at most 2x its figure at rest, a live update
every poll interval, no restart needed. It also counts the InfluxDB queries one
statement costs (from /metrics), for a month and for 366 days.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import string
import sys
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection

from common import API_PASS, API_USER, WEB_PASS, WEB_USER, Server, percentile, rss_mb, seeded_influxd
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

from kubemonitor import ratecard

POLL = 2.0
ATTACKER = "127.0.0.{}"  # floods in processes of their own come from here, each from an address of its own
VICTIM = "127.0.0.2"    # the normal user's own address, known to the server from a login before


async def login_cookie(url: str) -> str:
    client = AsyncHTTPClient()
    page = await client.fetch(url + "/web/login")
    token = page.body.decode().split('name="_xsrf" value="')[1].split('"')[0]
    cookies = "; ".join(c.split(";")[0] for c in page.headers.get_list("Set-Cookie"))
    r = await client.fetch(url + "/web/login", method="POST", follow_redirects=False, raise_error=False,
                           headers={"Cookie": cookies}, body=urllib.parse.urlencode(
                               {"_xsrf": token, "username": WEB_USER, "password": WEB_PASS}))
    return "; ".join([cookies] + [c.split(";")[0] for c in r.headers.get_list("Set-Cookie")])


def ws_request(url: str, cookie: str) -> HTTPRequest:
    return HTTPRequest(url.replace("http://", "ws://") + "/web/live", headers={"Cookie": cookie, "Origin": url})


class NormalUser:
    """What one ordinary user experiences: probe latency, API latency, live-update gaps."""

    def __init__(self, url: str, cookie: str, server: Server):
        self.url, self.cookie, self.server = url, cookie, server
        self.health: list[float] = []
        self.api: list[float] = []
        self.api_errors = 0
        self.gaps: list[float] = []
        self.rss = 0.0
        self.stop = asyncio.Event()

    async def probe(self) -> None:
        client = AsyncHTTPClient(force_instance=True)
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                await client.fetch(self.url + "/healthz", request_timeout=10)
                self.health.append(time.monotonic() - started)
            except Exception:  # noqa: BLE001 - a failed probe counts as the timeout
                self.health.append(10.0)
            self.rss = max(self.rss, rss_mb(self.server.proc.pid))
            await asyncio.sleep(0.05)

    async def use_api(self) -> None:
        client = AsyncHTTPClient(force_instance=True)
        while not self.stop.is_set():
            started = time.monotonic()
            r = await client.fetch(self.url + "/api/cpu/usage_rate", method="POST", raise_error=False, request_timeout=30,
                                   headers={"X-USERNAME": API_USER, "X-PASSWORD": API_PASS}, body='{"namespace": "astro-lab"}')
            self.api.append(time.monotonic() - started)
            self.api_errors += r.code != 200
            await asyncio.sleep(0.25)

    async def watch(self) -> None:
        conn = await websocket_connect(ws_request(self.url, self.cookie))
        conn.write_message(json.dumps({"subscribe": {"metric": "cpu/usage_rate", "namespace": "all"}}))
        last = None
        while not self.stop.is_set():
            try:
                message = await asyncio.wait_for(conn.read_message(), timeout=1.0)
            except TimeoutError:
                continue
            if message is None:
                break
            if json.loads(message).get("type") == "snapshot":
                now = time.monotonic()
                if last is not None:
                    self.gaps.append(now - last)
                last = now
        conn.close()

    async def run(self, seconds: float, attack) -> dict:
        tasks = [asyncio.ensure_future(c) for c in (self.probe(), self.use_api(), self.watch())]
        attacker = asyncio.ensure_future(attack()) if attack else None
        await asyncio.sleep(seconds)
        self.stop.set()
        if attacker:
            attacker.cancel()
        await asyncio.gather(*tasks, *( [attacker] if attacker else []), return_exceptions=True)
        return {"rss": self.rss, "health_p99": percentile(self.health, 99) * 1000, "api_p99": percentile(self.api, 99) * 1000,
                "api_errors": self.api_errors, "gap": max(self.gaps) if self.gaps else float("inf")}


def open_sockets(url: str, n: int, first: bytes) -> list[socket.socket]:
    host, port = urllib.parse.urlparse(url).hostname, urllib.parse.urlparse(url).port
    out = []
    for _ in range(n):
        try:
            s = socket.create_connection((host, port), timeout=2)
            s.sendall(first)
            out.append(s)
        except OSError:
            pass
    return out


async def hold(sockets: list[socket.socket], url: str, n: int, first: bytes) -> None:
    """Keep `n` such connections open: the server closes them (timeouts), the attacker reopens."""
    try:
        while True:
            alive = []
            for s in sockets:
                try:
                    s.setblocking(False)
                    if s.recv(1) == b"":
                        s.close()
                        continue
                except BlockingIOError:
                    pass
                except OSError:
                    s.close()
                    continue
                alive.append(s)
            sockets[:] = alive + await asyncio.get_running_loop().run_in_executor(
                None, open_sockets, url, n - len(alive), first)
            await asyncio.sleep(1.0)
    finally:
        for s in sockets:
            s.close()


def attacks(url: str, cookie: str) -> dict:
    async def big_bodies():
        await hold([], url, 250, b"POST /web/login HTTP/1.1\r\nHost: x\r\nContent-Length: 8387608\r\n\r\n" + b"a" * 100)

    async def slowloris():
        await hold([], url, 2000, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-a: ")

    async def ws_flood():
        # In a process of its own, as an attacker would be: a flood in this process would
        # delay the measuring client's own event loop and blame the server for it.
        proc = await asyncio.create_subprocess_exec(sys.executable, __file__, "--flood", url, cookie,
                                                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    async def view_flood():
        conns = []
        for _ in range(100):
            try:
                conn = await websocket_connect(ws_request(url, cookie))
            except Exception:  # noqa: BLE001 - the per-user cap answers 429: that is the point
                continue
            for _ in range(20):
                name = "".join(random.choices(string.ascii_lowercase, k=10))
                conn.write_message(json.dumps({"subscribe": {"metric": "cpu/usage_rate", "namespace": name}}))
            conns.append(conn)
        await asyncio.sleep(3600)

    def in_process_of_its_own(kind: str, arg: dict):
        # Floods run in processes of their own: their work must not slow the measuring loop.
        # Each from an address of its own: one attack's throttled address does not blunt the next.
        arg = {**arg, "source": ATTACKER.format(10 + len(attacks.sources))}
        attacks.sources.append(arg["source"])

        async def run():
            proc = await asyncio.create_subprocess_exec(sys.executable, __file__, "--hammer", kind, url, json.dumps(arg),
                                                        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
            try:
                await proc.wait()
            finally:
                if proc.returncode is None:
                    proc.terminate()  # it prints its figures as it stops
                    out, _ = await proc.communicate()
                    attacks.stats[kind] = json.loads(out or b"{}")
        return run

    # the runaway and the statement flood are one named client; the normal user calls as another
    scoped = {"headers": attacks.attacker_headers}
    return {"big bodies (250)": big_bodies, "slowloris (2,000)": slowloris, "websocket flood": ws_flood,
            "view flood (100 x 20)": view_flood, "500 API clients": in_process_of_its_own("api-clients", scoped),
            "login burst (120 parallel guesses)": in_process_of_its_own("logins", {}),
            "audit flood (random names, 50 parallel)": in_process_of_its_own("audit", {}),
            "statement flood (one client, 4 x 366 days)": in_process_of_its_own("statements", scoped),
            "billing page flood (one web user, 4 parallel)": in_process_of_its_own("pages", {"cookie": cookie})}


def influx_queries(url: str) -> float:
    """InfluxDB calls the server has made so far (its /metrics)."""
    body = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith("kubemonitor_influxdb_query_duration_seconds_count"))


def queries_per_statement(url: str, headers: dict, body: dict) -> tuple[float, float]:
    """(InfluxDB calls, seconds) of one statement: the server's counter around it, the poller's
    own calls over the same time subtracted (measured just before, as long)."""
    started, before = time.monotonic(), influx_queries(url)
    request = urllib.request.Request(url + "/api/billing/statement", data=json.dumps(body).encode(), method="POST",
                                     headers=headers)
    urllib.request.urlopen(request, timeout=300).read()
    took = time.monotonic() - started
    during = influx_queries(url) - before
    idle_before = influx_queries(url)
    time.sleep(took)
    idle = influx_queries(url) - idle_before
    return during - idle, took


async def main(seconds: float, only: str = "") -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    influxd = seeded_influxd(hours=24, pods=30, namespaces=5)
    server = Server(influxd, poll_interval=POLL, env={
        "KUBEMONITOR_BILLING_FILE": ratecard.EXAMPLE})
    try:
        url = server.url
        cookie = await login_cookie(url)
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, log_in_from, url, VICTIM) == 302, "the normal user cannot log in"
        await asyncio.sleep(10)  # the rollup task's first round
        month = datetime.now(UTC).strftime("%Y-%m")
        for what, body in ((f"this month ({month})", {"period": month}), ("366 days", year_ago())):
            n, took = await loop.run_in_executor(None, queries_per_statement, url, server.scoped_headers, body)
            print(f"one statement for {what}: {n:.0f} InfluxDB queries, {took * 1000:.0f} ms", file=sys.stderr)
        rows = [("at rest", await NormalUser(url, cookie, server).run(seconds, None), True, rss_mb(server.proc.pid))]
        attacks.attacker_headers = server.scoped_headers
        attacks.stats, attacks.sources = {}, []
        for name, attack in attacks(url, cookie).items():
            if only not in name:
                continue
            audit_before = audit_bytes(server.dir)
            result = await NormalUser(url, cookie, server).run(seconds, attack)
            await asyncio.sleep(3)
            try:
                await AsyncHTTPClient(force_instance=True).fetch(url + "/healthz", request_timeout=5)
                after = True
            except Exception:  # noqa: BLE001
                after = False
            rows.append((name, result, after, rss_mb(server.proc.pid)))
            for st in attacks.stats.values():
                print(f"{name}: {st.get('answers')} answers, p50 {st.get('p50')} ms, p99 {st.get('p99')} ms, "
                      f"status codes {st.get('codes')}", file=sys.stderr)
            attacks.stats.clear()
            if name.startswith("login burst"):
                status = await loop.run_in_executor(None, log_in_from, url, VICTIM)
                print(f"{name}: afterwards the user logs in from their own address: {status} "
                      f"({'logged in' if status == 302 else 'REFUSED'})", file=sys.stderr)
            if name.startswith("audit flood"):
                print(f"{name}: the audit log grew {(audit_bytes(server.dir) - audit_before) / 1024:.1f} KiB "
                      f"({audit_bytes(server.dir) / 1024:.0f} KiB in all)", file=sys.stderr)
        rest = rows[0][1]
        print(f"| attack ({seconds:g} s) | server RSS peak (3 s after) | /healthz p99 | user's API p99 (errors) | "
              f"API p99 / at rest | longest gap between live updates (poll {POLL:g} s) | /healthz after |")
        print("|---|---|---|---|---|---|---|")
        for name, r, after, rss_after in rows:
            print(f"| {name} | {r['rss']:.0f} MB ({rss_after:.0f} MB) | {r['health_p99']:.1f} ms | {r['api_p99']:.0f} ms "
                  f"({r['api_errors']}) | {r['api_p99'] / rest['api_p99']:.2f} | {r['gap']:.1f} s | {'ok' if after else 'FAILED'} |")
    finally:
        server.stop()
        influxd.cleanup()


def audit_bytes(log_dir: str) -> int:
    return sum(os.path.getsize(os.path.join(log_dir, f)) for f in os.listdir(log_dir) if f.startswith("audit.log"))


async def flood(url: str, cookie: str) -> None:
    """One logged-in client sending one-byte frames as fast as it can, reconnecting when closed."""
    while True:
        try:
            conn = await websocket_connect(ws_request(url, cookie))
            for i in range(1_000_000):
                conn.write_message("x").add_done_callback(lambda f: f.exception())
                if i % 1000 == 0:
                    await asyncio.sleep(0)
                    if conn.protocol is None:
                        break
        except Exception:  # noqa: BLE001 - closed (1008) or refused (429): again
            await asyncio.sleep(0.1)


def fetch_login_form(url: str, source: str | None = None) -> tuple[str, str]:
    """The login page's XSRF token and cookies (from `source`, a loopback address, if given)."""
    conn = HTTPConnection(urllib.parse.urlparse(url).hostname, urllib.parse.urlparse(url).port, timeout=30,
                          source_address=(source, 0) if source else None)
    conn.request("GET", "/web/login")
    r = conn.getresponse()
    token = r.read().decode().split('name="_xsrf" value="')[1].split('"')[0]
    cookies = "; ".join(c.split(";")[0] for k, c in r.getheaders() if k.lower() == "set-cookie")
    conn.close()
    return token, cookies


def log_in_from(url: str, source: str, password: str = WEB_PASS) -> int:
    """The normal user logging in from another address: the status (302 = logged in)."""
    token, cookies = fetch_login_form(url, source)
    conn = HTTPConnection(urllib.parse.urlparse(url).hostname, urllib.parse.urlparse(url).port, timeout=30,
                          source_address=(source, 0))
    conn.request("POST", "/web/login", body=urllib.parse.urlencode({"_xsrf": token, "username": WEB_USER, "password": password}),
                 headers={"Cookie": cookies, "Content-Type": "application/x-www-form-urlencoded"})
    status = conn.getresponse().status
    conn.close()
    return status


def year_ago() -> dict:
    today = datetime.now(UTC).date()
    return {"from": (today - timedelta(days=365)).isoformat(), "to": today.isoformat()}


def workers(url: str, arg: dict):
    """Each attacker process's kind: (calls in parallel, a function making the next request)."""
    source = arg["source"]
    def api_clients():
        return 500, lambda: HTTPRequest(url + "/api/cpu/usage_rate", method="POST", request_timeout=60, network_interface=source,
                                        headers=arg["headers"], body='{"namespace": "astro-lab"}')

    def logins():
        token, cookies = fetch_login_form(url, source)
        body = urllib.parse.urlencode({"_xsrf": token, "username": WEB_USER, "password": "not-" + WEB_PASS})
        return 120, lambda: HTTPRequest(url + "/web/login", method="POST", follow_redirects=False, request_timeout=60,
                                        network_interface=source,
                                        headers={"Cookie": cookies}, body=body)

    def audit():
        def one():
            name = "".join(random.choices(string.ascii_lowercase, k=12))
            return HTTPRequest(url + "/api/cpu/usage_rate", method="POST", request_timeout=60, network_interface=source,
                               headers={"X-USERNAME": name, "X-PASSWORD": "x" * 16}, body='{"namespace": "astro-lab"}')
        return 50, one

    def statements():
        body = json.dumps(year_ago())
        return 4, lambda: HTTPRequest(url + "/api/billing/statement", method="POST", request_timeout=120,
                                      network_interface=source,
                                      headers=arg["headers"], body=body)

    def pages():
        return 4, lambda: HTTPRequest(url + "/web/billing", request_timeout=120, headers={"Cookie": arg["cookie"]},
                                      network_interface=source,
                                      follow_redirects=False)
    return {"api-clients": api_clients, "logins": logins, "audit": audit, "statements": statements, "pages": pages}


async def hammer(kind: str, url: str, arg: dict) -> None:
    """`kind`'s calls, that many at a time, until SIGTERM; then their figures as JSON on stdout."""
    import signal
    n, make = workers(url, arg)[kind]()
    client = AsyncHTTPClient(force_instance=True, max_clients=n)
    times: list[float] = []
    codes: dict[int, int] = {}
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def one():
        while not stop.is_set():
            started = time.monotonic()
            r = await client.fetch(make(), raise_error=False)
            times.append(time.monotonic() - started)
            codes[r.code] = codes.get(r.code, 0) + 1
    tasks = [asyncio.ensure_future(one()) for _ in range(n)]
    await stop.wait()
    for t in tasks:
        t.cancel()
    print(json.dumps({"answers": len(times), "p50": round(percentile(times, 50) * 1000), "p99": round(percentile(times, 99) * 1000),
                      "codes": {str(c): k for c, k in sorted(codes.items())}}), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--hammer"]:
        asyncio.run(hammer(sys.argv[2], sys.argv[3], json.loads(sys.argv[4])))
        sys.exit(0)
    if sys.argv[1:2] == ["--flood"]:
        asyncio.run(flood(sys.argv[2], sys.argv[3]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--only", default="", help="run only the attacks whose name contains this (e.g. statement)")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.only))
