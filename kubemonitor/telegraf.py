"""Today's collectors (README "Collecting data today"): Telegraf's `inputs.kubernetes`
(each kubelet's /stats/summary) and `inputs.kube_inventory` (requests and limits),
and NVIDIA's DCGM exporter scraped by Telegraf's `inputs.prometheus`
(`metric_version = 1`), all in InfluxDB 1.x.

Facts this table rests on (upstream sources: influxdata/telegraf
plugins/inputs/kubernetes, plugins/inputs/kube_inventory, plugins/inputs/prometheus;
NVIDIA/dcgm-exporter's default counters):

* `kubernetes_pod_container` (inputs.kubernetes): tags `namespace`, `pod_name`,
  `container_name`, `node_name`; fields `cpu_usage_nanocores`,
  `cpu_usage_core_nanoseconds`, `memory_usage_bytes`, `memory_working_set_bytes`,
  `memory_rss_bytes`, ... There are no pod-level series and no pod UID: a pod is
  always the sum of its containers, and a pod name is one instance.
* kube_inventory writes the same measurement name with other fields
  (`resource_requests_millicpu_units`, `resource_limits_memory_bytes`, ...) and
  tags (`phase`, `state`, ...). Every statement selects one field, and InfluxDB
  returns only points that have it, so inventory points never count as usage.
* `kubernetes_pod_network`: counters `rx_bytes`, `tx_bytes` (rates are their
  non-negative derivative: a counter reset drops one interval, never goes negative).
* `kubernetes_node` (kube_inventory): `allocatable_millicpu_cores`, `allocatable_memory_bytes`,
  `capacity_*`, tag `node_name`: what a statement's capacity is.
* `kubernetes_node`: the node's own totals; "the collector wrote something" for a
  statement's coverage.
* DCGM: measurement `DCGM_FI_DEV_FB_USED` (MiB) / `DCGM_FI_DEV_GPU_UTIL` (%), field
  `gauge`, tags `namespace`, `pod`, `container`, `gpu`, `UUID`, `hostname` (`Hostname`
  before dcgm-exporter 4.8, May 2026). A GPU no pod holds has no `namespace`/`pod`
  labels; it counts for coverage only. With `--use-old-namespace` the pod labels are
  `pod_namespace`, `pod_name`, `container_name`; without `-k` (`--kubernetes`) there
  are none. Which names the data has is learned from its tag keys (`learn`).
* Telegraf's inputs.prometheus sets its own tags last (plugins/inputs/prometheus:
  the URL's tags overwrite the metric's): with `monitor_kubernetes_pods`, `pod_name`
  is always the exporter's pod, and `namespace` - or `pod_namespace_label_name` - the
  exporter's namespace.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .source import Layout, Querier, Source, quote

MIB_IN_MB = (1_048_576, 1_000_000)  # MiB x 1.048576 = MB, exactly
CONTAINER = "kubernetes_pod_container"
NODE = "kubernetes_node"
FB_USED, GPU_UTIL = "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_GPU_UTIL"

_KUBELET: dict[str, Any] = dict(namespace="namespace", pod="pod_name", container="container_name", node="node_name", pod_id=None,
                pod_level=None, container_level=None, series_type=None)
_DCGM: dict[str, Any] = dict(namespace="namespace", pod="pod", container="container", node="hostname", node_alias="Hostname",
             pod_id=None, pod_level=None,
             # only GPUs held by a pod: DCGM labels the others with no namespace
             container_level=('"namespace" != $empty', {"empty": ""}), series_type=None, gpu=True,
             parts=("gpu",))  # a container holding two GPUs has two series: its value is their sum


def _kubelet(field: str, node_field: str | None = None, **extra: Any) -> Layout:
    return Layout(CONTAINER, field, collected=(NODE, node_field or field, None), **_KUBELET, **extra)


# A pod holds its requests while it runs, or is scheduled and still starting (Pending with a
# node): kube_inventory lists every pod the API server knows, finished Jobs and unscheduled
# pods too (an empty node_name is no tag at all in line protocol).
HELD = ('("phase" = $running OR ("phase" = $pending AND "node_name" != $no_node))',
        {"running": "Running", "pending": "Pending", "no_node": ""})


def _inventory(field: str) -> Layout:
    # requests and limits: kube_inventory writes them into the same measurement; the node
    # inventory is its coverage (the collector ran)
    return Layout(CONTAINER, field, collected=(CONTAINER, field, None), inventory=True,
                  **{**_KUBELET, "container_level": HELD})


def _node(field: str) -> Layout:
    # kube_inventory's node points (kubernetes_node, beside inputs.kubernetes' own): allocatable, capacity
    return Layout(NODE, field, collected=(NODE, field, None), inventory=True, node_level=None, **_KUBELET)


def _network(field: str) -> Layout:
    return Layout("kubernetes_pod_network", field, rate=True, collected=("kubernetes_pod_network", field, None),
                  **{**_KUBELET, "container": "interface"})


LAYOUTS: dict[str, Layout] = {
    "cpu/usage_rate": _kubelet("cpu_usage_nanocores", div=1_000_000),         # nanocores -> millicores
    "cpu/usage": _kubelet("cpu_usage_core_nanoseconds"),                       # cumulative, as in the catalog
    "memory/usage": _kubelet("memory_usage_bytes"),
    "memory/working_set": _kubelet("memory_working_set_bytes"),
    "memory/rss": _kubelet("memory_rss_bytes"),
    "cpu/request": _inventory("resource_requests_millicpu_units"),
    "cpu/limit": _inventory("resource_limits_millicpu_units"),
    "memory/request": _inventory("resource_requests_memory_bytes"),
    "memory/limit": _inventory("resource_limits_memory_bytes"),
    "cpu/node_allocatable": _node("allocatable_millicpu_cores"),
    "cpu/node_capacity": _node("capacity_millicpu_cores"),
    "memory/node_allocatable": _node("allocatable_memory_bytes"),
    "memory/node_capacity": _node("capacity_memory_bytes"),
    "network/rx_rate": _network("rx_bytes"),
    "network/tx_rate": _network("tx_bytes"),
    "gpu/usage": Layout(FB_USED, "gauge", mul=MIB_IN_MB[0], div=MIB_IN_MB[1], collected=(FB_USED, "gauge", None), **_DCGM),
    "gpu/utilization": Layout(GPU_UTIL, "gauge", collected=(GPU_UTIL, "gauge", None), **_DCGM),
}


@dataclass(frozen=True)
class PodLabels:
    """The names of the DCGM exporter's pod labels."""
    namespace: str
    pod: str
    container: str


CURRENT = PodLabels("namespace", "pod", "container")
OLD = PodLabels("pod_namespace", "pod_name", "container_name")  # dcgm-exporter --use-old-namespace


def pod_labels_of(keys: set[str]) -> PodLabels | None:
    """Which pod labels DCGM's series carry, from the measurement's tag keys; None: none
    (the exporter runs without -k). `pod_name` alone may be Telegraf's (the exporter pod),
    `container_name` never is: the old names are told by it."""
    if "pod" in keys:
        return CURRENT
    if "container_name" in keys and "pod_namespace" in keys:
        return OLD
    return None


class Telegraf(Source):
    name = "telegraf"
    write_interval = 10.0       # Telegraf's [agent] interval default

    def __init__(self, cluster: str | None = None) -> None:
        super().__init__(cluster)
        self.pod_labels = CURRENT
        self._dcgm_keys: set[str] = set()

    def layout(self, metric_name: str) -> Layout | None:
        layout = LAYOUTS.get(metric_name)
        if layout is None:
            return None
        if layout.gpu and self.pod_labels is not CURRENT:
            names = self.pod_labels
            layout = replace(layout, namespace=names.namespace, pod=names.pod, container=names.container,
                             container_level=(f"{quote(names.namespace)} != $empty", {"empty": ""}))
        return self.selected(layout)

    async def learn(self, influx: Querier) -> None:
        """The DCGM exporter's pod label names, from the tag keys its series carry."""
        series = await influx.query(f'SHOW TAG KEYS FROM "{FB_USED}"', kind="source check", lane="background")
        self._dcgm_keys = {row[0] for s in series for row in s.get("values", [])}
        names = pod_labels_of(self._dcgm_keys) or CURRENT
        if names != self.pod_labels:
            self.pod_labels = names
            self.version += 1

    def namespace_queries(self) -> list[str]:
        where = ' WHERE "cluster_name" = $kubemonitor_cluster' if self.cluster else ""
        return [f'SHOW TAG VALUES FROM "{CONTAINER}", "{FB_USED}" WITH KEY = "namespace"{where}']

    async def problems(self, influx: Querier) -> list[str]:
        """What the DCGM series' labels say would bill GPUs wrongly (or not at all)."""
        await self.learn(influx)
        keys = self._dcgm_keys
        if not keys:
            return []  # no GPU data (yet): nothing to say
        names = pod_labels_of(keys)
        if names is None:
            return [f"{FB_USED} has no pod labels (namespace, pod, container): the DCGM exporter runs without -k "
                    "(--kubernetes), so no GPU can be attributed to a pod and none is billed. Start it with -k "
                    "(README \"Collecting data today\")"]
        found = []
        if names is CURRENT and "container_name" in keys:
            found.append(f"{FB_USED} has series with both the current pod labels and --use-old-namespace's (pod_namespace, "
                         "container_name): those with the old names are not billed. Run every exporter with the same "
                         "flags (README \"Collecting data today\")")
        if names is OLD and "namespace" in keys:
            found.append(f"{FB_USED} carries --use-old-namespace's pod_name and Telegraf's namespace tag: inputs.prometheus "
                         "scrapes the exporter with monitor_kubernetes_pods, which overwrites pod_name with the exporter's "
                         "own pod, so the GPU's pod is lost. Run the exporter without --use-old-namespace "
                         "(README \"Collecting data today\"); until then gpu figures are not to be trusted")
        if names is CURRENT and "pod_name" in keys and "pod_namespace" not in keys:
            found.append(f"{FB_USED} carries Telegraf's pod_name tag but no pod_namespace: inputs.prometheus scrapes the DCGM "
                         "exporter with monitor_kubernetes_pods and without pod_namespace_label_name = \"pod_namespace\", so "
                         "each GPU series' namespace is the exporter's own and GPU usage would be billed to it. Set it "
                         "(README \"Collecting data today\"); until then gpu figures are not to be trusted")
        return found
