"""Configuration: environment variables (README "Configuration"), each overridable by a `serve` flag.

One table (`SETTINGS`) drives the environment lookup, the command-line flags and the
error messages, so a setting cannot exist in one place and be missing in another.
A bad value raises `ConfigError` with one line naming the setting and the fix; the
CLI prints that line and exits, never a traceback.
"""
from __future__ import annotations

import dataclasses
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .collectors import SOURCES
from .errors import UserError
from .metrics import CATALOG, METRIC_NAME
from .request import NAMESPACE


class ConfigError(UserError):
    """A setting has a value the server cannot start with."""


def _port(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", text.strip()) or not 1 <= int(text) <= 65535:
        raise ValueError("must be a port number from 1 to 65535")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number of seconds, e.g. 10") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError("must be a number of seconds greater than 0, e.g. 10")
    return value


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`10s`, `5m`, `24h`, `2d` or a number of seconds; raises ValueError naming the forms."""
    text = text.strip().lower()
    try:
        value = float(text[:-1]) * _UNITS[text[-1]] if text[-1:] in _UNITS else float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration; use e.g. 10s, 5m, 24h, 2d") from None
    if value < 0 or value != value or value == float("inf"):
        raise ValueError(f"{text!r} must be a duration of 0 or more")
    return value


def _positive_duration(text: str) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise ValueError("must be a duration greater than 0, e.g. 60s")
    return value


def _within(parse: Callable[[str], float], low: float, high: float, example: str) -> Callable[[str], float]:
    """`parse`, then a bound: a value that would spin a core (a poll every nanosecond) or
    never come (a timeout of a year) is refused at start-up, naming the range."""
    def check(text: str) -> float:
        value = parse(text)
        if not low <= value <= high:
            raise ValueError(f"must be from {low:g} to {high:g}, e.g. {example}")
        return value
    return check


def _sample_interval(text: str) -> float:
    value = _positive_duration(text)
    # Samples are bucketed per interval within clock hours: an interval must divide an hour.
    if value != int(value) or 3600 % int(value):
        raise ValueError("must be a whole number of seconds that divides an hour, e.g. 10s, 30s, 60s")
    return value


def _positive_int(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text.strip()) or int(text) < 1:
        raise ValueError("must be a whole number of at least 1, e.g. 10000")
    return int(text)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("must be one of true/false, yes/no, on/off, 1/0")


def _namespaces(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for name in names:
        if not NAMESPACE.matches(name):
            raise ValueError(f"{name!r} is not a Kubernetes namespace name; give a comma-separated list such as kube-system,monitoring")
    return names


def _source(text: str) -> str:
    value = text.strip().lower()
    if value not in SOURCES:
        raise ValueError(f"must be one of {', '.join(SOURCES)}: heapster (Heapster's schema) or telegraf "
                         "(Telegraf's inputs.kubernetes and kube_inventory, DCGM through inputs.prometheus)")
    return value


def _cluster(text: str) -> str | None:
    """Heapster's --sink=influxdb:...?cluster_name= (its `cluster_name` tag); empty: every cluster."""
    value = text.strip()
    if not value:
        return None
    if len(value) > 253 or not value.isprintable():
        raise ValueError("must be the cluster_name the collector tags its points with (printable, at most 253 "
                         "characters), e.g. default; leave it empty to read every cluster")
    return value


def _url_prefix(text: str) -> str:
    """'' (served at /), or a path such as /kubemonitor: leading slash, no trailing one."""
    value = text.strip().rstrip("/")
    if value and not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", value):
        raise ValueError("must be a path of plain segments (letters, digits, . _ ~ -), e.g. /kubemonitor or "
                         "/tools/kubemonitor, or empty to serve at /")
    return value


def _cookie_secret(text: str) -> str | None:
    if text == "":
        return None
    if len(text) < 32:
        # The secret signs session cookies: a short one can be guessed and sessions forged.
        raise ValueError(f"is {len(text)} characters; use at least 32 random ones, e.g. KUBEMONITOR_COOKIE_SECRET=$(openssl rand -hex 32)")
    return text


def _identifier(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", text):
        raise ValueError("must be a plain InfluxDB name (letters, digits and _), e.g. kubemonitor")
    return text


def _rollup_rp(text: str) -> str:
    name = _identifier(text)
    if name.lower() == "autogen":
        # autogen is the database's default policy: rollups there would expire with the raw
        # points (or keep the raw points forever), and a rebuild would delete raw data.
        raise ValueError("must not be autogen (the raw points' own policy); use a policy of its own, e.g. kubemonitor")
    return name


def _metrics(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    for name in names:
        if not METRIC_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a metric name; give a comma-separated list such as cpu/usage_rate,memory/usage")
        if name not in CATALOG:
            raise ValueError(f"{name!r} is not a metric kubemonitor knows; choose from {', '.join(sorted(CATALOG))}")
    return names


def _text(text: str) -> str:
    return text


def _optional(text: str) -> str | None:
    return text if text != "" else None


@dataclass(frozen=True)
class Setting:
    field: str          # attribute of Config
    env: str            # environment variable (the seed's names are kept)
    flag: str           # `kubemonitor serve` flag
    parse: Callable[[str], Any]
    default: str | None  # as text, parsed like user input; None = unset
    help: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("influxdb_host", "INFLUXDB_HOST", "--influxdb-host", _text, "localhost", "InfluxDB host"),
    Setting("influxdb_port", "INFLUXDB_PORT", "--influxdb-port", _port, "8086", "InfluxDB HTTP port"),
    Setting("influxdb_user", "INFLUXDB_USER", "--influxdb-user", _text, "", "InfluxDB user (empty = no auth)"),
    Setting("influxdb_pass", "INFLUXDB_PASS", "--influxdb-pass", _text, "", "InfluxDB password", secret=True),
    Setting("influxdb_db", "INFLUXDB_DB", "--influxdb-db", _text, "k8s", "InfluxDB database (Heapster's default is k8s)"),
    Setting("influxdb_ssl", "INFLUXDB_SSL", "--influxdb-ssl", _bool, "off", "use HTTPS to reach InfluxDB"),
    Setting("influxdb_verify_ssl", "INFLUXDB_VERIFY_SSL", "--influxdb-verify-ssl", _bool, "on", "verify InfluxDB's TLS certificate"),
    Setting("influxdb_timeout", "INFLUXDB_TIMEOUT", "--influxdb-timeout", _within(_positive_float, 0.1, 3600, "10"), "10",
            "seconds before an InfluxDB query gives up"),
    Setting("api_username", "API_USERNAME", "--api-username", _optional, None, "API user (unset = the API refuses all requests)"),
    Setting("api_password", "API_PASSWORD", "--api-password", _optional, None, "API password", secret=True),
    Setting("users_file", "KUBEMONITOR_USERS_FILE", "--users-file", _text, "conf/users.yaml", "web users file"),
    Setting("api_clients_file", "KUBEMONITOR_API_CLIENTS_FILE", "--api-clients-file", _text, "conf/api-clients.yaml",
            "named API clients file (kubemonitor apiclient add)"),
    Setting("client_concurrency", "KUBEMONITOR_CLIENT_CONCURRENCY", "--client-concurrency", _within(_positive_int, 1, 64, "4"), "4",
            "API queries one client may have running at once; more get 429"),
    Setting("cookie_secret", "KUBEMONITOR_COOKIE_SECRET", "--cookie-secret", _cookie_secret, None,
            "secret signing session cookies (random per process when unset)", secret=True),
    Setting("log_dir", "KUBEMONITOR_LOG_DIR", "--log-dir", _text, "/logs/kube-monitoring", "where info.log, errors.log and audit.log go"),
    Setting("poll_interval", "KUBEMONITOR_POLL_INTERVAL", "--poll-interval", _within(_positive_float, 0.5, 3600, "10"), "10",
            "seconds between live refreshes"),
    Setting("sample_interval", "KUBEMONITOR_SAMPLE_INTERVAL", "--sample-interval", _sample_interval, "60s",
            "the collector's sampling interval (Heapster's --metric_resolution): each sample stands for this long"),
    Setting("source", "KUBEMONITOR_SOURCE", "--source", _source, "heapster",
            "the schema the collector writes: heapster or telegraf (Telegraf + DCGM exporter)"),
    Setting("inventory_interval", "KUBEMONITOR_INVENTORY_INTERVAL", "--inventory-interval", _sample_interval, None,
            "with telegraf: kube_inventory's interval, how long each request sample stands for (unset: "
            "KUBEMONITOR_SAMPLE_INTERVAL)"),
    Setting("cluster", "KUBEMONITOR_CLUSTER", "--cluster", _cluster, None,
            "read only points whose cluster_name tag is this (Heapster's cluster_name; several clusters in one "
            "database); empty: all"),
    Setting("gpu_sample_interval", "KUBEMONITOR_GPU_SAMPLE_INTERVAL", "--gpu-sample-interval", _sample_interval, "30s",
            "with the telegraf source: DCGM's collection interval; each GPU sample stands for this long"),
    Setting("rollup_rp", "KUBEMONITOR_ROLLUP_RP", "--rollup-rp", _rollup_rp, "kubemonitor",
            "InfluxDB retention policy (infinite) kubemonitor creates for its hourly rollups"),
    Setting("rollup_metrics", "KUBEMONITOR_ROLLUP_METRICS", "--rollup-metrics", _metrics,
            "cpu/usage_rate,memory/usage,gpu/usage", "comma-separated metrics kept as hourly rollups (empty: none)"),
    Setting("rollup_settle", "KUBEMONITOR_ROLLUP_SETTLE", "--rollup-settle", _within(_positive_duration, 10, 7 * 86400, "10m"), "10m",
            "how long after an hour ends it is rolled up (room for late points)"),
    Setting("billing_file", "KUBEMONITOR_BILLING_FILE", "--billing-file", _text, "conf/billing.yaml",
            "rate card: currency, time zone, prices, groups (without the file: usage only)"),
    Setting("max_limit", "KUBEMONITOR_MAX_LIMIT", "--max-limit", _within(_positive_int, 1, 1_000_000, "10000"), "10000",
            "largest `limit` the API accepts"),
    Setting("excluded_namespaces", "KUBEMONITOR_EXCLUDED_NAMESPACES", "--excluded-namespaces", _namespaces, "kube-system",
            "comma-separated namespaces left out of cluster-wide aggregations"),
    Setting("header_timeout", "KUBEMONITOR_HEADER_TIMEOUT", "--header-timeout", _within(_positive_duration, 1, 3600, "15s"), "15s",
            "a connection that has not sent a whole request (or sat idle) this long is closed"),
    Setting("body_timeout", "KUBEMONITOR_BODY_TIMEOUT", "--body-timeout", _within(_positive_duration, 1, 3600, "10s"), "10s",
            "a request body that has not arrived this long after its headers is dropped"),
    Setting("max_connections", "KUBEMONITOR_MAX_CONNECTIONS", "--max-connections", _within(_positive_int, 1, 1_000_000, "4000"), "4000",
            "open connections at most (also capped by the file limit, less a reserve); more are closed at once"),
    Setting("listen_backlog", "KUBEMONITOR_LISTEN_BACKLOG", "--listen-backlog", _within(_positive_int, 1, 65535, "1024"), "1024",
            "connections the kernel queues before the server accepts them"),
    Setting("address", "KUBEMONITOR_ADDRESS", "--address", _text, "", "address to listen on (empty = all interfaces)"),
    Setting("trust_proxy", "KUBEMONITOR_TRUST_PROXY", "--trust-proxy", _bool, "off",
            "behind a reverse proxy: take the client address and scheme from X-Forwarded-For/-Proto "
            "(Secure cookies behind HTTPS); leave off when clients connect directly, or they could forge them"),
    Setting("request_timeout", "KUBEMONITOR_REQUEST_TIMEOUT", "--request-timeout", _within(_positive_duration, 1, 3600, "30s"),
            "30s", "all of one request's InfluxDB calls end within this (a statement's own calls are bounded each "
            "by INFLUXDB_TIMEOUT instead, so it completes and is kept)"),
    Setting("url_prefix", "KUBEMONITOR_URL_PREFIX", "--url-prefix", _url_prefix, "",
            "serve every page, API path, probe, static file and websocket under this path (e.g. /kubemonitor, "
            "for an ingress that passes the path on unchanged); empty = at /"),
    Setting("metrics_token", "KUBEMONITOR_METRICS_TOKEN", "--metrics-token", _text, "",
            "when set, /metrics answers only `Authorization: Bearer <token>` (the scraper's bearer token); "
            "empty = anyone who reaches the port (it shows login outcomes and request counts)"),
)

_DEFAULTS = {s.field: s.default for s in SETTINGS}


def _default(field_name: str) -> Any:
    """A Config field's default: its setting's default text in SETTINGS, parsed like user
    input. The table is the one place a default is written (README's table is tested against it)."""
    setting = next(s for s in SETTINGS if s.field == field_name)
    return None if setting.default is None else setting.parse(setting.default)


@dataclass(frozen=True)
class Config:
    """The settings, typed; each default is the SETTINGS table's."""
    influxdb_host: str = _default("influxdb_host")
    influxdb_port: int = _default("influxdb_port")
    influxdb_user: str = _default("influxdb_user")
    influxdb_pass: str = _default("influxdb_pass")
    influxdb_db: str = _default("influxdb_db")
    influxdb_ssl: bool = _default("influxdb_ssl")
    influxdb_verify_ssl: bool = _default("influxdb_verify_ssl")
    influxdb_timeout: float = _default("influxdb_timeout")
    api_username: str | None = _default("api_username")
    api_password: str | None = _default("api_password")
    users_file: str = _default("users_file")
    api_clients_file: str = _default("api_clients_file")
    client_concurrency: int = _default("client_concurrency")
    cookie_secret: str | None = _default("cookie_secret")
    log_dir: str = _default("log_dir")
    poll_interval: float = _default("poll_interval")
    sample_interval: float = _default("sample_interval")
    source: str = _default("source")
    cluster: str | None = _default("cluster")
    inventory_interval: float | None = _default("inventory_interval")
    gpu_sample_interval: float = _default("gpu_sample_interval")
    rollup_rp: str = _default("rollup_rp")
    rollup_metrics: tuple[str, ...] = _default("rollup_metrics")
    rollup_settle: float = _default("rollup_settle")
    billing_file: str = _default("billing_file")
    max_limit: int = _default("max_limit")
    excluded_namespaces: tuple[str, ...] = _default("excluded_namespaces")
    header_timeout: float = _default("header_timeout")
    body_timeout: float = _default("body_timeout")
    max_connections: int = _default("max_connections")
    listen_backlog: int = _default("listen_backlog")
    address: str = _default("address")
    trust_proxy: bool = _default("trust_proxy")
    metrics_token: str = _default("metrics_token")
    url_prefix: str = _default("url_prefix")
    request_timeout: float = _default("request_timeout")
    # Set when the cookie secret was generated because none was configured.
    cookie_secret_generated: bool = False

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, overrides: Mapping[str, str | None] | None = None) -> Config:
        """Build a Config from the environment, then flag overrides (both as text).

        Raises ConfigError naming the variable (or flag) and what a valid value is.
        """
        environ = os.environ if environ is None else environ
        overrides = overrides or {}
        values: dict[str, Any] = {}
        for s in SETTINGS:
            source, raw = s.env, environ.get(s.env)
            if overrides.get(s.field) is not None:
                source, raw = s.flag, overrides[s.field]
            if raw is None:
                raw = s.default
                source = f"{s.env} (default)"
            if raw is None:
                values[s.field] = None
                continue
            try:
                values[s.field] = s.parse(raw)
            except ValueError as exc:
                shown = "***" if s.secret else repr(raw)
                raise ConfigError(f"{source}={shown}: {exc}") from None
        if not values["cookie_secret"]:
            # Made at start-up (never at import): sessions do not survive a restart and
            # replicas cannot share them, so `serve` warns about it.
            values["cookie_secret"] = secrets.token_hex(32)
            values["cookie_secret_generated"] = True
        return cls(**values)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    @property
    def billing_file_named(self) -> bool:
        """A rate card path other than the default: it must exist (the default may be absent)."""
        return self.billing_file != _DEFAULTS["billing_file"]

    @property
    def api_configured(self) -> bool:
        return bool(self.api_username) and bool(self.api_password)


def check_log_dir(path: str) -> None:
    """Refuse to start with a log directory we cannot write (README "Configuration"), naming the fix."""
    fix = f"create it and make it writable: sudo mkdir -p {path} && sudo chown $(id -u):$(id -g) {path}" \
          f" (or set KUBEMONITOR_LOG_DIR / --log-dir to a writable directory)"
    if not os.path.isdir(path):
        raise ConfigError(f"KUBEMONITOR_LOG_DIR={path!r} does not exist; {fix}")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"KUBEMONITOR_LOG_DIR={path!r} is not writable by this user; {fix}")
    try:  # access() says yes to root everywhere; /proc or a read-only mount still refuses a file
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(f"KUBEMONITOR_LOG_DIR={path!r} cannot hold a file ({exc.strerror}); {fix}") from None
