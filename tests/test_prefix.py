"""Behind a path prefix (KUBEMONITOR_URL_PREFIX=/kubemonitor): an ingress that passes
/kubemonitor/... on unchanged. Every route, redirect, cookie, static file, websocket and
the OpenAPI server URL is under it; nothing answers outside it but a 404 naming it."""
from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest
from conftest import API_PASS, API_USER, Browserless
from test_live import next_message, subscribe, ws_request
from tornado.httpclient import HTTPClientError
from tornado.websocket import websocket_connect

PREFIX = "/kubemonitor"


@pytest.fixture
def app(make_app):
    return make_app(url_prefix=PREFIX)


@pytest.fixture
def browser(http_client, base_url):
    return Browserless(http_client, base_url + PREFIX)


def links(html: str) -> list[str]:
    """Every URL a page makes the browser load or go to (href, src, action, data-*-url)."""
    return re.findall(r'(?:href|src|action|data-[a-z-]+-url)="([^"]*)"', html)


def own(url: str) -> bool:
    return url.startswith(PREFIX + "/") or url.startswith(("?", "#"))


@pytest.mark.gen_test
async def test_probes_api_and_openapi_answer_under_the_prefix_only(http_client, base_url):
    def fetch(path, **kw):
        return http_client.fetch(base_url + path, raise_error=False, **kw)
    assert (await fetch(PREFIX + "/healthz")).code == 200
    assert (await fetch(PREFIX + "/readyz")).code in (200, 503)
    outside = await fetch("/healthz")
    assert outside.code == 404 and f"under {PREFIX}/" in outside.body.decode()
    r = await fetch(PREFIX + "/api/cpu/usage_rate", method="POST", body=b"{}", headers={"X-USERNAME": API_USER, "X-PASSWORD": API_PASS})
    assert r.code == 200 and isinstance(json.loads(r.body), list)
    assert (await fetch("/api/cpu/usage_rate", method="POST", body=b"{}",
                        headers={"X-USERNAME": API_USER, "X-PASSWORD": API_PASS})).code == 404
    wrong = await fetch(PREFIX + "/api", method="POST", body=b"{}")
    assert wrong.code == 404 and json.loads(wrong.body)["message"].count(PREFIX + "/api/") >= 1
    document = json.loads((await fetch(PREFIX + "/openapi.json")).body)
    assert document["servers"] == [{"url": PREFIX}] and "/api/{metric}" in document["paths"]
    assert (await fetch(PREFIX + "/static/js/live.js")).code == 200
    assert (await fetch("/static/js/live.js")).code == 404


@pytest.mark.gen_test
async def test_login_cookies_redirects_and_every_link_stay_under_the_prefix(browser, web_user):
    r = await browser.fetch("/web/stats/index")
    assert r.code == 302 and r.headers["Location"] == f"{PREFIX}/web/login?next={quote(PREFIX + '/web/stats/index', safe='')}"
    form = await browser.fetch("/web/login")
    xsrf = [h for h in form.headers.get_list("Set-Cookie") if h.startswith("_xsrf=")]
    assert xsrf and f"Path={PREFIX}/" in xsrf[0]
    assert links(form.body.decode()) and all(own(u) for u in links(form.body.decode())), links(form.body.decode())
    # a `next` outside this app (another app on the same host) is not followed
    r = await browser.login(*web_user, next_url="/grafana/d/x")
    assert r.code == 302 and r.headers["Location"] == PREFIX + "/web/stats/index"
    session = [h for h in r.headers.get_list("Set-Cookie") if h.startswith("kubemonitor_session=")]
    assert session and f"Path={PREFIX}/" in session[0]
    for path in ("/web/stats/index", "/web/stats/cpu/usage_rate", "/web/billing"):
        page = await browser.fetch(path)
        assert page.code == 200, (path, page.code)
        html = page.body.decode()
        assert f'data-live-url="{PREFIX}/web/live"' in html
        assert all(own(u) for u in links(html)), [u for u in links(html) if not own(u)]
    assert (await browser.fetch("/")).headers["Location"] == PREFIX + "/web/stats/index"  # /kubemonitor/
    out = await browser.fetch("/web/logout", "POST", body="_xsrf=" + browser.cookies["_xsrf"])
    assert out.code == 302 and out.headers["Location"] == PREFIX + "/web/login"
    cleared = [h for h in out.headers.get_list("Set-Cookie") if h.startswith("kubemonitor_session=")]
    assert cleared and f"Path={PREFIX}/" in cleared[0]


@pytest.mark.gen_test
async def test_the_live_socket_is_under_the_prefix(browser, web_user, base_url):
    await browser.login(*web_user)
    with pytest.raises(HTTPClientError) as outside:
        await websocket_connect(ws_request(base_url, browser.cookie_header()))
    assert outside.value.code == 404
    socket = await websocket_connect(ws_request(base_url + PREFIX, browser.cookie_header(), origin=base_url))
    await subscribe(socket, "cpu/usage_rate")
    assert (await next_message(socket, "snapshot"))["metric"] == "cpu/usage_rate"
    socket.close()
