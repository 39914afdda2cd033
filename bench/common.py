"""Shared set-up of the benchmarks: a private influxd seeded by the simulator, and
`kubemonitor serve` as a separate process (as it runs in production)."""
from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kubemonitor.apiclients import ClientStore  # noqa: E402
from kubemonitor.config import Config  # noqa: E402
from kubemonitor.influxd import Influxd, free_port, wait_for_http  # noqa: E402
from kubemonitor.simulate import Cluster, backfill, client_for  # noqa: E402
from kubemonitor.users import UserStore  # noqa: E402

API_USER, API_PASS = "bench", "bench-password"
WEB_USER, WEB_PASS = "bench", "bench-password"
SCOPED_CLIENT = "group-script"


def seeded_influxd(hours: float, pods: int, namespaces: int, db: str = "k8s", influxd: Influxd | None = None,
                   source: str = "heapster") -> Influxd:
    """An influxd (new, or the one given) with the simulated cluster in `db`, in `source`'s schema."""
    influxd = influxd or Influxd().start()
    config = Config(influxdb_host="127.0.0.1", influxdb_port=influxd.http_port, influxdb_db=db)
    client = client_for(config)
    client.create_database(db)
    started = time.monotonic()
    points = backfill(Cluster(seed=1, namespaces=namespaces, pods=pods, source=source), client, hours * 3600, 60.0,
                      progress=False)
    print(f"seeded {points:,} points ({pods} pods, {hours:g} h at 60 s, {source}'s schema) in "
          f"{time.monotonic() - started:.1f} s", flush=True)
    return influxd


class Server:
    """`kubemonitor serve` on a free port against `influxd`."""

    def __init__(self, influxd: Influxd, db: str = "k8s", poll_interval: float = 10.0, env: dict | None = None,
                 viewers: dict[str, tuple[str, ...] | None] | None = None):
        self.dir = tempfile.mkdtemp(prefix="kubemonitor-bench-")
        users = os.path.join(self.dir, "users.yaml")
        store = UserStore(users, rounds=4)
        store.add(WEB_USER, "bench@example.org", WEB_PASS)
        # more web users (name -> namespaces, None = all; password WEB_PASS): views watched by many
        # people. Written in one go (one hash for all: `add` per user re-reads the file each time).
        if viewers:
            stamp = store.cached(WEB_USER) or store.entries()[WEB_USER]
            with store.update() as entries:
                for name, namespaces in viewers.items():
                    entries[name] = dataclasses.replace(stamp, username=name, email=f"{name}@example.org",
                                                        namespaces=namespaces, billing=None)
        clients = os.path.join(self.dir, "api-clients.yaml")
        # a named client of three namespaces: what a group's script would use
        _, secret = ClientStore(clients).add(SCOPED_CLIENT, ("astro-lab", "bio-sim", "climate"), billing=True)
        self.scoped_headers = {"X-USERNAME": SCOPED_CLIENT, "X-PASSWORD": secret}
        self.port = free_port()
        env = {**os.environ, "INFLUXDB_HOST": "127.0.0.1", "INFLUXDB_PORT": str(influxd.http_port), "INFLUXDB_DB": db,
               "API_USERNAME": API_USER, "API_PASSWORD": API_PASS, "KUBEMONITOR_USERS_FILE": users,
               "KUBEMONITOR_API_CLIENTS_FILE": clients,
               "KUBEMONITOR_LOG_DIR": self.dir, "KUBEMONITOR_POLL_INTERVAL": str(poll_interval),
               "KUBEMONITOR_COOKIE_SECRET": "bench-" + "x" * 40, "KUBEMONITOR_ADDRESS": "127.0.0.1",
               "INFLUXDB_TIMEOUT": "120", **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "kubemonitor", "serve", str(self.port)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_for_http(self.url + "/healthz", self.proc)

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=15)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def heapster_usage(influxd: Influxd, db: str, pods: int, hours: float, step: int = 60, metric: str = "cpu/usage_rate",
                   namespaces: int = 10, end: int | None = None, batch: int = 200_000) -> int:
    """Write one metric the way Heapster does, fast enough for 1,000 pods x 7 days: per pod
    one or two containers (`pod_container`), their sum (`pod`), and per-namespace and
    cluster sums (`ns`, `cluster`), every `step` seconds up to `end` (now). Values are
    cheap deterministic numbers; returns the number of points written."""
    end = (end or int(time.time())) // step * step
    start = end - int(hours * 3600)
    layout = []
    for p in range(pods):
        ns = f"group-{p % namespaces:02d}"
        name = f"pod-{p:05d}"
        base = f"namespace_name={ns},nodename=node-{p % 8},pod_id=uid-{p:05d},pod_name={name}"
        containers = ["main", "sidecar"] if p % 3 else ["main"]
        layout.append((ns, base, containers, 100 + (p * 37) % 900))
    written = 0
    lines: list[str] = []
    for t in range(start, end, step):
        phase = (t // step) % 17
        ns_sum: dict[str, float] = {}
        for ns, base, containers, level in layout:
            total = 0.0
            for i, c in enumerate(containers):
                v = float(level + phase * (i + 1))
                total += v
                lines.append(f"{metric},container_name={c},{base},type=pod_container value={v} {t}")
            lines.append(f"{metric},{base},labels=app:x,type=pod value={total} {t}")
            ns_sum[ns] = ns_sum.get(ns, 0.0) + total
        for ns, v in ns_sum.items():
            lines.append(f"{metric},namespace_name={ns},type=ns value={v} {t}")
        lines.append(f"{metric},type=cluster value={sum(ns_sum.values())} {t}")
        if len(lines) >= batch:
            influxd.write(db, lines, precision="s")
            written += len(lines)
            lines = []
    if lines:
        influxd.write(db, lines, precision="s")
        written += len(lines)
    return written
