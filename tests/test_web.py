"""Login, sessions and pages (README "The web dashboard") against the real InfluxDB fixture."""
from __future__ import annotations

import json
import re
from urllib.parse import urlencode

import pytest
from conftest import WEB_PASS, WEB_USER

from kubemonitor.handlers.auth import Throttle, safe_next
from kubemonitor.users import UserStore


@pytest.mark.gen_test
async def test_web_redirects_to_login_with_next(browser):
    for path in ("/web", "/web/", "/web/stats/index", "/web/stats/cpu/usage_rate/team-a"):
        r = await browser.fetch(path)
        assert r.code == 302
        assert r.headers["Location"].startswith("/web/login?next=")


@pytest.mark.gen_test
async def test_login_sets_a_safe_session_cookie_and_redirects(browser, web_user):
    r = await browser.login(WEB_USER, WEB_PASS)
    assert r.code == 302 and r.headers["Location"] == "/web/stats/index"
    cookie = next(h for h in r.headers.get_list("Set-Cookie") if h.startswith("kubemonitor_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert "expires=" in cookie
    r = await browser.fetch("/web")
    assert r.code == 302 and r.headers["Location"] == "/web/stats/index"
    r = await browser.fetch("/web/stats/index")
    assert r.code == 200 and WEB_USER in r.body.decode()


@pytest.mark.gen_test
async def test_login_failure_shows_the_form_again(browser, web_user):
    r = await browser.login(WEB_USER, "wrong")
    assert r.code == 401
    page = r.body.decode()
    assert "Wrong username or password" in page and 'name="_xsrf"' in page and "kubemonitor_session" not in browser.cookies
    r = await browser.login("nobody", WEB_PASS)
    assert r.code == 401


@pytest.mark.gen_test
async def test_password_over_72_bytes_is_an_ordinary_failure(browser, web_user):
    r = await browser.login(WEB_USER, WEB_PASS + "x" * 80)
    assert r.code == 401
    r = await browser.login(WEB_USER, "é" * 40)  # 80 bytes in UTF-8
    assert r.code == 401


@pytest.mark.gen_test
async def test_login_without_xsrf_token_is_refused(browser, web_user):
    r = await browser.fetch("/web/login", "POST", body=urlencode({"username": WEB_USER, "password": WEB_PASS}))
    assert r.code == 403
    assert "kubemonitor_session" not in browser.cookies


@pytest.mark.gen_test
@pytest.mark.parametrize("target,expected", [
    ("/web/stats/gpu/usage", "/web/stats/gpu/usage"),
    ("http://evil.example/", "/web/stats/index"),
    ("//evil.example/x", "/web/stats/index"),
    ("/\\evil.example", "/web/stats/index"),
])
async def test_next_redirect_only_to_relative_urls(browser, web_user, target, expected):
    r = await browser.login(WEB_USER, WEB_PASS, next_url=target)
    assert r.code == 302 and r.headers["Location"] == expected


def test_safe_next_rules():
    assert safe_next("/web/stats/uptime?x=1", "/home") == "/web/stats/uptime?x=1"
    for bad in (None, "", "web/stats", "https://x", "//x", "/\\x", "/x\n"):
        assert safe_next(bad, "/home") == "/home"


@pytest.mark.gen_test
async def test_failed_logins_are_throttled_then_refused_even_with_the_right_password(browser, web_user, caplog):
    for _ in range(5):
        assert (await browser.login(WEB_USER, "guess-123")).code == 401
    r = await browser.login(WEB_USER, WEB_PASS)
    assert r.code == 429 and "Too many failed logins" in r.body.decode()
    assert int(r.headers["Retry-After"]) > 0
    # the client address is throttled as well, past 20 failures: then other names from it are refused too
    for i in range(15):
        assert (await browser.login(f"someone-{i}", "x")).code == 401
    assert (await browser.login("someone-else", "x")).code == 429
    assert "guess-123" not in caplog.text and "failed login" in caplog.text


def test_throttle_window_passes():
    now = [1000.0]
    t = Throttle(limit=5, window=900, clock=lambda: now[0])
    for _ in range(5):
        t.fail("user:a")
    assert t.retry_after("user:a") == pytest.approx(900)
    assert t.retry_after("user:b") == 0
    now[0] += 899
    assert t.retry_after("user:a") == pytest.approx(1)
    now[0] += 2
    assert t.retry_after("user:a") == 0
    # bounded memory: past max_keys the least recently failed key is forgotten (not the newest)
    small = Throttle(limit=2, max_keys=3, clock=lambda: now[0])
    small.fail("a"), small.fail("a")
    assert small.retry_after("a") > 0
    for key in "bcd":
        small.fail(key)
    assert small.retry_after("a") == 0
    small.fail("d")
    assert small.retry_after("d") > 0


@pytest.mark.gen_test
async def test_logout_is_a_post_and_ends_the_session(browser, web_user):
    await browser.login(WEB_USER, WEB_PASS)
    r = await browser.fetch("/web/logout")
    assert r.code == 405
    page = (await browser.fetch("/web/stats/index")).body.decode()
    token = re.search(r'name="_xsrf" value="([^"]+)"', page).group(1)
    r = await browser.fetch("/web/logout", "POST", body=urlencode({"_xsrf": token}))
    assert r.code == 302 and r.headers["Location"] == "/web/login"
    assert (await browser.fetch("/web/stats/index")).code == 302


@pytest.mark.gen_test
async def test_tampered_cookie_is_not_a_session(browser, web_user):
    await browser.login(WEB_USER, WEB_PASS)
    value = browser.cookies["kubemonitor_session"]
    browser.cookies["kubemonitor_session"] = value[:-3] + ("000" if not value.endswith("000") else "111")
    assert (await browser.fetch("/web/stats/index")).code == 302


@pytest.mark.gen_test
async def test_password_change_or_deletion_ends_sessions_without_restart(browser, web_user, config, app):
    await browser.login(WEB_USER, WEB_PASS)
    assert (await browser.fetch("/web/stats/index")).code == 200
    app.users._recheck = 0  # look at the file on every request
    UserStore(config.users_file, rounds=4).set_password(WEB_USER, "a new password")
    assert (await browser.fetch("/web/stats/index")).code == 302
    assert (await browser.login(WEB_USER, "a new password")).code == 302
    UserStore(config.users_file).delete(WEB_USER)
    assert (await browser.fetch("/web/stats/index")).code == 302


@pytest.fixture
async def logged_in(browser, web_user):
    r = await browser.login(WEB_USER, WEB_PASS)
    assert r.code == 302
    return browser


def embedded(page: str) -> list[dict]:
    return [json.loads(text) for text in re.findall(r'<script type="application/json" data-snapshot>(.*?)</script>', page, re.S)]


@pytest.mark.gen_test
async def test_overview_first_paint_carries_each_cards_snapshot(browser, web_user):
    await browser.login(WEB_USER, WEB_PASS)
    r = await browser.fetch("/web/stats/index")
    page = r.body.decode()
    for metric in ("cpu/usage_rate", "memory/usage", "gpu/usage"):
        assert f'href="/web/stats/{metric}"' in page  # sidebar
        assert f'data-metric="{metric}"' in page      # a live card
    cards = {snapshot["metric"]: snapshot for snapshot in embedded(page)}
    cpu, memory, gpu = cards["cpu/usage_rate"], cards["memory/usage"], cards["gpu/usage"]
    assert cpu["type"] == "snapshot" and cpu["namespace"] == "all" and cpu["range"] == "1h"
    # the last-hour block: team-a web-1 = 500 millicores, team-b 250, default 10; kube-system excluded
    assert set(cpu["series"]) == {"default", "team-a", "team-b"}
    assert {v for _, v in cpu["series"]["team-a"]} == {500} and {v for _, v in cpu["series"]["default"]} == {10}
    assert set(gpu["series"]) == {"team-gpu"} and memory["series"] == {}
    # "current" is the newest minute that has ended; the block's newest point is 6 minutes old
    assert cpu["current"]["at"] % 60000 == 0 and cpu["current"]["values"] == {} and cpu["current"]["total"] == 0
    assert "kube-system not counted" in page
    # the picker starts at the first main metric, not at the catalog's first entry
    assert re.search(r'<option value="cpu/usage_rate" selected>', page)


@pytest.mark.gen_test
async def test_stats_page_for_a_namespace_carries_its_latest_points(browser, web_user):
    await browser.login(WEB_USER, WEB_PASS)
    r = await browser.fetch("/web/stats/cpu/usage_rate/team-a")
    assert r.code == 200
    page = r.body.decode()
    snapshot, request = embedded(page)  # the usage view, and its requests' (drawn dashed over it)
    assert (snapshot["metric"], request["metric"], request["namespace"]) == ("cpu/usage_rate", "cpu/request", "team-a")
    # the table: web-1's two containers (it has container rows, so not its pod row)
    assert [(row["pod_name"], row["container_name"], row["value"], row["stale"]) for row in snapshot["latest"]] == [
        ("web-1", "nginx", 300.0, True), ("web-1", "sidecar", 200.0, True)]  # 6 minutes old: stopped reporting
    assert "Last updated" in page and 'id="conn-state"' in page
    assert list(snapshot["series"]) == ["web-1"]  # one line per pod
    assert all(p[1] == 500 for p in snapshot["series"]["web-1"])
    # the picker offers every catalog metric and the database's namespaces, and starts at this page's
    assert page.count("<option value=") >= 37 + 1 + 4
    assert '<option value="custom/gpu_temperature"' in page and '<option value="team-gpu"' in page
    assert '<option value="cpu/usage_rate" selected>' in page and '<option value="team-a" selected>' in page


@pytest.mark.gen_test
@pytest.mark.parametrize("path,code", [
    ("/web/stats/uptime/team-a", 200),
    ("/web/stats/uptime", 200),
    ("/web/stats/custom/gpu_temperature/team-gpu", 200),
    ("/web/stats/cpu/usage_rate", 200),
    ("/web/stats/nope", 404),
    ("/web/stats/cpu/usage_rate/team-a/extra", 404),
    ("/web/stats/cpu/usage_rate/Not_A_Namespace", 404),
    ("/web/stats/cpu", 404),
    ("/web/nowhere", 404),
])
async def test_longest_prefix_metric_routing(browser, web_user, path, code):
    await browser.login(WEB_USER, WEB_PASS)
    r = await browser.fetch(path)
    assert r.code == code, path
    if code == 404:
        assert "404" in r.body.decode() and "<html" in r.body.decode()


@pytest.mark.gen_test
async def test_uptime_namespace_page_has_its_values(browser, web_user):
    await browser.login(WEB_USER, WEB_PASS)
    page = (await browser.fetch("/web/stats/uptime/team-a")).body.decode()
    assert "milliseconds" in page and "nginx" in page


@pytest.mark.gen_test
async def test_picker_without_javascript(browser, web_user):
    await browser.login(WEB_USER, WEB_PASS)
    r = await browser.fetch("/web/go?metric=memory/usage&namespace=team-a")
    assert r.code == 302 and r.headers["Location"] == "/web/stats/memory/usage/team-a"
    r = await browser.fetch("/web/go?metric=memory/usage&namespace=all")
    assert r.headers["Location"] == "/web/stats/memory/usage"
    assert (await browser.fetch("/web/go?metric=nope")).code == 404


@pytest.fixture
def app_without_chart(make_app, tmp_path):
    """The app with a static folder that lacks the vendored uPlot asset."""
    import shutil

    from kubemonitor.resources import resource_dir
    static = tmp_path / "static"
    shutil.copytree(resource_dir("static"), static, ignore=shutil.ignore_patterns("vendor"))
    return make_app(static_path=str(static))


@pytest.mark.gen_test
async def test_page_says_plainly_when_the_chart_asset_is_missing(app_without_chart, http_client, web_user):
    from conftest import Browserless
    from tornado.httpserver import HTTPServer
    from tornado.testing import bind_unused_port
    sock, port = bind_unused_port()
    server = HTTPServer(app_without_chart)
    server.add_sockets([sock])
    try:
        b = Browserless(http_client, f"http://127.0.0.1:{port}")
        await b.login(WEB_USER, WEB_PASS)
        page = (await b.fetch("/web/stats/cpu/usage_rate/team-a")).body.decode()
        assert "chart library (uPlot) is not installed" in page and "make vendor" in page
        assert "uPlot.iife.min.js" not in page
        assert '"container_name":"nginx"' in page.replace(" ", "")  # the table's data is still there
    finally:
        server.stop()


@pytest.mark.gen_test(timeout=60)
async def test_pages_still_render_while_influxdb_is_down(browser, web_user, running_influxd):
    import asyncio
    await browser.login(WEB_USER, WEB_PASS)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, running_influxd.stop)
    try:
        r = await browser.fetch("/web/stats/cpu/usage_rate/team-a")
        assert r.code == 200
        page = r.body.decode()
        assert "InfluxDB could not be reached" in page and "unreachable" in page
        r = await browser.fetch("/web/stats/index")
        assert r.code == 200 and "Cluster total" in r.body.decode()
        assert (await browser.fetch("/web/stats/no_such_metric")).code == 404
    finally:
        await loop.run_in_executor(None, running_influxd.start)
