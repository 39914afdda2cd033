"""The websocket /web/live and the shared poller, against the real influxd."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
from conftest import WEB_PASS, WEB_USER, Browserless, serve_app
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from kubemonitor.poller import ALL

MINUTE = 60 * 10**9


async def session(browser):
    r = await browser.login(WEB_USER, WEB_PASS)
    assert r.code == 302
    return browser.cookie_header()


def ws_request(base_url, cookie=None, origin="same"):
    url = base_url.replace("http://", "ws://") + "/web/live"
    headers = {}
    if cookie:
        headers["Cookie"] = cookie
    if origin == "same":
        headers["Origin"] = base_url
    elif origin:
        headers["Origin"] = origin
    return HTTPRequest(url, headers=headers)


async def next_message(conn, kind=None, timeout=5.0, where=lambda m: True):
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no {kind} message within {timeout} s"
        raw = await asyncio.wait_for(conn.read_message(), timeout=left)
        assert raw is not None, "connection closed"
        msg = json.loads(raw)
        if (kind is None or msg["type"] == kind) and where(msg):
            return msg


async def subscribe(conn, metric, namespace=ALL):
    conn.write_message(json.dumps({"subscribe": {"metric": metric, "namespace": namespace}}))


@pytest.mark.gen_test
async def test_websocket_needs_a_session_before_the_handshake(http_server, base_url):
    with pytest.raises(HTTPClientError) as info:
        await websocket_connect(ws_request(base_url))
    assert info.value.code == 401


@pytest.mark.gen_test
async def test_websocket_refuses_other_origins(base_url, browser, web_user):
    cookie = await session(browser)
    for origin in ("http://evil.example", "null", "http://127.0.0.1:1"):
        with pytest.raises(HTTPClientError) as info:
            await websocket_connect(ws_request(base_url, cookie, origin=origin))
        assert info.value.code == 403


@pytest.mark.gen_test
async def test_snapshot_at_once_on_subscribe(base_url, browser, web_user):
    conn = await websocket_connect(ws_request(base_url, await session(browser)))
    await subscribe(conn, "cpu/usage_rate", "team-a")
    msg = await next_message(conn, "snapshot")
    assert msg["metric"] == "cpu/usage_rate" and msg["namespace"] == "team-a" and msg["unit"] == "millicores"
    assert msg["polled_at"].endswith("Z")
    assert list(msg["series"]) == ["web-1"]
    assert len(msg["series"]["web-1"]) == 10 and all(v == 500 for _, v in msg["series"]["web-1"])
    assert all(isinstance(t, int) and t > 1.7e12 for t, _ in msg["series"]["web-1"])  # epoch ms
    rows = msg["latest"]
    assert {(r["pod_name"], r["container_name"], r["value"]) for r in rows} == {("web-1", "nginx", 300.0), ("web-1", "sidecar", 200.0)}
    assert set(rows[0]) >= {"time", "value", "namespace_name", "pod_name", "container_name", "nodename", "type"}
    conn.close()


@pytest.mark.gen_test
async def test_bad_messages_get_an_error_and_the_connection_lives_on(base_url, browser, web_user):
    conn = await websocket_connect(ws_request(base_url, await session(browser)))
    for bad in ("not json", "[]", '{"subscribe": 5}', '{"subscribe": {"metric": "nope"}}',
                '{"subscribe": {"metric": "cpu/usage_rate", "namespace": "Bad NS"}}', '{"dance": {}}',
                '{"subscribe": {"metric": "cpu/usage_rate\\"; DROP DATABASE k8s_test"}}', "x" * 5000):
        conn.write_message(bad)
        msg = await next_message(conn)
        assert msg["type"] == "error" and msg["message"], bad
    conn.write_message(b"\x00\x01", binary=True)
    assert (await next_message(conn))["type"] == "error"
    await subscribe(conn, "gpu/usage")
    msg = await next_message(conn, "snapshot")
    assert list(msg["series"]) == ["team-gpu"]
    conn.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_new_point_reaches_the_subscriber_by_the_next_poll_round(scratch_app, scratch_db, http_client,
                                                                          web_user, running_influxd):
    base, server = await serve_app(scratch_app)
    try:
        b = Browserless(http_client, base)
        # the namespace must exist in the data before a view of it can be watched
        running_influxd.write(scratch_db, "cpu/usage_rate,namespace_name=team-live,pod_name=old-1,type=pod value=1.0 "
                                          f"{time.time_ns() - 2 * 3600 * 10**9}")
        conn = await websocket_connect(ws_request(base, await session(b)))
        await subscribe(conn, "cpu/usage_rate", "team-live")
        first = await next_message(conn, "snapshot")
        assert first["latest"] == [] and first["series"] == {}
        now = time.time_ns()
        running_influxd.write(scratch_db, [
            f"cpu/usage_rate,namespace_name=team-live,pod_name=fresh-1,container_name=app,nodename=node-9,type=pod_container value=42.0 {now}",
            f"cpu/usage_rate,namespace_name=team-live,pod_name=fresh-1,nodename=node-9,type=pod value=42.0 {now}",
        ])
        # Counted in poll rounds, not seconds (a loaded machine stretches seconds): at most
        # the snapshot already on its way and the round in flight at the write go without it.
        without: list[dict] = []
        interval = scratch_app.config.poll_interval
        msg = await next_message(conn, "snapshot", timeout=interval * 4 + 5,
                                 where=lambda m: any(r["pod_name"] == "fresh-1" for r in m["latest"])
                                 or without.append(m) is not None)
        assert len(without) <= 2, f"the fresh point came {len(without)} snapshots late"
        assert msg["latest"][0]["value"] == 42.0 and msg["series"]["fresh-1"][-1][1] == 42.0
        conn.close()
    finally:
        await scratch_app.poller.stop()
        server.stop()


@pytest.mark.gen_test(timeout=30)
async def test_one_query_per_view_per_round_whatever_the_number_of_clients(base_url, browser, web_user, app):
    cookie = await session(browser)
    conns = [await websocket_connect(ws_request(base_url, cookie)) for _ in range(6)]
    for c in conns:
        await subscribe(c, "memory/usage", ALL)
        await next_message(c, "snapshot")
    poller = app.poller
    rounds_before, queries_before = poller.rounds, poller.requests
    while poller.rounds < rounds_before + 3:
        await asyncio.sleep(0.05)
    rounds, queries = poller.rounds - rounds_before, poller.requests - queries_before
    assert len([v for v in poller.views.values() if v.subscribers]) == 1
    assert rounds <= queries <= rounds + 1  # one request per round for the one view (+ a round in flight)
    for c in conns:
        c.close()


@pytest.mark.gen_test(timeout=30)
async def test_poller_forgets_views_nobody_watches(base_url, browser, web_user, app):
    app.poller.grace = 0.2
    conn = await websocket_connect(ws_request(base_url, await session(browser)))
    await subscribe(conn, "gpu/usage", "team-gpu")
    await next_message(conn, "snapshot")
    key = ("gpu/usage", "team-gpu", "1h")
    assert app.poller.views[key].subscribers
    conn.write_message(json.dumps({"unsubscribe": {"metric": "gpu/usage", "namespace": "team-gpu"}}))
    deadline = time.monotonic() + 10
    while key in app.poller.views and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert key not in app.poller.views
    # closing the socket drops its subscriptions as well
    await subscribe(conn, "memory/usage", "team-a")
    await next_message(conn, "snapshot")
    conn.close()
    deadline = time.monotonic() + 10
    while ("memory/usage", "team-a", "1h") in app.poller.views and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert ("memory/usage", "team-a", "1h") not in app.poller.views

    def clients():
        return app.telemetry.registry.get_sample_value("kubemonitor_websocket_clients")
    while clients() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert clients() == 0


@pytest.mark.gen_test(timeout=90)
async def test_degraded_then_ok_across_a_real_influxd_stop_and_start(base_url, browser, web_user, app, running_influxd):
    conn = await websocket_connect(ws_request(base_url, await session(browser)))
    await subscribe(conn, "cpu/usage_rate", "team-b")
    await next_message(conn, "snapshot")
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, running_influxd.stop)
    try:
        msg = await next_message(conn, "status", timeout=15)
        assert msg["state"] == "degraded" and "unreachable" in msg["message"]
    finally:
        await loop.run_in_executor(None, running_influxd.start)
    msg = await next_message(conn, "status", timeout=15)
    assert msg["state"] == "ok"
    msg = await next_message(conn, "snapshot", timeout=15)
    assert list(msg["series"]) == ["web-1"]
    conn.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_client_that_does_not_read_does_not_delay_the_others(base_url, browser, web_user, app):
    """One subscriber never reads; the others keep getting every round."""
    cookie = await session(browser)
    stuck = await websocket_connect(ws_request(base_url, cookie))
    await subscribe(stuck, "cpu/usage_rate", ALL)
    reader = await websocket_connect(ws_request(base_url, cookie))
    await subscribe(reader, "cpu/usage_rate", ALL)
    await next_message(reader, "snapshot")
    started = time.monotonic()
    for _ in range(3):
        await next_message(reader, "snapshot", timeout=app.config.poll_interval * 3)
    assert time.monotonic() - started < app.config.poll_interval * 5
    stuck.close()
    reader.close()


@pytest.mark.gen_test
async def test_secure_cookie_behind_https_proxy(app, http_client, web_user):
    from conftest import Browserless
    from tornado.httpserver import HTTPServer
    from tornado.testing import bind_unused_port
    sock, port = bind_unused_port()
    server = HTTPServer(app, xheaders=True)
    server.add_sockets([sock])
    try:
        b = Browserless(http_client, f"http://127.0.0.1:{port}")
        token = await b.xsrf()
        from urllib.parse import urlencode
        r = await b.fetch("/web/login", "POST", body=urlencode({"_xsrf": token, "username": WEB_USER, "password": WEB_PASS}),
                          headers={"X-Forwarded-Proto": "https"})
        cookie = next(h for h in r.headers.get_list("Set-Cookie") if h.startswith("kubemonitor_session="))
        assert "Secure" in cookie and "HttpOnly" in cookie
    finally:
        server.stop()


class _Listener:
    def __init__(self):
        self.messages = []

    def deliver(self, text):
        self.messages.append(text)


@pytest.mark.gen_test(timeout=30)
async def test_a_hung_influxdb_cannot_fill_the_executor_with_polls(make_app):
    """Ten watched views and an InfluxDB that never answers: only `concurrency` polls run
    at once, so the API keeps executor threads of its own."""
    from test_api_errors import BlackHole

    hole = BlackHole()
    try:
        application = make_app(influxdb_port=hole.port, influxdb_timeout=5.0)
        poller = application.poller
        listener = _Listener()
        for metric in list(application.catalog.known.values())[:10]:
            poller.subscribe(metric, ALL, listener)
        inflight = []
        for _ in range(20):
            await asyncio.sleep(0.05)
            inflight.append(application.telemetry.registry.get_sample_value("kubemonitor_influxdb_inflight"))
        assert max(inflight) == poller.concurrency < 8
        await poller.stop()
    finally:
        hole.close()
