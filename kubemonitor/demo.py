"""`kubemonitor demo` (SPEC §9): a working system on one machine, in one command.

A private influxd on a free loopback port in a temporary directory, 24 h of a
simulated cluster backfilled and kept live, a demo web user and API credentials,
and the server. Ctrl-C (or SIGTERM) stops it all and removes the directory.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading

from .influxd import Influxd, InfluxdError, find_influxd

DEMO_USER = "demo"
API_USER = "billing"


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


def _check_port(address: str, port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            from .cli import CliError
            raise CliError(f"port {port} is in use; pick another: make demo PORT={port + 1} "
                           f"(or kubemonitor demo --port {port + 1})") from None


def cmd_demo(args: argparse.Namespace) -> int:
    from .cli import CliError, serve
    from .config import Config
    from .logs import setup_logging
    from .simulate import Cluster, backfill, client_for, live
    from .users import UserStore

    _check_port(args.address, args.port)
    try:
        binary = ensure_influxd(args.influxd)
    except InfluxdError as exc:
        raise CliError(str(exc)) from None
    root = tempfile.mkdtemp(prefix="kubemonitor-demo-")
    stop_live = threading.Event()
    influxd = None
    try:
        os.makedirs(os.path.join(root, "logs"))
        os.makedirs(os.path.join(root, "influxdb"))
        influxd = Influxd(root=os.path.join(root, "influxdb"), binary=binary)
        _say(f"starting a private InfluxDB on 127.0.0.1:{influxd.http_port} in {root}")
        try:
            influxd.start()
        except InfluxdError as exc:
            raise CliError(str(exc)) from None
        web_password = args.password or secrets.token_urlsafe(9)
        api_password = secrets.token_urlsafe(12)
        config = Config(
            influxdb_host="127.0.0.1", influxdb_port=influxd.http_port, influxdb_db="k8s",
            api_username=API_USER, api_password=api_password,
            users_file=os.path.join(root, "users.yaml"), cookie_secret=secrets.token_hex(32),
            log_dir=os.path.join(root, "logs"), poll_interval=args.interval, address=args.address,
        )
        client = client_for(config)
        client.create_database("k8s")
        cluster = Cluster(seed=args.seed, namespaces=args.namespaces, pods=args.pods)
        if args.backfill:
            _say(f"simulating the last {args.backfill / 3600:g} h of a cluster ({args.namespaces} namespaces, "
                 f"{args.pods} pods)…")
            backfill(cluster, client, args.backfill, 60.0)
        writer = threading.Thread(target=live, args=(cluster, client_for(config), args.interval, stop_live),
                                  name="simulate-live", daemon=True)
        writer.start()
        UserStore(config.users_file).add(DEMO_USER, "demo@example.org", web_password)
        setup_logging(config.log_dir, console=args.verbose)

        host = "localhost" if args.address in ("127.0.0.1", "", "0.0.0.0") else args.address
        url = f"http://{host}:{args.port}"

        async def main() -> None:
            ready = asyncio.Event()
            server = asyncio.ensure_future(serve(config, args.port, ready=ready))
            await ready.wait()
            _say()
            _say("kubemonitor demo is ready")
            _say(f"  web:      {url}/web")
            _say(f"  login:    {DEMO_USER} / {web_password}")
            _say(f"  API:      curl -X POST {url}/api/cpu/usage_rate -H 'X-USERNAME: {API_USER}' "
                 f"-H 'X-PASSWORD: {api_password}' -d '{{\"agg\": \"all-namespace\"}}'")
            _say(f"  InfluxDB: {influxd.url} (database k8s); logs in {config.log_dir}")
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
    return 0


def add_command(sub, _add_setting_flags) -> None:
    from .simulate import parse_duration
    p = sub.add_parser("demo", help="run a complete demo: private InfluxDB, simulated cluster, server")
    p.add_argument("--port", type=int, default=8000, help="port of the web server (default 8000)")
    p.add_argument("--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--backfill", type=parse_duration, default=86400.0, metavar="DURATION",
                   help="history to simulate first (default 24h)")
    p.add_argument("--interval", type=parse_duration, default=10.0, metavar="DURATION",
                   help="live sample and refresh interval (default 10s)")
    p.add_argument("--namespaces", type=int, default=5)
    p.add_argument("--pods", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--password", default=None, help="password of the demo web user (default: random, printed)")
    p.add_argument("--influxd", default=None, metavar="PATH", help="the influxd binary (default: found on PATH)")
    p.add_argument("--verbose", action="store_true", help="also print the server's log on the console")
    p.set_defaults(func=cmd_demo)
