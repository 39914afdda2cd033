"""Hostile clients against a real `kubemonitor serve` (README "Hardening"), side by side
with what a normal user sees at rest and under each attack:

* big bodies — 250 connections send `POST /web/login` with `Content-Length: 8387608`
  and 100 bytes, then stall;
* slowloris — 2,000 connections that never finish their headers;
* websocket flood — a logged-in client sends one-byte frames as fast as it can
  (reconnecting when closed);
* view flood — 100 connections x 20 subscriptions to random namespace-shaped names;
* 500 API clients — 500 concurrent calls of one named client (a runaway script) asking
  for the last hour's points; the normal user calls the API as another client.

During each attack (`--seconds`, default 30) a normal user polls `/healthz` (every
50 ms), calls the API (every 250 ms) and watches one live view; the table shows
the server's peak RSS, `/healthz` p99, the user's API p99, the longest gap between
live updates (poll interval 2 s), and whether `/healthz` answers afterwards without
a restart. Targets: RSS < 200 MB, `/healthz` p99 < 100 ms, a live update every poll
interval, no restart needed.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import socket
import string
import sys
import time
import urllib.parse

from common import API_PASS, API_USER, WEB_PASS, WEB_USER, Server, percentile, rss_mb, seeded_influxd
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

POLL = 2.0


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

    async def api_clients():
        # A process of its own too (500 clients' work must not slow the measuring loop).
        # the attacker is one named client (a runaway script); the normal user calls as another
        proc = await asyncio.create_subprocess_exec(sys.executable, __file__, "--api-clients", url,
                                                    json.dumps(attacks.attacker_headers),
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        try:
            await proc.wait()
        finally:
            if proc.returncode is None:
                proc.terminate()  # it prints its figures as it stops
                out, _ = await proc.communicate()
                attacks.api_stats = json.loads(out or b"{}")

    return {"big bodies (250)": big_bodies, "slowloris (2,000)": slowloris, "websocket flood": ws_flood,
            "view flood (100 x 20)": view_flood, "500 API clients": api_clients}


async def main(seconds: float) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    influxd = seeded_influxd(hours=2, pods=30, namespaces=5)
    server = Server(influxd, poll_interval=POLL)
    try:
        url = server.url
        cookie = await login_cookie(url)
        rows = [("at rest", await NormalUser(url, cookie, server).run(seconds, None), True)]
        attacks.attacker_headers = server.scoped_headers
        for name, attack in attacks(url, cookie).items():
            result = await NormalUser(url, cookie, server).run(seconds, attack)
            await asyncio.sleep(3)
            try:
                await AsyncHTTPClient(force_instance=True).fetch(url + "/healthz", request_timeout=5)
                after = True
            except Exception:  # noqa: BLE001
                after = False
            rows.append((name, result, after))
            if name == "500 API clients":
                st = attacks.api_stats
                print(f"500 API clients: {st.get('answers')} answers, p50 {st.get('p50')} ms, p99 {st.get('p99')} ms, "
                      f"{st.get('errors')} errors ({st.get('capped')} of them 429, past the client's cap; "
                      f"{st.get('busy')} 503 busy, refused early)", file=sys.stderr)
        print(f"| attack ({seconds:g} s) | server RSS peak | /healthz p99 | user's API p99 (errors) | longest gap between live "
              f"updates (poll {POLL:g} s) | /healthz after |")
        print("|---|---|---|---|---|---|")
        for name, r, after in rows:
            print(f"| {name} | {r['rss']:.0f} MB | {r['health_p99']:.1f} ms | {r['api_p99']:.0f} ms ({r['api_errors']}) | "
                  f"{r['gap']:.1f} s | {'ok' if after else 'FAILED'} |")
    finally:
        server.stop()
        influxd.cleanup()


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


async def api_flood(url: str, headers: dict) -> None:
    """500 concurrent API calls of one client until SIGTERM; then their figures as JSON on stdout."""
    import signal
    client = AsyncHTTPClient(force_instance=True, max_clients=500)
    times: list[float] = []
    codes: dict[int, int] = {}
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def one():
        while not stop.is_set():
            started = time.monotonic()
            r = await client.fetch(url + "/api/cpu/usage_rate", method="POST", raise_error=False, request_timeout=60,
                                   headers=headers, body='{"namespace": "astro-lab"}')
            times.append(time.monotonic() - started)
            codes[r.code] = codes.get(r.code, 0) + 1
    tasks = [asyncio.ensure_future(one()) for _ in range(500)]
    await stop.wait()
    for t in tasks:
        t.cancel()
    print(json.dumps({"answers": len(times), "p50": round(percentile(times, 50) * 1000), "p99": round(percentile(times, 99) * 1000),
                      "errors": sum(n for c, n in codes.items() if c != 200), "busy": codes.get(503, 0),
                      "capped": codes.get(429, 0)}), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--api-clients"]:
        asyncio.run(api_flood(sys.argv[2], json.loads(sys.argv[3])))
        sys.exit(0)
    if sys.argv[1:2] == ["--flood"]:
        asyncio.run(flood(sys.argv[2], sys.argv[3]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    asyncio.run(main(args.seconds))
