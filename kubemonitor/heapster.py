"""The Heapster schema (README "Data"): one measurement per metric (`cpu/usage_rate`),
field `value`, tags `namespace_name`, `pod_name`, `pod_id`, `container_name`,
`nodename` and `type` (pod_container, pod, ns, node, cluster, sys_container).

Pod-level series (`type = pod`) are counted first, container-level ones summed per
pod otherwise; a statement's coverage counts cluster- and node-level samples.
Any other measurement in the database is queryable under its own name."""
from __future__ import annotations

from .source import Layout, Source

COLLECTED = ('("type" = $cluster OR "type" = $node)', {"cluster": "cluster", "node": "node"})


class Heapster(Source):
    name = "heapster"
    write_interval = 60.0       # Heapster's --metric_resolution default
    extra_measurements = True

    def layout(self, metric_name: str) -> Layout:
        return Layout(metric_name, collected=(metric_name, "value", COLLECTED))

    def namespace_queries(self) -> list[str]:
        return ['SHOW TAG VALUES WITH KEY = "namespace_name"']
