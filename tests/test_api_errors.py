"""Bad input and faults: every one a clear 4xx/5xx JSON error, never a 500, nothing lost."""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
from conftest import API_PASS, API_USER, DB

HOUR_RANGE = {"timeBeginInterval": "2017-12-01T10:00:00Z", "timeEndInterval": "2017-12-01T10:59:00Z"}


def assert_error(status, body, code, *words):
    assert status == code, body
    assert body["code"] == code
    for word in words:
        assert word in body["message"], body["message"]


@pytest.mark.gen_test
async def test_malformed_json(api):
    status, body, _ = await api("cpu/usage_rate", raw=b'{"limit": 5,')
    assert_error(status, body, 400, "not valid JSON", "line 1")
    status, body, _ = await api("cpu/usage_rate", raw=b"\xff\xfe")
    assert_error(status, body, 400, "UTF-8")
    status, body, _ = await api("cpu/usage_rate", raw=b'{"limit": NaN}')
    assert_error(status, body, 400, "NaN")


@pytest.mark.gen_test
@pytest.mark.parametrize("body,words", [
    (b"[]", ["must be a JSON object"]),
    ({"limt": 5, "namespace": "team-a"}, ["'limt'", "allowed fields"]),
    ({"namespace": "Team_A"}, ["'namespace'", "Kubernetes namespace"]),
    ({"limit": 10001}, ["'limit'"]),
    ({"timeBeginInterval": "2017-02-30", "timeEndInterval": "2017-12-31"}, ["'timeBeginInterval'"]),
    ({"timeBeginInterval": "2017-12-31", "timeEndInterval": "2017-12-01"}, ["timeBeginInterval", "after"]),
    ({"agg": "all-pod", "pod": "web-1"}, ["'pod'", "without aggregation"]),
])
async def test_each_kind_of_bad_body_is_a_json_400_naming_the_field(api, body, words):
    """One case of each rule, end to end; every case of every rule: tests/fast/test_request_rules.py."""
    status, answer, _ = await (api("cpu/usage_rate", raw=body) if isinstance(body, bytes) else api("cpu/usage_rate", body))
    assert_error(status, answer, 400, *words)


@pytest.mark.gen_test
async def test_limit_bounds_and_digit_strings(api):
    for limit, expected in ((1, 1), ("3", 3), (10000, 60)):
        status, rows, _ = await api("cpu/usage_rate", {"namespace": "team-b", "limit": limit, "type": "pod", **HOUR_RANGE})
        assert status == 200 and len(rows) == expected


@pytest.mark.gen_test
async def test_body_over_64_kib(api):
    big = json.dumps({"namespace": "a" * 70_000}).encode()
    status, body, _ = await api("cpu/usage_rate", raw=big)
    assert_error(status, body, 413, "64 KiB")


@pytest.mark.gen_test
async def test_body_over_64_kib_without_content_length(http_client, base_url):
    """A chunked body has no Content-Length: the streaming check still stops it."""
    async def producer(write):
        for _ in range(80):
            await write(b" " * 1024)
    r = await http_client.fetch(base_url + "/api/cpu/usage_rate", method="POST", body_producer=producer,
                                headers={"X-USERNAME": API_USER, "X-PASSWORD": API_PASS}, raise_error=False)
    assert r.code == 413 and json.loads(r.body)["code"] == 413


@pytest.mark.gen_test
@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
async def test_every_other_method_is_405(api, method):
    status, body, resp = await api("cpu/usage_rate", method=method)
    assert status == 405
    assert resp.headers["Allow"] == "POST"
    if method != "HEAD":
        assert_error(status, body, 405, "POST")


@pytest.mark.gen_test
async def test_nonstandard_method_is_405(http_client, base_url):
    r = await http_client.fetch(base_url + "/api/cpu/usage_rate", method="PROPFIND", raise_error=False,
                                allow_nonstandard_methods=True)
    assert r.code == 405 and r.headers["Allow"] == "POST"
    assert json.loads(r.body)["code"] == 405


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["", "/", "/cpu//usage_rate", "/CPU/usage_rate", "/nope", "/cpu/usage_rate/",
                                  "/cpu%2Fusage_rate%27%3B%20DROP%20DATABASE%20k8s_test"])
async def test_unknown_metrics_and_bare_api_are_404(http_client, base_url, path):
    r = await http_client.fetch(base_url + "/api" + path, method="POST", body=b"{}", raise_error=False,
                                headers={"X-USERNAME": API_USER, "X-PASSWORD": API_PASS})
    body = json.loads(r.body)
    assert r.code == 404 and body["code"] == 404
    assert "/api/cpu/usage_rate" in body["message"]


@pytest.mark.gen_test
async def test_credentials_missing_wrong(api):
    status, body, _ = await api("cpu/usage_rate", headers={})
    assert_error(status, body, 401, "missing", "X-USERNAME", "X-PASSWORD")
    status, body, _ = await api("cpu/usage_rate", headers={"X-USERNAME": API_USER})
    assert_error(status, body, 401, "missing", "X-PASSWORD")
    status, body, _ = await api("cpu/usage_rate", headers={"X-USERNAME": API_USER, "X-PASSWORD": "nope"})
    assert_error(status, body, 401, "wrong")
    status, body, _ = await api("cpu/usage_rate", headers={"X-USERNAME": "billing2", "X-PASSWORD": API_PASS})
    assert_error(status, body, 401, "wrong")
    # credentials are checked before anything else is looked at
    status, body, _ = await api("nope", headers={})
    assert_error(status, body, 401, "missing")


@pytest.fixture
def unconfigured_app(make_app):
    return make_app(api_username=None, api_password=None)


@pytest.mark.gen_test
async def test_credentials_not_configured(unconfigured_app, http_client):
    from tornado.httpserver import HTTPServer
    from tornado.testing import bind_unused_port
    sock, port = bind_unused_port()
    server = HTTPServer(unconfigured_app)
    server.add_sockets([sock])
    try:
        r = await http_client.fetch(f"http://127.0.0.1:{port}/api/cpu/usage_rate", method="POST", body=b"{}",
                                    headers={"X-USERNAME": "", "X-PASSWORD": ""}, raise_error=False)
        body = json.loads(r.body)
        assert_error(r.code, body, 401, "not configured", "API_USERNAME")
    finally:
        server.stop()


INJECTIONS = [
    "team-a' OR namespace_name = 'team-b",
    'team-a" OR "namespace_name" = \'team-b',
    "team-a'; DROP DATABASE k8s_test; --",
    "team-a\nDROP DATABASE k8s_test",
    "team-a\\' OR 1=1",
    "$namespace",
    "team-a' OR '1'='1",
]


@pytest.mark.gen_test(timeout=60)
async def test_injection_in_every_field_leaks_nothing_and_drops_nothing(api, running_influxd):
    before = running_influxd.query('SELECT count("value") FROM "cpu/usage_rate"', DB)
    fields = ["namespace", "pod", "type", "agg", "timeBeginInterval", "timeEndInterval", "limit"]
    for payload in INJECTIONS:
        for field in fields:
            body = {"namespace": "team-a", **HOUR_RANGE, field: payload}
            status, data, _ = await api("cpu/usage_rate", body)
            assert status in (200, 400), (field, payload, status, data)
            if status == 200:
                assert all(row["namespace_name"] == "team-a" for row in data), (field, payload)
        for path in (payload, "cpu/usage_rate" + payload):
            from urllib.parse import quote
            status, data, _ = await api(quote(path, safe="/"), {})
            assert status == 404, (path, status, data)
    after = running_influxd.query('SELECT count("value") FROM "cpu/usage_rate"', DB)
    assert after == before
    databases = running_influxd.query("SHOW DATABASES")["results"][0]["series"][0]["values"]
    assert [DB] in databases


@pytest.mark.gen_test(timeout=90)
async def test_influxdb_down_then_up_again(api, http_client, base_url, running_influxd):
    status, _, _ = await api("cpu/usage_rate", {"agg": "all-namespace"})
    assert status == 200
    running_influxd.stop()
    try:
        started = time.monotonic()
        status, body, _ = await api("cpu/usage_rate", {"agg": "all-namespace"})
        assert_error(status, body, 503, "unreachable")
        assert time.monotonic() - started < 3  # within INFLUXDB_TIMEOUT (3 s in tests)
        status, body, _ = await api("custom/not_in_catalog", {})
        assert status == 503  # the measurement list cannot be read: not a false 404
        r = await http_client.fetch(base_url + "/readyz", raise_error=False)
        assert r.code == 503 and json.loads(r.body)["code"] == 503
        r = await http_client.fetch(base_url + "/healthz", raise_error=False)
        assert r.code == 200
    finally:
        await asyncio.get_running_loop().run_in_executor(None, running_influxd.start)
    status, rows, _ = await api("cpu/usage_rate", {"agg": "all-namespace", **HOUR_RANGE})
    assert status == 200 and [r["namespace_name"] for r in rows] == ["team-a", "team-b"]
    r = await http_client.fetch(base_url + "/readyz", raise_error=False)
    assert r.code == 200


class BlackHole:
    """A real TCP peer that accepts connections and never answers: a hung InfluxDB."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                continue

    def close(self):
        self._stop = True
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.fixture
def hung_app(make_app):
    hole = BlackHole()
    yield make_app(influxdb_port=hole.port, influxdb_timeout=1.0)
    hole.close()


@pytest.fixture
def wrong_db_app(make_app):
    return make_app(influxdb_db="no_such_db")


async def _serve_and_post(application, http_client, path="/api/cpu/usage_rate"):
    from tornado.httpserver import HTTPServer
    from tornado.testing import bind_unused_port
    sock, port = bind_unused_port()
    server = HTTPServer(application)
    server.add_sockets([sock])
    try:
        started = time.monotonic()
        r = await http_client.fetch(f"http://127.0.0.1:{port}{path}", method="POST", body=b"{}",
                                    headers={"X-USERNAME": API_USER, "X-PASSWORD": API_PASS}, raise_error=False,
                                    request_timeout=20)
        return r.code, json.loads(r.body), time.monotonic() - started
    finally:
        server.stop()


@pytest.mark.gen_test(timeout=30)
async def test_influxdb_too_slow_is_504(hung_app, http_client):
    status, body, elapsed = await _serve_and_post(hung_app, http_client)
    assert_error(status, body, 504, "did not answer", "INFLUXDB_TIMEOUT")
    assert elapsed < 5


@pytest.mark.gen_test
async def test_influxdb_error_is_502(wrong_db_app, http_client):
    status, body, _ = await _serve_and_post(wrong_db_app, http_client)
    assert_error(status, body, 502, "answered with an error", "database not found")


@pytest.mark.gen_test
async def test_internal_error_is_500_with_request_id_and_logged(api, monkeypatch, caplog):
    from kubemonitor import influxql

    def broken(*_args, **_kwargs):
        raise RuntimeError("simulated bug")
    monkeypatch.setattr(influxql, "raw_points", broken)
    status, body, resp = await api("cpu/usage_rate", {})
    rid = resp.headers["X-Request-ID"]
    assert_error(status, body, 500, "internal error", rid)
    assert "simulated bug" not in body["message"]
    assert any(rid in rec.getMessage() and rec.exc_info for rec in caplog.records)


class SlowProxy:
    """A real TCP proxy to InfluxDB that holds every request `delay` seconds: an InfluxDB that
    answers, slowly (a request then chains several slow calls)."""

    def __init__(self, port: int, delay: float):
        self.target, self.delay = port, delay
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop:
            try:
                client = self.sock.accept()[0]
            except OSError:
                continue
            server = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, server, self.delay), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, 0.0), daemon=True).start()

    @staticmethod
    def _pipe(src, dst, delay):
        try:
            while data := src.recv(65536):
                time.sleep(delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self._stop = True
        self.sock.close()


@pytest.mark.gen_test(timeout=60)
async def test_one_deadline_covers_all_of_a_requests_calls(make_app, running_influxd, http_client):
    """Each call answers within INFLUXDB_TIMEOUT, but an aggregation chains several: together
    they end within KUBEMONITOR_REQUEST_TIMEOUT, with a 504 that names it."""
    from conftest import serve_app
    proxy = SlowProxy(running_influxd.http_port, 0.8)
    try:
        app = make_app(influxdb_port=proxy.port, influxdb_timeout=5.0, request_timeout=1.5)
        base, server = await serve_app(app)
        started = time.monotonic()
        r = await http_client.fetch(base + "/api/cpu/usage_rate", method="POST", raise_error=False, request_timeout=30,
                                    headers={"X-USERNAME": API_USER, "X-PASSWORD": API_PASS},
                                    body=json.dumps({"agg": "all-pod", "timeBeginInterval": "2017-12-01",
                                                     "timeEndInterval": "2017-12-02"}))
        took = time.monotonic() - started
        server.stop()
        assert r.code == 504 and "KUBEMONITOR_REQUEST_TIMEOUT" in json.loads(r.body)["message"], r.body
        # the 504 names the request's deadline, not a call's (each call answers in 0.8 s,
        # within INFLUXDB_TIMEOUT): it ended the chain long before a call timing out would
        assert took < 5.0, took
    finally:
        proxy.close()
