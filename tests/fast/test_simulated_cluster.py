"""The simulated cluster (`kubemonitor simulate`, the demo, the benchmarks): what it writes, in process."""
from __future__ import annotations

from collections import defaultdict

import pytest

from kubemonitor.metrics import CATALOG
from kubemonitor.simulate import CONTAINER_METRICS, DAY, NETWORK_METRICS, Cluster

START = 1_700_000_000 // DAY * DAY  # a midnight


def parse(lines):
    """line protocol -> list of (metric, tags, value, t)"""
    out = []
    for line in lines:
        head, value, t = line.rsplit(" ", 2)
        parts = head.replace("\\,", "\x00").split(",")
        metric, tags = parts[0], dict(p.replace("\x00", ",").split("=", 1) for p in parts[1:])
        v = value.split("=", 1)[1]
        out.append((metric, tags, float(v.rstrip("i")), int(t)))
    return out


@pytest.fixture(scope="module")
def day():
    cluster = Cluster(seed=7, start=START)
    return [parse(cluster.tick(START + i * 600)) for i in range(144)]  # one day, every 10 minutes


def test_every_catalog_metric_and_every_level_is_written(day):
    metrics = {m for tick in day for m, *_ in tick}
    # every catalog metric Heapster's sink writes: its GPUs as accelerator/* (gpu/usage is the seed's name,
    # read from accelerator/memory_used; gpu/utilization is DCGM's)
    assert set(CATALOG) - {"gpu/utilization", "gpu/usage"} <= metrics and "gpu/usage" not in metrics
    types = {tags["type"] for tick in day for _, tags, _, _ in tick}
    assert types == {"pod_container", "pod", "ns", "node", "cluster", "sys_container"}
    sample = next(tags for m, tags, _, _ in day[0] if tags["type"] == "pod_container")
    assert {"namespace_name", "pod_name", "container_name", "nodename", "labels", "container_base_image",
            "cluster_name"} <= set(sample)


def test_heapster_mode_writes_what_the_sink_writes(day):
    """The sink drops pod_id, hostname, host_id and namespace_id, and adds cluster_name."""
    keys = {k for tick in day for _, tags, _, _ in tick for k in tags}
    assert not keys & {"pod_id", "hostname", "host_id", "namespace_id"}
    assert {tags["cluster_name"] for tick in day for _, tags, _, _ in tick} == {"default"}
    gpu = [tags for tick in day for m, tags, _, _ in tick if m == "accelerator/memory_used"]
    assert gpu and all(t["type"] == "pod_container" and t["make"] == "nvidia" and t["accelerator_id"] for t in gpu)


def test_sums_are_consistent_container_pod_namespace_node_cluster(day):
    for tick in day[::12]:
        by = defaultdict(float)
        for metric, tags, value, _ in tick:
            kind = tags["type"]
            if kind == "pod_container":
                by[(metric, "c>pod", tags["namespace_name"], tags["pod_name"])] += value
            elif kind == "pod":
                by[(metric, "pod", tags["namespace_name"], tags["pod_name"])] = value
                by[(metric, "pod>ns", tags["namespace_name"])] += value
                by[(metric, "pod>node", tags["nodename"])] += value
            elif kind == "sys_container":
                by[(metric, "pod>node", tags["nodename"])] += value
            elif kind == "ns":
                by[(metric, "ns", tags["namespace_name"])] = value
            elif kind == "node":
                by[(metric, "node", tags["nodename"])] = value
                by[(metric, "node>cluster")] += value
            elif kind == "cluster":
                by[(metric, "cluster")] = value
        for key, value in list(by.items()):
            metric, level = key[0], key[1]
            if level == "c>pod" and metric in CONTAINER_METRICS:
                assert by[(metric, "pod", *key[2:])] == pytest.approx(value, rel=1e-5), key
            if level == "pod>ns" and metric != "uptime":  # uptime is not a quantity that adds up
                assert by[(metric, "ns", key[2])] == pytest.approx(value, rel=1e-5), key
            if level == "pod>node" and metric in ("cpu/usage_rate", "memory/usage", "gpu/usage", "memory/request"):
                assert by[(metric, "node", key[2])] == pytest.approx(value, rel=1e-5), key
            if level == "node>cluster" and metric in ("cpu/usage_rate", "memory/usage", "cpu/node_capacity"):
                assert by[(metric, "cluster")] == pytest.approx(value, rel=1e-5), key


def _series(day, metric, kind="pod_container"):
    out = defaultdict(list)
    for tick in day:
        for m, tags, value, t in tick:
            if m == metric and tags["type"] == kind:
                out[(tags["namespace_name"], tags["pod_name"], tags.get("container_name"))].append((t, value))
    return out


def test_counters_grow_and_reset_only_with_the_container_and_rates_match(day):
    usage = _series(day, "cpu/usage")
    rates = _series(day, "cpu/usage_rate")
    uptime = _series(day, "uptime")
    checked = 0
    for key, points in usage.items():
        ups = dict(uptime[key])
        rate = dict(rates[key])
        for (t0, v0), (t1, v1) in zip(points, points[1:]):
            if ups[t1] > ups[t0]:  # same container run: the counter only grows, by rate x time
                assert v1 >= v0
                assert (v1 - v0) == pytest.approx(rate[t1] / 1000 * (t1 - t0) * 1e9, rel=1e-5)  # rates carry 6 digits
                checked += 1
            else:
                assert v1 <= v0 or ups[t1] < ups[t0]  # a restart resets it
    assert checked > 1000
    for metric in NETWORK_METRICS:
        assert _series(day, metric, "pod") and not _series(day, metric)  # pod level only, as in Heapster


def test_pods_come_and_go_and_restarts_happen(day):
    pods_by_tick = [{tags["pod_name"] for m, tags, _, _ in tick if m == "cpu/usage_rate" and tags["type"] == "pod"} for tick in day]
    assert len(set.union(*pods_by_tick)) > len(pods_by_tick[0])  # new pods appear
    assert any(a - b for a, b in zip(pods_by_tick, pods_by_tick[1:]))  # and finish
    gpu = {tags["pod_name"] for tick in day for m, tags, _, _ in tick if m == "accelerator/memory_used"}
    assert gpu
    resets = sum(1 for points in _series(day, "uptime").values() for (_, a), (_, b) in zip(points, points[1:]) if b < a)
    assert resets > 0


def _cluster_cpu(cluster: Cluster) -> dict[int, float]:
    lines = [line for i in range(144) for line in cluster.tick(START + i * 600) if line.startswith("cpu/usage_rate,") and ",type=cluster " in line]
    return {t: v for m, tags, v, t in parse(lines) if m == "cpu/usage_rate" and tags["type"] == "cluster"}


@pytest.mark.parametrize("seed", [1, 2, 3, 7, 11])
def test_the_cluster_is_busier_in_the_afternoon_than_at_night(seed):
    cpu = _cluster_cpu(Cluster(seed=seed, start=START))
    afternoon = [v for t, v in cpu.items() if 13 <= (t % DAY) / 3600 <= 17]
    night = [v for t, v in cpu.items() if 1 <= (t % DAY) / 3600 <= 5]
    assert len(afternoon) == len(night) == 25
    assert sum(afternoon) / 25 > 2 * sum(night) / 25  # README: busiest mid-afternoon UTC
    assert Cluster.diurnal(START + 15 * 3600) > Cluster.diurnal(START + 3 * 3600)


def test_a_gpu_job_is_always_running():
    for seed in (1, 2, 3):
        cluster = Cluster(seed=seed, start=START)
        for i in range(0, 144, 6):
            assert any(m == "accelerator/memory_used" for m, _, _, _ in parse(cluster.tick(START + i * 600)))


def test_same_seed_same_cluster():
    a, b = Cluster(seed=3, start=START), Cluster(seed=3, start=START)
    assert a.tick(START + 3600) == b.tick(START + 3600)
    assert [p.base_name for p in Cluster(seed=4, start=START).pods] != [p.base_name for p in a.pods]


def test_telegraf_mode_lists_finished_jobs_and_the_nodes_allocatable():
    """kube_inventory keeps a succeeded Job's pod (and its requests) for a while, and writes
    each node's allocatable: what billing by request must not count, and capacity."""
    cluster = Cluster(seed=2, namespaces=3, pods=12, nodes=2, source="telegraf", start=START)
    ticks = [cluster.tick(START + h * 3600) for h in range(24)]
    lines = [line for tick in ticks for line in tick]
    done = [line for line in lines if ",phase=Succeeded," in line]
    assert done and all("resource_requests_millicpu_units=" in line and "cpu_usage" not in line for line in done)

    def pods(tick, phase):
        return {line.split("pod_name=")[1].split(",")[0] for line in tick if f",phase={phase}," in line}
    assert all(not pods(tick, "Succeeded") & pods(tick, "Running") for tick in ticks)  # finished, not running
    nodes = [line for line in lines if line.startswith("kubernetes_node,") and "allocatable_millicpu_cores=" in line]
    assert {line.split("node_name=")[1].split(" ")[0] for line in nodes} == {"node-1", "node-2"}


@pytest.mark.parametrize("source", ["heapster", "telegraf"])
def test_notebooks_request_nothing_and_requests_over_and_undershoot(source):
    """The simulated cluster has pods without requests (notebooks: Heapster writes 0,
    kube_inventory no field), pods using less than they request and pods bursting above."""
    cluster = Cluster(seed=1, namespaces=5, pods=30, source=source, start=START)
    lines = cluster.tick(START + 15 * 3600)
    request = "cpu/request," if source == "heapster" else "resource_requests_millicpu_units="
    notebooks = [line for line in lines if "pod_name=notebook" in line and request in line]
    if source == "heapster":
        assert notebooks and all(line.rsplit(" ", 2)[1] == "value=0i" for line in notebooks)
    else:
        assert notebooks == [] and any("pod_name=notebook" in line and "resource_limits_millicpu_units=" in line for line in lines)
    below = above = 0
    for pod in cluster.pods:
        for c in pod.containers:
            if c.cpu_request:
                below += c.cpu_base < c.cpu_request
                above += c.cpu_base > c.cpu_request
    assert below and above
