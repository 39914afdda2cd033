"""A third-party fuzzer holds the API to its own description: schemathesis generates
requests from /openapi.json (valid and invalid ones) and runs every check it has
against a real `kubemonitor serve` on the test InfluxDB. The hooks it loads are in
tests/schemathesis_hooks.py."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import API_PASS, API_USER, DB

from kubemonitor.influxd import free_port, wait_for_http

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(params=["heapster", "telegraf"])
def served(request, running_influxd, anchors, tmp_path):
    """`kubemonitor serve` on the test data: Heapster's schema, or the same cluster in Telegraf's."""
    db = DB
    if request.param == "telegraf":
        import time

        import dual_data
        db = dual_data.load(running_influxd, int(time.time()))["telegraf"]
    port = free_port()
    env = {**os.environ, "INFLUXDB_HOST": "127.0.0.1", "INFLUXDB_PORT": str(running_influxd.http_port),
           "INFLUXDB_DB": db, "API_USERNAME": API_USER, "API_PASSWORD": API_PASS, "KUBEMONITOR_LOG_DIR": str(tmp_path),
           "KUBEMONITOR_ADDRESS": "127.0.0.1", "KUBEMONITOR_USERS_FILE": str(tmp_path / "users.yaml"),
           "KUBEMONITOR_ROLLUP_METRICS": "", "KUBEMONITOR_SOURCE": request.param}
    proc = subprocess.Popen([sys.executable, "-m", "kubemonitor", "serve", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/healthz", proc)
    yield url, tmp_path
    proc.terminate()
    proc.wait(timeout=15)


@pytest.mark.slow
def test_schemathesis_finds_nothing_with_every_check(served):
    url, logs = served
    st = shutil.which("st", path=os.path.dirname(sys.executable)) or shutil.which("st")
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks", "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([st, "run", url + "/openapi.json", "--checks", "all", "--max-examples", "300", "--seed", "20261128",
                        "--header", f"X-USERNAME: {API_USER}", "--header", f"X-PASSWORD: {API_PASS}",
                        "--generation-database", "none", "--no-color"],
                       env=env, cwd=logs, capture_output=True, text=True, timeout=600)
    summary = r.stdout[-3000:]
    assert r.returncode == 0 and "No issues found" in r.stdout, summary
    generated = int(next(line for line in r.stdout.splitlines() if "generated" in line).split()[0])
    assert generated >= 300, summary  # a few hundred cases, not a handful
    errors = (logs / "errors.log").read_text() if (logs / "errors.log").exists() else ""
    assert "Traceback" not in errors, errors[-2000:]
