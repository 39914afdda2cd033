"""The cluster simulator: Heapster's schema, consistent sums, believable behaviour."""
from __future__ import annotations

import subprocess
import sys

from conftest import needs_real_monotonic


def test_cli_backfills_into_influxdb_and_reports_errors(running_influxd):
    r = subprocess.run([sys.executable, "-m", "kubemonitor", "simulate", "--backfill", "2h", "--pods", "10",
                        "--namespaces", "3", "--influxdb-host", "127.0.0.1",
                        "--influxdb-port", str(running_influxd.http_port), "--influxdb-db", "simtest"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "backfilled 2 h" in r.stderr and "100%" in r.stderr
    res = running_influxd.query('SELECT count("value") FROM "cpu/usage_rate" WHERE "type" = \'cluster\'', "simtest")
    assert res["results"][0]["series"][0]["values"][0][1] == 120  # one sample a minute for two hours
    namespaces = running_influxd.query('SHOW TAG VALUES FROM "cpu/usage_rate" WITH KEY = "namespace_name"', "simtest")
    assert len(namespaces["results"][0]["series"][0]["values"]) == 3 + 1  # + kube-system
    r = subprocess.run([sys.executable, "-m", "kubemonitor", "simulate", "--backfill", "1h",
                        "--influxdb-port", "1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unreachable" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "kubemonitor", "simulate", "--backfill", "soon"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "duration" in r.stderr


@needs_real_monotonic
def test_cli_keeps_writing_live_samples_until_stopped(running_influxd, scratch_db):
    import signal
    import time
    proc = subprocess.Popen([sys.executable, "-m", "kubemonitor", "simulate", "--interval", "1s", "--pods", "5",
                             "--namespaces", "2", "--influxdb-host", "127.0.0.1",
                             "--influxdb-port", str(running_influxd.http_port), "--influxdb-db", scratch_db],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = time.time()
    try:
        deadline = time.monotonic() + 30
        samples = 0
        while samples < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
            res = running_influxd.query('SELECT count("value") FROM "cpu/usage_rate" WHERE "type" = \'cluster\'', scratch_db)
            series = res["results"][0].get("series")
            samples = series[0]["values"][0][1] if series else 0
        assert samples >= 3
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    last = running_influxd.query('SELECT last("value") FROM "cpu/usage_rate" WHERE "type" = \'cluster\'', scratch_db)
    newest = last["results"][0]["series"][0]["values"][0][0]
    from datetime import datetime
    assert datetime.fromisoformat(newest.replace("Z", "+00:00")).timestamp() >= started - 1
