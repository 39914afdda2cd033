"""A real browser: Debian's Chromium driven by Playwright against `kubemonitor serve`."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from conftest import WEB_PASS, WEB_USER

from kubemonitor.influxd import free_port, wait_for_http
from kubemonitor.users import UserStore

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
                                 reason="Debian's chromium is not installed (apt-get install chromium)")]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture
def server(running_influxd, scratch_db, tmp_path):
    users = tmp_path / "users.yaml"
    UserStore(str(users), rounds=4).add(WEB_USER, "alice@example.org", WEB_PASS)
    port = free_port()
    env = {**os.environ, "INFLUXDB_HOST": "127.0.0.1", "INFLUXDB_PORT": str(running_influxd.http_port),
           "INFLUXDB_DB": scratch_db, "KUBEMONITOR_USERS_FILE": str(users), "KUBEMONITOR_LOG_DIR": str(tmp_path),
           "KUBEMONITOR_POLL_INTERVAL": "1", "KUBEMONITOR_COOKIE_SECRET": "browser-test-" + "s" * 40,
           "KUBEMONITOR_ADDRESS": "127.0.0.1"}
    served = Served(port, env)
    yield served
    served.stop()


class Served:
    """`kubemonitor serve` in its own process; can be restarted on the same port."""

    def __init__(self, port, env):
        self.port, self.env = port, env
        self.url = f"http://127.0.0.1:{port}" + env.get("KUBEMONITOR_URL_PREFIX", "")
        self.start()

    def start(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "kubemonitor", "serve", str(self.port)], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_http(self.url + "/healthz", self.proc)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=15)



@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.errors = errors
        yield pg
        browser.close()


def write_pod(influxd, db, namespace, pod, containers, t):
    lines = [f"cpu/usage_rate,namespace_name={namespace},pod_name={pod},container_name={c},nodename=node-7,"
             f"type=pod_container value={v} {t}" for c, v in containers.items()]
    lines.append(f"cpu/usage_rate,namespace_name={namespace},pod_name={pod},nodename=node-7,type=pod "
                 f"value={sum(containers.values())} {t}")
    influxd.write(db, lines)


def test_log_in_see_chart_and_table_and_a_new_point_arrives_without_reload(server, page, running_influxd, scratch_db):
    now = time.time_ns()
    for k in range(10):  # the last ten minutes of one pod
        write_pod(running_influxd, scratch_db, "team-a", "web-1", {"nginx": 300.0, "sidecar": 200.0}, now - k * 60 * 10**9)
    page.goto(server.url + "/web/stats/cpu/usage_rate/team-a")
    assert "/web/login" in page.url  # sent to the login form first, with next
    page.fill("input[name=username]", WEB_USER)
    page.fill("input[name=password]", WEB_PASS)
    page.click("button[type=submit]")
    page.wait_for_url("**/web/stats/cpu/usage_rate/team-a")
    # the first paint already has the table; the chart is drawn by uPlot; the socket goes live
    assert page.locator("table.latest tbody tr").count() == 2
    page.wait_for_selector(".uplot canvas", timeout=10_000)
    page.wait_for_selector("#conn-state.state-live", timeout=10_000)
    # one unit per column, named in its header
    assert page.inner_text("table.latest th[data-value-header]") == "Value (millicores)"
    assert page.locator("table.latest tbody td.num", has_text="300").count() == 1
    page.evaluate("window.__notReloaded = true")

    write_pod(running_influxd, scratch_db, "team-a", "browser-pod-1", {"app": 77.0}, time.time_ns())
    page.wait_for_selector("table.latest td:has-text('browser-pod-1')", timeout=10_000)
    assert page.evaluate("window.__notReloaded") is True
    assert page.locator("table.latest tbody td.num", has_text="77.0").count() == 1
    # a pod at 4.5 cores: the whole column turns to cores (it was "4.50 cores" above "300 millicores")
    write_pod(running_influxd, scratch_db, "team-a", "big-pod-1", {"app": 4500.0}, time.time_ns())
    page.wait_for_selector("table.latest td:has-text('big-pod-1')", timeout=10_000)
    assert page.inner_text("table.latest th[data-value-header]") == "Value (cores)"
    values = page.eval_on_selector_all("table.latest tbody td.num", "tds => tds.map(td => td.textContent)")
    assert "4.50" in values and "0.30" in values and not any("millicores" in v or "cores" in v for v in values)
    assert page.locator(".uplot .u-legend").inner_text().count("browser-pod-1") >= 1
    assert page.errors == []


def test_the_dashboard_works_under_a_url_prefix(running_influxd, scratch_db, tmp_path, page):
    """Behind an ingress at /kubemonitor/: log in, go live, follow the sidebar and the picker,
    log out, and the browser never leaves the prefix (every request it makes is under it)."""
    users = tmp_path / "users.yaml"
    UserStore(str(users), rounds=4).add(WEB_USER, "alice@example.org", WEB_PASS)
    env = {**os.environ, "INFLUXDB_HOST": "127.0.0.1", "INFLUXDB_PORT": str(running_influxd.http_port),
           "INFLUXDB_DB": scratch_db, "KUBEMONITOR_USERS_FILE": str(users), "KUBEMONITOR_LOG_DIR": str(tmp_path),
           "KUBEMONITOR_POLL_INTERVAL": "1", "KUBEMONITOR_COOKIE_SECRET": "browser-test-" + "s" * 40,
           "KUBEMONITOR_ADDRESS": "127.0.0.1", "KUBEMONITOR_URL_PREFIX": "/kubemonitor"}
    served = Served(free_port(), env)
    requested, sockets = [], []
    page.on("request", lambda request: requested.append(request.url))
    page.on("websocket", lambda socket: sockets.append(socket.url))
    try:
        write_pod(running_influxd, scratch_db, "team-p", "prefixed-1", {"app": 42.0}, time.time_ns())
        page.goto(served.url + "/web/stats/cpu/usage_rate/team-p")
        assert "/kubemonitor/web/login?next=" in page.url
        page.fill("input[name=username]", WEB_USER)
        page.fill("input[name=password]", WEB_PASS)
        page.click("button[type=submit]")
        page.wait_for_url("**/kubemonitor/web/stats/cpu/usage_rate/team-p")
        page.wait_for_selector("#conn-state.state-live", timeout=10_000)
        page.wait_for_selector(".uplot canvas", timeout=10_000)  # the chart library came from the prefixed /static
        write_pod(running_influxd, scratch_db, "team-p", "prefixed-2", {"app": 7.0}, time.time_ns())
        page.wait_for_selector("table.latest td:has-text('prefixed-2')", timeout=10_000)  # live over the prefixed socket
        page.click("#sidebar a:has-text('Overview')")
        page.wait_for_url("**/kubemonitor/web/stats/index")
        page.select_option("#picker-metric", "memory/usage")
        page.click("#picker button[type=submit]")
        page.wait_for_url("**/kubemonitor/web/stats/memory/usage")
        page.click("#sidebar button:has-text('Log out')")
        page.wait_for_url("**/kubemonitor/web/login")
        origin = served.url.removesuffix("/kubemonitor")
        assert requested and all(u.startswith(served.url + "/") for u in requested if u.startswith(origin)), requested
        assert sockets and set(sockets) == {served.url.replace("http://", "ws://") + "/web/live"}, sockets
        assert page.errors == []
    finally:
        served.stop()


def test_the_page_reconnects_by_itself_after_a_server_restart(server, page, running_influxd, scratch_db):
    write_pod(running_influxd, scratch_db, "team-r", "steady-1", {"app": 5.0}, time.time_ns())
    page.goto(server.url + "/web/login?next=/web/stats/cpu/usage_rate/team-r")
    page.fill("input[name=username]", WEB_USER)
    page.fill("input[name=password]", WEB_PASS)
    page.click("button[type=submit]")
    page.wait_for_url("**/web/stats/cpu/usage_rate/team-r")
    page.wait_for_selector("#conn-state.state-live", timeout=10_000)
    page.evaluate("window.__notReloaded = true")
    server.stop()
    page.wait_for_selector("#conn-state.state-offline", timeout=10_000)
    server.start()  # same port, same cookie secret: the session is still good
    page.wait_for_selector("#conn-state.state-live", timeout=20_000)
    write_pod(running_influxd, scratch_db, "team-r", "after-restart-1", {"app": 9.0}, time.time_ns())
    page.wait_for_selector("table.latest td:has-text('after-restart-1')", timeout=10_000)
    assert page.evaluate("window.__notReloaded") is True


def test_overview_shows_namespaces_and_logout(server, page, running_influxd, scratch_db):
    for t in (time.time_ns() - 60 * 10**9, time.time_ns()):  # the overview shows the newest minute that has ended
        write_pod(running_influxd, scratch_db, "team-a", "web-1", {"nginx": 300.0}, t)
        running_influxd.write(scratch_db, f"gpu/usage,namespace_name=team-gpu,pod_name=train-1,container_name=trainer,"
                                          f"nodename=node-3,type=pod_container value=8000 {t}")
    page.goto(server.url + "/web/login")
    page.fill("input[name=username]", WEB_USER)
    page.fill("input[name=password]", WEB_PASS)
    page.click("button[type=submit]")
    page.wait_for_url("**/web/stats/index")
    cards = page.locator("section.card")
    assert cards.count() == 3
    assert "team-a" in cards.nth(0).inner_text()
    page.select_option("#picker-metric", "gpu/usage")
    page.select_option("#picker-namespace", "team-gpu")
    page.click("#picker button[type=submit]")
    page.wait_for_url("**/web/stats/gpu/usage/team-gpu")
    assert "train-1" in page.inner_text("table.latest")
    page.click("text=Log out")
    page.wait_for_url("**/web/login")
    page.goto(server.url + "/web/stats/index")
    assert "/web/login" in page.url
    assert page.errors == []


def test_odd_namespace_names_get_no_link_and_show_hidden_characters(server, page, running_influxd, scratch_db):
    """A tag value that is no Kubernetes namespace name ("../../billing/...", a zero-width
    look-alike of team-a) is listed without a link, its hidden characters escaped."""
    for t in (time.time_ns() - 60 * 10**9, time.time_ns()):
        for ns in ("team-a", "../../billing/2026-11?by\\=pod#", "team\u200b-a"):
            write_pod(running_influxd, scratch_db, ns, "web-1", {"nginx": 300.0}, t)
    log_in(page, server, "/web/stats/index")
    card = page.locator("section.card").nth(0)
    card.locator("span.odd-name").nth(1).wait_for()
    odd = sorted(card.locator("span.odd-name").all_inner_texts())
    assert odd == ["../../billing/2026-11?by=pod#", "team\\u200b-a"], odd
    hrefs = card.locator("a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert any(h.endswith("/cpu/usage_rate/team-a") for h in hrefs) and not any("billing" in h for h in hrefs), hrefs
    assert page.errors == []


def log_in(page, server, path):
    page.goto(server.url + "/web/login?next=" + path)
    page.fill("input[name=username]", WEB_USER)
    page.fill("input[name=password]", WEB_PASS)
    page.click("button[type=submit]")
    page.wait_for_url("**" + path)


def minutes_of(influxd, db, namespace, pod, containers, minutes=20, metric="cpu/usage_rate", with_pod=True):
    now = time.time_ns()
    lines = []
    for k in range(minutes):
        t = now - k * 60 * 10**9
        for c, v in containers.items():
            lines.append(f"{metric},namespace_name={namespace},pod_name={pod},container_name={c},nodename=node-7,"
                         f"type=pod_container value={v} {t}")
        if with_pod:
            lines.append(f"{metric},namespace_name={namespace},pod_name={pod},nodename=node-7,type=pod "
                         f"value={sum(containers.values())} {t}")
    influxd.write(db, lines)


def test_range_selector_and_a_container_only_pod_in_the_chart(server, page, running_influxd, scratch_db):
    minutes_of(running_influxd, scratch_db, "team-a", "web-1", {"nginx": 1500.0, "sidecar": 700.0})
    minutes_of(running_influxd, scratch_db, "team-a", "only-containers-1", {"main": 400.0, "side": 100.0}, with_pod=False)
    log_in(page, server, "/web/stats/cpu/usage_rate/team-a")
    page.wait_for_selector(".uplot canvas", timeout=10_000)
    legend = page.locator(".u-legend").inner_text()
    assert "only-containers-1" in legend and "web-1" in legend  # drawn, as the API counts it
    # the axis carries its unit: 2.2 cores at the top, so the axis is in cores, with round ticks
    axis = page.evaluate("(() => { const u = window.kubemonitorLive.views[0].chart; "
                         "return {label: u.axes[1].label, values: u.axes[1]._values}; })()")
    assert axis["label"] == "cores", axis
    assert axis["values"] and all(re.fullmatch(r"\d+(\.\d)?", v) for v in axis["values"]), axis
    assert "Times in" in page.inner_text(".live-bar") and page.inner_text("#tz")  # one zone, named
    page.click(".ranges a:has-text('24h')")
    page.wait_for_url("**/web/stats/cpu/usage_rate/team-a?range=24h")
    page.wait_for_selector(".uplot canvas", timeout=10_000)
    page.wait_for_selector("#conn-state.state-live", timeout=10_000)
    assert page.evaluate("window.kubemonitorLive.views[0].snapshot.range") == "24h"
    assert page.locator(".ranges a.active").inner_text() == "24h"
    # a new point still arrives live in the 24 h view
    write_pod(running_influxd, scratch_db, "team-a", "late-pod-1", {"app": 33.0}, time.time_ns())
    page.wait_for_selector("table.latest td:has-text('late-pod-1')", timeout=10_000)
    assert page.errors == []


def test_bytes_axis_has_binary_units_and_round_ticks(server, page, running_influxd, scratch_db):
    gib = 1024**3
    minutes_of(running_influxd, scratch_db, "team-m", "db-1", {"db": int(5.6 * gib)}, metric="memory/usage")
    minutes_of(running_influxd, scratch_db, "team-m", "db-2", {"db": int(9.3 * gib)}, metric="memory/usage")
    log_in(page, server, "/web/stats/memory/usage/team-m")
    page.wait_for_selector(".uplot canvas", timeout=10_000)
    axis = page.evaluate("(() => { const u = window.kubemonitorLive.views[0].chart; "
                         "return {label: u.axes[1].label, values: u.axes[1]._values, splits: u.axes[1]._splits}; })()")
    assert axis["label"] == "GiB", axis
    assert all(float(v).is_integer() for v in axis["values"]), axis  # 2, 4, 6 GiB, not 5.59 / 7.45 GiB
    assert all(split % gib == 0 for split in axis["splits"]), axis
    assert page.inner_text("table.latest th[data-value-header]") == "Value (GiB)"
    assert page.locator("table.latest tbody td.num", has_text="5.60").count() == 1


@pytest.mark.parametrize("path", ["/web/stats/index", "/web/stats/cpu/usage_rate/team-a"])
def test_a_phone_360_px_wide_scrolls_nothing_sideways(server, running_influxd, scratch_db, path):
    from playwright.sync_api import sync_playwright
    for t in (time.time_ns() - 60 * 10**9, time.time_ns()):
        write_pod(running_influxd, scratch_db, "team-a", "a-rather-long-pod-name-for-a-narrow-screen-1",
                  {"a-long-container-name": 300.0}, t)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        phone = browser.new_page(viewport={"width": 360, "height": 740})
        errors = []
        phone.on("pageerror", lambda exc: errors.append(str(exc)))
        log_in(phone, server, path)
        phone.wait_for_selector("#conn-state.state-live", timeout=10_000)
        widths = phone.evaluate("[document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]")
        assert max(widths[:2]) <= widths[2] == 360, widths
        assert not phone.locator("#sidebar").is_visible()  # folded away
        phone.click(".menu-toggle")
        assert phone.locator("#sidebar").is_visible()
        assert phone.get_attribute(".menu-toggle", "aria-expanded") == "true"
        # every table and chart stays inside its box (tables scroll within it)
        overflow = phone.evaluate("""Array.from(document.querySelectorAll('.card, .chart, .table-wrap')).filter(el => {
            const r = el.getBoundingClientRect(); return r.right > window.innerWidth + 0.5; }).length""")
        assert overflow == 0
        assert errors == []
        browser.close()


def test_chart_legend_stays_inside_its_box(server, page, running_influxd, scratch_db):
    for ns in ("team-a", "team-b", "team-c", "team-d"):
        for t in (time.time_ns() - 60 * 10**9, time.time_ns()):
            write_pod(running_influxd, scratch_db, ns, "web-1", {"nginx": 300.0}, t)
    log_in(page, server, "/web/stats/cpu/usage_rate")
    page.wait_for_selector(".u-legend", timeout=10_000)
    box = page.locator(".chart").bounding_box()
    legend = page.locator(".u-legend").bounding_box()
    assert legend["x"] >= box["x"] and legend["x"] + legend["width"] <= box["x"] + box["width"] + 0.5
    page.goto(server.url + "/web/stats/index")
    page.wait_for_selector(".card .uplot", timeout=10_000)
    for i in range(page.locator(".card").count()):
        card = page.locator(".card").nth(i).bounding_box()
        for inner in page.locator(".card").nth(i).locator(".uplot, table").all():
            b = inner.bounding_box()
            assert b["x"] + b["width"] <= card["x"] + card["width"] + 0.5


def test_the_billing_page_shows_table_chart_and_the_apis_csv(running_influxd, month_db, tmp_path, page):
    from billing_data import CARD
    from conftest import API_PASS, API_USER
    card = tmp_path / "billing.yaml"
    card.write_text(CARD)
    users = tmp_path / "users.yaml"
    UserStore(str(users), rounds=4).add(WEB_USER, "alice@example.org", WEB_PASS)
    env = {**os.environ, "INFLUXDB_HOST": "127.0.0.1", "INFLUXDB_PORT": str(running_influxd.http_port), "INFLUXDB_DB": month_db,
           "KUBEMONITOR_USERS_FILE": str(users), "KUBEMONITOR_LOG_DIR": str(tmp_path), "KUBEMONITOR_BILLING_FILE": str(card),
           "KUBEMONITOR_COOKIE_SECRET": "browser-test-" + "s" * 40, "KUBEMONITOR_ADDRESS": "127.0.0.1",
           "API_USERNAME": API_USER, "API_PASSWORD": API_PASS, "KUBEMONITOR_ROLLUP_RP": "browser_rollups"}
    served = Served(free_port(), env)
    try:
        # roll the month up first, as the server's task would, so the daily chart has data
        subprocess.run([sys.executable, "-m", "kubemonitor", "rollup", "--from", "2026-02-01", "--to", "2026-02-28",
                        "--rollup-metrics", "cpu/usage_rate"], env=env, check=True, capture_output=True, timeout=300)
        log_in(page, served, "/web/billing/2026-02")
        table = page.inner_text("table.statement")
        assert "Astrophysics Lab" in table and "CC-4711" in table and "kube-system" not in table
        assert page.inner_text("#statement-total") != "" and "Closed · revision 1" in page.inner_text("#statement-state")
        # 671 of 672 hours is above 99 %, but the missing hour is longer than 0.1 % of the month (40 min)
        assert "2026-02-10 02:00 to 2026-02-10 03:00 (1.0 h)" in page.inner_text("#coverage-banner")
        page.wait_for_selector("[data-billing-chart] canvas", timeout=10_000)
        # one nav item is the current page; nothing live here, so no "Live: nothing to watch"
        assert page.locator("#sidebar [aria-current]").all_inner_texts() == ["Billing"]
        assert page.locator("#conn-state").count() == 0
        chart = page.evaluate("(() => { const u = window.kubemonitorBilling.chart; return {labels: u.series.map(s => s.label), "
                              "splits: u.axes[0]._splits, values: u.axes[0]._values}; })()")
        assert "Astrophysics Lab" in chart["labels"] and "astro" not in chart["labels"]  # names, not keys
        assert chart["splits"] == list(range(28))  # a bar and a tick per day
        assert [v for v in chart["values"] if v][:3] == ["1", "2", "3"] or chart["values"][0] == "1", chart["values"]
        page.goto(served.url + "/web/billing/2026-02-10")  # the day with the missing hour: 23 of 24
        assert "coverage cpu 95.83 %" in page.inner_text("#coverage-banner")
        assert "2026-02-10 02:00 to 2026-02-10 03:00" in page.inner_text("#coverage-banner")
        page.goto(served.url + "/web/billing/2026-02")
        page.click("table.statement a:has-text('Astrophysics Lab')")  # drill down: the group's namespaces
        page.wait_for_url("**by=namespace**")
        assert {"astro-lab", "astro-dev"} <= set(page.inner_text("table.statement").split())
        page.wait_for_selector("[data-billing-chart] canvas", timeout=10_000)
        labels = page.evaluate("window.kubemonitorBilling.chart.series.map(s => s.label)")
        assert labels == ["Day", "Astrophysics Lab"]  # the chart follows the drill-down
        href = page.get_attribute("a.download", "href")
        downloaded = page.request.get(served.url + href).body()
        import urllib.request
        api = urllib.request.urlopen(urllib.request.Request(
            served.url + "/api/billing/statement", method="POST", headers={"X-USERNAME": API_USER, "X-PASSWORD": API_PASS},
            data=b'{"period": "2026-02", "by": "namespace", "format": "csv"}'), timeout=30).read()
        # the drill-down's CSV is the drill-down: the API's lines of group astro, byte for byte
        header, *lines = api.split(b"\r\n")
        astro = [line for line in lines if line.split(b",")[3:4] == [b"astro"]]
        assert len(astro) == 2 and downloaded == b"\r\n".join([header, *astro, b""])
        assert downloaded.startswith(b"period,from,to,group")
        assert page.errors == []
    finally:
        served.stop()


def test_a_scoped_user_sees_only_their_group(server, page, running_influxd, scratch_db, tmp_path):
    """A member of group astro logs in: the overview, its chart legend, the picker and the live
    table name astro's namespaces only; another group's page is not there."""
    UserStore(str(tmp_path / "users.yaml"), rounds=4).add("astro", "astro@example.org", "astro-pw-1",
                                                          namespaces=("astro-lab", "astro-dev"))
    minutes_of(running_influxd, scratch_db, "astro-lab", "star-1", {"main": 1000.0})
    minutes_of(running_influxd, scratch_db, "astro-dev", "comet-1", {"main": 500.0})
    minutes_of(running_influxd, scratch_db, "bio-sim", "gene-1", {"main": 2000.0})
    page.goto(server.url + "/web/login")
    page.fill("input[name=username]", "astro")
    page.fill("input[name=password]", "astro-pw-1")
    page.click("button[type=submit]")
    page.wait_for_url("**/web/stats/index")
    page.wait_for_selector("#conn-state.state-live", timeout=10_000)
    page.wait_for_selector("section.card .uplot canvas", timeout=10_000)
    card = page.locator("section.card").nth(0)
    assert page.locator("h1").inner_text() == "Your namespaces"
    assert "Total of your namespaces" in card.inner_text() and "1.50 cores" in card.inner_text()
    assert {"astro-lab", "astro-dev"} <= set(card.locator("[data-namespaces] td:first-child").all_inner_texts())
    assert "bio-sim" not in page.content() and "gene-1" not in page.content()
    options = page.locator("#picker-namespace option").all_inner_texts()
    assert options == ["your namespaces", "astro-dev", "astro-lab"]
    assert page.locator("nav a:has-text('Billing')").count() == 0  # no statements for this user
    page.goto(server.url + "/web/stats/cpu/usage_rate")
    page.wait_for_selector("table.latest td:has-text('star-1')", timeout=10_000)
    assert "gene-1" not in page.inner_text("table.latest") and "bio-sim" not in page.content()
    response = page.goto(server.url + "/web/stats/cpu/usage_rate/bio-sim")
    assert response.status == 404 and "gene-1" not in page.content()
    assert page.errors == []


def test_the_dashboard_on_telegrafs_schema(running_influxd, scratch_db, tmp_path, page):
    """KUBEMONITOR_SOURCE=telegraf: the overview and a stats page draw Telegraf's containers and
    DCGM's two GPUs of one pod, in the catalog's units, as they do for Heapster's data."""
    UserStore(str(tmp_path / "users.yaml"), rounds=4).add(WEB_USER, "alice@example.org", WEB_PASS)
    now = time.time_ns()
    lines = []
    for k in range(20):
        t = now - k * 60 * 10**9
        lines.append(f"kubernetes_pod_container,container_name=app,namespace=team-t,node_name=n1,pod_name=svc-1 "
                     f"cpu_usage_nanocores=750000000i,memory_usage_bytes={2 * 1024**3}i {t}")
        lines.append(f"kubernetes_pod_container,container_name=app,namespace=team-t,node_name=n1,pod_name=svc-1,"
                     f"phase=Running,state=running resource_requests_millicpu_units=9999i {t}")
        for gpu, mib in enumerate((15625, 31250)):
            lines.append(f"DCGM_FI_DEV_FB_USED,Hostname=n1,UUID=GPU-{gpu},container=trainer,gpu={gpu},namespace=team-g,"
                         f"pod=train-1 gauge={mib} {t}")
    running_influxd.write(scratch_db, lines)
    port = free_port()
    served = Served(port, {**os.environ, "INFLUXDB_HOST": "127.0.0.1", "INFLUXDB_PORT": str(running_influxd.http_port),
                           "INFLUXDB_DB": scratch_db, "KUBEMONITOR_USERS_FILE": str(tmp_path / "users.yaml"),
                           "KUBEMONITOR_LOG_DIR": str(tmp_path), "KUBEMONITOR_POLL_INTERVAL": "1",
                           "KUBEMONITOR_COOKIE_SECRET": "browser-test-" + "t" * 40, "KUBEMONITOR_ADDRESS": "127.0.0.1",
                           "KUBEMONITOR_SOURCE": "telegraf", "KUBEMONITOR_GPU_SAMPLE_INTERVAL": "60s"})
    try:
        page.goto(served.url + "/web/login")
        page.fill("input[name=username]", WEB_USER)
        page.fill("input[name=password]", WEB_PASS)
        page.click("button[type=submit]")
        page.wait_for_url("**/web/stats/index")
        page.wait_for_selector("#conn-state.state-live", timeout=10_000)
        cards = {page.locator("section.card h2").nth(i).inner_text(): page.locator("section.card").nth(i).inner_text()
                 for i in range(page.locator("section.card").count())}
        assert "team-t" in cards["cpu/usage_rate"] and "750 millicores" in cards["cpu/usage_rate"]
        assert "team-g" in cards["gpu/usage"] and "49.2 GB" in cards["gpu/usage"]  # two GPUs: 16384 + 32768 MB
        page.goto(served.url + "/web/stats/cpu/usage_rate/team-t")
        page.wait_for_selector(".uplot canvas", timeout=10_000)
        assert "svc-1" in page.inner_text("table.latest") and "750" in page.inner_text("table.latest tbody td.num")
        assert page.inner_text("table.latest th[data-value-header]") == "Value (millicores)"
        assert page.errors == []
    finally:
        served.stop()


def test_overview_colours_missing_data_and_rows_agree_across_cards(server, page, running_influxd, scratch_db):
    """bio-sim was red on the CPU card and blue on the GPU card; a namespace drawn on the
    chart but idle now had no row; a card without data said "Cluster total: 0"."""
    minutes_of(running_influxd, scratch_db, "alpha", "a-1", {"app": 100.0})
    minutes_of(running_influxd, scratch_db, "bio-sim", "b-1", {"app": 200.0})
    minutes_of(running_influxd, scratch_db, "bio-sim", "g-1", {"trainer": 8000.0}, metric="gpu/usage")
    # idle now: its points are 30 to 40 minutes old, inside the 1 h chart
    old = time.time_ns() - 30 * 60 * 10**9
    running_influxd.write(scratch_db, [f"cpu/usage_rate,namespace_name=idle-lab,pod_name=i-1,type=pod value=50 {old - k * 60 * 10**9}"
                                       for k in range(10)])
    log_in(page, server, "/web/stats/index")
    page.wait_for_selector("section.card .uplot canvas", timeout=10_000)
    cards = {page.locator("section.card").nth(i).get_attribute("data-metric"): page.locator("section.card").nth(i)
             for i in range(page.locator("section.card").count())}

    def swatches(card):
        return dict(zip(card.locator("[data-namespaces] td:first-child").all_inner_texts(),
                        card.locator("[data-namespaces] .swatch").evaluate_all("els => els.map(e => e.style.background)")))
    cpu, gpu = swatches(cards["cpu/usage_rate"]), swatches(cards["gpu/usage"])
    assert cpu["bio-sim"] == gpu["bio-sim"] and cpu["bio-sim"] != cpu["alpha"]
    strokes = page.evaluate("window.kubemonitorLive.views.map(v => v.chart ? Object.fromEntries("
                            "v.chart.series.slice(1).map(s => [s.label, s._stroke || s.stroke()])) : {})")
    assert len({s["bio-sim"] for s in strokes if "bio-sim" in s}) == 1
    # every namespace the chart draws has a row; idle now is "–", not missing and not 0
    rows = dict(zip(cards["cpu/usage_rate"].locator("[data-namespaces] td:first-child").all_inner_texts(),
                    cards["cpu/usage_rate"].locator("[data-namespaces] td.num").all_inner_texts()))
    assert rows["idle-lab"] == "–" and rows["alpha"] == "100"
    assert cards["cpu/usage_rate"].locator("th[data-value-header]").inner_text() == "Current (millicores)"
    # the memory card has nothing: it says so instead of a bold 0
    memory = cards["memory/usage"]
    assert memory.locator("[data-total]").inner_text() == "no data yet"
    assert "Nothing to chart" in memory.locator("[data-chart]").inner_text()
    assert page.locator("#sidebar [aria-current]").all_inner_texts() == ["Overview"]
    assert page.errors == []


def test_wide_tables_scroll_inside_their_card_with_the_first_column_in_view(running_influxd, month_db, tmp_path):
    """At 1440 px the by-pod statement hid "gpu cost" and "Total" below a long table; on a
    phone the latest points hid the value. The table scrolls inside its card (its
    scrollbar on screen), the header row and the first column stay in view."""
    from billing_data import CARD
    from playwright.sync_api import sync_playwright
    card = tmp_path / "billing.yaml"
    card.write_text(CARD)
    users = tmp_path / "users.yaml"
    UserStore(str(users), rounds=4).add(WEB_USER, "alice@example.org", WEB_PASS)
    env = {**os.environ, "INFLUXDB_HOST": "127.0.0.1", "INFLUXDB_PORT": str(running_influxd.http_port), "INFLUXDB_DB": month_db,
           "KUBEMONITOR_USERS_FILE": str(users), "KUBEMONITOR_LOG_DIR": str(tmp_path), "KUBEMONITOR_BILLING_FILE": str(card),
           "KUBEMONITOR_COOKIE_SECRET": "browser-test-" + "s" * 40, "KUBEMONITOR_ADDRESS": "127.0.0.1"}
    served = Served(free_port(), env)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for width, height in ((1440, 900), (360, 740)):
                page = browser.new_page(viewport={"width": width, "height": height})
                log_in(page, served, "/web/billing/2026-02?by=pod")
                wrap = page.locator(".table-wrap").first
                box = wrap.bounding_box()
                assert box["y"] + box["height"] <= page.evaluate("document.documentElement.scrollHeight")
                assert box["height"] <= height * 0.75 + 1  # its own scrollbars are on screen with it
                first = page.locator("table.statement tbody tr:first-child td:first-child")
                before = first.bounding_box()["x"]
                wrap.evaluate("el => { el.scrollLeft = el.scrollWidth; }")
                total = page.locator("table.statement thead th").last.bounding_box()
                assert total["x"] + total["width"] <= box["x"] + box["width"] + 1, (width, total, box)
                assert abs(first.bounding_box()["x"] - before) < 1, width  # the first column stayed
                assert page.evaluate("document.documentElement.scrollWidth") <= width  # the page itself never scrolls sideways
                page.close()
            browser.close()
    finally:
        served.stop()


def test_the_billing_page_shows_used_requested_and_efficiency(running_influxd, scratch_db, tmp_path, page):
    """A card billing cpu by max: each row's billed, used and requested core-hours and its
    efficiency, the low ones marked, so a group that reserves much and uses little shows."""
    from test_allocation import SHARED, heapster_lines
    running_influxd.write(scratch_db, heapster_lines(), precision="s")
    card = tmp_path / "billing.yaml"
    card.write_text(SHARED % "max")
    UserStore(str(tmp_path / "users.yaml"), rounds=4).add(WEB_USER, "alice@example.org", WEB_PASS)
    served = Served(free_port(), {**os.environ, "INFLUXDB_HOST": "127.0.0.1", "INFLUXDB_PORT": str(running_influxd.http_port),
                                  "INFLUXDB_DB": scratch_db, "KUBEMONITOR_USERS_FILE": str(tmp_path / "users.yaml"),
                                  "KUBEMONITOR_LOG_DIR": str(tmp_path), "KUBEMONITOR_BILLING_FILE": str(card),
                                  "KUBEMONITOR_COOKIE_SECRET": "browser-test-" + "u" * 40, "KUBEMONITOR_ADDRESS": "127.0.0.1",
                                  "KUBEMONITOR_ROLLUP_RP": "t_" + os.urandom(4).hex()})
    try:
        log_in(page, served, "/web/billing/2024-01-01?by=pod")
        headers = page.locator("table.statement thead th").all_inner_texts()
        assert {"cpu (core-hours, by max)", "cpu used", "cpu requested", "cpu efficiency"} <= set(headers), headers
        cells = dict(zip(headers, page.locator("table.statement tbody tr:has-text('over') td").all_inner_texts()))
        assert (cells["cpu (core-hours, by max)"], cells["cpu used"], cells["cpu requested"], cells["cpu efficiency"]) == (
            "2.00", "0.40", "2.00", "20 %")
        assert page.locator("table.statement tbody tr:has-text('over') td.low").count() == 1
        assert page.locator("table.statement tbody tr:has-text('burst') td.low").count() == 0
        # capacity, what the excluded namespaces took, and the idle part shared among the groups
        assert ("cpu: capacity 8.00 core-hours · system 1.00 · idle 1.70 (21 %), its cost 1.70 CHF shared among the groups"
                in page.inner_text("#capacity"))
        assert cells["cpu idle share"] == "0.64" and "cpu idle share" in headers
        assert page.errors == []
    finally:
        served.stop()


def test_a_usage_chart_draws_each_pods_request_dashed(server, page, running_influxd, scratch_db):
    """cpu/usage_rate of a namespace: web-1 uses 300 m and requests 1000 m; its request is a
    dashed line in its colour on the same chart (a pod that reserves much and uses little)."""
    minutes_of(running_influxd, scratch_db, "team-r", "web-1", {"app": 300.0})
    minutes_of(running_influxd, scratch_db, "team-r", "web-1", {"app": 1000.0}, metric="cpu/request")
    log_in(page, server, "/web/stats/cpu/usage_rate/team-r")
    page.wait_for_selector(".uplot canvas", timeout=10_000)
    series = page.evaluate("window.kubemonitorLive.views[0].chart.series.slice(1).map(s => [s.label, s.dash || null, s.stroke()])")
    (usage, request) = series
    assert usage[0] == "web-1" and usage[1] is None
    assert request[0] == "web-1 requested" and request[1] == [6, 4] and request[2] == usage[2]  # dashed, same colour
    data = page.evaluate("window.kubemonitorLive.views[0].chart.data")
    assert max(v for v in data[2] if v is not None) == 1000 and max(v for v in data[1] if v is not None) == 300
    assert "dashed: its cpu/request" in page.inner_text("h2")
    assert page.errors == []
