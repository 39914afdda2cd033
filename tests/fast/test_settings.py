"""Settings (environment, flags, bounds) and the metric catalog: checked before anything starts."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kubemonitor.config import SETTINGS, Config, ConfigError, check_log_dir
from kubemonitor.metrics import CATALOG, MAIN_METRICS


def test_catalog_has_the_seeds_37_metrics_heapsters_gpus_three_main_each_with_unit():
    # the seed's 37 (gpu/usage among them), Heapster's own GPU metrics (accelerator/*: what its
    # sink really writes), and gpu/utilization, which only DCGM reports (the telegraf source)
    accelerator = {"accelerator/memory_used", "accelerator/memory_total", "accelerator/duty_cycle"}
    assert accelerator <= set(CATALOG) and len(CATALOG) == 41
    assert len([m for m in CATALOG if m != "gpu/utilization" and m not in accelerator]) == 37
    assert set(MAIN_METRICS) == {"cpu/usage_rate", "memory/usage", "gpu/usage"}
    assert all(m.unit and m.integral_unit and m.description for m in CATALOG.values())


def test_config_from_environment_and_overrides():
    env = {"INFLUXDB_HOST": "db", "INFLUXDB_PORT": "9999", "INFLUXDB_SSL": "yes", "KUBEMONITOR_MAX_LIMIT": "50",
           "KUBEMONITOR_EXCLUDED_NAMESPACES": "kube-system, monitoring", "API_USERNAME": "u", "API_PASSWORD": "p"}
    c = Config.load(env, {"influxdb_port": "1234"})
    assert (c.influxdb_host, c.influxdb_port, c.influxdb_ssl, c.max_limit) == ("db", 1234, True, 50)
    assert c.excluded_namespaces == ("kube-system", "monitoring") and c.api_configured
    assert c.cookie_secret_generated and len(c.cookie_secret) == 64
    d = Config.load({})
    assert (d.influxdb_host, d.influxdb_port, d.influxdb_db, d.influxdb_timeout) == ("localhost", 8086, "k8s", 10.0)
    assert d.log_dir == "/logs/kube-monitoring" and d.poll_interval == 10 and not d.api_configured
    assert d.cookie_secret != Config.load({}).cookie_secret  # made per process start, not shared
    assert {s.env for s in SETTINGS} >= {"INFLUXDB_HOST", "INFLUXDB_PORT", "INFLUXDB_USER", "INFLUXDB_PASS", "INFLUXDB_DB",
                                         "INFLUXDB_SSL", "INFLUXDB_VERIFY_SSL", "INFLUXDB_TIMEOUT", "API_USERNAME",
                                         "API_PASSWORD", "KUBEMONITOR_USERS_FILE", "KUBEMONITOR_COOKIE_SECRET",
                                         "KUBEMONITOR_LOG_DIR", "KUBEMONITOR_POLL_INTERVAL", "KUBEMONITOR_MAX_LIMIT",
                                         "KUBEMONITOR_EXCLUDED_NAMESPACES"}


def test_url_prefix_is_a_path_without_its_trailing_slash():
    assert Config.load({}).url_prefix == ""
    assert Config.load({"KUBEMONITOR_URL_PREFIX": "/"}).url_prefix == ""
    assert Config.load({"KUBEMONITOR_URL_PREFIX": "/tools/kubemonitor/"}).url_prefix == "/tools/kubemonitor"


@pytest.mark.parametrize("env,words", [
    ({"INFLUXDB_PORT": "eighty"}, ["INFLUXDB_PORT", "port number"]),
    ({"INFLUXDB_PORT": "70000"}, ["INFLUXDB_PORT"]),
    ({"INFLUXDB_TIMEOUT": "0"}, ["INFLUXDB_TIMEOUT", "greater than 0"]),
    ({"INFLUXDB_SSL": "maybe"}, ["INFLUXDB_SSL", "true/false"]),
    ({"KUBEMONITOR_MAX_LIMIT": "-5"}, ["KUBEMONITOR_MAX_LIMIT"]),
    ({"KUBEMONITOR_POLL_INTERVAL": "soon"}, ["KUBEMONITOR_POLL_INTERVAL"]),
    ({"KUBEMONITOR_EXCLUDED_NAMESPACES": "Kube System"}, ["KUBEMONITOR_EXCLUDED_NAMESPACES"]),
    # bounds: a value that spins a core or never comes is refused at start-up
    ({"KUBEMONITOR_POLL_INTERVAL": "1e-9"}, ["KUBEMONITOR_POLL_INTERVAL", "from 0.5 to 3600"]),
    ({"INFLUXDB_TIMEOUT": "1e-9"}, ["INFLUXDB_TIMEOUT", "from 0.1"]),
    ({"KUBEMONITOR_ROLLUP_SETTLE": "1e-9"}, ["KUBEMONITOR_ROLLUP_SETTLE", "from 10"]),
    ({"KUBEMONITOR_HEADER_TIMEOUT": "1e-9"}, ["KUBEMONITOR_HEADER_TIMEOUT", "from 1"]),
    ({"KUBEMONITOR_CLIENT_CONCURRENCY": "100000"}, ["KUBEMONITOR_CLIENT_CONCURRENCY", "to 64"]),
    ({"KUBEMONITOR_ROLLUP_RP": "autogen"}, ["KUBEMONITOR_ROLLUP_RP", "not be autogen"]),
    ({"KUBEMONITOR_URL_PREFIX": "kubemonitor"}, ["KUBEMONITOR_URL_PREFIX", "e.g. /kubemonitor"]),
    ({"KUBEMONITOR_URL_PREFIX": "/a b"}, ["KUBEMONITOR_URL_PREFIX", "plain segments"]),
    ({"KUBEMONITOR_URL_PREFIX": "/x//y"}, ["KUBEMONITOR_URL_PREFIX"]),
    ({"KUBEMONITOR_ROLLUP_METRICS": "nope/x"}, ["KUBEMONITOR_ROLLUP_METRICS", "not a metric kubemonitor knows", "cpu/usage_rate"]),
])
def test_bad_config_values_name_the_setting(env, words):
    with pytest.raises(ConfigError) as info:
        Config.load(env)
    for word in words:
        assert word in str(info.value)


def test_bad_secret_values_are_not_echoed():
    secret = "hunter2-too-short"
    for env, flags, named in (({"KUBEMONITOR_COOKIE_SECRET": secret}, {}, "KUBEMONITOR_COOKIE_SECRET"),
                              ({}, {"cookie_secret": secret}, "--cookie-secret")):
        with pytest.raises(ConfigError) as info:
            Config.load(env, flags)
        message = str(info.value)
        assert named in message and "***" in message and "at least 32" in message
        assert secret not in message and "hunter2" not in message
    r = _serve(env={"KUBEMONITOR_COOKIE_SECRET": secret})
    assert r.returncode == 2 and "KUBEMONITOR_COOKIE_SECRET=***" in r.stderr and "hunter2" not in r.stderr + r.stdout
    # a non-secret setting is echoed, so a person sees what was wrong
    with pytest.raises(ConfigError) as info:
        Config.load({}, {"influxdb_port": "eighty"})
    assert "--influxdb-port='eighty'" in str(info.value)


def test_log_dir_must_exist_and_be_writable(tmp_path):
    with pytest.raises(ConfigError) as info:
        check_log_dir(str(tmp_path / "missing"))
    assert "mkdir -p" in str(info.value) and "chown" in str(info.value)
    check_log_dir(str(tmp_path))


def _serve(*args, env=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "kubemonitor", "serve", *args], capture_output=True, text=True,
                          timeout=30, env=full_env)


@pytest.mark.parametrize("args,env,words", [
    (["8000"], {"INFLUXDB_PORT": "abc"}, ["INFLUXDB_PORT"]),
    (["notaport"], {}, ["PORT", "1-65535"]),
    (["8000", "--log-dir", "/nonexistent/kubemonitor"], {}, ["mkdir -p /nonexistent/kubemonitor", "chown"]),
    (["8000", "--log-dir", "/proc"], {}, ["/proc", "cannot hold a file"]),  # root's access() says yes there
    (["8000", "--poll-interval", "1e-9"], {}, ["--poll-interval", "from 0.5 to 3600"]),
])
def test_serve_refuses_bad_settings_with_one_line(args, env, words):
    r = _serve(*args, env=env)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    for word in words:
        assert word in r.stderr


def test_proxy_and_ca_environment_is_read_once_per_client(monkeypatch):
    from kubemonitor.influx import InfluxGateway
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/our-ca.pem")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    gateway = InfluxGateway(Config(influxdb_host="influx.example", influxdb_ssl=True))
    client = gateway._client()
    assert client._session.trust_env is False
    assert client._session.proxies["https"] == "http://proxy.invalid:3128"
    assert client._verify_ssl == "/etc/ssl/our-ca.pem"
    monkeypatch.setenv("NO_PROXY", "influx.example")
    gateway = InfluxGateway(Config(influxdb_host="influx.example", influxdb_verify_ssl=False, influxdb_ssl=True))
    client = gateway._client()
    assert not client._session.proxies and client._verify_ssl is False
    gateway.close()
