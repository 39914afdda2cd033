"""Fixtures: one real influxd for the session (restartable), the closed-form dataset,
and a KubeMonitorApp wired to them for pytest-tornado's `app` fixture."""
from __future__ import annotations

import json
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import dataset  # noqa: E402

from kubemonitor.app import KubeMonitorApp  # noqa: E402
from kubemonitor.config import Config  # noqa: E402
from kubemonitor.influxd import Influxd  # noqa: E402
from kubemonitor.services import Services  # noqa: E402

DB = "k8s_test"
# Under `make test-dates`' libfaketime (monotonic clock faked too, because its
# DONT_FAKE_MONOTONIC breaks every Python 3.11+ sleep: wolfcw/libfaketime#426),
# a threading.Event.wait(timeout) never returns; tests that need one skip there.
FAKED_CLOCK = "libfaketime" in os.environ.get("LD_PRELOAD", "")
needs_real_monotonic = pytest.mark.skipif(FAKED_CLOCK, reason="libfaketime: Event.wait(timeout) never returns "
                                          "with a faked monotonic clock")
API_USER, API_PASS = "billing", "s3cret-äpi"


@pytest.fixture(scope="session")
def influxd(tmp_path_factory):
    server = Influxd(root=str(tmp_path_factory.mktemp("influxd")))
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def anchors(influxd):
    return dataset.load(influxd, DB)


@pytest.fixture
def running_influxd(influxd):
    """The session's influxd, restarted if a test stopped it."""
    influxd.start()
    yield influxd
    influxd.start()


@pytest.fixture
def config(running_influxd, anchors, tmp_path) -> Config:
    return Config(influxdb_host="127.0.0.1", influxdb_port=running_influxd.http_port, influxdb_db=DB,
                  influxdb_timeout=3.0, api_username=API_USER, api_password=API_PASS,
                  users_file=str(tmp_path / "users.yaml"), api_clients_file=str(tmp_path / "api-clients.yaml"),
                  cookie_secret="test-secret-" + "x" * 40,
                  log_dir=str(tmp_path), poll_interval=0.5)


@pytest.fixture
def make_app(config, io_loop):
    """Build apps on the test config (with changes); all are shut down after the test."""
    built = []

    def make(static_path=None, **changes):
        application = KubeMonitorApp(Services(config.replace(**changes) if changes else config), static_path=static_path)
        built.append(application)
        return application
    yield make
    for application in built:
        io_loop.run_sync(application.shutdown)


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def api(http_client, base_url):
    """POST /api/<metric> with the right credentials; returns (status, decoded JSON, response)."""
    async def call(metric: str, body=None, *, headers=None, method="POST", raw: bytes | None = None):
        h = {"X-USERNAME": API_USER, "X-PASSWORD": API_PASS} if headers is None else headers
        if raw is None and body is not None:
            raw = json.dumps(body).encode()
        kwargs = {"body": raw if raw is not None else b""} if method in ("POST", "PUT", "PATCH") else {}
        if method not in ("POST", "PUT", "PATCH") and raw:
            kwargs = {"body": raw, "allow_nonstandard_methods": True}
        r = await http_client.fetch(f"{base_url}/api/{metric}", method=method, headers=h, raise_error=False,
                                    **kwargs)
        data = json.loads(r.body) if r.body and r.headers.get("Content-Type", "").startswith("application/json") else None
        return r.code, data, r
    return call


WEB_USER, WEB_PASS = "alice", "correct horse battery staple"


@pytest.fixture
def web_user(config):
    from kubemonitor.users import UserStore
    UserStore(config.users_file, rounds=4).add(WEB_USER, "alice@example.org", WEB_PASS)
    return WEB_USER, WEB_PASS


class Browserless:
    """A tiny cookie-keeping client for the form login (Tornado's client keeps no cookies)."""

    def __init__(self, http_client, base_url):
        self.http, self.base, self.cookies = http_client, base_url, {}

    def cookie_header(self):
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def _keep(self, response):
        from http.cookies import SimpleCookie
        for header in response.headers.get_list("Set-Cookie"):
            jar = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel.value == "" or morsel["expires"].startswith("Thu, 01 Jan 1970") or morsel["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    async def fetch(self, path, method="GET", body=None, headers=None, **kw):
        h = {"Cookie": self.cookie_header(), **(headers or {})}
        r = await self.http.fetch(self.base + path, method=method, body=body, headers=h, follow_redirects=False,
                                  raise_error=False, **kw)
        self._keep(r)
        return r

    async def xsrf(self):
        import re
        r = await self.fetch("/web/login")
        return re.search(r'name="_xsrf" value="([^"]+)"', r.body.decode()).group(1)

    async def login(self, username, password, next_url=None):
        from urllib.parse import quote, urlencode
        token = await self.xsrf()
        path = "/web/login" + (f"?next={quote(next_url, safe='')}" if next_url else "")
        return await self.fetch(path, "POST", body=urlencode({"_xsrf": token, "username": username, "password": password}))


@pytest.fixture
def browser(http_client, base_url):
    return Browserless(http_client, base_url)


@pytest.fixture
def scratch_db(running_influxd, request):
    """An empty database of its own, for a test that writes (the dataset stays as documented)."""
    import re
    name = "scratch_" + re.sub(r"\W", "_", request.node.name)[:40]
    running_influxd.query(f'DROP DATABASE "{name}"')
    running_influxd.query(f'CREATE DATABASE "{name}"')
    yield name
    if running_influxd.running:
        running_influxd.query(f'DROP DATABASE "{name}"')


@pytest.fixture
def scratch_app(make_app, scratch_db):
    """The app on a database of its own (see scratch_db)."""
    return make_app(influxdb_db=scratch_db)


@pytest.fixture(scope="session")
def month_db(influxd):
    """February 2026 for the billing tests (tests/billing_data.py), written once."""
    import billing_data
    return billing_data.load_month(influxd)


async def serve_app(application):
    """Serve an extra application on a free port; returns (base_url, server)."""
    from tornado.httpserver import HTTPServer
    from tornado.testing import bind_unused_port
    sock, port = bind_unused_port()
    server = HTTPServer(application)  # X-Forwarded-For is the application's to read (trust_proxy)
    server.add_sockets([sock])
    return f"http://127.0.0.1:{port}", server


def clear_of_boundary(unit_s: float, margin_s: float) -> None:
    """Sleep past the next boundary of `unit_s` seconds (a minute, an hour) when it is less
    than `margin_s` away: a test that computes "the current minute (hour)" and then asks
    the server about it must not see it change in between."""
    left = unit_s - time.time() % unit_s
    if left < margin_s:
        time.sleep(left + 0.5)
