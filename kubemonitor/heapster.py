"""The Heapster schema (README "Data"), as its InfluxDB sink writes it (heapster
metrics/sinks/influxdb, common/influxdb): one measurement per metric (`cpu/usage_rate`),
field `value`; tags `namespace_name`, `pod_name`, `container_name`, `nodename`, `type`
(pod_container, pod, ns, node, cluster, sys_container), `labels` and `cluster_name`
(the sink's `cluster_name` option, "default" unless set) on every point. The sink drops
`pod_id`, `hostname`, `host_id` and `namespace_id`: on real data a pod name is its only
identity (forks that keep `pod_id` have pod instances, and kubemonitor reads them).

With the sink's `withfields=true` the measurement is the metric's first part and the
field the rest (`cpu` / `usage_rate`). Heapster's GPU metrics are `accelerator/*`
(memory_used, memory_total in bytes; duty_cycle in percent), container series with
`make`, `model` and `accelerator_id` tags: one series per GPU, added up per container.
Which of these the database holds is learned from SHOW MEASUREMENTS (`learn`).

Pod-level series (`type = pod`) are counted first, container-level ones summed per
pod otherwise; a statement's coverage counts cluster- and node-level samples (for
`accelerator/*`, which have no such series, any sample). Any other measurement in the
database is queryable under its own name."""
from __future__ import annotations

from .source import Layout, Querier, Source

COLLECTED = ('("type" = $cluster OR "type" = $node)', {"cluster": "cluster", "node": "node"})
ACCELERATOR = "accelerator/"
GPU_MEMORY = "accelerator/memory_used"   # bytes: what gpu/usage (megabytes) is read from on real Heapster


class Heapster(Source):
    name = "heapster"
    write_interval = 60.0       # Heapster's --metric_resolution default

    def __init__(self, cluster: str | None = None) -> None:
        super().__init__(cluster)
        self.withfields = False          # the sink's withfields=true: measurement "cpu", field "usage_rate"
        self.gpu_from_accelerator = False  # no gpu/usage measurement, but accelerator/memory_used
        self.extra_measurements = True   # under withfields a measurement ("cpu") is not a metric: catalog only

    def stored(self, metric_name: str) -> tuple[str, str]:
        """(measurement, field) of a metric in the layout the sink writes."""
        if self.withfields:
            measurement, _, field = metric_name.partition("/")
            return measurement, field or "value"
        return metric_name, "value"

    def layout(self, metric_name: str) -> Layout:
        name, div = metric_name, 1
        if metric_name == "gpu/usage" and self.gpu_from_accelerator:
            name, div = GPU_MEMORY, 1_000_000   # bytes -> megabytes
        measurement, field = self.stored(name)
        if name.startswith(ACCELERATOR):
            # container series only, one per GPU (accelerator_id): a container's value is their sum
            return self.selected(Layout(measurement, field, div=div, parts=("accelerator_id",),
                                        collected=(measurement, field, None)))
        return self.selected(Layout(measurement, field, collected=(measurement, field, COLLECTED)))

    async def learn(self, influx: Querier) -> None:
        """The sink's layout (withfields or not) and where GPU memory is, from SHOW MEASUREMENTS."""
        series = await influx.query("SHOW MEASUREMENTS", kind="source check", lane="background")
        names = {row[0] for s in series for row in s.get("values", [])}
        if not names:
            return  # an empty database says nothing yet
        withfields = "cpu" in names and not any("/" in n for n in names)
        gpu = "gpu" if withfields else "gpu/usage"
        accelerator = "accelerator" if withfields else GPU_MEMORY
        from_accelerator = gpu not in names and accelerator in names
        if (withfields, from_accelerator) != (self.withfields, self.gpu_from_accelerator):
            self.withfields, self.gpu_from_accelerator = withfields, from_accelerator
            self.extra_measurements = not withfields
            self.version += 1

    def namespace_queries(self) -> list[str]:
        where = ' WHERE "cluster_name" = $kubemonitor_cluster' if self.cluster else ""
        return [f'SHOW TAG VALUES WITH KEY = "namespace_name"{where}']
