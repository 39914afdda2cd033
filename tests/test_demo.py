"""`kubemonitor demo` for real: private influxd, simulated cluster, server; then Ctrl-C."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import requests

from kubemonitor.influxd import free_port


@pytest.mark.slow
@pytest.mark.parametrize("source", ["heapster", "telegraf"])  # `make demo` and `make demo SOURCE=telegraf`
def test_demo_runs_serves_and_cleans_up(tmp_path, source):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "kubemonitor", "demo", "--port", str(port), "--backfill", "30m",
                             "--interval", "1s", "--source", source], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    output = []
    try:
        deadline = time.monotonic() + 120
        while not any("Ctrl-C stops everything" in line for line in output):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(output)
            output.append(proc.stdout.readline())
        text = "".join(output)
        root = re.search(r"in (/\S+kubemonitor-demo-\S+)", text).group(1)
        assert os.path.isdir(root)
        login, group_login = re.findall(r"login:\s+(\S+) / (\S+)", text)
        api_password = re.search(r"API_PASSWORD=(\S+)", text).group(1)
        url = f"http://localhost:{port}"
        assert f"{url}/web" in text

        # the printed curl commands work as printed, and so does every API example in README
        exports = dict(pair.split("=", 1) for pair in re.search(r"export (.+)", text).group(1).split())
        assert exports["KUBEMONITOR_URL"] == url and exports["API_USERNAME"] == "billing"
        printed = re.findall(r"^\s+(curl -X POST .+)$", text, re.M)
        scoped = [c for c in printed if "'X-USERNAME: physics-script'" in c]
        printed = [c for c in printed if c not in scoped]
        assert len(printed) == 5 and all("'X-PASSWORD: " + api_password + "'" in c for c in printed)
        (scoped,) = scoped
        rows = json.loads(subprocess.run(["bash", "-c", scoped], capture_output=True, text=True, timeout=30).stdout)
        assert {row["namespace_name"] for row in rows} == {"astro-lab", "climate"}
        readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")).read()
        examples = [b for b in re.findall(r"```sh\n(.*?)```", readme, re.S) if "$KUBEMONITOR_URL/api/" in b]
        assert len(examples) >= 4
        for command in printed + examples:
            out = subprocess.run(["bash", "-c", command], env={**os.environ, **exports}, capture_output=True, text=True,
                                 timeout=30, cwd=tmp_path)
            if " -o statement.csv" in command:  # the CSV example writes a file
                import csv
                rows = list(csv.DictReader(open(tmp_path / "statement.csv", encoding="utf-8")))
                assert rows and "cpu_core-hours" in rows[0] and rows[0]["currency"] == "CHF"
                continue
            answer = json.loads(out.stdout)
            if "/api/billing/statement" in command:  # a priced statement of the demo's groups
                assert answer["currency"] == "CHF" and answer["totals"]["total"] > 0, (command, out.stdout[:300])
                assert {"physics", "life"} <= {row["group"] for row in answer["rows"]}
            elif source == "telegraf" and '"type": "pod"' in command:  # Telegraf writes no pod-level series
                assert answer == [], (command, out.stdout[:300])
            else:
                assert isinstance(answer, list) and answer, (command, out.stdout[:300])
        r = requests.post(f"{url}/api/cpu/usage_rate", headers={"X-USERNAME": "billing", "X-PASSWORD": api_password},
                          data='{"agg": "all-namespace"}', timeout=10)
        assert r.status_code == 200
        rows = r.json()
        assert len(rows) == 5 and all(row["count"] > 0 and row["integral"] > 0 for row in rows)
        assert "kube-system" not in {row["namespace_name"] for row in rows}

        s = requests.Session()
        page = s.get(f"{url}/web/login", timeout=10).text
        token = re.search(r'name="_xsrf" value="([^"]+)"', page).group(1)
        r = s.post(f"{url}/web/login", data={"_xsrf": token, "username": login[0], "password": login[1]},
                   allow_redirects=False, timeout=10)
        assert r.status_code == 302
        overview = s.get(f"{url}/web/stats/index", timeout=10)
        assert overview.status_code == 200 and "astro-lab" in overview.text
        billing = s.get(f"{url}/web/billing", timeout=30)
        assert billing.status_code == 200 and "Physics and Climate" in billing.text and "Download CSV" in billing.text
        group = requests.Session()
        token = re.search(r'name="_xsrf" value="([^"]+)"', group.get(f"{url}/web/login", timeout=10).text).group(1)
        assert group_login[0] == "physics"
        r = group.post(f"{url}/web/login", data={"_xsrf": token, "username": group_login[0], "password": group_login[1]},
                       allow_redirects=False, timeout=10)
        assert r.status_code == 302
        overview = group.get(f"{url}/web/stats/index", timeout=10).text
        assert "astro-lab" in overview and "climate" in overview and "bio-sim" not in overview
        # the printed export line points the CLI at the demo's files and InfluxDB
        (cli_exports,) = re.findall(r"^\s+(export INFLUXDB_HOST=.+)$", text, re.M)
        users = subprocess.run(["bash", "-c", cli_exports + " && python3 -m kubemonitor users"], capture_output=True, text=True,
                               timeout=30, env={**os.environ, "PATH": os.path.dirname(sys.executable) + ":" + os.environ["PATH"]})
        assert users.returncode == 0 and re.search(r"^demo\t", users.stdout, re.M) and "physics" in users.stdout, users.stderr
        month = re.search(r'\\"period\\": \\"(\d{4}-\d\d)', text) or re.search(r'"period": "(\d{4}-\d\d)"', text)
        statement = subprocess.run(["bash", "-c", f"{cli_exports} && python3 -m kubemonitor statement --period {month.group(1)}"],
                                   capture_output=True, text=True, timeout=60,
                                   env={**os.environ, "PATH": os.path.dirname(sys.executable) + ":" + os.environ["PATH"]})
        assert statement.returncode == 0, statement.stderr
        assert json.loads(statement.stdout)["currency"] == "CHF"
        ready = json.loads(urllib.request.urlopen(f"{url}/readyz", timeout=5).read())
        assert ready["status"] == "ready" and ready["source"] == {"name": source, "problems": []}
        if source == "telegraf":  # Telegraf's 10 s: 30 minutes are 180 samples of a service pod
            assert f"{source}'s schema, a sample every 10 s" in text
            r = requests.post(f"{url}/api/cpu/usage_rate", headers={"X-USERNAME": "billing", "X-PASSWORD": api_password},
                              data='{"agg": "all-pod", "namespace": "astro-lab"}', timeout=10)
            assert max(row["count"] for row in r.json()) >= 180
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rest, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, rest
    assert "temporary files removed" in rest
    assert not os.path.exists(root)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://localhost:{port}/healthz", timeout=2)


def test_demo_refuses_a_busy_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "kubemonitor", "demo", "--port", str(port)], capture_output=True,
                           text=True, timeout=30)
    assert r.returncode == 2 and "in use" in r.stderr and "PORT=" in r.stderr and "Traceback" not in r.stderr
    assert "starting a private InfluxDB" not in r.stdout  # refused before anything slow started


def test_demo_says_clearly_when_influxd_does_not_start():
    r = subprocess.run([sys.executable, "-m", "kubemonitor", "demo", "--port", str(free_port()), "--influxd", "/bin/false"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "influxd exited at start-up" in r.stderr and "InfluxDB 1.x" in r.stderr
    root = re.search(r"in (/\S+kubemonitor-demo-\S+)", r.stdout).group(1)
    assert not os.path.exists(root)


def test_missing_influxd_without_apt_names_the_package(monkeypatch):
    from kubemonitor import demo
    from kubemonitor.influxd import InfluxdError
    monkeypatch.setattr(demo, "find_influxd", lambda: None)  # a machine without InfluxDB
    monkeypatch.setattr(demo.shutil, "which", lambda name: None)  # ... and without apt-get
    with pytest.raises(InfluxdError) as info:
        demo.ensure_influxd()
    assert "apt-get install -y influxdb" in str(info.value)
    with pytest.raises(InfluxdError) as info:
        demo.ensure_influxd("/nonexistent/influxd")
    assert "no such executable" in str(info.value)
