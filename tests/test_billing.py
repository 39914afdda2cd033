"""Billing statements against a month whose answers are known in closed form.

February 2026 (28 days, UTC rate card), one sample a minute, cpu/usage_rate and
memory/usage, Heapster's schema:

  astro-lab/a-1   cpu 1000 millicores (1 core), memory 2 GiB        group astro
  astro-dev/d-1   cpu 500                                             group astro
  bio-sim/b-1     cpu 2000                                            its own group
  kube-system/k-1 cpu 100                                             excluded: never billed
  =HYPERLINK("http://x")/evil-1   cpu 10 (a tag value Heapster would pass through)

A cluster-level series of cpu/usage_rate every minute except 2026-02-10 02:00-02:59.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import subprocess
import sys
import time

import pytest
from billing_data import CARD, DAYS, EVIL, FEB, card
from conftest import API_PASS, API_USER, WEB_PASS, WEB_USER, Browserless, serve_app

from kubemonitor import ratecard
from kubemonitor.times import NS


@pytest.fixture
def card_file(tmp_path):
    path = tmp_path / "billing.yaml"
    path.write_text(CARD)
    return str(path)


@pytest.fixture
def billing_app(make_app, month_db, card_file, running_influxd):
    import secrets
    return make_app(influxdb_db=month_db, billing_file=card_file, rollup_rp="t_" + secrets.token_hex(4))


@contextlib.asynccontextmanager
async def web_session(application, http_client):
    """The application served on a free port, and a client logged in as the web user."""
    base, server = await serve_app(application)
    try:
        b = Browserless(http_client, base)
        await b.login(WEB_USER, WEB_PASS)
        yield b
    finally:
        server.stop()


async def statement(http_client, base, body, raw=False):
    r = await http_client.fetch(base + "/api/billing/statement", method="POST", raise_error=False,
                                headers={"X-USERNAME": API_USER, "X-PASSWORD": API_PASS}, body=json.dumps(body))
    if raw:
        return r
    return r.code, (json.loads(r.body) if r.headers.get("Content-Type", "").startswith("application/json") else r.body)


@pytest.fixture
def served(billing_app, io_loop):
    from tornado.httpserver import HTTPServer
    from tornado.testing import bind_unused_port
    io_loop.run_sync(billing_app.rollups.prepare)
    sock, port = bind_unused_port()
    server = HTTPServer(billing_app)
    server.add_sockets([sock])
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.mark.gen_test(timeout=60)
async def test_the_months_statement_per_group_is_exact(served, http_client):
    code, s = await statement(http_client, served, {"period": "2026-02"})
    assert code == 200, s
    hours = DAYS * 24
    rows = {r["group"]: r for r in s["rows"]}
    assert set(rows) == {"astro", "bio-sim", EVIL}  # kube-system is excluded, never billed
    astro = rows["astro"]
    assert astro["name"] == "Astrophysics Lab" and astro["account"] == "CC-4711"
    assert astro["namespaces"] == ["astro-dev", "astro-lab"]
    assert astro["usage"] == {"cpu": 1.5 * hours, "memory": 2.0 * hours}
    assert astro["cost"] == {"cpu": 20.16, "memory": 5.38} and astro["total"] == 25.54  # 1008 x 0.02; 1344 x 0.004 = 5.376
    assert rows["bio-sim"]["usage"]["cpu"] == 2.0 * hours and rows["bio-sim"]["cost"]["cpu"] == 26.88
    assert s["totals"]["total"] == round(25.54 + 26.88 + rows[EVIL]["total"], 2)
    assert s["totals"]["cost"]["cpu"] == round(sum(r["cost"]["cpu"] for r in s["rows"]), 2)
    p = s["period"]
    assert (p["from"], p["to"], p["label"], p["timezone"]) == ("2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", "2026-02", "UTC")
    assert p["state"] == "closed" and p["revision"] == 1
    assert s["currency"] == "CHF" and [r["key"] for r in s["resources"]] == ["cpu", "memory"]
    # a missing collection hour: coverage (N-1)/N of the hours, and that gap listed first
    assert s["coverage"]["cpu"] == round((hours - 1) / hours, 6)
    assert s["gaps"][0] == {"from": "2026-02-10T02:00:00Z", "to": "2026-02-10T03:00:00Z", "node": None}  # no node named: the cluster's


@pytest.mark.gen_test(timeout=120)
async def test_the_days_add_up_to_the_month(served, http_client):
    _, month = await statement(http_client, served, {"period": "2026-02", "by": "namespace"})
    totals: dict = {}
    for day in range(1, DAYS + 1):
        code, s = await statement(http_client, served, {"period": f"2026-02-{day:02d}", "by": "namespace"})
        assert code == 200
        for row in s["rows"]:
            t = totals.setdefault(row["namespace"], {"cpu": 0.0, "cpu_cost": 0.0})
            t["cpu"] += row["usage"]["cpu"]
            t["cpu_cost"] += row["cost"]["cpu"]
    for row in month["rows"]:
        assert totals[row["namespace"]]["cpu"] == pytest.approx(row["usage"]["cpu"], abs=1e-9)  # usage always adds up
        if row["namespace"] != EVIL:  # cpu in whole cents a day (0.48, 0.24, 0.96): the costs add up too
            assert round(totals[row["namespace"]]["cpu_cost"], 2) == row["cost"]["cpu"]
    # evil-1 costs 0.0048 a day: each day's line rounds to 0.00, the month's to 0.13 (rounding is per line)
    evil = {r["namespace"]: r for r in month["rows"]}[EVIL]
    assert evil["cost"]["cpu"] == 0.13 and totals[EVIL]["cpu_cost"] == 0.0
    code, half = await statement(http_client, served, {"from": "2026-02-01", "to": "2026-02-14", "by": "namespace"})
    assert code == 200 and half["period"]["label"] == "2026-02-01..2026-02-14"
    assert {r["namespace"]: r["usage"]["cpu"] for r in half["rows"]}["bio-sim"] == 2.0 * 14 * 24


@pytest.mark.gen_test(timeout=60)
async def test_csv_adds_up_and_formulas_are_inert(served, http_client):
    r = await statement(http_client, served, {"period": "2026-02", "by": "namespace", "format": "csv"}, raw=True)
    assert r.code == 200 and r.headers["Content-Type"].startswith("text/csv")
    assert r.headers["Content-Disposition"] == 'attachment; filename="kubemonitor-2026-02-by-namespace.csv"'
    text = r.body.decode("utf-8")
    assert text.endswith("\r\n") and "\r\n" in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["period", "from", "to", "group", "name", "account", "namespace", "cpu_core-hours", "cpu_cost",
                             "memory_GiB-hours", "memory_cost", "total", "currency", "state", "revision", "computed_at",
                             "coverage", "cpu_coverage", "memory_coverage"]
    _, s = await statement(http_client, served, {"period": "2026-02", "by": "namespace"})
    # a file kept on its own still says how complete and which issue it is
    hours = 28 * 24
    assert {(row["state"], row["revision"], row["computed_at"]) for row in rows} == \
           {(s["period"]["state"], str(s["period"]["revision"]), s["period"]["computed_at"])}
    assert {row["cpu_coverage"] for row in rows} == {f"{(hours - 1) / hours:.6f}"}
    assert {row["coverage"] for row in rows} == {f"{min(s['coverage'].values()):.6f}"}
    assert round(sum(float(row["total"]) for row in rows), 2) == s["totals"]["total"]  # a spreadsheet's sum
    assert round(sum(float(row["cpu_cost"]) for row in rows), 2) == s["totals"]["cost"]["cpu"]
    evil = [row for row in rows if "HYPERLINK" in row["namespace"]]
    assert evil and all(cell.startswith("'=") for row in evil for cell in (row["namespace"], row["group"], row["name"]))
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row.values())
    assert all(row["cpu_core-hours"].count(".") == 1 and len(row["cpu_core-hours"].split(".")[1]) == 6 for row in rows)


@pytest.mark.gen_test(timeout=60)
async def test_a_closed_statement_never_changes_until_a_rebuild(served, http_client, billing_app, running_influxd, month_db,
                                                                tmp_path):
    first = (await statement(http_client, served, {"period": "2026-02"}, raw=True)).body
    running_influxd.write(month_db, [f"cpu/usage_rate,namespace_name=bio-sim,pod_name=late-1,type=pod value=999.0 {FEB + 86400}"],
                          precision="s")
    again = (await statement(http_client, served, {"period": "2026-02"}, raw=True)).body
    assert again == first  # byte for byte, late points or not
    config = billing_app.config
    r = subprocess.run([sys.executable, "-m", "kubemonitor", "rollup", "--rebuild", "--from", "2026-02-02", "--to", "2026-02-02",
                        "--influxdb-host", "127.0.0.1", "--influxdb-port", str(config.influxdb_port), "--influxdb-db",
                        month_db, "--rollup-rp", config.rollup_rp, "--billing-file", config.billing_file,
                        "--log-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    # the audit says a rebuild began (a killed one leaves that much) and, after the work, what it re-issued
    lines = [json.loads(x) for x in (tmp_path / "audit.log").read_text().splitlines()]
    rebuilds = [e for e in lines if e.get("action") == "rollup --rebuild"]
    assert [e["result"] for e in rebuilds] == ["started", "done"] and "2026-02" in rebuilds[1]["statements"].split(", ")
    rebuilt = json.loads((await statement(http_client, served, {"period": "2026-02"}, raw=True)).body)
    assert rebuilt["period"]["revision"] == 2
    bio = {row["group"]: row for row in rebuilt["rows"]}["bio-sim"]
    assert bio["usage"]["cpu"] == round(2.0 * DAYS * 24 + 999 / 1000 / 60, 6)
    running_influxd.query("DROP SERIES FROM \"cpu/usage_rate\" WHERE \"pod_name\" = 'late-1'", db=month_db)


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("body,words", [
    ({"period": "2026-13"}, ["'period'", "YYYY-MM"]),
    ({"period": "0000-10"}, ["'period'", "1678 to 2261"]),
    ({"from": "0001-01-01", "to": "0001-01-02"}, ["'from'", "1678 to 2261"]),
    ({"period": "2026-02-30"}, ["'period'", "not a real day"]),
    ({"from": "2026-02-10", "to": "2026-02-01"}, ["after 'to'"]),
    ({"from": "2025-01-01", "to": "2026-02-01"}, ["at most 366 days"]),
    ({"period": "2026-02", "by": "team"}, ["'by'", "group, namespace, pod"]),
    ({"period": "2026-02", "format": "xlsx"}, ["'format'", "json, csv"]),
    ({"period": "2026-02", "perod": 1}, ["unknown field", "'perod'"]),
    ({"period": "2099-01"}, ["has not begun"]),
    ({}, ["say which period"]),
    ({"period": "２０２６-02"}, ["'period'", "YYYY-MM"]),            # full-width digits are not digits here
    ({"period": "２０２６-02", "format": "csv"}, ["'period'", "YYYY-MM"]),
    ({"from": "2026-02-01", "to": "2026-02-١٠"}, ["'to'", "YYYY-MM-DD"]),
    ({"period": "2026-02", "from": "2026-02-01", "to": "2026-02-02"}, ["either"]),
])
async def test_bad_requests_name_the_field(served, http_client, body, words):
    code, s = await statement(http_client, served, body)
    assert code == 400, s
    assert all(w in s["message"] for w in words), s["message"]


@pytest.mark.gen_test(timeout=60)
async def test_the_first_and_last_months_influxdb_keeps_have_pages_without_links_beyond(billing_app, http_client, web_user):
    async with web_session(billing_app, http_client) as b:
        r = await b.fetch("/web/billing/1678-01")
        assert r.code == 200 and "Previous month" not in r.body.decode()
        assert (await b.fetch("/web/billing/1677-12")).code == 404


@pytest.mark.gen_test(timeout=60)
async def test_a_missing_metric_shows_zero_and_says_why(make_app, month_db, tmp_path, http_client):
    card = tmp_path / "gpu.yaml"
    card.write_text("resources:\n  gpu: {metric: gpu/usage, unit: GB-hours, divide_by: 1000, price: 0.05}\n")
    app = make_app(influxdb_db=month_db, billing_file=str(card))
    base, server = await serve_app(app)
    try:
        code, s = await statement(http_client, base, {"period": "2026-02"})
        assert code == 200 and s["coverage"] == {"gpu": 0.0} and s["rows"] == []
        assert "gpu/usage is not in the database" in s["notes"][0]
    finally:
        server.stop()


@pytest.mark.gen_test(timeout=60)
async def test_influxdb_down_is_503(served, http_client, running_influxd):
    import asyncio
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, running_influxd.stop)
    try:
        code, s = await statement(http_client, served, {"period": "2026-01"})
        assert code == 503 and "unreachable" in s["message"]
    finally:
        await loop.run_in_executor(None, running_influxd.start)




@pytest.mark.parametrize("text,words", [
    ("currency: CHF\n  bad: [", ["not valid YAML", "line 2"]),
    ("resources:\n  CPU: {metric: cpu/usage_rate, unit: core-hours}\n", ["line 2", "resource key 'CPU'"]),
    ("groups:\n  a: {nme: x, namespaces: [a]}\n", ["line 2", "unknown key 'nme' in group a", "name, account, namespaces"]),
    ("groups: [a]\n", ["line 1", "groups maps a key to {name, account, namespaces}"]),
    ("currency: CHF\nprices: 1\n", ["line 2", "unknown key 'prices'"]),
    ("resources:\n  cpu: {metric: CPU/Usage, unit: core-hours, divide_by: 1000, price: 1}\n", ["line 2", "unknown metric", "not a metric name"]),
    ("resources:\n  cpu: {metric: cpu/usage_rate, unit: core-hours, divide_by: 1000, price: -1}\n", ["line 2", "negative"]),
    ("timezone: Mars/Olympus\n", ["line 1", "unknown time zone"]),
    ("groups:\n  a: {namespaces: [x]}\n  b: {namespaces: [y, x]}\n", ["line 3", "in two groups"]),
])
def test_a_bad_rate_card_is_one_line_naming_file_and_line(tmp_path, text, words):
    path = tmp_path / "billing.yaml"
    path.write_text(text)
    with pytest.raises(ratecard.RateCardError) as info:
        ratecard.load(str(path))
    message = str(info.value)
    assert str(path) in message and "\n" not in message and all(w in message for w in words), message
    r = subprocess.run([sys.executable, "-m", "kubemonitor", "serve", "--billing-file", str(path), "--log-dir", str(tmp_path),
                        "--users-file", str(tmp_path / "u.yaml")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "Traceback" not in r.stderr and str(path) in r.stderr






@pytest.mark.gen_test(timeout=120)
async def test_coverage_from_rolled_up_hours_equals_coverage_from_raw_points(billing_app):
    from kubemonitor.billing import Billing
    from kubemonitor.heapster import Heapster
    from kubemonitor.metrics import of_source
    from kubemonitor.times import HOUR_NS
    cpu = of_source(Heapster(), "cpu/usage_rate")
    rollups = billing_app.rollups
    await rollups.prepare()
    first = (FEB + 9 * 86400) * NS - 3 * HOUR_NS  # 2026-02-09 21:00 .. 2026-02-10 06:00, around the missing hour
    for hour in range(first, first + 9 * HOUR_NS, HOUR_NS):
        await billing_app.rollup_writer.roll_up(cpu, hour)
    raw = Billing(billing_app.influx, billing_app.catalog, billing_app.billing.card, None, (), lambda m: 60 * NS)
    for begin, end in ((first, first + 9 * HOUR_NS), (first - 17 * 60 * NS, first + 9 * HOUR_NS + 5 * 60 * NS)):
        from_rollups = await billing_app.billing.coverage(cpu, begin, end)
        from_raw = await raw.coverage(cpu, begin, end)
        assert from_rollups == from_raw
        assert from_raw[1] == [((FEB + 9 * 86400 + 2 * 3600) * NS, (FEB + 9 * 86400 + 3 * 3600) * NS, None)]


@pytest.mark.gen_test(timeout=60)
async def test_a_kept_statement_outlives_its_raw_points(served, http_client, running_influxd, month_db, billing_app):
    """January: closed, kept, then its raw points expire (dropped here): the same bytes."""
    running_influxd.write(month_db, [f"cpu/usage_rate,namespace_name=jan-lab,pod_name=j-1,type=pod value=100.0 {FEB - 3600 * k}"
                                     for k in range(1, 61)], precision="s")
    first = (await statement(http_client, served, {"period": "2026-01"}, raw=True)).body
    assert json.loads(first)["rows"][0]["usage"]["cpu"] == 0.1  # 60 samples of 100 millicores
    running_influxd.query("DROP SERIES FROM \"cpu/usage_rate\" WHERE \"namespace_name\" = 'jan-lab'", db=month_db)
    assert (await statement(http_client, served, {"period": "2026-01"}, raw=True)).body == first
    # New prices apply to periods not yet kept: a closed period keeps the prices it was issued with.
    import dataclasses

    from kubemonitor.billing import Billing
    from kubemonitor.ratecard import period_from
    billing = billing_app.billing
    card = billing.card
    repriced = dataclasses.replace(card, resources=tuple(dataclasses.replace(r, price=(r.price or 0) * 10 + 1)
                                                         for r in card.resources))
    later = Billing(billing.influx, billing.catalog, repriced, billing.rollups, billing.excluded, billing.interval_ns)
    period = period_from({"period": "2026-01"}, repriced.timezone)
    assert (await later.statement(period, "group")).text == first.decode("utf-8")  # byte for byte


@pytest.mark.gen_test(timeout=60)
async def test_the_running_month_is_provisional_with_a_projection(billing_app, served, http_client, running_influxd, month_db):
    """The clock is pinned to the 15th, 12:00 UTC, of next month (hours no rollup has seen,
    points no other test writes): on the real 1st of a month, "the last two hours" began in
    the month before, and the test failed."""
    from datetime import UTC, datetime
    real = datetime.now(UTC)
    pinned = datetime(real.year + (real.month == 12), real.month % 12 + 1, 15, 12, tzinfo=UTC)
    now = int(pinned.timestamp())
    billing_app.billing.clock = lambda: now * NS
    running_influxd.write(month_db, [f"cpu/usage_rate,namespace_name=now-lab,pod_name=n-1,type=pod value=1000.0 {now - 60 * k}"
                                     for k in range(1, 121)], precision="s")
    try:
        code, s = await statement(http_client, served, {"period": pinned.strftime("%Y-%m")})
        assert code == 200 and s["period"]["state"] == "provisional"
        row = {r["group"]: r for r in s["rows"]}["now-lab"]
        assert row["usage"]["cpu"] == 2.0  # two hours of one core
        first = pinned.replace(day=1, hour=0)
        length_days = (first.replace(month=first.month % 12 + 1, year=first.year + (first.month == 12)) - first).days
        assert s["projection"]["factor"] == pytest.approx(length_days / 14.5, rel=1e-9)  # 14.5 days of the month gone
        assert s["projection"]["usage"]["cpu"] == pytest.approx(s["totals"]["usage"]["cpu"] * length_days / 14.5, rel=1e-3)
        after = pinned.replace(day=1, month=pinned.month % 12 + 1, year=pinned.year + (pinned.month == 12))
        code, later = await statement(http_client, served, {"period": after.strftime("%Y-%m")})
        assert code == 400 and "has not begun yet" in later["message"]  # by the pinned clock
    finally:
        running_influxd.query("DROP SERIES FROM \"cpu/usage_rate\" WHERE \"namespace_name\" = 'now-lab'", db=month_db)


def test_the_statement_command_prints_the_apis_document(billing_app, month_db):
    config = billing_app.config
    base = [sys.executable, "-m", "kubemonitor", "statement", "--influxdb-host", "127.0.0.1", "--influxdb-port",
            str(config.influxdb_port), "--influxdb-db", month_db, "--billing-file", config.billing_file,
            "--rollup-rp", config.rollup_rp]
    r = subprocess.run([*base, "--period", "2026-02", "--by", "namespace", "--csv"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert {row["namespace"] for row in rows} >= {"astro-lab", "astro-dev", "bio-sim"} and rows[0]["period"] == "2026-02"
    r = subprocess.run([*base, "--period", "2026-02"], capture_output=True, text=True, timeout=120)
    assert json.loads(r.stdout)["rows"][0]["group"] in ("astro", "bio-sim", EVIL)
    r = subprocess.run([*base, "--period", "2026-13"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--period" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.gen_test(timeout=60)
async def test_the_billing_page_says_so_when_influxdb_is_down(billing_app, http_client, web_user, running_influxd):
    import asyncio

    from conftest import WEB_PASS, WEB_USER, Browserless
    base, server = await serve_app(billing_app)
    b = Browserless(http_client, base)
    await b.login(WEB_USER, WEB_PASS)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, running_influxd.stop)
    try:
        r = await b.fetch("/web/billing/2026-01")
        assert r.code == 503 and "cannot be computed now" in r.body.decode() and "unreachable" in r.body.decode()
    finally:
        await loop.run_in_executor(None, running_influxd.start)
        server.stop()


RR_CARD = card("  rr: {name: Rounding Lab, account: RR-1, namespaces: [rr-a, rr-b, rr-c]}\n", "cpu")
RR_DAY = 1765756800  # 2025-12-15T00:00:00Z: closed, and apart from February's data


def rr_billing(billing_app, tmp_path, card_text=RR_CARD):
    from kubemonitor.billing import Billing
    path = tmp_path / f"rr-{len(card_text)}.yaml"
    path.write_text(card_text)
    billing = billing_app.billing
    return Billing(billing.influx, billing.catalog, ratecard.load(str(path)), billing.rollups, billing.excluded,
                   billing.interval_ns)


@pytest.mark.gen_test(timeout=60)
async def test_every_view_adds_up_to_the_same_cents(served, running_influxd, month_db, billing_app, tmp_path):
    """Three namespaces, one pod each, 0.555 CHF each: by pod, rounding each line gave
    3 x 0.56 = 1.68 where the group line is 1.665 -> 1.67. Largest remainder splits the
    group's 1.67 into 0.56 + 0.56 + 0.55 in every view."""
    from kubemonitor.ratecard import period_from
    running_influxd.write(month_db, [f"cpu/usage_rate,namespace_name={ns},pod_name={ns}-pod,type=pod value=27750.0 "
                                     f"{RR_DAY + 60 * k}" for ns in ("rr-a", "rr-b", "rr-c") for k in range(60)],
                          precision="s")
    billing = rr_billing(billing_app, tmp_path)
    period = period_from({"period": "2025-12-15"}, "UTC")
    views = {by: (await billing.statement(period, by)).data for by in ("group", "namespace", "pod")}
    (group,) = views["group"]["rows"]
    assert group["usage"]["cpu"] == 83.25 and group["cost"]["cpu"] == 1.67 and group["total"] == 1.67
    for by in ("namespace", "pod"):
        rows = views[by]["rows"]
        assert sorted(row["cost"]["cpu"] for row in rows) == [0.55, 0.56, 0.56], by
        assert sum(round(row["total"] * 100) for row in rows) == 167, by
        assert views[by]["totals"] == views["group"]["totals"], by
    assert {row["namespace"]: row["cost"] for row in views["namespace"]["rows"]} == \
           {row["namespace"]: row["cost"] for row in views["pod"]["rows"]}


@pytest.mark.gen_test(timeout=60)
async def test_one_closed_period_keeps_one_snapshot_for_every_view(served, running_influxd, month_db, billing_app, tmp_path):
    """Kept by group first, then the prices change: the same day by namespace and by pod
    still carries the prices, revision and time it was issued with."""
    from kubemonitor.ratecard import period_from
    day = RR_DAY + 86400
    running_influxd.write(month_db, [f"cpu/usage_rate,namespace_name=rr-a,pod_name=rr-a-pod,type=pod value=6000.0 "
                                     f"{day + 60 * k}" for k in range(60)], precision="s")
    period = period_from({"period": "2025-12-16"}, "UTC")
    first = (await rr_billing(billing_app, tmp_path).statement(period, "group")).data
    assert first["period"]["state"] == "closed" and first["totals"]["total"] == 0.12  # 6 core-hours x 0.02
    repriced = rr_billing(billing_app, tmp_path, RR_CARD.replace("price: 0.020", "price: 0.5"))
    for by in ("namespace", "pod"):
        later = (await repriced.statement(period, by)).data
        assert later["resources"] == first["resources"] and later["totals"] == first["totals"], by
        assert later["period"] == first["period"], by


@pytest.mark.gen_test(timeout=120)
async def test_the_page_names_a_four_hour_outage_in_a_month(billing_app, http_client, web_user, running_influxd, month_db):
    """October 2025 (744 hours) with four hours missing is 99.46 % coverage: above 99 %,
    yet the banner must say so (any gap over max(3 intervals, 0.1 % of the period)), and
    the page always shows the coverage."""
    oct_start = 1759276800  # 2025-10-01T00:00:00Z
    outage = (oct_start + 10 * 86400 + 8 * 3600, oct_start + 10 * 86400 + 12 * 3600)
    lines = []
    for i in range(31 * 1440):
        t = oct_start + i * 60
        if not outage[0] <= t < outage[1]:
            lines.append(f"cpu/usage_rate,type=cluster value=1000.0 {t}")
            lines.append(f"cpu/usage_rate,namespace_name=oct-lab,pod_name=o-1,type=pod value=1000.0 {t}")
            lines.append(f"memory/usage,type=cluster value=1000i {t}")
    for start in range(0, len(lines), 50_000):
        running_influxd.write(month_db, lines[start:start + 50_000], precision="s")
    async with web_session(billing_app, http_client) as b:
        page = (await b.fetch("/web/billing/2025-10")).body.decode()
        assert 'id="coverage-banner"' in page and "cpu 99.46 %" in page
        import re
        page = re.sub(r"\s+", " ", page)
        assert "1 gap of data: 2025-10-11 08:00 to 2025-10-11 12:00 (4.0 h)" in page  # the card's zone (UTC), one format
        assert 'id="coverage"' in page
        day = (await b.fetch("/web/billing/2025-10-12")).body.decode()
        assert 'id="coverage-banner"' not in day and "cpu 100.00 %" in day
        running_influxd.query("DROP SERIES FROM \"cpu/usage_rate\" WHERE \"namespace_name\" = 'oct-lab'", db=month_db)
        for measurement in ("cpu/usage_rate", "memory/usage"):
            running_influxd.query(f"DELETE FROM \"{measurement}\" WHERE time >= {oct_start}s AND time < {oct_start + 31 * 86400}s",
                                  db=month_db)


@pytest.mark.gen_test(timeout=60)
async def test_a_drill_down_downloads_its_own_rows_with_a_subtotal(billing_app, http_client, web_user):
    async with web_session(billing_app, http_client) as b:
        page = (await b.fetch("/web/billing/2026-02?by=pod&namespace=astro-lab")).body.decode()
        assert 'id="statement-subtotal"' in page and 'id="statement-total"' not in page
        assert 'aria-current="true">by pod' in page
        href = page.split('class="download" href="')[1].split('"')[0].replace("&amp;", "&")
        assert "namespace=astro-lab" in href
        rows = list(csv.DictReader(io.StringIO((await b.fetch(href)).body.decode())))
        assert [row["namespace"] for row in rows] == ["astro-lab"] and rows[0]["pod"] == "a-1"
        everything = list(csv.DictReader(io.StringIO((await b.fetch("/web/billing/2026-02.csv?by=pod")).body.decode())))
        assert len(everything) > len(rows)


@pytest.mark.gen_test(timeout=60)
async def test_a_months_statement_queues_for_busy_connections_instead_of_failing(billing_app, config, card_file):
    """Every connection to InfluxDB is taken for 2 s (two real, slow calls on a lane of
    two): the month's statement waits for them and is computed; it was a 503 "InfluxDB is
    busy" after 1 s. An ordinary API call is still refused early (it does not pile up)."""
    import asyncio
    import time as clock

    from kubemonitor.app import KubeMonitorApp
    from kubemonitor.influx import InfluxError, InfluxGateway
    from kubemonitor.ratecard import period_from
    from kubemonitor.services import Services
    narrow = InfluxGateway(billing_app.config, workers=2)
    app = KubeMonitorApp(Services(billing_app.config, influx=narrow))
    try:
        await app.rollups.prepare()
        period = period_from({"period": "2026-02"}, "UTC")
        busy = [asyncio.ensure_future(narrow.call(lambda client: clock.sleep(2.0))) for _ in range(2)]
        await asyncio.sleep(0.05)
        waited = asyncio.ensure_future(app.billing.statement(period, "namespace", now_ns=int(clock.time() * NS)))
        with pytest.raises(InfluxError) as refused:
            await narrow.query("SHOW MEASUREMENTS")
        assert refused.value.status == 503
        s = (await waited).data
        assert {r["namespace"]: r["usage"]["cpu"] for r in s["rows"]}["bio-sim"] == 2.0 * DAYS * 24
        await asyncio.gather(*busy)
        # the statement took at most half the lane: an API call meanwhile still found a thread
        month = asyncio.ensure_future(app.billing.statement(period_from({"period": "2026-01"}, "UTC"), "group"))
        await asyncio.sleep(0.01)
        assert await narrow.query("SHOW MEASUREMENTS")
        await month
    finally:
        await app.shutdown()


@pytest.mark.gen_test(timeout=60)
async def test_the_running_months_daily_bars_add_up_to_its_table(billing_app, running_influxd, month_db):
    """Two hours of one core today, one of them rolled up: the bars counted only the
    rolled-up hour (the issue's 56.89 CHF bar under a 58.06 table); the rest now comes from
    raw points, so the day's bar is the table's line. The legend has the groups' names.
    The clock is pinned to 12:30 UTC on the 15th of next month, whatever today is."""
    from datetime import UTC, datetime

    from kubemonitor.ratecard import current_month
    from kubemonitor.times import HOUR_NS
    real = datetime.now(UTC)
    pinned = datetime(real.year + (real.month == 12), real.month % 12 + 1, 15, 12, 30, tzinfo=UTC)
    now = int(pinned.timestamp()) * NS
    billing_app.billing.clock = lambda: now
    await billing_app.rollups.prepare()
    first = now // HOUR_NS * HOUR_NS - HOUR_NS  # 11:00
    running_influxd.write(month_db, [f"cpu/usage_rate,namespace_name=astro-lab,pod_name=day-1,type=pod value=1000.0 "
                                     f"{first + 60 * NS * k}" for k in range(90)], precision="n")  # 11:00 to 12:29
    try:
        metric = billing_app.catalog.resolve_cached("cpu/usage_rate")
        await billing_app.rollup_writer.roll_up(metric, first)  # the first hour is rolled up, the current one is not
        period = current_month("UTC", pinned)
        daily = await billing_app.billing.daily(period)
        statement = (await billing_app.billing.statement(period, "group")).data
        astro = {r["group"]: r for r in statement["rows"]}["astro"]
        assert astro["usage"]["cpu"] == 1.5  # 90 minutes of one core
        bar = daily["groups"]["astro"][daily["days"].index(pinned.strftime("%Y-%m-%d"))]
        assert bar == pytest.approx(1.5 * 0.02, abs=1e-4)  # the table's line; the rolled-up hour alone is 0.02
        assert daily["names"]["astro"] == "Astrophysics Lab"
    finally:
        running_influxd.query("DROP SERIES FROM \"cpu/usage_rate\" WHERE \"pod_name\" = 'day-1'", db=month_db)


@pytest.mark.gen_test(timeout=60)
async def test_the_running_month_without_prices_projects_its_usage(make_app, month_db, http_client, web_user, running_influxd):
    """Without a rate card the page read "Projected to the end of the period: ." - now the
    projected usage of each resource, and why there is no amount."""
    import re
    import time as clock

    now = int(clock.time()) // 60 * 60
    running_influxd.write(month_db, [f"cpu/usage_rate,namespace_name=now-lab,pod_name=n-1,type=pod value=1000.0 {now - 60 * k}"
                                     for k in range(1, 61)], precision="s")
    app = make_app(influxdb_db=month_db)  # no rate card
    async with web_session(app, http_client) as b:
        page = re.sub(r"\s+", " ", (await b.fetch("/web/billing")).body.decode())
        projected = re.search(r"Projected to the end of the period: <strong>([^<]*)</strong>([^<.]*)\.", page)
        assert projected, page[page.find("statement-state"):][:600]
        assert re.match(r"\d+\.\d\d core-hours, \d+\.\d\d GiB-hours, \d+\.\d\d GB-hours$", projected.group(1))
        assert "no prices" in projected.group(2)
        running_influxd.query("DROP SERIES FROM \"cpu/usage_rate\" WHERE \"namespace_name\" = 'now-lab'", db=month_db)




@pytest.mark.gen_test(timeout=60)
async def test_concurrent_callers_of_an_unkept_closed_period_share_one_computation(billing_app):
    """Four callers at once of a closed period nobody kept yet: one computation, one kept
    statement, and every caller's body is the kept one."""
    import asyncio

    from kubemonitor.ratecard import period_from
    billing = billing_app.billing
    await billing_app.rollups.prepare()  # rollups on: a closed period can be kept
    calls, compute = [], billing.compute

    async def counted(period, *args, **kwargs):
        calls.append(period.label)
        return await compute(period, *args, **kwargs)
    billing.compute = counted
    period = period_from({"period": "2026-02-22"}, billing.card.timezone)
    bodies = [s.text for s in await asyncio.gather(*(billing.statement(period, by)
                                                     for by in ("group", "namespace", "pod", "group")))]
    assert calls == ["2026-02-22"]
    assert bodies[0] == bodies[3] == (await billing.statement(period, "group")).text  # byte for byte
    assert bodies[1] == (await billing.statement(period, "namespace")).text
    assert {json.loads(b)["period"]["revision"] for b in bodies} == {1}


@pytest.mark.gen_test(timeout=60)
async def test_only_months_and_days_are_kept(billing_app):
    """Any other closed range is computed on request and never kept, so no caller can make
    the server keep one statement per distinct from/to pair; it says so, and is not 'closed'."""
    from kubemonitor.kept import kept_key
    from kubemonitor.ratecard import period_from
    billing = billing_app.billing
    await billing_app.rollups.prepare()
    for first, last in (("2026-02-03", "2026-02-05"), ("2026-02-03", "2026-02-06")):
        period = period_from({"from": first, "to": last}, billing.card.timezone)
        body = (await billing.statement(period, "group")).data
        assert body["period"]["state"] == "ended" and any("only months and days are kept" in n for n in body["notes"])
        for by in ("group", "namespace", "pod"):
            assert await billing.kept.load(kept_key(period, by)) is None
    day = period_from({"period": "2026-02-04"}, billing.card.timezone)
    assert (await billing.statement(day, "group")).data["period"]["state"] == "closed"
    assert await billing.kept.load(kept_key(day, "group")) is not None


@pytest.mark.gen_test(timeout=60)
async def test_a_web_users_billing_pages_share_the_per_client_cap(billing_app, http_client, web_user):
    """A web user with KUBEMONITOR_CLIENT_CONCURRENCY pages being computed gets a 429 for the
    next one (after waiting a second for a slot), like an API client."""
    async with web_session(billing_app, http_client) as b:
        slots, who = billing_app.client_slots, f"web:{WEB_USER}"
        for _ in range(billing_app.config.client_concurrency):  # as if that many were being computed
            assert await slots.acquire(who)
        r = await b.fetch("/web/billing/2026-01")
        assert r.code == 429 and r.headers["Retry-After"] == "1" and "KUBEMONITOR_CLIENT_CONCURRENCY" in r.body.decode()
        slots.release(who)
        assert (await b.fetch("/web/billing/2026-01")).code == 200
        assert slots.running(who) == billing_app.config.client_concurrency - 1  # the page gave its slot back


@pytest.mark.gen_test(timeout=60)
async def test_a_statement_says_how_many_negative_samples_it_left_out(billing_app, running_influxd, month_db):
    from kubemonitor.ratecard import period_from
    billing = billing_app.billing
    t = FEB + 24 * 86400 + 3600  # 2026-02-25 01:00 UTC
    running_influxd.write(month_db, [f"cpu/usage_rate,namespace_name=bio-sim,pod_name=faulty-1,type=pod value=-400.0 {t}"],
                          precision="s")
    try:
        day = period_from({"period": "2026-02-25"}, billing.card.timezone)
        body = (await billing.statement(day, "pod")).data
        assert any("1 sample(s) of cpu/usage_rate below 0" in n for n in body["notes"]), body["notes"]
        assert all(row["usage"]["cpu"] >= 0 for row in body["rows"]) and "faulty-1" not in {r["pod"] for r in body["rows"]}
    finally:
        running_influxd.query("DROP SERIES FROM \"cpu/usage_rate\" WHERE \"pod_name\" = 'faulty-1'", db=month_db)


@pytest.mark.gen_test(timeout=60)
async def test_statements_never_queue_behind_the_rollup_task(make_app, month_db, card_file):
    """The background lane is the rollup task's: with both its threads busy, a statement
    (its coverage and daily sums read from the rollups) is still computed."""
    import asyncio
    import secrets

    from kubemonitor.ratecard import period_from
    app = make_app(influxdb_db=month_db, billing_file=card_file, rollup_rp="t_" + secrets.token_hex(4), influxdb_timeout=2.0)
    await app.rollups.prepare()
    busy = [asyncio.ensure_future(app.influx.call(lambda client: time.sleep(4), kind="rollup", lane="background"))
            for _ in range(2)]
    await asyncio.sleep(0.2)  # both background threads are taken
    try:
        day = period_from({"period": "2026-02-03"}, app.billing.card.timezone)
        body = (await app.billing.statement(day, "group")).data
        assert body["coverage"]["cpu"] == 1.0
    finally:
        await asyncio.gather(*busy, return_exceptions=True)


@pytest.mark.gen_test(timeout=120)
async def test_a_statement_reads_what_the_rollups_keep_once_per_resource(billing_app):
    """The rolled-up hours and days are read once per resource, for both usage and coverage
    (three reads each before), and the numbers are those of a statement from raw points."""
    from kubemonitor.billing import Billing
    from kubemonitor.heapster import Heapster
    from kubemonitor.metrics import of_source
    from kubemonitor.ratecard import period_from
    from kubemonitor.times import HOUR_NS
    rollups = billing_app.rollups
    await rollups.prepare()
    first = (FEB + 9 * 86400) * NS
    for metric in ("cpu/usage_rate", "memory/usage"):
        for hour in range(first, first + 30 * HOUR_NS, HOUR_NS):  # 2026-02-09 whole, and 6 hours of the 10th
            await billing_app.rollup_writer.roll_up(of_source(Heapster(), metric), hour)
    period = period_from({"from": "2026-02-08", "to": "2026-02-11"}, "UTC")
    registry = billing_app.telemetry.registry

    def calls(kind: str) -> float:
        return registry.get_sample_value("kubemonitor_influxdb_query_duration_seconds_count", {"kind": kind}) or 0.0
    before = {kind: calls(kind) for kind in ("rollup", "coverage")}
    body = (await billing_app.billing.statement(period, "group")).data
    assert calls("rollup") - before["rollup"] == 2  # one per resource: hours and days in one query
    assert calls("coverage") - before["coverage"] == 2 * 2  # before the kept hours, and after them
    raw = Billing(billing_app.influx, billing_app.catalog, billing_app.billing.card, None, billing_app.billing.excluded,
                  billing_app.billing.interval_ns)
    from_raw = (await raw.statement(period, "group")).data
    assert body["totals"] == from_raw["totals"] and body["coverage"] == from_raw["coverage"]
    assert body["gaps"] == from_raw["gaps"]


@pytest.mark.gen_test(timeout=60)
async def test_a_clients_statements_are_computed_one_at_a_time(served, http_client, billing_app):
    """Four year-long statements of one client at once took the CPU everyone's small queries
    need: a client's next statement waits up to a second for the running one, then is a 429."""
    slots = billing_app.statement_slots
    assert await slots.acquire(API_USER)  # as if one of its statements were being computed
    code, body = await statement(http_client, served, {"from": "2026-02-01", "to": "2026-02-03"})
    assert code == 429 and "one at a time" in body["message"]
    slots.release(API_USER)
    code, body = await statement(http_client, served, {"from": "2026-02-01", "to": "2026-02-03"})
    assert code == 200 and body["rows"] and slots.running(API_USER) == 0  # it gave its turn back
