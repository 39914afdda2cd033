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
    (deployment,) = by_kind("Deployment", "kube-monitoring")
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
    heapster = {"cpu-usage_rate.json", "memory-usage.json", "gpu-usage.json"}
    assert set(boards) == heapster | {"telegraf-" + name for name in heapster}
    for name, board in boards.items():
        titles = [p["title"] for p in board["panels"]]
        assert any("by namespace" in t for t in titles) and any("by pod" in t for t in titles)
        assert board["tags"] == ["kubemonitor", "telegraf" if name.startswith("telegraf-") else "heapster"]
        for panel in board["panels"]:
            for target in panel["targets"]:
                if name.startswith("telegraf-"):  # one usage field, never kube_inventory's
                    assert '"type"' not in target["query"] and "resource_" not in target["query"]
                    continue
                assert "\"type\" = 'pod'" in target["query"]  # the API's counting rule
                assert not re.search(r"'(ns|node|cluster|pod_container)'", target["query"])


def test_the_telegraf_dashboards_are_made_from_the_heapster_ones():
    import subprocess
    import sys
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "dashboards.py"), "--check"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr


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


@pytest.mark.parametrize("board,line", [
    ("cpu-usage_rate.json", "cpu/usage_rate,namespace_name=team-a,pod_name=web-1,type=pod value=500"),
    ("telegraf-cpu-usage_rate.json",
     "kubernetes_pod_container,namespace=team-a,pod_name=web-1,container_name=app cpu_usage_nanocores=500000000i")])
def test_the_charts_panels_show_points_stamped_ahead_of_influxdbs_clock(running_influxd, scratch_db, board, line):
    """A collector whose clock runs a few minutes ahead: the panels' outer query had no time
    range, so InfluxDB ended it at its own now() and the newest points vanished."""
    import time
    ahead = (int(time.time()) // 60 + 5) * 60
    running_influxd.write(scratch_db, [f"{line} {ahead}"], precision="s")
    span = [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) for t in (ahead - 600, ahead + 600)]
    for panel in dashboards()[board]["panels"]:
        if panel["id"] in (1, 2):  # the charts: a sum over the pods' (containers') means
            q = grafana_to_influxql(panel["targets"][0]["query"], *span)
            series = running_influxd.query(q, scratch_db)["results"][0].get("series", [])
            assert [v for s in series for v in s["values"]] == [[time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ahead)), 500]], q


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
    import subprocess
    for args, source in (([], "heapster"), (["SOURCE=telegraf"], "telegraf")):
        dry = subprocess.run(["make", "-n", "demo", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert f"-m kubemonitor demo --port 8000 --source {source}" in dry.stdout, dry.stdout


# Every plugin and option the Telegraf configuration may use, as Telegraf's documentation lists
# them (docs.influxdata.com/telegraf/v1: configuration "agent", and the READMEs of
# outputs.influxdb, inputs.kubernetes, inputs.prometheus, inputs.kube_inventory; the plugin
# options of CONFIGURATION.md, e.g. interval and namepass, apply to every input). `telegraf --test`
# is not available here: a misspelt option is what this catches.
TELEGRAF_OPTIONS = {
    "agent": {"interval", "round_interval", "flush_interval", "omit_hostname", "metric_batch_size", "metric_buffer_limit",
              "collection_jitter", "flush_jitter", "precision", "hostname"},
    "outputs.influxdb": {"urls", "database", "skip_database_creation", "username", "password", "retention_policy",
                         "timeout", "tls_ca", "insecure_skip_verify"},
    "inputs.kubernetes": {"url", "bearer_token", "label_include", "label_exclude", "response_timeout", "tls_ca",
                          "tls_cert", "tls_key", "insecure_skip_verify", "interval", "namepass"},
    "inputs.prometheus": {"urls", "metric_version", "monitor_kubernetes_pods", "monitor_kubernetes_pods_method",
                          "monitor_kubernetes_pods_port", "monitor_kubernetes_pods_path", "monitor_kubernetes_pods_scheme",
                          "monitor_kubernetes_pods_namespace", "pod_scrape_scope", "node_ip", "pod_namespace_label_name",
                          "kubernetes_label_selector", "kubernetes_field_selector", "bearer_token", "interval",
                          "namepass", "tls_ca", "insecure_skip_verify"},
    "inputs.kube_inventory": {"url", "namespace", "bearer_token", "resource_include", "resource_exclude", "tls_ca",
                              "insecure_skip_verify", "response_timeout", "selector_include", "selector_exclude",
                              "interval"},
}


def telegraf_configs():
    import tomllib
    (cm,) = by_kind("ConfigMap", "kube-monitoring-telegraf")
    return {name: tomllib.loads(text) for name, text in cm["data"].items()}


def test_the_telegraf_configuration_parses_and_uses_only_documented_options():
    configs = telegraf_configs()
    assert set(configs) == {"node.conf", "inventory.conf"}
    plugins = {}
    for name, config in configs.items():
        for section, value in config.items():
            entries = [(section, value)] if section == "agent" else [
                (f"{section}.{plugin}", options) for plugin, instances in value.items() for options in instances]
            for plugin, options in entries:
                assert plugin in TELEGRAF_OPTIONS, (name, plugin)
                assert set(options) <= TELEGRAF_OPTIONS[plugin], (name, plugin, set(options) - TELEGRAF_OPTIONS[plugin])
                plugins.setdefault(name, {})[plugin] = options
    node, inventory = plugins["node.conf"], plugins["inventory.conf"]
    assert set(node) == {"agent", "outputs.influxdb", "inputs.kubernetes", "inputs.prometheus"}
    assert set(inventory) == {"agent", "outputs.influxdb", "inputs.kube_inventory"}
    # what kubemonitor's telegraf source reads
    assert node["agent"]["interval"] == "10s"  # KUBEMONITOR_SAMPLE_INTERVAL
    dcgm = node["inputs.prometheus"]
    assert dcgm["metric_version"] == 1 and dcgm["interval"] == "30s"  # KUBEMONITOR_GPU_SAMPLE_INTERVAL
    assert dcgm["pod_namespace_label_name"] == "pod_namespace"  # keeps DCGM's own namespace label
    assert dcgm["kubernetes_field_selector"] == "spec.nodeName=${NODE_NAME}"  # its own node's exporter only
    assert set(dcgm["namepass"]) == {"DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_GPU_UTIL"}
    assert inventory["inputs.kube_inventory"]["resource_include"] == ["pods"]
    for plugins_of in (node, inventory):
        assert plugins_of["outputs.influxdb"]["database"] == "k8s"


def test_telegraf_runs_per_node_with_the_inventory_once_and_the_least_rbac():
    (daemonset,) = by_kind("DaemonSet", "kube-monitoring-telegraf")
    (inventory,) = by_kind("Deployment", "kube-monitoring-telegraf-inventory")
    assert inventory["spec"]["replicas"] == 1
    (role,) = by_kind("ClusterRole", "kube-monitoring-telegraf")
    (binding,) = by_kind("ClusterRoleBinding", "kube-monitoring-telegraf")
    (account,) = by_kind("ServiceAccount", "kube-monitoring-telegraf")
    granted = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert granted == {("nodes/stats", "get"), ("nodes/pods", "get"), ("nodes", "get"), ("nodes", "list"),
                       ("pods", "get"), ("pods", "list"), ("pods", "watch")}
    assert all(rule["apiGroups"] == [""] for rule in role["rules"])  # no nodes/proxy, no secrets, no wildcards
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": account["metadata"]["namespace"]}]
    configs = {"kube-monitoring-telegraf": "node.conf", "kube-monitoring-telegraf-inventory": "inventory.conf"}
    import re as _re
    from tomllib import loads
    (cm,) = by_kind("ConfigMap", "kube-monitoring-telegraf")
    for workload in (daemonset, inventory):
        spec = workload["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == account["metadata"]["name"]
        (container,) = spec["containers"]
        assert _re.fullmatch(r"telegraf:\d+\.\d+\.\d+", container["image"])  # pinned
        assert container["securityContext"]["readOnlyRootFilesystem"] and spec["securityContext"]["runAsNonRoot"]
        conf = configs[workload["metadata"]["name"]]
        assert container["args"] == ["--config", f"/etc/telegraf/{conf}"]
        loads(cm["data"][conf])
        # every ${VARIABLE} the configuration uses is set in the container
        wanted = set(_re.findall(r"\$\{(\w+)\}", cm["data"][conf]))
        env = {e["name"]: e for e in container["env"]}
        assert wanted <= set(env), wanted - set(env)
        for name in ("INFLUXDB_USER", "INFLUXDB_PASS"):
            assert env[name]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert {e["name"] for e in daemonset["spec"]["template"]["spec"]["containers"][0]["env"]} >= {"HOSTIP", "NODE_NAME"}
