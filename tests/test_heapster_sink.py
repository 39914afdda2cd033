"""Heapster as its InfluxDB sink really writes (heapster metrics/sinks/influxdb): no
`pod_id`, `hostname`, `host_id` or `namespace_id`; `cluster_name` on every point; GPUs
as `accelerator/*` container series with `make`, `model` and `accelerator_id`; and,
with `withfields=true`, measurement `cpu` with field `usage_rate`. Each case is written
the sink's way into a database of its own, and its answer is known in closed form."""
from __future__ import annotations

import secrets

import pytest

from kubemonitor.ratecard import period_from
from kubemonitor.request import ApiQuery
from kubemonitor.times import NS
from kubemonitor.usage import aggregate, sample_interval_ns

H = 3600
T = 1_704_067_200  # 2024-01-01T00:00:00Z
STEP = 60          # Heapster's --metric_resolution


def sink(metric: str, tags: dict[str, str], value: float | int, t: int, withfields: bool = False,
         cluster: str = "default") -> str:
    """One point as the sink writes it: the metric's labels without the blacklisted ones,
    empty labels left out, `cluster_name` added."""
    tags = {k: v for k, v in tags.items() if v and k not in ("pod_id", "hostname", "host_id", "namespace_id")}
    tags["cluster_name"] = cluster
    measurement, field = (metric.split("/", 1) if withfields else (metric, "value"))
    key = ",".join([measurement.replace(" ", "\\ ")] + [f"{k}={v.replace(' ', chr(92) + ' ')}" for k, v in sorted(tags.items())])
    number = f"{value}i" if isinstance(value, int) else repr(float(value))
    return f"{key} {field}={number} {t}"


def pod_cpu(pod: str, millicores: float, start: int, stop: int, namespace: str = "team-a", node: str = "node-a",
            **kw) -> list[str]:
    """A pod's pod- and container-level cpu/usage_rate and its node's, every STEP s."""
    out = []
    for t in range(start, stop, STEP):
        common = dict(namespace_name=namespace, pod_name=pod, nodename=node, hostname=node, pod_id=f"uid-{pod}",
                      namespace_id="ns-uid", labels="app:web")
        out.append(sink("cpu/usage_rate", {**common, "type": "pod"}, millicores, t, **kw))
        out.append(sink("cpu/usage_rate", {**common, "type": "pod_container", "container_name": "main"}, millicores, t, **kw))
        out.append(sink("cpu/usage_rate", {"type": "node", "nodename": node, "hostname": node, "host_id": "h"}, 2000.0, t, **kw))
    return out


def card(tmp_path, *resources: str) -> str:
    path = tmp_path / "billing.yaml"
    path.write_text("currency: CHF\ntimezone: UTC\nresources:\n" + "".join(f"  {r}\n" for r in resources))
    return str(path)


async def all_pod(app, metric_name: str, namespace: str = "team-a", begin: int = T, end: int = T + H) -> dict[str, dict]:
    metric = await app.catalog.resolve(metric_name)
    q = ApiQuery(namespace=namespace, agg="all-pod", begin_ns=begin * NS, end_ns=end * NS - 1)
    return {r["pod_name"]: r for r in await aggregate(app.influx, metric, q, (), sample_interval_ns(metric, app.config), None)}


@pytest.mark.gen_test(timeout=60)
async def test_the_sinks_points_without_pod_id_are_counted_per_pod(make_app, scratch_db, running_influxd):
    running_influxd.write(scratch_db, pod_cpu("web-1", 500.0, T, T + H), precision="s")
    app = make_app(influxdb_db=scratch_db)
    (row,) = (await all_pod(app, "cpu/usage_rate")).values()
    assert (row["pod_name"], row["count"], row["sum"], row["integral"]) == ("web-1", 60, 60 * 500.0, 500.0)


@pytest.mark.gen_test(timeout=60)
async def test_kubemonitor_cluster_selects_one_of_two_clusters_and_statements_name_it(make_app, scratch_db,
                                                                                      running_influxd, tmp_path):
    """Two Heapsters (cluster_name prod and lab) write into one database: the same pod name
    in the same namespace. Unset, both are read (as before); KUBEMONITOR_CLUSTER=prod reads
    prod's alone, in aggregations, coverage and statements, which name the cluster."""
    running_influxd.write(scratch_db, pod_cpu("web-1", 500.0, T, T + H, cluster="prod")
                          + pod_cpu("web-1", 300.0, T, T + H, node="lab-1", cluster="lab")[: 3 * 30], precision="s")
    both = make_app(influxdb_db=scratch_db)
    # two clusters' series are two series, not duplicates of one: they add up
    assert (await all_pod(both, "cpu/usage_rate"))["web-1"]["sum"] == 60 * 500.0 + 30 * 300.0
    billing = card(tmp_path, "cpu: {metric: cpu/usage_rate, unit: core-hours, divide_by: 1000, price: 1}")
    prod = make_app(influxdb_db=scratch_db, cluster="prod", billing_file=billing, rollup_rp="t_" + secrets.token_hex(4))
    row = (await all_pod(prod, "cpu/usage_rate"))["web-1"]
    assert (row["count"], row["sum"], row["max"]) == (60, 60 * 500.0, 500.0)
    metric = await prod.catalog.resolve("cpu/usage_rate")
    share, gaps = await prod.billing.coverage(metric, T * NS, (T + H) * NS)
    assert share == 1.0 and gaps == []  # lab's node (30 minutes) is not prod's
    statement = (await prod.billing.statement(period_from({"period": "2024-01-01"}, "UTC"), "pod")).data
    assert statement["cluster"] == "prod"
    assert statement["totals"]["usage"]["cpu"] == 0.5  # 500 millicores for an hour
    assert await prod.catalog.namespaces() == ["team-a"]


def test_a_cluster_name_that_cannot_be_one_is_refused():
    from kubemonitor.config import Config, ConfigError
    with pytest.raises(ConfigError, match="KUBEMONITOR_CLUSTER"):
        Config.load({"KUBEMONITOR_CLUSTER": "prod\tlab"})
    assert Config.load({"KUBEMONITOR_CLUSTER": " "}).cluster is None


def accelerator(pod: str, gpus: dict[str, int], start: int, stop: int, **kw) -> list[str]:
    """Heapster's accelerator metrics of one container: a series per GPU (bytes)."""
    return [sink(metric, dict(type="pod_container", namespace_name="team-gpu", pod_name=pod, container_name="train",
                              nodename="gpu-1", make="nvidia", model="tesla-v100", accelerator_id=gpu), value, t, **kw)
            for t in range(start, stop, STEP) for gpu, used in gpus.items()
            for metric, value in (("accelerator/memory_used", used), ("accelerator/memory_total", 16_000_000_000),
                                  ("accelerator/duty_cycle", 80))]


@pytest.mark.gen_test(timeout=60)
async def test_heapsters_accelerator_metrics_are_billable(make_app, scratch_db, running_influxd, tmp_path):
    """Two GPUs of one container (4 GB and 2 GB used) for an hour: 6 GB-h, from
    accelerator/memory_used in a rate card and from gpu/usage, which is read from it when
    the database has no gpu/usage (before: the card refused it; gpu/usage was 0)."""
    running_influxd.write(scratch_db, accelerator("train-1", {"GPU-a": 4_000_000_000, "GPU-b": 2_000_000_000}, T, T + H),
                          precision="s")
    billing = card(tmp_path, "gpu_memory: {metric: accelerator/memory_used, unit: GB-hours, divide_by: 1e9, price: 1}",
                   "gpu: {metric: gpu/usage, unit: GB-hours, divide_by: 1000, price: 1}")
    app = make_app(influxdb_db=scratch_db, billing_file=billing, rollup_rp="t_" + secrets.token_hex(4))
    row = (await all_pod(app, "accelerator/memory_used", "team-gpu"))["train-1"]
    assert (row["count"], row["sum"]) == (60, 60 * 6_000_000_000)
    row = (await all_pod(app, "gpu/usage", "team-gpu"))["train-1"]
    assert (row["count"], row["sum"], row["integral"]) == (60, 60 * 6000.0, 6000.0)
    statement = (await app.billing.statement(period_from({"period": "2024-01-01"}, "UTC"), "pod")).data
    assert statement["totals"]["usage"] == {"gpu_memory": 6.0, "gpu": 6.0}
    assert "notes" not in statement or not any("not in the database" in n for n in statement["notes"])


@pytest.mark.gen_test(timeout=60)
async def test_the_sinks_withfields_layout_is_read(make_app, scratch_db, running_influxd):
    """withfields=true: measurement `cpu`, field `usage_rate`; the same answer as without."""
    running_influxd.write(scratch_db, pod_cpu("web-1", 500.0, T, T + H, withfields=True)
                          + accelerator("train-1", {"GPU-a": 4_000_000_000}, T, T + H, withfields=True), precision="s")
    app = make_app(influxdb_db=scratch_db)
    row = (await all_pod(app, "cpu/usage_rate"))["web-1"]
    assert (row["count"], row["sum"], row["integral"]) == (60, 60 * 500.0, 500.0)
    assert (await all_pod(app, "gpu/usage", "team-gpu"))["train-1"]["integral"] == 4000.0
    # a measurement is not a metric in this layout: "cpu" is not offered as one
    assert await app.catalog.resolve("cpu") is None
    metric = await app.catalog.resolve("cpu/usage_rate")
    assert (await app.billing.coverage(metric, T * NS, (T + H) * NS)) == (1.0, [])
