"""A private `influxd` in a temporary directory, on a free loopback port.

Used by `kubemonitor demo` and by the test suite (which stops and restarts it to
cause real outages). Reporting, the monitor store, continuous queries and
subscriptions are off; data, WAL and meta live under `root`.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from .errors import UserError

CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{root}/meta"
  logging-enabled = false

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
  trace-logging-enabled = false

[coordinator]
  log-queries-after = "0s"

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = {auth}
  log-enabled = false
  write-tracing = false
  max-body-size = 0

[logging]
  level = "warn"

[continuous_queries]
  enabled = false

[subscriber]
  enabled = false
"""


class InfluxdError(UserError, RuntimeError):
    """influxd is missing or would not start; the message says what to do."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Wait until `url` answers 2xx while `process` (which serves it) stays alive."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if process.poll() is not None:
                raise InfluxdError(f"the process serving {url} exited (status {process.returncode})") from None
            if time.monotonic() > deadline:
                raise InfluxdError(f"{url} did not answer within {timeout:g} s") from None
            time.sleep(0.1)


def find_influxd() -> str | None:
    return shutil.which("influxd") or (
        "/usr/bin/influxd" if os.access("/usr/bin/influxd", os.X_OK) else None)


class Influxd:
    def __init__(self, root: str | None = None, http_port: int | None = None, binary: str | None = None,
                 auth: bool = False):
        found = binary or find_influxd()
        if not found:
            raise InfluxdError("influxd is not installed; install Debian's package: sudo apt-get install -y influxdb")
        self.binary: str = found
        self._own_root = root is None
        self.root = root or tempfile.mkdtemp(prefix="kubemonitor-influxd-")
        self._own_port = http_port is None
        self.http_port = http_port or free_port()
        self.rpc_port = free_port()
        self.auth = auth
        self.process: subprocess.Popen | None = None
        self.config_path = os.path.join(self.root, "influxdb.conf")
        self.log_path = os.path.join(self.root, "influxd.log")
        self._write_config()

    def _write_config(self) -> None:
        with open(self.config_path, "w", encoding="utf-8") as fh:
            fh.write(CONFIG.format(root=self.root, http_port=self.http_port, rpc_port=self.rpc_port,
                                   auth="true" if self.auth else "false"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 30.0) -> Influxd:
        """Start influxd and wait until it answers. A free port found beforehand can be taken
        by another process before influxd binds it (a second test run beside this one): then,
        on ports it chose itself, it tries again on new ones, up to three times."""
        for attempt in range(3):
            try:
                return self._start(timeout)
            except InfluxdError as exc:
                if not (self._own_port and "address already in use" in str(exc)) or attempt == 2:
                    raise
                self.http_port, self.rpc_port = free_port(), free_port()
                self._write_config()
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> Influxd:
        if self.running:
            return self
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([self.binary, "-config", self.config_path], stdout=log, stderr=log,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise InfluxdError(f"influxd exited at start-up (status {self.process.returncode}): "
                                   f"{self._log_tail() or 'no output'}; check that {self.binary} is InfluxDB 1.x's "
                                   "influxd and that its directories are writable")
            if self.ping():
                # the answer may come from another server on this port, just before ours
                # finds the port taken and exits: ours must still run a moment later
                time.sleep(0.2)
                if self.process.poll() is None and self.ping():
                    return self
                continue
            time.sleep(0.05)
        self.stop()
        raise InfluxdError(f"influxd did not answer on port {self.http_port} within {timeout:g} s; see {self.log_path}")

    def ping(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/ping", timeout=1) as r:
                return r.status == 204
        except (urllib.error.URLError, OSError):
            return False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if not self.running:
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        # The port must be free again before a restart can bind it.
        deadline = time.monotonic() + timeout
        while self.ping() and time.monotonic() < deadline:
            time.sleep(0.05)

    def cleanup(self) -> None:
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return " | ".join(fh.read().strip().splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> Influxd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- plain HTTP helpers (no client library): set-up and writes ----------------
    def query(self, q: str, db: str | None = None, user: tuple[str, str] | None = None) -> dict:
        import json
        import urllib.parse
        credentials = "?" + urllib.parse.urlencode({"u": user[0], "p": user[1]}) if user else ""  # InfluxDB reads them from the URL
        data = urllib.parse.urlencode({"q": q, **({"db": db} if db else {})}).encode()
        with urllib.request.urlopen(self.url + "/query" + credentials, data=data, timeout=30) as r:
            return json.loads(r.read())

    def write(self, db: str, lines: list[str] | str, precision: str = "ns", rp: str | None = None) -> None:
        body = lines if isinstance(lines, str) else "\n".join(lines)
        req = urllib.request.Request(f"{self.url}/write?db={db}&precision={precision}" + (f"&rp={rp}" if rp else ""),
                                     data=body.encode(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=60) as r:
            if r.status != 204:
                raise InfluxdError(f"write failed: HTTP {r.status}")
