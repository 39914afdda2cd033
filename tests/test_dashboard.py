"""The dashboard tells the truth: charts and overview follow the counting rule like
the API, every view on a page stays live, "degraded" comes as soon as InfluxDB is
late, ranges, and the small truths (stale pods, a user who can log in at once)."""
from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest
from conftest import WEB_PASS, WEB_USER, Browserless, clear_of_boundary, serve_app
from test_live import next_message, session, subscribe, ws_request
from tornado.websocket import websocket_connect

from kubemonitor.poller import ALL
from kubemonitor.times import format_ns
from kubemonitor.views import WINDOWS

MINUTE = 60 * 10**9


def counted_pods(influxd, db, minutes=5):
    """The last `minutes` whole minutes of namespace team-o, one sample a minute:
    both-1 has pod-level series (500 = 300 + 200); cont-1 has only container series
    (100 + 50) whose two containers report 2 s apart."""
    clear_of_boundary(60, 20)  # the test reads "the newest complete minute" well within this one
    now = time.time_ns() // MINUTE * MINUTE
    lines = []
    for k in range(1, minutes + 1):
        t = now - k * MINUTE + 5 * 10**9
        for c, v in (("a", 300.0), ("b", 200.0)):
            lines.append(f"cpu/usage_rate,namespace_name=team-o,pod_name=both-1,container_name={c},nodename=n1,type=pod_container value={v} {t}")
        lines.append(f"cpu/usage_rate,namespace_name=team-o,pod_name=both-1,nodename=n1,type=pod value=500.0 {t}")
        lines.append(f"cpu/usage_rate,namespace_name=team-o,pod_name=cont-1,container_name=main,nodename=n2,type=pod_container value=100.0 {t}")
        lines.append(f"cpu/usage_rate,namespace_name=team-o,pod_name=cont-1,container_name=side,nodename=n2,type=pod_container "
                     f"value=50.0 {t + 2 * 10**9}")
        lines.append(f"cpu/usage_rate,namespace_name=team-o,type=ns value=650.0 {t}")  # never counted
    influxd.write(db, lines)
    return now


@pytest.mark.gen_test(timeout=30)
async def test_overview_totals_equal_the_api_and_count_a_container_only_pod(scratch_app, scratch_db, running_influxd,
                                                                           http_client, web_user):
    counted_pods(running_influxd, scratch_db)
    base, server = await serve_app(scratch_app)
    try:
        b = Browserless(http_client, base)
        await b.login(WEB_USER, WEB_PASS)
        page = (await b.fetch("/web/stats/index")).body.decode()
        snapshots = [json.loads(t) for t in re.findall(r"data-snapshot>(.*?)</script>", page, re.S)]
        cpu = next(s for s in snapshots if s["metric"] == "cpu/usage_rate")
        current = cpu["current"]
        assert current["values"] == {"team-o": 650.0} and current["total"] == 650.0
        # the API for the same minute: every pod counted once, cont-1 from its containers
        at_ns = current["at"] * 10**6
        from conftest import API_PASS, API_USER
        r = await http_client.fetch(base + "/api/cpu/usage_rate", method="POST", headers={"X-USERNAME": API_USER, "X-PASSWORD": API_PASS},
                                    body=json.dumps({"agg": "all-namespace", "timeBeginInterval": format_ns(at_ns),
                                                     "timeEndInterval": format_ns(at_ns + MINUTE - 1)}))
        (row,) = json.loads(r.body)
        assert row["namespace_name"] == "team-o" and row["sum"] == current["values"]["team-o"]
        # the namespace view draws both pods, cont-1 as the sum of its containers
        page = (await b.fetch("/web/stats/cpu/usage_rate/team-o")).body.decode()
        snapshot, request = [json.loads(t) for t in re.findall(r"data-snapshot>(.*?)</script>", page, re.S)]
        assert request["metric"] == "cpu/request"  # the requests' own view, drawn dashed over the usage
        assert set(snapshot["series"]) == {"both-1", "cont-1"}
        assert {v for _, v in snapshot["series"]["cont-1"]} == {150.0}
        assert {v for _, v in snapshot["series"]["both-1"]} == {500.0}
    finally:
        server.stop()


@pytest.mark.gen_test(timeout=30)
async def test_three_views_on_one_socket_all_keep_updating(base_url, browser, web_user, app):
    conn = await websocket_connect(ws_request(base_url, await session(browser)))
    metrics = ("cpu/usage_rate", "memory/usage", "gpu/usage")
    for metric in metrics:
        await subscribe(conn, metric, ALL)
    counts = dict.fromkeys(metrics, 0)
    deadline = time.monotonic() + app.config.poll_interval * 8
    while time.monotonic() < deadline and min(counts.values()) < 4:
        msg = await next_message(conn, "snapshot", timeout=5)
        counts[msg["metric"]] += 1
    assert min(counts.values()) >= 4, counts  # the first one each, then at least three rounds each
    conn.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_hung_influxdb_is_reported_by_the_stuck_poll_round_itself(base_url, browser, web_user, app, running_influxd):
    conn = await websocket_connect(ws_request(base_url, await session(browser)))
    await subscribe(conn, "cpu/usage_rate", "team-b")
    await next_message(conn, "snapshot")
    interval = app.config.poll_interval
    rounds = app.poller.rounds
    os.kill(running_influxd.process.pid, signal.SIGSTOP)  # frozen: the socket stays open, nothing answers
    try:
        msg = await next_message(conn, "status", timeout=4 * interval + 5)
        assert msg["state"] == "degraded" and "late" in msg["message"]
        # said by the stuck round itself (a poll interval after it began), not after it gave up:
        # counted in rounds, which a loaded machine does not stretch as it stretches seconds
        assert app.poller.rounds <= rounds + 1, (rounds, app.poller.rounds)
    finally:
        os.kill(running_influxd.process.pid, signal.SIGCONT)
    msg = await next_message(conn, "status", timeout=15, where=lambda m: m["state"] == "ok")
    await next_message(conn, "snapshot", timeout=10)
    conn.close()


@pytest.mark.gen_test
async def test_ranges_grow_the_bucket_and_live_in_the_url(base_url, browser, web_user):
    for window in WINDOWS.values():
        assert window.span_ns // window.bucket_ns <= 500  # at most ~500 points per line
    assert [w.bucket_ns for w in WINDOWS.values()] == sorted(w.bucket_ns for w in WINDOWS.values())
    cookie = await session(browser)
    page = (await browser.fetch("/web/stats/cpu/usage_rate/team-a?range=24h")).body.decode()
    snapshot = json.loads(re.search(r"data-snapshot>(.*?)</script>", page, re.S).group(1))
    assert snapshot["range"] == "24h" and snapshot["bucket_ms"] == 5 * 60 * 1000
    assert 'data-range="24h"' in page and 'href="?range=7d"' in page
    # the sidebar keeps the chosen range
    assert 'href="/web/stats/gpu/usage?range=24h"' in page
    r = await browser.fetch("/web/stats/cpu/usage_rate?range=2y")
    assert r.code == 400 and "1h, 6h, 24h, 7d" in r.body.decode()
    conn = await websocket_connect(ws_request(base_url, cookie))
    conn.write_message(json.dumps({"subscribe": {"metric": "cpu/usage_rate", "namespace": "team-a", "range": "7d"}}))
    msg = await next_message(conn, "snapshot")
    assert msg["range"] == "7d" and msg["bucket_ms"] == 30 * 60 * 1000
    conn.write_message(json.dumps({"subscribe": {"metric": "cpu/usage_rate", "namespace": "team-a", "range": "2y"}}))
    msg = await next_message(conn, "error")
    assert "range" in msg["message"]
    conn.close()


@pytest.mark.gen_test
async def test_a_fresh_point_is_not_stale_and_an_old_one_is(scratch_app, scratch_db, running_influxd, http_client, web_user):
    now = time.time_ns()
    running_influxd.write(scratch_db, [
        f"cpu/usage_rate,namespace_name=team-s,pod_name=fresh-1,container_name=c,type=pod_container value=1 {now}",
        f"cpu/usage_rate,namespace_name=team-s,pod_name=gone-1,container_name=c,type=pod_container value=2 {now - 10 * MINUTE}",
    ])
    snapshot = await scratch_app.poller.snapshot(scratch_app.catalog.resolve_cached("cpu/usage_rate"), "team-s")
    assert {r["pod_name"]: r["stale"] for r in snapshot["latest"]} == {"fresh-1": False, "gone-1": True}


@pytest.mark.gen_test
async def test_a_user_added_while_the_server_runs_can_log_in_at_once(browser, config, app):
    from kubemonitor.users import UserStore
    assert (await browser.login("latecomer", "pw-late-1")).code == 401  # the server has read the file
    UserStore(config.users_file, rounds=4).add("latecomer", "l@example.org", "pw-late-1")
    r = await browser.login("latecomer", "pw-late-1")
    assert r.code == 302, r.body[:300]


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("source", ["heapster", "telegraf"])
async def test_current_is_the_newest_complete_minute_on_every_range(make_app, scratch_db, running_influxd, source):
    """A pod at 100 millicores for two hours, then 700 in the newest complete minute: every
    range's "current" is 700 over that minute. At 7d it was the newest 30-minute bucket
    (a mean of both, up to 50 minutes old)."""
    app = make_app(influxdb_db=scratch_db, source=source)
    minute = 60 * 10**9
    newest = time.time_ns() // minute * minute - minute
    if source == "heapster":
        line = "cpu/usage_rate,namespace_name=team-m,pod_name=m-1,container_name=c,type=pod_container value={v} {t}"
    else:
        line = "kubernetes_pod_container,namespace=team-m,pod_name=m-1,container_name=c cpu_usage_nanocores={v}000000 {t}"
    running_influxd.write(scratch_db, [line.format(v=700 if k == 0 else 100, t=newest + 5 * 10**9 - k * minute)
                                       for k in range(120)])
    metric = app.catalog.resolve_cached("cpu/usage_rate")
    for window in WINDOWS:
        snapshot = await app.poller.snapshot(metric, ALL, window)
        current = snapshot["current"]
        assert current["at"] == newest // 10**6 and current["span_ms"] == 60_000, window
        assert current["values"] == {"team-m": 700} and current["total"] == 700, (window, current)
