"""Hostile clients (README "Hardening"): each finding of the red-team run is a test
against the real server; the heavy versions are in bench/hostile.py."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import WEB_PASS, WEB_USER
from test_live import next_message, session, ws_request
from tornado.websocket import websocket_connect

from kubemonitor.handlers.base import SECURITY_HEADERS


@pytest.mark.gen_test
@pytest.mark.parametrize("raw,words", [
    (b'{"limit": ' + b"9" * 5000 + b"}", ["cannot be read"]),
    (b"[" * 30000, ["nests too deeply"]),
    (b'{"namespace": "team-a\\n"}', ["'namespace'"]),
    (b'{"namespace": "team-a", "pod": "web-1\\n"}', ["'pod'"]),
    (b'{"agg": "all-pod", "timeBeginInterval": -1, "timeEndInterval": 10}', []),
])
async def test_bodies_that_were_500s_are_400s_or_answers(api, raw, words):
    status, body, _ = await api("cpu/usage_rate", raw=raw)
    if words:
        assert status == 400 and all(w in body["message"] for w in words), body
    else:
        assert status == 200 and body == []


@pytest.mark.gen_test
async def test_a_nul_byte_in_a_static_path_is_a_quiet_404(http_client, base_url, caplog):
    r = await http_client.fetch(base_url + "/static/js/live.js%00.css", raise_error=False)
    assert r.code == 404
    assert not any(rec.exc_info for rec in caplog.records)  # no traceback per request: no log-flood lever


@pytest.mark.gen_test
async def test_a_trailing_newline_never_names_a_namespace(browser, web_user, app, base_url):
    cookie = await session(browser)
    r = await browser.fetch("/web/stats/cpu/usage_rate/team-a%0A")
    assert r.code == 404
    assert not [key for key in app.poller.views if key[1].endswith("\n")]
    conn = await websocket_connect(ws_request(base_url, cookie))
    conn.write_message(json.dumps({"subscribe": {"metric": "cpu/usage_rate", "namespace": "team-a\n"}}))
    assert (await next_message(conn, "error"))["message"]
    conn.write_message("[" * 4000)  # nests past Python's recursion limit, under the 4 KiB message cap
    assert "not JSON" in (await next_message(conn, "error"))["message"]
    conn.write_message("[" * 30000)
    assert "under 4 KiB" in (await next_message(conn, "error"))["message"]
    conn.close()


def test_a_username_with_a_trailing_newline_is_refused(tmp_path):
    r = subprocess.run([sys.executable, "-m", "kubemonitor", "adduser", "--username=carol\n", "--email=c@example.org",
                        "--password-stdin", "--users-file", str(tmp_path / "u.yaml")], input="pw-1\n",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "username must be" in r.stderr
    assert not (tmp_path / "u.yaml").exists()


@pytest.mark.gen_test
async def test_every_response_carries_the_security_headers(http_client, base_url, browser, web_user, api):
    await browser.login(WEB_USER, WEB_PASS)
    answers = [await browser.fetch("/web/stats/index"), await browser.fetch("/web/login"),
               await browser.fetch("/web/nowhere"), await browser.fetch("/static/js/live.js"),
               await http_client.fetch(base_url + "/healthz", raise_error=False),
               (await api("cpu/usage_rate", {}))[2], (await api("cpu/usage_rate", headers={}))[2]]
    for r in answers:
        for name, value in SECURITY_HEADERS.items():
            assert r.headers.get(name) == value, (r.effective_url, name)
    assert "script-src 'self'" in SECURITY_HEADERS["Content-Security-Policy"]
    assert "unsafe-inline" not in SECURITY_HEADERS["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in SECURITY_HEADERS["Content-Security-Policy"]
    page = answers[0].body.decode()
    # no inline script: every <script> either loads a file or holds JSON data
    import re
    for tag in re.findall(r"<script[^>]*>", page):
        assert "src=" in tag or 'type="application/json"' in tag, tag


@pytest.mark.gen_test
async def test_no_npm_metadata_is_served(http_client, base_url, make_app, tmp_path):
    import shutil

    from conftest import serve_app

    from kubemonitor.resources import resource_dir
    static = tmp_path / "static"  # a checkout where `npm ci` once ran
    shutil.copytree(resource_dir("static"), static)
    (static / "package.json").write_text("{}")
    (static / "node_modules" / "uplot").mkdir(parents=True, exist_ok=True)
    (static / "node_modules" / "uplot" / "package.json").write_text("{}")
    base, server = await serve_app(make_app(static_path=str(static)))
    try:
        for path in ("/static/package.json", "/static/node_modules/uplot/package.json", "/static/vendor/../package.json"):
            assert (await http_client.fetch(base + path, raise_error=False)).code == 404, path
        assert (await http_client.fetch(base + "/static/js/live.js", raise_error=False)).code == 200
    finally:
        server.stop()
