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
* `kubernetes_node`: the node's own totals; "the collector wrote something" for a
  statement's coverage.
* DCGM: measurement `DCGM_FI_DEV_FB_USED` (MiB) / `DCGM_FI_DEV_GPU_UTIL` (%), field
  `gauge`, tags `namespace`, `pod`, `container`, `gpu`, `UUID`, `Hostname`. A GPU
  no pod holds has no `namespace`/`pod` labels; it counts for coverage only.
"""
from __future__ import annotations

from typing import Any

from .source import Layout, Querier, Source

MIB_IN_MB = (1_048_576, 1_000_000)  # MiB x 1.048576 = MB, exactly
CONTAINER = "kubernetes_pod_container"
NODE = "kubernetes_node"
FB_USED, GPU_UTIL = "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_GPU_UTIL"

_KUBELET: dict[str, Any] = dict(namespace="namespace", pod="pod_name", container="container_name", node="node_name", pod_id=None,
                pod_level=None, container_level=None, series_type=None)
_DCGM: dict[str, Any] = dict(namespace="namespace", pod="pod", container="container", node="Hostname", pod_id=None, pod_level=None,
             # only GPUs held by a pod: DCGM labels the others with no namespace
             container_level=('"namespace" != $empty', {"empty": ""}), series_type=None, gpu=True,
             parts=("gpu",))  # a container holding two GPUs has two series: its value is their sum


def _kubelet(field: str, node_field: str | None = None, **extra: Any) -> Layout:
    return Layout(CONTAINER, field, collected=(NODE, node_field or field, None), **_KUBELET, **extra)


def _inventory(field: str) -> Layout:
    # requests and limits: kube_inventory writes them into the same measurement; the node
    # inventory is its coverage (the collector ran)
    return Layout(CONTAINER, field, collected=(CONTAINER, field, None), **_KUBELET)


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
    "network/rx_rate": _network("rx_bytes"),
    "network/tx_rate": _network("tx_bytes"),
    "gpu/usage": Layout(FB_USED, "gauge", mul=MIB_IN_MB[0], div=MIB_IN_MB[1], collected=(FB_USED, "gauge", None), **_DCGM),
    "gpu/utilization": Layout(GPU_UTIL, "gauge", collected=(GPU_UTIL, "gauge", None), **_DCGM),
}


class Telegraf(Source):
    name = "telegraf"
    write_interval = 10.0       # Telegraf's [agent] interval default

    def layout(self, metric_name: str) -> Layout | None:
        return LAYOUTS.get(metric_name)

    def namespace_queries(self) -> list[str]:
        return [f'SHOW TAG VALUES FROM "{CONTAINER}", "{FB_USED}" WITH KEY = "namespace"']

    async def problems(self, influx: Querier) -> list[str]:
        """Telegraf's inputs.prometheus, finding the exporter with `monitor_kubernetes_pods`, tags
        each metric with the scraped pod's own `namespace` and `pod_name` - overwriting DCGM's
        `namespace` label with the exporter's namespace - unless `pod_namespace_label_name`
        names another tag. The overwritten series carry `pod_name` (the exporter pod) and no
        such tag: every GPU would be billed to the exporter's namespace."""
        series = await influx.query(f'SHOW TAG KEYS FROM "{FB_USED}"', kind="source check")
        keys = {row[0] for s in series for row in s.get("values", [])}
        if "pod_name" in keys and "pod_namespace" not in keys:
            return [f"{FB_USED} carries Telegraf's pod_name tag but no pod_namespace: inputs.prometheus scrapes the DCGM "
                    "exporter with monitor_kubernetes_pods and without pod_namespace_label_name = \"pod_namespace\", so "
                    "each GPU series' namespace is the exporter's own and GPU usage would be billed to it. Set it "
                    "(README \"Collecting data today\"); until then gpu figures are not to be trusted"]
        return []
