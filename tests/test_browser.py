"""A real browser: Debian's Chromium driven by Playwright against `kubemonitor serve`."""
from __future__ import annotations

import os
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
        self.url = f"http://127.0.0.1:{port}"
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
    page.wait_for_function("document.getElementById('conn-state').textContent === 'live'", timeout=10_000)
    assert "300 millicores" in page.inner_text("table.latest")
    page.evaluate("window.__notReloaded = true")

    write_pod(running_influxd, scratch_db, "team-a", "browser-pod-1", {"app": 77.0}, time.time_ns())
    page.wait_for_selector("table.latest td:has-text('browser-pod-1')", timeout=10_000)
    assert page.evaluate("window.__notReloaded") is True
    assert "77.0 millicores" in page.inner_text("table.latest")
    assert page.locator(".uplot .u-legend").inner_text().count("browser-pod-1") >= 1
    assert page.errors == []


def test_the_page_reconnects_by_itself_after_a_server_restart(server, page, running_influxd, scratch_db):
    write_pod(running_influxd, scratch_db, "team-r", "steady-1", {"app": 5.0}, time.time_ns())
    page.goto(server.url + "/web/login?next=/web/stats/cpu/usage_rate/team-r")
    page.fill("input[name=username]", WEB_USER)
    page.fill("input[name=password]", WEB_PASS)
    page.click("button[type=submit]")
    page.wait_for_url("**/web/stats/cpu/usage_rate/team-r")
    page.wait_for_function("document.getElementById('conn-state').textContent === 'live'", timeout=10_000)
    page.evaluate("window.__notReloaded = true")
    server.stop()
    page.wait_for_function("document.getElementById('conn-state').textContent.startsWith('offline')", timeout=10_000)
    server.start()  # same port, same cookie secret: the session is still good
    page.wait_for_function("document.getElementById('conn-state').textContent === 'live'", timeout=20_000)
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
