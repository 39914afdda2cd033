"""Scoped access (README "Groups and access"): two groups, two scoped users, one admin,
three named API clients and the full-access pair, against the real server and influxd.

The data: the last 130 minutes, one sample a minute, each pod with a pod-level and a
container series of the same constant value (so every figure is known):

  astro-lab/astro-pod-1     cpu 1000 millicores, memory 2 GiB     group astro
  astro-dev/astrodev-pod-1  cpu 500                               group astro
  bio-sim/bio-pod-1         cpu 2000, memory 4 GiB                group bio ("Genomics Unit")
  kube-system/dns-pod-1     cpu 100                               excluded everywhere

Every answer a scoped principal gets is checked twice: the set of namespaces it
names, and a search of the whole body for the other group's namespace and pod names.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from billing_data import card
from conftest import API_PASS, API_USER, Browserless
from test_live import next_message, ws_request
from tornado.websocket import websocket_connect

from kubemonitor.apiclients import ClientsFileError, ClientStore, digest
from kubemonitor.users import UserStore

GIB = 1024**3
MINUTE = 60
PODS = (("astro-lab", "astro-pod-1", 1000, 2 * GIB), ("astro-dev", "astrodev-pod-1", 500, None),
        ("bio-sim", "bio-pod-1", 2000, 4 * GIB), ("kube-system", "dns-pod-1", 100, None))
ASTRO = {"astro-lab", "astro-dev"}
BIO = {"bio-sim"}
ASTRO_WORDS = ("astro-lab", "astro-dev", "astro-pod-1", "astrodev-pod-1", "Astro Unit", "CC-1111")
BIO_WORDS = ("bio-sim", "bio-pod-1", "Genomics Unit", "CC-9999")
CARD = card("""\
  astro: {name: Astro Unit, account: CC-1111, namespaces: [astro-lab, astro-dev]}
  bio:   {name: Genomics Unit, account: CC-9999, namespaces: [bio-sim]}
""")
PASSWORDS = {"astro": "astro-pass-Zq81", "bio": "bio-pass-Kx27", "admin": "admin-pass-Lm55"}


@pytest.fixture(scope="module")
def access_db(influxd):
    name = "access_groups"
    influxd.start()
    influxd.query(f'DROP DATABASE "{name}"')
    influxd.query(f'CREATE DATABASE "{name}"')
    now = int(time.time()) // MINUTE * MINUTE
    lines = []
    for i in range(130):
        t = now - (129 - i) * MINUTE
        for ns, pod, cpu, memory in PODS:
            tags = f"namespace_name={ns},pod_name={pod},nodename=n1"
            for metric, value in (("cpu/usage_rate", f"{cpu}.0"), ("memory/usage", f"{memory}i" if memory else None)):
                if value is not None:
                    lines.append(f"{metric},{tags},container_name=main,type=pod_container value={value} {t}")
                    lines.append(f"{metric},{tags},type=pod value={value} {t}")
        lines.append(f"cpu/usage_rate,type=cluster value=3600.0 {t}")
        lines.append(f"memory/usage,type=cluster value={6 * GIB}i {t}")
    influxd.write(name, lines, precision="s")
    return name


@pytest.fixture
def people(config):
    """The users and clients files: scoped users astro and bio, an admin; three named clients."""
    users = UserStore(config.users_file, rounds=4)
    users.add("astro", "astro@example.org", PASSWORDS["astro"], namespaces=("astro-lab", "astro-dev"), billing=True)
    users.add("bio", "bio@example.org", PASSWORDS["bio"], namespaces=("bio-sim",))
    users.add("admin", "admin@example.org", PASSWORDS["admin"])
    clients = ClientStore(config.api_clients_file)
    secrets = {}
    for name, namespaces, billing in (("office", None, None), ("astro-script", ("astro-lab", "astro-dev"), True),
                                      ("bio-nobill", ("bio-sim",), False)):
        _, secrets[name] = clients.add(name, namespaces, billing)
    return secrets


@pytest.fixture
def audit_dir(tmp_path):
    """audit.log written as logging.yaml says, into the test's log directory."""
    import logging

    from kubemonitor.logs import setup_audit
    setup_audit(str(tmp_path))
    yield tmp_path
    logger = logging.getLogger("kubemonitor.audit")
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)
    logger.propagate = True


@pytest.fixture
def app(make_app, access_db, tmp_path, people, audit_dir):
    import secrets
    card = tmp_path / "billing.yaml"
    card.write_text(CARD)
    return make_app(influxdb_db=access_db, billing_file=str(card), rollup_rp="t_" + secrets.token_hex(4))


def audit_lines(log_dir) -> list[dict]:
    path = os.path.join(log_dir, "audit.log")
    return [json.loads(line) for line in open(path, encoding="utf-8")] if os.path.exists(path) else []


def clean(body: bytes | str, words) -> list[str]:
    text = body.decode() if isinstance(body, bytes) else body
    return [w for w in words if w in text]


async def post(http_client, base_url, path, body, name, secret):
    r = await http_client.fetch(f"{base_url}{path}", method="POST", body=json.dumps(body), raise_error=False,
                                headers={"X-USERNAME": name, "X-PASSWORD": secret})
    return r.code, (json.loads(r.body) if r.headers.get("Content-Type", "").startswith("application/json") else r.body), r


def month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


AGGS = ("all-namespace", "all-pod")


# ------------------------------------------------------------------ the API
@pytest.mark.gen_test(timeout=60)
async def test_each_client_gets_exactly_its_namespaces(http_client, base_url, people):
    begin = {"timeBeginInterval": int(time.time()) - 3 * 3600}
    cases = (("office", people["office"], ASTRO | BIO, ()), (API_USER, API_PASS, ASTRO | BIO, ()),
             ("astro-script", people["astro-script"], ASTRO, BIO_WORDS), ("bio-nobill", people["bio-nobill"], BIO, ASTRO_WORDS))
    for name, secret, allowed, forbidden in cases:
        for metric in ("cpu/usage_rate", "memory/usage"):
            for agg in AGGS:
                code, rows, r = await post(http_client, base_url, f"/api/{metric}", {**begin, "agg": agg}, name, secret)
                assert code == 200, (name, metric, agg, rows)
                assert {row["namespace_name"] for row in rows} == allowed & ({"astro-lab", "bio-sim"} if metric == "memory/usage"
                                                                             else allowed), (name, metric, agg)
                assert not clean(r.body, forbidden), (name, metric, agg)
        # the figures themselves: a scoped row is the full-access row, exactly
        code, mine, _ = await post(http_client, base_url, "/api/cpu/usage_rate", {**begin, "agg": "all-namespace"}, name, secret)
        _, everyone, _ = await post(http_client, base_url, "/api/cpu/usage_rate", {**begin, "agg": "all-namespace"},
                                    API_USER, API_PASS)
        full = {row["namespace_name"]: row for row in everyone}
        for row in mine:
            assert row == full[row["namespace_name"]]
        assert {row["namespace_name"]: row["sum"] for row in mine} == {
            ns: 130 * cpu for ns, _, cpu, _ in PODS if ns in allowed}


@pytest.mark.gen_test(timeout=60)
async def test_a_foreign_namespace_is_a_403_naming_it(http_client, base_url, people):
    for body in ({"namespace": "bio-sim", "agg": "pod-by-namespace"}, {"namespace": "bio-sim"},
                 {"namespace": "bio-sim", "pod": "bio-pod-1"}):
        code, data, r = await post(http_client, base_url, "/api/cpu/usage_rate", body, "astro-script", people["astro-script"])
        assert code == 403 and "'bio-sim'" in data["message"] and "outside" in data["message"]
        assert "bio-pod-1" not in r.body.decode() and "2000" not in r.body.decode()
    # its own namespace, raw points included, works
    code, rows, _ = await post(http_client, base_url, "/api/cpu/usage_rate", {"namespace": "astro-dev", "limit": 5},
                               "astro-script", people["astro-script"])
    assert code == 200 and len(rows) == 5 and {r["namespace_name"] for r in rows} == {"astro-dev"}
    # a namespace that does not exist is a 403 too: a scoped client cannot probe for names
    code, data, _ = await post(http_client, base_url, "/api/cpu/usage_rate", {"namespace": "no-such-team"},
                               "astro-script", people["astro-script"])
    assert code == 403


@pytest.mark.gen_test(timeout=90)
async def test_statements_cover_only_the_clients_namespaces(http_client, base_url, people):
    # Days that hold every sample, whatever the date: a month early on its first day
    # holds fewer than the 130 samples (the suite failed every 1 December).
    now = time.time()
    period = {"from": datetime.fromtimestamp(now - 3 * 3600, UTC).strftime("%Y-%m-%d"),
              "to": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")}
    _, full, _ = await post(http_client, base_url, "/api/billing/statement", {**period, "by": "namespace"}, "office", people["office"])
    full_rows = {row["namespace"]: row for row in full["rows"]}
    assert set(full_rows) == ASTRO | BIO and "scope" not in full
    for by in ("group", "namespace", "pod"):
        code, mine, r = await post(http_client, base_url, "/api/billing/statement", {**period, "by": by},
                                   "astro-script", people["astro-script"])
        assert code == 200, mine
        assert not clean(r.body, BIO_WORDS), by
        assert mine["scope"] == ["astro-dev", "astro-lab"]
        if by == "group":
            (row,) = mine["rows"]
            assert row["group"] == "astro" and row["namespaces"] == ["astro-dev", "astro-lab"]
            assert row["usage"]["cpu"] == pytest.approx(full_rows["astro-lab"]["usage"]["cpu"] + full_rows["astro-dev"]["usage"]["cpu"], abs=1e-6)
        else:
            assert {row["namespace"] for row in mine["rows"]} == ASTRO
        if by == "namespace":
            for row in mine["rows"]:
                assert row == full_rows[row["namespace"]]  # the very rows the billing office sees
        assert mine["totals"]["total"] == pytest.approx(sum(row["total"] for row in mine["rows"]), abs=1e-9)
        # the running month's projection: their usage so far, at the full statement's rate to the month's end
        # (each statement takes its own "now": compare with the scoped statement's own factor)
        factor = mine["projection"]["factor"]
        assert factor == pytest.approx(full["projection"]["factor"], rel=0.05)
        assert factor > 1 and mine["projection"]["usage"]["cpu"] == pytest.approx(mine["totals"]["usage"]["cpu"] * factor,
                                                                                  abs=1e-6)
        assert mine["projection"]["usage"]["cpu"] < full["projection"]["usage"]["cpu"]
    # core-hours so far: 130 samples x 60 s of 1.5 cores
    (group_row,) = (await post(http_client, base_url, "/api/billing/statement", period, "astro-script", people["astro-script"]))[1]["rows"]
    assert group_row["usage"]["cpu"] == pytest.approx(130 / 60 * 1.5, abs=1e-6)
    code, text, r = await post(http_client, base_url, "/api/billing/statement", {**period, "format": "csv", "by": "pod"},
                               "astro-script", people["astro-script"])
    assert code == 200 and not clean(r.body, BIO_WORDS) and "astro-pod-1" in r.body.decode()


@pytest.mark.gen_test(timeout=60)
async def test_a_client_without_billing_gets_403_on_statements(http_client, base_url, people):
    code, data, r = await post(http_client, base_url, "/api/billing/statement", {"period": month()}, "bio-nobill",
                               people["bio-nobill"])
    assert code == 403 and "statements" in data["message"] and "apiclient scope bio-nobill --billing" in data["message"]
    assert not clean(r.body, ASTRO_WORDS + ("bio-pod-1",))


@pytest.mark.gen_test(timeout=60)
async def test_revocation_and_scope_changes_count_at_once(http_client, base_url, people, config, audit_dir):
    body = {"agg": "all-namespace", "timeBeginInterval": int(time.time()) - 3600}
    code, rows, _ = await post(http_client, base_url, "/api/cpu/usage_rate", body, "astro-script", people["astro-script"])
    assert code == 200 and {r["namespace_name"] for r in rows} == ASTRO
    ClientStore(config.api_clients_file).set_scope("astro-script", namespaces=("astro-lab",))
    code, rows, _ = await post(http_client, base_url, "/api/cpu/usage_rate", body, "astro-script", people["astro-script"])
    assert code == 200 and {r["namespace_name"] for r in rows} == {"astro-lab"}
    ClientStore(config.api_clients_file).revoke("astro-script")
    code, data, _ = await post(http_client, base_url, "/api/cpu/usage_rate", body, "astro-script", people["astro-script"])
    assert code == 401 and "revoked" in data["message"]
    # a wrong secret for a revoked name says only "wrong credentials"
    code, data, _ = await post(http_client, base_url, "/api/cpu/usage_rate", body, "astro-script", "guess")
    assert code == 401 and "revoked" not in data["message"]
    last = [e for e in audit_lines(audit_dir) if e["event"] == "api" and e["who"] == "api:astro-script"][-2:]
    assert [(e["status"], e.get("reason")) for e in last] == [(401, "revoked"), (401, "wrong secret")]


@pytest.mark.gen_test(timeout=60)
async def test_a_rotated_secret_replaces_the_old_one_at_once_and_a_revoked_client_can_be_deleted(
        http_client, base_url, people, config):
    body = {"agg": "all-namespace", "timeBeginInterval": int(time.time()) - 3600}
    old = people["astro-script"]
    r = cli("apiclient", "rotate", "astro-script", config=config)
    assert r.returncode == 0, r.stderr
    new = r.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", new) and new != old and "old one is refused" in r.stderr
    code, data, _ = await post(http_client, base_url, "/api/cpu/usage_rate", body, "astro-script", old)
    assert code == 401
    code, rows, _ = await post(http_client, base_url, "/api/cpu/usage_rate", body, "astro-script", new)
    assert code == 200 and {row["namespace_name"] for row in rows} == ASTRO  # the scope is kept
    # an active name: the hint is rotate, not "revoke it first" (a revoked name cannot be added again)
    again = cli("apiclient", "add", "astro-script", config=config)
    assert again.returncode == 2 and "apiclient rotate astro-script" in again.stderr and "revoke" not in again.stderr
    refused = cli("apiclient", "delete", "astro-script", config=config)
    assert refused.returncode == 2 and "revoke it first" in refused.stderr
    assert cli("apiclient", "revoke", "astro-script", config=config).returncode == 0
    assert "apiclient delete astro-script" in cli("apiclient", "add", "astro-script", config=config).stderr
    assert "no new secret" in cli("apiclient", "rotate", "astro-script", config=config).stderr
    assert cli("apiclient", "delete", "astro-script", config=config).returncode == 0
    assert "astro-script" not in ClientStore(config.api_clients_file).read()
    assert cli("apiclient", "add", "astro-script", config=config).returncode == 0  # the name is free again


@pytest.mark.gen_test(timeout=60)
async def test_secrets_are_compared_exactly(http_client, base_url, people):
    secret = people["office"]
    body = {"agg": "all-namespace"}
    assert (await post(http_client, base_url, "/api/cpu/usage_rate", body, "office", secret))[0] == 200
    for wrong in (secret[:-1], secret + "x", secret.upper(), secret + "\\n", " " + secret + "%0A"):
        code, data, _ = await post(http_client, base_url, "/api/cpu/usage_rate", body, "office", wrong)
        assert code == 401 and "wrong credentials" in data["message"], wrong
    # A secret read from a file with Windows line ends keeps a trailing CR: sent raw, the request is
    # refused (400), never taken with a shortened secret. A trailing LF cannot be sent inside a header
    # at all: HTTP clients refuse it (requests does, below), and on the wire it ends the line.
    host, port = base_url.replace("http://", "").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    raw = json.dumps(body).encode()
    writer.write(b"POST /api/cpu/usage_rate HTTP/1.1\r\nHost: x\r\nX-USERNAME: office\r\nX-PASSWORD: " + secret.encode()
                 + b"\r\r\nContent-Length: " + str(len(raw)).encode() + b"\r\n\r\n" + raw)
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status.startswith(b"HTTP/1.1 400"), status
    import requests
    with pytest.raises(ValueError):
        requests.post(base_url + "/api/cpu/usage_rate", json=body, headers={"X-USERNAME": "office", "X-PASSWORD": secret + "\n"})


@pytest.mark.gen_test(timeout=60)
async def test_one_client_may_run_only_so_many_queries_at_once(http_client, base_url, app, people):
    slots = app.client_slots
    for _ in range(app.config.client_concurrency):  # as if four of its queries were running
        assert await slots.acquire("office")
    started = time.monotonic()
    code, data, r = await post(http_client, base_url, "/api/cpu/usage_rate", {"agg": "all-namespace"}, "office", people["office"])
    assert code == 429 and r.headers["Retry-After"] == "1" and "KUBEMONITOR_CLIENT_CONCURRENCY" in data["message"]
    assert time.monotonic() - started >= 0.9  # it waited a second for a slot first
    # another client is not held up by it
    code, _, _ = await post(http_client, base_url, "/api/cpu/usage_rate", {"agg": "all-namespace"}, "astro-script",
                            people["astro-script"])
    assert code == 200
    # a slot freed while a call waits goes to that call
    waiting = asyncio.ensure_future(post(http_client, base_url, "/api/cpu/usage_rate", {"agg": "all-namespace"}, "office",
                                         people["office"]))
    await asyncio.sleep(0.3)
    slots.release("office")
    assert (await waiting)[0] == 200
    for _ in range(app.config.client_concurrency - 1):
        slots.release("office")
    assert slots.running("office") == 0  # every slot given back


@pytest.mark.gen_test(timeout=60)
async def test_a_burst_past_the_cap_waits_its_turn_and_slots_are_returned(http_client, base_url, app, people):
    body = {"agg": "all-pod", "timeBeginInterval": int(time.time()) - 3 * 3600}
    answers = await asyncio.gather(*(post(http_client, base_url, "/api/cpu/usage_rate", body, "office", people["office"])
                                     for _ in range(12)))
    assert [c for c, _, _ in answers] == [200] * 12  # a short burst is served in turn, not refused
    assert app.client_slots.running("office") == 0


# ------------------------------------------------------------------ the web
async def logged_in(http_client, base_url, user) -> Browserless:
    b = Browserless(http_client, base_url)
    r = await b.login(user, PASSWORDS[user])
    assert r.code == 302, r.code
    return b


def pages_for(namespaces) -> list[str]:
    out = ["/web/stats/index", "/web/stats/index?range=6h"]
    for metric in ("cpu/usage_rate", "memory/usage", "gpu/usage"):
        out.append(f"/web/stats/{metric}")
        out += [f"/web/stats/{metric}/{ns}" for ns in sorted(namespaces)]
    return out


@pytest.mark.gen_test(timeout=120)
async def test_every_page_of_a_scoped_user_shows_only_their_namespaces(http_client, base_url):
    for user, mine, forbidden in (("astro", ASTRO, BIO_WORDS), ("bio", BIO, ASTRO_WORDS)):
        b = await logged_in(http_client, base_url, user)
        for path in pages_for(mine):
            r = await b.fetch(path)
            assert r.code == 200, (user, path)
            body = r.body.decode()
            assert not clean(body, forbidden), (user, path, clean(body, forbidden))
            picker = re.search(r'<select name="namespace".*?</select>', body, re.S).group(0)
            assert set(re.findall(r'<option value="([a-z0-9-]+)"', picker)) - {"all"} == mine
            assert "your namespaces" in body
        snapshot = json.loads(re.search(r'data-snapshot>(.*?)</script>',
                                        (await b.fetch("/web/stats/index")).body.decode(), re.S).group(1))
        assert set(snapshot["series"]) == mine and snapshot["scope"] == sorted(mine)
        assert snapshot["current"]["total"] == sum(cpu for ns, _, cpu, _ in PODS if ns in mine)
        # another group's pages are not there at all
        foreign = "bio-sim" if user == "astro" else "astro-lab"
        for path in (f"/web/stats/cpu/usage_rate/{foreign}", f"/web/go?metric=cpu/usage_rate&namespace={foreign}"):
            r = await b.fetch(path)
            assert r.code == 404, (user, path)
            assert not clean(r.body, ("bio-pod-1", "astro-pod-1", "2000", "1000.0"))
    # the admin sees everyone
    b = await logged_in(http_client, base_url, "admin")
    body = (await b.fetch("/web/stats/cpu/usage_rate")).body.decode()
    assert all(w in body for w in ("bio-sim", "astro-lab", "astro-dev")) and "all namespaces" in body


@pytest.mark.gen_test(timeout=120)
async def test_billing_pages_follow_the_scope(http_client, base_url, audit_dir):
    astro = await logged_in(http_client, base_url, "astro")
    for path in (f"/web/billing/{month()}", f"/web/billing/{month()}?by=namespace", f"/web/billing/{month()}?by=pod",
                 f"/web/billing/{month()}.csv?by=pod"):
        r = await astro.fetch(path)
        assert r.code == 200, path
        assert not clean(r.body, BIO_WORDS), path
        assert "astro-lab" in r.body.decode() or "Astro Unit" in r.body.decode()
    bio = await logged_in(http_client, base_url, "bio")
    assert "Billing</a>" not in (await bio.fetch("/web/stats/index")).body.decode()
    r = await bio.fetch(f"/web/billing/{month()}")
    assert r.code == 403 and "scope bio --billing" in r.body.decode() and not clean(r.body, ASTRO_WORDS)
    admin = await logged_in(http_client, base_url, "admin")
    r = await admin.fetch(f"/web/billing/{month()}?by=namespace")
    assert all(w in r.body.decode() for w in ("astro-lab", "bio-sim", "Genomics Unit"))
    events = [(e["event"], e["who"]) for e in audit_lines(audit_dir)]
    assert ("csv", "astro") in events and ("statement_page", "admin") in events


async def ws(base_url, browser):
    return await websocket_connect(ws_request(base_url, browser.cookie_header()))


def send(conn, action, metric, namespace="all"):
    conn.write_message(json.dumps({action: {"metric": metric, "namespace": namespace}}))


@pytest.mark.gen_test(timeout=60)
async def test_live_views_follow_the_scope_and_its_changes(http_client, base_url, config, app):
    astro = await logged_in(http_client, base_url, "astro")
    conn = await ws(base_url, astro)
    send(conn, "subscribe", "cpu/usage_rate", "bio-sim")
    error = await next_message(conn, "error")
    assert "no namespace 'bio-sim' you can see" in error["message"]
    send(conn, "subscribe", "cpu/usage_rate")
    snap = await next_message(conn, "snapshot", where=lambda m: m["namespace"] == "all")
    assert set(snap["series"]) == ASTRO and {r["namespace_name"] for r in snap["latest"]} == ASTRO
    assert snap["current"]["total"] == 1500
    send(conn, "subscribe", "cpu/usage_rate", "astro-dev")
    snap = await next_message(conn, "snapshot", where=lambda m: m["namespace"] == "astro-dev")
    assert set(snap["series"]) == {"astrodev-pod-1"}
    # an admin watching the same cluster view gets the whole of it from the same poll
    admin_conn = await ws(base_url, await logged_in(http_client, base_url, "admin"))
    send(admin_conn, "subscribe", "cpu/usage_rate")
    snap = await next_message(admin_conn, "snapshot", where=lambda m: m["namespace"] == "all")
    assert set(snap["series"]) == ASTRO | BIO and "scope" not in snap
    views = {key for key, view in app.poller.views.items() if view.subscribers}
    assert views == {("cpu/usage_rate", "all", "1h"), ("cpu/usage_rate", "astro-dev", "1h")}
    # narrowed while the socket is open: astro-dev stops, and "all" loses it, without a reconnect
    UserStore(config.users_file, rounds=4).set_scope("astro", namespaces=("astro-lab",))
    error = await next_message(conn, "error", timeout=10)
    assert "astro-dev" in error["message"] and "no longer" in error["message"]
    snap = await next_message(conn, "snapshot", timeout=10, where=lambda m: m["namespace"] == "all" and "astro-dev" not in m["series"])
    assert set(snap["series"]) == {"astro-lab"} and snap["current"]["total"] == 1000
    assert ("cpu/usage_rate", "astro-dev", "1h") not in {k for k, v in app.poller.views.items() if v.subscribers}
    conn.close()
    admin_conn.close()


# ------------------------------------------------------------------ the audit log
@pytest.mark.gen_test(timeout=60)
async def test_audit_lines_for_logins_logouts_and_api_calls(http_client, base_url, audit_dir, people):
    b = Browserless(http_client, base_url)
    assert (await b.login("astro", "wrong")).code == 401
    assert (await b.login("astro", PASSWORDS["astro"])).code == 302
    token = re.search(r'name="_xsrf" value="([^"]+)"', (await b.fetch("/web/stats/index")).body.decode()).group(1)
    assert (await b.fetch("/web/logout", "POST", body=f"_xsrf={token}")).code == 302
    for _ in range(5):
        await Browserless(http_client, base_url).login("nobody", "x")
    assert (await Browserless(http_client, base_url).login("nobody", "x")).code == 429
    await post(http_client, base_url, "/api/cpu/usage_rate", {"agg": "all-namespace", "namespace": "astro-lab"},
               "astro-script", people["astro-script"])
    await post(http_client, base_url, "/api/cpu/usage_rate", {"namespace": "bio-sim"}, "astro-script", people["astro-script"])
    await post(http_client, base_url, "/api/billing/statement", {"period": month(), "by": "pod"}, "office", people["office"])
    lines = audit_lines(audit_dir)
    logins = [(e["who"], e["result"]) for e in lines if e["event"] == "login"]
    assert logins[:2] == [("astro", "failed"), ("astro", "ok")] and ("nobody", "throttled") in logins
    assert all(e["address"] == "127.0.0.1" for e in lines if e["event"] in ("login", "logout"))
    assert [e["who"] for e in lines if e["event"] == "logout"] == ["astro"]
    api = [e for e in lines if e["event"] == "api"]
    ok, forbidden, statement = api[-3:]
    assert ok["who"] == "api:astro-script" and ok["metric"] == "cpu/usage_rate" and ok["status"] == 200
    assert ok["rows"] == 2 and ok["fields"] == {"agg": "all-namespace", "namespace": "astro-lab"} and ok["ms"] > 0
    assert forbidden["status"] == 403 and forbidden["fields"] == {"namespace": "bio-sim"} and "rows" not in forbidden
    assert statement["statement"] == "statement" and statement["period"] == month() and statement["rows"] == 3  # kube-system is not billed
    # a secret pasted into an unknown field is not kept
    await post(http_client, base_url, "/api/cpu/usage_rate", {"agg": "all-pod", "token": people["bio-nobill"]},
               "office", people["office"])
    assert audit_lines(audit_dir)[-1]["fields"] == {"agg": "all-pod", "unknown_fields": 1}


def cli(*args, config, stdin=None, env=None):
    cmd = [sys.executable, "-m", "kubemonitor", *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "KUBEMONITOR_USERS_FILE": config.users_file,
                               "KUBEMONITOR_API_CLIENTS_FILE": config.api_clients_file,
                               "KUBEMONITOR_LOG_DIR": config.log_dir, **(env or {})})


def test_cli_changes_are_audited_with_the_os_user_and_audit_prints_them(config, tmp_path):
    import getpass
    assert cli("adduser", "--username=carol", "--email=c@example.org", "--namespaces", "astro-lab", "--password-stdin",
               config=config, stdin="carol-pass-Qw12\n").returncode == 0
    assert cli("scope", "carol", "--namespaces", "astro-lab,astro-dev", "--billing", config=config).returncode == 0
    assert cli("passwd", "carol", "--password-stdin", config=config, stdin="carol-pass-2\n").returncode == 0
    r = cli("apiclient", "add", "robot", "--namespaces", "bio-sim", config=config)
    assert r.returncode == 0
    assert cli("apiclient", "scope", "robot", "--billing", config=config).returncode == 0
    assert cli("apiclient", "revoke", "robot", config=config).returncode == 0
    assert cli("deluser", "carol", config=config).returncode == 0
    lines = audit_lines(tmp_path)
    actions = [(e["action"], e["target"]) for e in lines if e["event"] == "cli"]
    assert actions == [("adduser", "carol"), ("scope", "carol"), ("passwd", "carol"), ("apiclient add", "robot"),
                       ("apiclient scope", "robot"), ("apiclient revoke", "robot"), ("deluser", "carol")]
    assert all(e["who"].startswith(f"os:{getpass.getuser()}") for e in lines)
    assert lines[1]["scope"] == "astro-dev,astro-lab; statements: yes"
    table = cli("audit", "--since", "1h", "--who", "carol", config=config)
    assert table.returncode == 0
    rows = table.stdout.strip().splitlines()
    assert rows[0].split()[:5] == ["TIME", "WHO", "EVENT", "WHAT", "STATUS"] and len(rows) == 1 + 4
    assert all("carol" in row for row in rows[1:])
    assert cli("audit", "--since", "1h", "--who", "nobody", config=config).stdout == ""
    # --since takes a date or a time too (it took only durations); today's lines are from today on
    from datetime import UTC, datetime, timedelta
    today, tomorrow = datetime.now(UTC).date(), datetime.now(UTC).date() + timedelta(days=1)
    by_date = cli("audit", "--since", today.isoformat(), "--who", "carol", config=config)
    assert by_date.returncode == 0 and by_date.stdout.strip().splitlines() == rows
    assert cli("audit", "--since", f"{tomorrow}T00:00:00Z", "--who", "carol", config=config).stdout == ""
    # a log directory that does not exist is an error naming it, not "no audit entries"
    missing = cli("audit", "--log-dir", str(tmp_path / "nope"), config=config)
    assert missing.returncode == 2 and f"no log directory {tmp_path / 'nope'}" in missing.stderr
    as_json = cli("audit", "--json", config=config).stdout.splitlines()
    assert [json.loads(line) for line in as_json] == lines


def test_no_secret_ever_reaches_a_log(tmp_path, config, scratch_db):
    """Run the server's and the CLI's audited paths, then search every file in the log
    directory for every password, secret, hash and cookie the test used."""
    secrets_used = []
    r = cli("apiclient", "add", "leaky", config=config)
    secret = r.stdout.strip()
    secrets_used += [secret, digest(secret)]
    assert cli("adduser", "--username=dora", "--email=d@example.org", "--password-stdin", config=config,
               stdin="dora-Pass-8812\n").returncode == 0
    secrets_used += ["dora-Pass-8812", UserStore(config.users_file).read()["dora"].password_hash]
    from kubemonitor.influxd import free_port, wait_for_http
    port = free_port()
    env = {**os.environ, "INFLUXDB_HOST": "127.0.0.1", "INFLUXDB_PORT": str(config.influxdb_port),
           "INFLUXDB_DB": scratch_db, "KUBEMONITOR_USERS_FILE": config.users_file,  # nothing to roll up: a quick stop
           "KUBEMONITOR_API_CLIENTS_FILE": config.api_clients_file, "KUBEMONITOR_LOG_DIR": config.log_dir,
           "KUBEMONITOR_COOKIE_SECRET": "c" * 40, "API_USERNAME": "env-client", "API_PASSWORD": "env-Secret-4471",
           "KUBEMONITOR_ADDRESS": "127.0.0.1"}
    secrets_used += ["c" * 40, "env-Secret-4471"]
    proc = subprocess.Popen([sys.executable, "-m", "kubemonitor", "serve", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/healthz", proc)
        import requests
        s = requests.Session()
        token = re.search(r'name="_xsrf" value="([^"]+)"', s.get(url + "/web/login").text).group(1)
        s.post(url + "/web/login", data={"_xsrf": token, "username": "dora", "password": "wrong-Guess-001"})
        r = s.post(url + "/web/login", data={"_xsrf": token, "username": "dora", "password": "dora-Pass-8812"},
                   allow_redirects=False)
        assert r.status_code == 302
        secrets_used += ["wrong-Guess-001"] + [c.value for c in s.cookies]
        for who, password in (("leaky", secret), ("env-client", "env-Secret-4471"), ("leaky", "wrong-Secret-77")):
            requests.post(url + "/api/cpu/usage_rate", json={"agg": "all-namespace"},
                          headers={"X-USERNAME": who, "X-PASSWORD": password})
        secrets_used.append("wrong-Secret-77")
        s.get(url + f"/web/billing/{month()}.csv")
        token = s.cookies.get("_xsrf")
        s.post(url + "/web/logout", data={"_xsrf": token})
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=15)
    assert cli("apiclient", "revoke", "leaky", config=config).returncode == 0
    logs = {name: open(os.path.join(config.log_dir, name), encoding="utf-8", errors="replace").read()
            for name in os.listdir(config.log_dir) if name.endswith(".log") or ".log." in name}
    logs["serve's stderr"] = stderr
    assert {"audit.log", "info.log"} <= set(logs)
    audit_text = logs["audit.log"]
    assert '"who":"dora"' in audit_text and '"who":"api:leaky"' in audit_text and '"event":"csv"' in audit_text
    assert len([s for s in secrets_used if s]) >= 8
    for name, text in logs.items():
        for s in secrets_used:
            assert not s or s not in text, f"a secret is in {name}"


# ------------------------------------------------------------------ the clients file and CLI
def test_apiclient_add_prints_the_secret_once_and_keeps_its_hash(config):
    r = cli("apiclient", "add", "office2", "--namespaces", "astro-lab,astro-dev", "--billing", config=config)
    assert r.returncode == 0, r.stderr
    secret = r.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", secret)  # 32 random bytes, URL-safe
    text = open(config.api_clients_file).read()
    assert secret not in text and digest(secret) in text
    assert oct(os.stat(config.api_clients_file).st_mode & 0o777) == "0o600"
    client = ClientStore(config.api_clients_file).read()["office2"]
    assert client.namespaces == ("astro-dev", "astro-lab") and client.billing is True
    listed = cli("apiclient", "list", config=config).stdout
    assert "office2" in listed and "astro-dev,astro-lab; statements: yes" in listed and secret not in listed
    assert "active" in listed
    assert cli("apiclient", "revoke", "office2", config=config).returncode == 0
    assert "revoked" in cli("apiclient", "list", config=config).stdout
    again = cli("apiclient", "add", "office2", config=config)
    assert again.returncode == 2 and "already exists (revoked at" in again.stderr and "apiclient delete office2" in again.stderr


@pytest.mark.parametrize("args,words", [
    (["scope", "nobody", "--namespaces", "a"], ["no user 'nobody'", "kubemonitor users"]),
    (["apiclient", "revoke", "nobody"], ["no API client 'nobody'", "apiclient list"]),
    (["apiclient", "scope", "nobody", "--billing"], ["no API client 'nobody'"]),
    (["apiclient", "add", "x", "--namespaces", ""], ["--namespaces is empty"]),
    (["apiclient", "add", "x", "--namespaces", ","], ["--namespaces is empty"]),
    (["apiclient", "add", "x", "--namespaces", "Astro_Lab"], ["'Astro_Lab' is not a Kubernetes namespace name"]),
    (["apiclient", "add", "-bad"], []),
    (["apiclient", "add", "bad name"], ["client name"]),
    (["apiclient", "add", "billing"], ["API_USERNAME"]),
    (["adduser", "--username=x", "--email=x@example.org", "--namespaces", ""], ["--namespaces is empty"]),
    (["scope", "astro"], ["say what to change"]),
    (["scope", "astro", "--namespaces", "a", "--all-namespaces"], ["not allowed with"]),
])
def test_bad_scope_and_client_commands_are_one_line(config, args, words):
    UserStore(config.users_file, rounds=4).add("astro", "a@example.org", "pw")
    before = [open(f).read() if os.path.exists(f) else None for f in (config.users_file, config.api_clients_file)]
    r = cli(*args, config=config, stdin="pw\n", env={"API_USERNAME": "billing"})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    for word in words:
        assert word in r.stderr
    assert [open(f).read() if os.path.exists(f) else None for f in (config.users_file, config.api_clients_file)] == before


@pytest.mark.parametrize("content,words", [
    ("clients:\n  a:\n    sha256: " + "a" * 64 + "\n  a:\n    sha256: " + "b" * 64 + "\n", ["line 4", "listed twice"]),
    ("clients:\n  a:\n    sha256: xyz\n", ["line 3", "64 lower-case hex"]),
    ("clients:\n  a:\n    sha256: " + "G" * 64 + "\n", ["line 3", "64 lower-case hex"]),
    ("clients:\n  a:\n    secret: hunter2-plain\n", ["line 3", "plain-text secret", "apiclient add a"]),
    ("clients:\n  a:\n    sha256: " + "a" * 64 + "\n    namespaces: [Bad_NS]\n", ["line 4", "Bad_NS"]),
    ("clients:\n  a:\n    sha256: " + "a" * 64 + "\n    namespaces: []\n", ["line 4", "empty"]),
    ("clients:\n  a:\n    sha256: " + "a" * 64 + "\n    billing: maybe\n", ["line 4", "true or false"]),
    ("clients: [\n", ["not valid YAML"]),
])
def test_a_broken_clients_file_is_named_with_its_line(tmp_path, config, content, words):
    f = tmp_path / "clients.yaml"
    f.write_text(content)
    with pytest.raises(ClientsFileError) as info:
        ClientStore(str(f)).read()
    assert str(f) in str(info.value)
    for word in words:
        assert word in str(info.value)
    assert "hunter2-plain" not in str(info.value)
    r = cli("apiclient", "list", config=config, env={"KUBEMONITOR_API_CLIENTS_FILE": str(f)})
    assert r.returncode == 2 and str(f) in r.stderr and "Traceback" not in r.stderr and "hunter2" not in r.stderr


def test_a_broken_users_scope_is_named_with_its_line(tmp_path):
    from kubemonitor.users import UsersFileError
    f = tmp_path / "u.yaml"
    UserStore(str(f), rounds=4).add("a", "a@example.org", "pw", namespaces=("x",))
    f.write_text(f.read_text().replace("- x", "- Not_OK"))
    with pytest.raises(UsersFileError) as info:
        UserStore(str(f)).read()
    assert "Not_OK" in str(info.value) and str(f) in str(info.value) and "line" in str(info.value)


def test_eight_concurrent_apiclient_adds_lose_nothing(config, tmp_path):
    env = {**os.environ, "KUBEMONITOR_API_CLIENTS_FILE": config.api_clients_file, "KUBEMONITOR_LOG_DIR": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-m", "kubemonitor", "apiclient", "add", f"client{i}"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(8)]
    secrets = {}
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        secrets[f"client{i}"] = out.strip()
    store = ClientStore(config.api_clients_file)
    clients = store.read()
    assert set(clients) == set(secrets)
    for name, secret in secrets.items():
        store.entries(recheck=True)
        assert store.check(name, secret) == (clients[name], "ok")
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert len([e for e in audit_lines(tmp_path) if e.get("action") == "apiclient add"]) == 8


@pytest.mark.gen_test(timeout=60)
async def test_a_flood_of_refused_calls_cannot_rotate_the_audit_log_away(http_client, base_url, app, audit_dir, people):
    from kubemonitor.audit import sampler
    now = [0.0]
    app.audit_sampler = sampler(burst=5, window=60, clock=lambda: now[0])
    app.api_guesses.pair.limit = 100  # sampling is what this test is about, not the guessing limit
    for _ in range(12):
        assert (await post(http_client, base_url, "/api/cpu/usage_rate", {}, "stranger", "guess"))[0] == 401
    refused = [e for e in audit_lines(audit_dir) if e["event"] == "api" and e["who"] == "api:stranger"]
    assert len(refused) == 5 and all("held_back" not in e for e in refused)
    for _ in range(3):  # answered calls are always written, whatever the refusals
        assert (await post(http_client, base_url, "/api/cpu/usage_rate", {"agg": "all-namespace"}, "office", people["office"]))[0] == 200
    assert len([e for e in audit_lines(audit_dir) if e["who"] == "api:office"]) == 3
    now[0] = 61.0
    assert (await post(http_client, base_url, "/api/cpu/usage_rate", {}, "stranger", "guess"))[0] == 401
    last = audit_lines(audit_dir)[-1]
    assert last["who"] == "api:stranger" and last["held_back"] == 7 and last["reason"] == "unknown"


@pytest.mark.gen_test(timeout=60)
async def test_strangers_sending_a_new_name_each_time_are_sampled_by_address(http_client, base_url, app, audit_dir):
    """Random names and methods from one address are one flood to the audit sampler, not one per name."""
    from kubemonitor.audit import sampler
    app.audit_sampler = sampler(burst=5, window=60, clock=lambda: 0.0)
    for i in range(30):
        assert (await post(http_client, base_url, "/api/cpu/usage_rate", {}, f"stranger{i}", "guess"))[0] == 401
    for _ in range(12):  # unauthenticated 405s too
        r = await http_client.fetch(f"{base_url}/api/cpu/usage_rate", method="GET", raise_error=False)
        assert r.code == 405
    lines = [e for e in audit_lines(audit_dir) if e["event"] == "api"]
    assert [e["status"] for e in lines] == [401] * 5 + [405] * 5, lines


@pytest.mark.gen_test(timeout=60)
async def test_api_credential_guessing_is_throttled_per_address(http_client, base_url, people):
    """10 wrong secrets for a name from one address, then 429 with Retry-After for every call
    from there (the right secret too: a throttled guesser learns nothing); other names from the
    same address keep going until the address's own limit of 50."""
    codes = [(await post(http_client, base_url, "/api/cpu/usage_rate", {}, "office", f"guess{i}"))[0] for i in range(12)]
    assert codes == [401] * 10 + [429] * 2
    code, body, r = await post(http_client, base_url, "/api/cpu/usage_rate", {"agg": "all-namespace"}, "office", people["office"])
    assert code == 429 and int(r.headers["Retry-After"]) > 800 and "wrong credentials" in body["message"]
    codes = [(await post(http_client, base_url, "/api/cpu/usage_rate", {}, f"name{i}", "guess"))[0] for i in range(45)]
    assert codes.count(401) == 40 and codes[-5:] == [429] * 5  # 10 + 40 = the address's 50


def test_the_audit_table_escapes_control_characters():
    """A stored name or path with newlines or terminal escapes prints as one row, escaped."""
    from kubemonitor.audit import table
    rows = [{"time": "2026-12-02T10:00:00Z", "who": "api:evil\n2026-12-02T10:00:01Z  root  cli", "event": "api",
             "path": "/api/x\x1b[2J\r\u202e", "status": 401, "note": "a\tb\x9b"}]
    text = table(rows)
    assert len(text.splitlines()) == 2 and "\x1b" not in text and "\r" not in text and "\u202e" not in text
    assert "\\n2026" in text and "\\x1b[2J" in text and "\\u202e" in text and "\\x9b" in text


@pytest.mark.gen_test(timeout=60)
async def test_an_open_live_view_closes_when_its_user_is_deleted_or_their_password_changes(http_client, base_url, config):
    store = UserStore(config.users_file, rounds=4)
    for user, change in (("bio", lambda: store.set_password("bio", "a-new-password-1")),
                         ("astro", lambda: store.delete("astro"))):
        conn = await ws(base_url, await logged_in(http_client, base_url, user))
        send(conn, "subscribe", "cpu/usage_rate")
        await next_message(conn, "snapshot")
        change()
        deadline = time.monotonic() + 10
        while True:  # snapshots may still arrive until the next look at the users file (a second)
            assert time.monotonic() < deadline, "the socket stayed open"
            if await asyncio.wait_for(conn.read_message(), timeout=10) is None:
                break
        assert conn.close_code == 1008 and "session has ended" in conn.close_reason, user


@pytest.mark.gen_test(timeout=30)
async def test_a_socket_watching_nothing_closes_too_when_its_user_is_deleted(http_client, base_url, config):
    """Sessions are checked when the users file changes, not when a message happens to be
    sent: a quiet socket (no view, so nothing is ever delivered) closes all the same."""
    conn = await ws(base_url, await logged_in(http_client, base_url, "bio"))
    UserStore(config.users_file, rounds=4).delete("bio")
    assert await asyncio.wait_for(conn.read_message(), timeout=10) is None
    assert conn.close_code == 1008 and "session has ended" in conn.close_reason
