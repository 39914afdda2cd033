"""Deployment artefacts: Dockerfile, Makefile, the Kubernetes manifest and its Grafana dashboards."""
from __future__ import annotations

import json
import os
import re

import kubernetes_validate
import pytest
import yaml
from conftest import DB

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = os.path.join(ROOT, "deploy", "kube-monitoring.yaml")


def documents():
    with open(MANIFEST) as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def by_kind(kind, name=None):
    return [d for d in documents() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


@pytest.mark.parametrize("version", ["1.30.0", kubernetes_validate.latest_version()])
def test_every_document_validates_against_the_kubernetes_schemas(version):
    docs = documents()
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "ConfigMap"}
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_app_and_grafana_sidecar_with_probes_resources_and_no_literal_secrets():
    (deployment,) = by_kind("Deployment")
    assert deployment["apiVersion"] == "apps/v1"
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    app, grafana = containers["kube-monitoring"], containers["grafana"]
    assert app["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert app["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", grafana["image"])  # pinned, not :latest
    for c in containers.values():
        assert c["resources"]["requests"] and c["resources"]["limits"]
        for env in c.get("env", []):
            if re.search(r"PASS|SECRET|USERNAME|USER$", env["name"]) and env["name"] != "GF_SECURITY_ADMIN_USER":
                assert "valueFrom" in env and "secretKeyRef" in env["valueFrom"], env["name"]
    env = {e["name"]: e.get("value") for e in grafana["env"]}
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    users_mount = next(m for m in app["volumeMounts"] if m["name"] == "users")
    sources = [source["secret"] for source in volumes["users"]["projected"]["sources"]]
    assert users_mount["readOnly"] and volumes["users"]["projected"]["defaultMode"] == 0o440
    assert [(s["name"], s.get("optional", False), [i["path"] for i in s["items"]]) for s in sources] == [
        ("kube-monitoring-users", False, ["users.yaml"]), ("kube-monitoring-api-clients", True, ["api-clients.yaml"])]
    app_env = {e["name"]: e.get("value") for e in app["env"]}
    assert app_env["KUBEMONITOR_API_CLIENTS_FILE"] == users_mount["mountPath"].rstrip("/") + "/api-clients.yaml"
    text = open(MANIFEST).read()
    assert "kind: Secret" not in text  # created with kubectl, never committed
    (service,) = by_kind("Service")
    assert service["spec"]["type"] == "NodePort"
    assert {p["port"] for p in service["spec"]["ports"]} == {8000, 3000}


def dashboards():
    (cm,) = by_kind("ConfigMap", "kube-monitoring-grafana-dashboards")
    return {name: json.loads(text) for name, text in cm["data"].items()}


def test_grafana_is_provisioned_with_influxdb_and_a_dashboard_per_main_metric():
    (prov,) = by_kind("ConfigMap", "kube-monitoring-grafana-provisioning")
    ds = yaml.safe_load(prov["data"]["datasources.yaml"])["datasources"][0]
    assert ds["type"] == "influxdb" and "${INFLUXDB_HOST}" in ds["url"] and ds["jsonData"]["dbName"] == "${INFLUXDB_DB}"
    boards = dashboards()
    assert set(boards) == {"cpu-usage_rate.json", "memory-usage.json", "gpu-usage.json"}
    for board in boards.values():
        titles = [p["title"] for p in board["panels"]]
        assert any("by namespace" in t for t in titles) and any("by pod" in t for t in titles)
        for panel in board["panels"]:
            for target in panel["targets"]:
                assert "\"type\" = 'pod'" in target["query"]  # the API's counting rule
                assert not re.search(r"'(ns|node|cluster|pod_container)'", target["query"])


def grafana_to_influxql(query, begin, end):
    return (query.replace("$timeFilter", f"time >= '{begin}' AND time <= '{end}'")
                 .replace("$__interval", "1m").replace("$sample_interval", "60").replace("/^$namespace$/", "/^(team-a|team-b)$/"))


@pytest.mark.gen_test
async def test_dashboard_queries_run_on_influxdb_and_agree_with_the_api(running_influxd, anchors, api):
    begin, end = "2017-12-01T10:00:00Z", "2017-12-01T10:59:00Z"
    board = dashboards()["cpu-usage_rate.json"]
    results = {}
    for panel in board["panels"]:
        q = grafana_to_influxql(panel["targets"][0]["query"], begin, end)
        res = running_influxd.query(q, DB)["results"][0]
        assert "error" not in res, (q, res)
        results[panel["id"]] = res["series"]
    # by namespace: team-a's pods (web-1 500 + web-2 100..690; batch-1 has no pod series) at 10:00
    team_a = next(s for s in results[1] if s["tags"]["namespace_name"] == "team-a")
    assert team_a["values"][0][1] == 500 + 100
    # the range table: usage (samples x the sample interval) equals the API's integral, for every pod
    # with pod-level series (Grafana's panel reads those only)
    table = {(s["tags"]["namespace_name"], s["tags"]["pod_name"]): s["values"][0][1] for s in results[3]}
    status, rows, _ = await api("cpu/usage_rate", {"agg": "all-pod", "timeBeginInterval": begin, "timeEndInterval": end})
    assert status == 200
    for row in rows:
        if row["series_type"] == "pod":
            assert table[(row["namespace_name"], row["pod_name"])] == pytest.approx(row["integral"])


def test_dockerfile_copies_only_what_exists_and_runs_as_non_root():
    text = open(os.path.join(ROOT, "Dockerfile")).read()
    for line in text.splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            for src in line.split()[1:-1]:
                assert os.path.exists(os.path.join(ROOT, src)), src
    assert re.search(r"^FROM python:3\.\d+-slim", text, re.M)
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.M)
    assert "EXPOSE 8000" in text and "/healthz" in text.split("HEALTHCHECK", 1)[1]
    assert 'CMD ["kubemonitor", "serve", "8000"]' in text


def test_makefile_targets():
    text = open(os.path.join(ROOT, "Makefile")).read()
    for target in ("build", "push", "all", "install", "test", "demo", "run"):
        assert re.search(rf"^{target}:", text, re.M), target
    assert "IMAGE_NAME" in text and "VERSION" in text
