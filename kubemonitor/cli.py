"""The `kubemonitor` command: serve, and the user and demo tools (SPEC §6, §9)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from . import __version__
from .config import SETTINGS, Config, ConfigError, check_log_dir
from .users import UserInputError, UsersFileError

log = logging.getLogger("kubemonitor")

# Bodies beyond this are cut off by Tornado itself; the API refuses anything over
# 64 KiB earlier, with a JSON 413 (handlers/api.py).
MAX_BODY_SIZE = 8 * 1024 * 1024


class CliError(Exception):
    """A failure to report as one line on stderr, exit status 2."""


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (each overrides its environment variable)")
    for s in SETTINGS:
        default = "unset" if s.default is None else repr(s.default)
        group.add_argument(s.flag, dest=s.field, metavar="VALUE", default=None,
                           help=f"{s.help} [{s.env}, default {default}]")


def overrides(args: argparse.Namespace) -> dict[str, str | None]:
    return {s.field: getattr(args, s.field, None) for s in SETTINGS}


def load_config(args: argparse.Namespace) -> Config:
    return Config.load(overrides=overrides(args))


def cmd_serve(args: argparse.Namespace) -> int:
    port = args.port
    if not (port.isdigit() and 1 <= int(port) <= 65535):
        raise CliError(f"PORT {port!r} is not a port number; give 1-65535, e.g. kubemonitor serve 8000")
    config = load_config(args)
    check_log_dir(config.log_dir)
    from .users import UserStore
    UserStore(config.users_file).check_readable()
    from .logs import setup_logging
    setup_logging(config.log_dir)
    asyncio.run(serve(config, int(port)))
    return 0


async def serve(config: Config, port: int, ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Run the server until SIGINT/SIGTERM (or `stop` is set)."""
    from tornado.httpserver import HTTPServer

    from .app import KubeMonitorApp

    if config.cookie_secret_generated:
        log.warning("KUBEMONITOR_COOKIE_SECRET is not set: using a random secret, so sessions end when the "
                    "process restarts and replicas cannot share them; set it to a long random string")
    import os
    if not os.path.exists(config.users_file):
        log.warning("no users file at %s: nobody can log in to /web yet; add a user with "
                    "`kubemonitor adduser --username=NAME --email=ADDRESS`", config.users_file)
    if not config.api_configured:
        log.warning("API_USERNAME/API_PASSWORD are not set: the API refuses every request (401)")
    app = KubeMonitorApp(config)
    await app.start()
    server = HTTPServer(app, max_body_size=MAX_BODY_SIZE, xheaders=config.trust_proxy)
    server.listen(port, address=config.address or "")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    log.info("kubemonitor %s listening on %s:%d (InfluxDB %s:%d, database %s)", __version__,
             config.address or "0.0.0.0", port, config.influxdb_host, config.influxdb_port, config.influxdb_db)
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("shutting down")
    server.stop()
    await app.shutdown()
    await asyncio.wait_for(server.close_all_connections(), timeout=5)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubemonitor", description="Kubernetes usage monitor and billing interface.")
    parser.add_argument("--version", action="version", version=f"kubemonitor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("serve", help="run the API and the web dashboard")
    p.add_argument("port", nargs="?", default="8000", metavar="PORT", help="port to listen on (default 8000)")
    _add_setting_flags(p)
    p.set_defaults(func=cmd_serve)

    from . import demo, simulate, users
    users.add_commands(sub, _add_setting_flags)
    simulate.add_command(sub, _add_setting_flags)
    demo.add_command(sub, _add_setting_flags)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except (ConfigError, CliError, UsersFileError, UserInputError) as exc:
        print(f"kubemonitor: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # Run the imported module's main, so that exception classes raised by other
    # modules (which import kubemonitor.cli, not __main__) are the ones caught.
    from kubemonitor.cli import main as _main
    sys.exit(_main())
