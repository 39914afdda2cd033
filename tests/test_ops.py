"""Operations: health, readiness, Prometheus metrics, OpenAPI, logging, configuration."""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys

import pytest
from conftest import API_PASS, API_USER
from openapi_spec_validator import validate


@pytest.mark.gen_test
async def test_healthz_and_readyz(http_client, base_url):
    r = await http_client.fetch(base_url + "/healthz")
    assert json.loads(r.body) == {"status": "ok"}
    r = await http_client.fetch(base_url + "/readyz")
    body = json.loads(r.body)
    assert body["status"] == "ready" and body["rollups"]["state"] in ("starting", "on")
    assert "influxdb" not in body and "127.0.0.1" not in r.body.decode()  # nothing about InfluxDB for anonymous callers


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/api/cpu/usage_rate"])
async def test_405_names_the_allowed_methods(http_client, base_url, path):
    for method in ("TRACE", "DELETE", "POST" if path != "/api/cpu/usage_rate" else "GET"):
        r = await http_client.fetch(base_url + path, method=method, raise_error=False, allow_nonstandard_methods=True,
                                    body=b"" if method == "POST" else None)
        assert r.code == 405, (path, method)
        assert r.headers["Allow"] == ("POST" if path.startswith("/api/") else "GET"), (path, method)
        assert json.loads(r.body)["code"] == 405


@pytest.mark.gen_test
async def test_openapi_document_is_valid_openapi_3(http_client, base_url):
    r = await http_client.fetch(base_url + "/openapi.json")
    doc = json.loads(r.body)
    validate(doc)
    post = doc["paths"]["/api/{metric}"]["post"]
    assert set(post["responses"]) == {"200", "400", "401", "403", "404", "405", "413", "429", "502", "503", "504"}
    statement = doc["paths"]["/api/billing/statement"]["post"]
    assert {"401", "403", "429"} <= set(statement["responses"]) and "billing" in statement["responses"]["403"]["description"]
    schemes = doc["components"]["securitySchemes"]
    assert {(s["in"], s["name"]) for s in schemes.values()} == {("header", "X-USERNAME"), ("header", "X-PASSWORD")}
    assert "apiclient add" in schemes["password"]["description"] and "403" in schemes["password"]["description"]
    assert post["security"] == statement["security"] == [{"username": [], "password": []}]
    assert set(doc["components"]["schemas"]["Query"]["properties"]) == {
        "namespace", "limit", "agg", "timeBeginInterval", "timeEndInterval", "pod", "type"}


@pytest.mark.gen_test
async def test_prometheus_metrics_count_requests_and_influx_calls(http_client, base_url, api):
    await api("cpu/usage_rate", {"agg": "all-namespace"})
    await api("cpu/usage_rate", headers={})
    r = await http_client.fetch(base_url + "/metrics")
    assert r.headers["Content-Type"].startswith("text/plain")
    text = r.body.decode()
    assert 'kubemonitor_http_requests_total{method="POST",route="api",status="200"} 1.0' in text
    assert 'kubemonitor_http_requests_total{method="POST",route="api",status="401"} 1.0' in text
    assert re.search(r'kubemonitor_influxdb_query_duration_seconds_count\{kind="usage"\} [1-9]', text)  # the usage rule's statements
    for name in ("kubemonitor_http_request_duration_seconds", "kubemonitor_influxdb_errors",
                 "kubemonitor_poller_lag_seconds", "kubemonitor_websocket_clients"):
        assert name in text
















@pytest.mark.gen_test
async def test_access_log_lines_carry_request_id_and_never_secrets(api, tmp_path):
    from kubemonitor.logs import setup_logging
    setup_logging(str(tmp_path), console=False)
    try:
        status, _, resp = await api("cpu/usage_rate", {"agg": "all-namespace"},
                                    headers={"X-USERNAME": API_USER, "X-PASSWORD": API_PASS,
                                             "Cookie": "session=abcdef-cookie-value"})
        assert status == 200
        status, _, wrong = await api("cpu/usage_rate", headers={"X-USERNAME": API_USER, "X-PASSWORD": "guess-pw-123"})
        assert status == 401
        forged = "a b\x85c 200 1.0ms"  # a claimed name with spaces and NEL would add fields to the line
        status, _, odd = await api("cpu/usage_rate", headers={"X-USERNAME": forged, "X-PASSWORD": "x"})
        assert status == 401
    finally:
        for handler in logging.getLogger().handlers:
            handler.flush()
        logging.getLogger().handlers.clear()
    info = (tmp_path / "info.log").read_text()
    rid = resp.headers["X-Request-ID"]
    line = next(ln for ln in info.splitlines() if rid in ln)
    assert f"api:{API_USER} POST /api/cpu/usage_rate 200" in line and line.rstrip().endswith("ms")
    assert wrong.headers["X-Request-ID"] in info
    for secret in (API_PASS, "guess-pw-123", "abcdef-cookie-value"):
        assert secret not in info
    assert (tmp_path / "errors.log").exists()
    odd_line = next(ln for ln in info.splitlines() if odd.headers["X-Request-ID"] in ln)
    assert "api:a\\x20b\\x85c\\x20200\\x201.0ms POST /api/cpu/usage_rate 401" in odd_line, odd_line
    for name in ("info.log", "errors.log", "audit.log"):  # user names, addresses, paths: the server's user only
        if (tmp_path / name).exists():
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name


@pytest.mark.parametrize("trust", ["on", "off"])
def test_proxy_headers_are_trusted_only_when_configured(tmp_path, trust):
    """Behind a proxy the session cookie is Secure for HTTPS; directly, a forged header changes nothing."""
    import re

    import requests
    from conftest import WEB_PASS, WEB_USER

    from kubemonitor.influxd import free_port, wait_for_http
    from kubemonitor.users import UserStore
    users = tmp_path / "users.yaml"
    UserStore(str(users), rounds=4).add(WEB_USER, "a@example.org", WEB_PASS)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "kubemonitor", "serve", str(port), "--address", "127.0.0.1",
                             "--log-dir", str(tmp_path), "--users-file", str(users), "--trust-proxy", trust,
                             "--influxdb-port", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/healthz", proc)
        s = requests.Session()
        token = re.search(r'name="_xsrf" value="([^"]+)"', s.get(url + "/web/login").text).group(1)
        r = s.post(url + "/web/login", data={"_xsrf": token, "username": WEB_USER, "password": WEB_PASS},
                   headers={"X-Forwarded-Proto": "https"}, allow_redirects=False)
        assert r.status_code == 302
        assert ("Secure" in r.headers["Set-Cookie"]) == (trust == "on")
    finally:
        proc.terminate()
        proc.wait(timeout=15)




def test_serve_exits_on_sigterm_right_after_month_statements(running_influxd, month_db, tmp_path):
    """SIGTERM while month statements are being served: the process exits within 10 s,
    every time. A cancellation lost as a query finished (3.11's wait_for returns the result
    and drops it) kept a background task's loop running, and `serve` waited for it forever
    (1 in 4 trials here)."""
    import signal
    import threading
    import time

    import billing_data
    import requests

    from kubemonitor.influxd import free_port, wait_for_http
    card = tmp_path / "billing.yaml"
    card.write_text(billing_data.CARD)
    for trial in range(4):
        port = free_port()
        env = {**os.environ, "API_USERNAME": API_USER, "API_PASSWORD": API_PASS, "INFLUXDB_PORT": str(running_influxd.http_port),
               "INFLUXDB_DB": month_db, "KUBEMONITOR_BILLING_FILE": str(card), "KUBEMONITOR_LOG_DIR": str(tmp_path),
               "KUBEMONITOR_ROLLUP_RP": f"sigterm_{trial}_{os.getpid()}"}
        proc = subprocess.Popen([sys.executable, "-m", "kubemonitor", "serve", str(port), "--address", "127.0.0.1"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for_http(url + "/healthz", proc)

            def ask(period: str, url: str = url) -> None:
                try:
                    requests.post(url + "/api/billing/statement", headers={"X-USERNAME": API_USER, "X-PASSWORD": API_PASS},
                                  data=json.dumps({"period": period, "by": "pod"}), timeout=30)
                except requests.RequestException:
                    pass  # the server went away mid-answer: that is the point
            askers = [threading.Thread(target=ask, args=(p,)) for p in ("2026-02", "2026-01", "2026-02", "2026-03")]
            for t in askers:
                t.start()
            time.sleep(0.3 + 0.2 * trial)
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pytest.fail(f"trial {trial}: still running 10 s after SIGTERM")
            assert proc.returncode == 0 and time.monotonic() - sent < 10
            for t in askers:
                t.join()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_task_that_loses_its_first_cancellation_is_still_stopped():
    """What 3.11's wait_for does when the result and the cancellation meet: the first
    cancel() is swallowed and a `while True` loop goes on. Stopping cancels again."""
    import asyncio

    from kubemonitor.tasks import cancel_and_wait

    async def main() -> int:
        rounds = 0

        async def stubborn() -> None:
            nonlocal rounds
            while True:
                rounds += 1
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    if rounds == 1:
                        continue  # lost, as wait_for loses it
                    raise
        task = asyncio.ensure_future(stubborn())
        await asyncio.sleep(0)
        async with asyncio.timeout(5):
            await cancel_and_wait(task)
        assert task.cancelled()
        return rounds
    assert asyncio.run(main()) == 2


@pytest.mark.gen_test(timeout=30)
async def test_metrics_can_require_a_bearer_token(make_app, http_client):
    from conftest import serve_app
    base, server = await serve_app(make_app(metrics_token="scrape-Token-1"))
    try:
        async def get(headers):
            return await http_client.fetch(base + "/metrics", headers=headers, raise_error=False)
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "scrape-Token-1"}):
            r = await get(headers)
            assert r.code == 401 and "KUBEMONITOR_METRICS_TOKEN" in json.loads(r.body)["message"], headers
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        r = await get({"Authorization": "Bearer scrape-Token-1"})
        assert r.code == 200 and b"kubemonitor_logins_total" in r.body
    finally:
        server.stop()


@pytest.mark.parametrize("args,words", [
    (["audit", "--since", "9999999999999d"], ["--since", "before the year 1"]),
    (["simulate", "--pods", "100000000"], ["--pods", "outside 1 to 5000"]),
    (["simulate", "--interval", "1e-9", "--pods", "3"], ["--interval", "outside 0.5 s to 3600 s (or 0: none)"]),
    (["demo", "--interval", "1e-9"], ["--interval", "outside 0.5 s"]),
])
def test_cli_counts_and_durations_are_bounded(args, words, tmp_path):
    r = subprocess.run([sys.executable, "-m", "kubemonitor", *args], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "KUBEMONITOR_LOG_DIR": str(tmp_path)})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert all(w in r.stderr for w in words), r.stderr


def test_influxd_tries_new_ports_when_its_free_port_was_taken_meanwhile(monkeypatch):
    """free_port() finds a port, then influxd binds it: between the two another process may
    take it (two test runs side by side). The first port handed out here is already bound."""
    import socket

    from kubemonitor import influxd as influxd_module
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = iter([taken.getsockname()[1]])
    real = influxd_module.free_port
    monkeypatch.setattr(influxd_module, "free_port", lambda: next(ports, None) or real())
    server = influxd_module.Influxd()
    try:
        assert server.http_port == taken.getsockname()[1]
        server.start()
        assert server.running and server.http_port != taken.getsockname()[1] and server.ping()
        assert "address already in use" in open(server.log_path).read()
    finally:
        server.cleanup()
        taken.close()
