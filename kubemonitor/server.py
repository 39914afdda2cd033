"""Running the application: an HTTPServer on a port until SIGINT/SIGTERM.

Used by `kubemonitor serve` and `kubemonitor demo`.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream

from . import __version__
from .app import KubeMonitorApp
from .config import Config
from .errors import UserError
from .services import Services

log = logging.getLogger("kubemonitor")

# The largest body any page takes (the login form needs a few hundred bytes); beyond it
# Tornado refuses the request before reading it. The API's handlers stream their bodies
# and raise their own limit to 64 KiB (handlers/api.py).
MAX_BODY_SIZE = 8 * 1024
MAX_HEADER_SIZE = 16 * 1024
FD_RESERVE = 64   # file descriptors kept for InfluxDB, logs and health checks


class Server(HTTPServer):
    """Tornado's HTTPServer that closes new connections at once past `max_connections`, so
    a flood of half-open connections runs into a limit, not into the file-descriptor limit."""

    def initialize(self, *args: Any, max_connections: int = 4000, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.max_connections = max_connections
        self.refused = 0

    def handle_stream(self, stream: IOStream, address: tuple) -> None:
        if len(self._connections) >= self.max_connections:
            self.refused += 1
            stream.close()
            return
        super().handle_stream(stream, address)


def connection_limit(wanted: int) -> int:
    """Raise the soft file limit to the hard one; keep a reserve below it."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return max(1, min(wanted, soft - FD_RESERVE))


class PortError(UserError):
    """The port cannot be listened on."""


def port_problem(exc: OSError, address: str, port: int, retry: str) -> PortError:
    where = f"{address or '0.0.0.0'}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return PortError(f"port {port} is in use ({where}); pick another: {retry}")
    if exc.errno == errno.EACCES:
        return PortError(f"not allowed to listen on {where} (ports below 1024 need root); pick another: {retry}")
    if exc.errno == errno.EADDRNOTAVAIL:
        return PortError(f"{address!r} is not an address of this machine; check KUBEMONITOR_ADDRESS / --address")
    return PortError(f"cannot listen on {where}: {exc.strerror}; pick another port: {retry}")


def check_port(address: str, port: int, retry: str) -> None:
    """Fail early, before anything slow starts, when the port cannot be listened on."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError as exc:
            raise port_problem(exc, address, port, retry) from None


def warn_about(config: Config) -> None:
    if config.cookie_secret_generated:
        log.warning("KUBEMONITOR_COOKIE_SECRET is not set: using a random secret, so sessions end when the "
                    "process restarts and replicas cannot share them; set it to a long random string")
    if not os.path.exists(config.users_file):
        log.warning("no users file at %s: nobody can log in to /web yet; add a user with "
                    "`kubemonitor adduser --username=NAME --email=ADDRESS`", config.users_file)
    if not config.api_configured:
        log.warning("API_USERNAME/API_PASSWORD are not set: the API refuses every request (401)")


async def serve(config: Config, port: int, ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None, retry: str | None = None) -> None:
    """Run the server until SIGINT/SIGTERM (or `stop` is set).

    Raises PortError (one line, no traceback) when the port cannot be listened on;
    `retry` is the command line the message suggests instead.
    """
    warn_about(config)
    app = KubeMonitorApp(Services(config))
    server = Server(app, max_body_size=MAX_BODY_SIZE, max_header_size=MAX_HEADER_SIZE, max_buffer_size=1024 * 1024,
                    idle_connection_timeout=config.header_timeout, body_timeout=config.body_timeout,
                    max_connections=connection_limit(config.max_connections))
    try:
        server.listen(port, address=config.address or "", backlog=config.listen_backlog)
    except OSError as exc:
        await app.shutdown()
        raise port_problem(exc, config.address, port, retry or f"kubemonitor serve {port + 1}") from None
    await app.start()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    log.info("kubemonitor %s listening on %s:%d%s/ (InfluxDB %s:%d, database %s)", __version__,
             config.address or "0.0.0.0", port, config.url_prefix, config.influxdb_host, config.influxdb_port, config.influxdb_db)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        server.stop()
        await app.shutdown()
        try:
            async with asyncio.timeout(5):
                await server.close_all_connections()
        except TimeoutError:
            log.warning("connections still open 5 s after shutting down: closing anyway")
