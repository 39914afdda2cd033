"""`kubemonitor demo` (README "The simulator and the demo"): a working system on one
machine, in one command.

A private influxd on a free loopback port in a temporary directory, 24 h of a
simulated cluster backfilled and kept live, a demo web user and API credentials,
and the server. Ctrl-C (or SIGTERM) stops it all and removes the directory.
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass

from .apiclients import ClientStore
from .config import Config
from .faults import LATE_AFTER, Faults
from .influxd import Influxd, InfluxdError, find_influxd
from .logs import setup_logging
from .ratecard import example_resources
from .server import check_port, serve
from .simulate import Cluster, backfill, client_for, live
from .users import UserStore

DEMO_USER = "demo"
API_USER = "billing"
# A member of one group: sees only its namespaces (and their statements), as a scoped user and an API client.
GROUP_USER, GROUP_CLIENT, GROUP_NAMESPACES = "physics", "physics-script", ("astro-lab", "climate")
# The demo's rate card: the packaged example's prices, and two groups of the simulated namespaces.
DEMO_GROUPS = """\
groups:
  physics: {name: Physics and Climate, account: CC-4711, namespaces: [astro-lab, climate]}
  life:    {name: Life Sciences, account: CC-2210, namespaces: [bio-sim]}
"""


def rate_card() -> str:
    # What a shared cluster bills: cpu by the larger of its request and its use, the use read
    # from the CPU-time counter (an outage loses nothing); memory by request; GPUs by use
    # (the example card's prices for memory and GPUs).
    cpu = "  cpu:    {metric: cpu/usage, unit: core-hours, divide_by: 3.6e12, price: 0.020, basis: max}  # CPU time, ns\n"
    rest = example_resources("memory", "gpu", basis={"memory": "request"}).split("\n", 1)[1]
    return "currency: CHF\ntimezone: Europe/Zurich\nclose_after: 6h\nresources:\n" + cpu + rest + DEMO_GROUPS


@dataclass(frozen=True)
class DemoOptions:
    port: int = 8000
    address: str = "127.0.0.1"
    backfill: float = 86400.0
    interval: float = 10.0         # how often the pages refresh
    sample_interval: float = 60.0  # how often the simulated collector samples (backfill and live alike)
    namespaces: int = 5
    pods: int = 30
    seed: int = 1
    password: str | None = None
    influxd: str | None = None
    verbose: bool = False
    source: str = "heapster"       # the schema the simulated collector writes (telegraf: Telegraf + DCGM)
    faults: frozenset[str] = frozenset()  # collector faults in the backfill (kubemonitor/faults.py)


def _say(text: str = "") -> None:
    print(text, flush=True)


def ensure_influxd(binary: str | None = None) -> str:
    """The influxd binary; installed from Debian's `influxdb` package when missing and we can."""
    if binary:
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise InfluxdError(f"--influxd {binary}: no such executable; give the path of InfluxDB 1.x's influxd")
        return binary
    found = find_influxd()
    if found:
        return found
    fix = "install it with: sudo apt-get install -y influxdb   (Debian/Ubuntu), then run the demo again"
    apt = shutil.which("apt-get")
    if apt is None:
        raise InfluxdError(f"influxd (InfluxDB 1.x) is not installed and this system has no apt-get; {fix}")
    prefix = [] if os.geteuid() == 0 else (["sudo"] if shutil.which("sudo") else None)
    if prefix is None:
        raise InfluxdError(f"influxd is not installed and installing it needs root; {fix}")
    _say("influxd is missing: installing Debian's influxdb package (apt-get)…")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (prefix + [apt, "update", "-qq"], prefix + [apt, "install", "-y", "-qq", "influxdb"]):
        if subprocess.run(cmd, env=env).returncode != 0:
            raise InfluxdError(f"`{' '.join(cmd)}` failed; {fix}")
    found = find_influxd()
    if not found:
        raise InfluxdError(f"the influxdb package installed no influxd binary; {fix}")
    return found


def examples(cluster: Cluster) -> list[tuple[str, str, dict]]:
    """(what, metric, body) of one API call per kind of answer, with this cluster's real names."""
    namespace = cluster.pods[0].namespace
    pod = next(p.base_name for p in cluster.pods if p.namespace == namespace and p.kind == "service")
    return [
        ("the latest points of one pod", "cpu/usage_rate", {"namespace": namespace, "pod": pod, "limit": 3}),
        ("per pod of one namespace, last hour", "cpu/usage_rate", {"agg": "pod-by-namespace", "namespace": namespace}),
        ("every pod of the cluster, last hour", "gpu/usage", {"agg": "all-pod"}),
        ("per namespace, last hour", "memory/usage", {"agg": "all-namespace"}),
    ]


def curl(url: str, metric: str, body: dict, password: str, user: str = API_USER) -> str:
    return (f"curl -X POST {url}/api/{metric} -H 'X-USERNAME: {user}' -H 'X-PASSWORD: {password}' "
            f"-d '{json.dumps(body)}'")


def cli_exports(config: Config) -> str:
    """The one `export` line that points the CLI at the demo's files and InfluxDB."""
    import shlex
    values = {"INFLUXDB_HOST": config.influxdb_host, "INFLUXDB_PORT": config.influxdb_port, "INFLUXDB_DB": config.influxdb_db,
              "KUBEMONITOR_SOURCE": config.source, "KUBEMONITOR_SAMPLE_INTERVAL": f"{config.sample_interval:g}s",
              "KUBEMONITOR_USERS_FILE": config.users_file, "KUBEMONITOR_API_CLIENTS_FILE": config.api_clients_file,
              "KUBEMONITOR_BILLING_FILE": config.billing_file, "KUBEMONITOR_LOG_DIR": config.log_dir}
    return "export " + " ".join(f"{k}={shlex.quote(str(v))}" for k, v in values.items())


def run_demo(options: DemoOptions) -> None:
    """Run the demo until Ctrl-C; raises a UserError (one line) when it cannot start."""
    retry = f"make demo PORT={options.port + 1} (or kubemonitor demo --port {options.port + 1})"
    check_port(options.address, options.port, retry)
    binary = ensure_influxd(options.influxd)
    root = tempfile.mkdtemp(prefix="kubemonitor-demo-")
    stop_live = threading.Event()
    influxd = None
    try:
        os.makedirs(os.path.join(root, "logs"))
        os.makedirs(os.path.join(root, "influxdb"))
        influxd = Influxd(root=os.path.join(root, "influxdb"), binary=binary)
        _say(f"starting a private InfluxDB on 127.0.0.1:{influxd.http_port} in {root}")
        influxd.start()
        web_password = options.password or secrets.token_urlsafe(9)
        api_password = secrets.token_urlsafe(12)
        config = Config(
            influxdb_host="127.0.0.1", influxdb_port=influxd.http_port, influxdb_db="k8s",
            api_username=API_USER, api_password=api_password,
            users_file=os.path.join(root, "users.yaml"), api_clients_file=os.path.join(root, "api-clients.yaml"),
            cookie_secret=secrets.token_hex(32),
            log_dir=os.path.join(root, "logs"), poll_interval=options.interval, address=options.address,
            sample_interval=options.sample_interval, billing_file=os.path.join(root, "billing.yaml"),
            source=options.source,
            # the requests too: the demo's card bills cpu by max and memory by request
            rollup_metrics=("cpu/usage_rate", "cpu/usage", "memory/usage", "gpu/usage", "cpu/request", "memory/request"),
        )
        with open(config.billing_file, "w", encoding="utf-8") as fh:
            fh.write(rate_card())
        client = client_for(config)
        client.create_database("k8s")
        cluster = Cluster(seed=options.seed, namespaces=options.namespaces, pods=options.pods, source=options.source)
        faults = Faults(options.faults, time.time(), options.source, cluster.nodes[0].name, cluster.nodes[-1].name)
        if options.backfill:
            _say(f"simulating the last {options.backfill / 3600:g} h of a cluster ({options.namespaces} namespaces, "
                 f"{options.pods} pods, {options.source}'s schema, a sample every {options.sample_interval:g} s"
                 + (f", faults: {', '.join(sorted(options.faults))}" if options.faults else "") + ")…")
            backfill(cluster, client, options.backfill, options.sample_interval, end=faults.end, faults=faults)
        if faults.held:  # the late fault: after the server has rolled their hours up
            held = faults.release()
            late = threading.Timer(LATE_AFTER, lambda: client_for(config).write(
                held, params={"db": config.influxdb_db, "precision": "s"}, protocol="line"))
            late.daemon = True
            late.start()
            _say(f"the late fault's {len(held):,} points follow in {LATE_AFTER:g} s")
        # Live samples come at the same interval as the backfill: each sample stands for one
        # interval (the usage rule), so the two must agree (the interval fault: twice as often).
        every = options.sample_interval / (2 if "interval" in options.faults else 1)
        writer = threading.Thread(target=live, args=(cluster, client_for(config), every, stop_live),
                                  kwargs={"on_error": lambda exc: None}, name="simulate-live", daemon=True)
        writer.start()
        UserStore(config.users_file).add(DEMO_USER, "demo@example.org", web_password)
        group_password = secrets.token_urlsafe(9)
        UserStore(config.users_file).add(GROUP_USER, "physics@example.org", group_password, namespaces=GROUP_NAMESPACES,
                                         billing=True)
        _, group_secret = ClientStore(config.api_clients_file).add(GROUP_CLIENT, GROUP_NAMESPACES, billing=True)
        setup_logging(config.log_dir, console=options.verbose)

        host = "localhost" if options.address in ("127.0.0.1", "", "0.0.0.0") else options.address
        from datetime import datetime
        from zoneinfo import ZoneInfo
        month = datetime.now(ZoneInfo("Europe/Zurich")).strftime("%Y-%m")
        url = f"http://{host}:{options.port}"

        async def main() -> None:
            ready = asyncio.Event()
            server = asyncio.ensure_future(serve(config, options.port, ready=ready, retry=retry))
            done, _ = await asyncio.wait([server, asyncio.ensure_future(ready.wait())],
                                         return_when=asyncio.FIRST_COMPLETED)
            if server in done:
                server.result()  # raises the PortError
            _say()
            _say("kubemonitor demo is ready")
            _say(f"  web:      {url}/web")
            _say(f"  login:    {DEMO_USER} / {web_password}    (every namespace)")
            _say(f"  login:    {GROUP_USER} / {group_password}    (only {', '.join(GROUP_NAMESPACES)}: a group's view)")
            _say(f"  InfluxDB: {influxd.url} (database k8s); logs in {config.log_dir}")
            _say("  API (the README's examples use these variables):")
            _say(f"    export KUBEMONITOR_URL={url} API_USERNAME={API_USER} API_PASSWORD={api_password}")
            for what, metric, body in examples(cluster):
                _say(f"  # {what}")
                _say(f"    {curl(url, metric, body, api_password)}")
            _say("  # this month's statement, priced by the demo's rate card (add \"format\": \"csv\" for CSV)")
            _say(f"    curl -X POST {url}/api/billing/statement -H 'X-USERNAME: {API_USER}' -H 'X-PASSWORD: {api_password}' "
                 f"-d '{{\"period\": \"{month}\"}}'")
            _say(f"  # the same as the group's own API client, which sees only {', '.join(GROUP_NAMESPACES)}")
            _say(f"    {curl(url, 'cpu/usage_rate', {'agg': 'all-namespace'}, group_secret, GROUP_CLIENT)}")
            _say(f"  billing:  {url}/web/billing")
            _say("  CLI (kubemonitor users, apiclient, audit, statement, rollup) against this demo, in another shell:")
            _say(f"    {cli_exports(config)}")
            _say("Ctrl-C stops everything and removes the temporary directory.")
            await server

        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        stop_live.set()
        if influxd is not None:
            influxd.stop()
        shutil.rmtree(root, ignore_errors=True)
        _say("demo stopped; temporary files removed")
