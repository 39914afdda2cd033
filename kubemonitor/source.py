"""Where the data comes from (README "Collecting data today"): one small interface for
the InfluxDB schemas kubemonitor reads, so that the API, the live views, rollups and
statements never ask which collector wrote the data.

A source maps each catalog metric to a `Layout`: the measurement and field that hold
it, the tag names, the factor to the catalog's unit, whether it is stored as a
counter whose per-second rate is the metric, and which series are pod-level (counted
first), container-level (summed per pod when a pod has no pod-level series) and
"the collector wrote something" (a statement's coverage). Everything else in
kubemonitor builds its InfluxQL from a Layout, with the user's values as bind
parameters only: the names in a Layout come from the source's fixed table, never
from a request.

Sources: `heapster` (kubemonitor/heapster.py, the default) and `telegraf`
(kubemonitor/telegraf.py: Telegraf's inputs.kubernetes and inputs.kube_inventory,
and NVIDIA's DCGM exporter through inputs.prometheus).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

Condition = tuple[str, dict[str, Any]]   # an InfluxQL condition with $parameters, and their values


class Querier(Protocol):
    """What a source's checks need of the InfluxDB gateway (influx.py's InfluxGateway): a
    source sits below the gateway, so it names the one method it calls, not the class."""

    async def query(self, influxql: str, params: dict[str, Any] | None = None, kind: str = "query",
                    lane: str = "api") -> list[dict]: ...
CANONICAL_TAGS = ("namespace_name", "pod_name", "container_name", "nodename")


def quote(name: str) -> str:
    """An identifier from a source's table or a measurement InfluxDB listed, in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Layout:
    """How one metric is stored. Tag names map the canonical names (the API's row keys)."""
    measurement: str
    field: str = "value"
    mul: int = 1                  # the catalog's unit = stored value x mul / div (exact for integers)
    div: int = 1
    rate: bool = False            # stored as a counter; the metric is its non-negative rate per second
    gpu: bool = False             # sampled at KUBEMONITOR_GPU_SAMPLE_INTERVAL
    inventory: bool = False       # written by an inventory (requests, limits): KUBEMONITOR_INVENTORY_INTERVAL
    namespace: str = "namespace_name"
    pod: str = "pod_name"
    container: str = "container_name"
    node: str = "nodename"
    node_alias: str | None = None                  # another name of the node tag some versions write (DCGM's)
    pod_id: str | None = "pod_id"                  # the pod instance's id tag, when the source has one
    pod_level: Condition | None = ('"type" = $pod_type', {"pod_type": "pod"})
    container_level: Condition | None = ('"type" = $container_type', {"container_type": "pod_container"})
    # "The collector wrote something" for coverage: (measurement, field, condition)
    collected: tuple[str, str, Condition | None] | None = None
    series_type: str | None = "type"               # the tag telling series apart (Heapster's), if any
    # tags that split one container into several series to be added up (DCGM: one series per GPU)
    parts: tuple[str, ...] = ()
    # the series that are a node's own (its allocatable): Heapster's `type = node`; None: all of them
    node_level: Condition | None = ('"type" = $node_type', {"node_type": "node"})
    # the tag every statement must match to $kubemonitor_cluster (KUBEMONITOR_CLUSTER, bound by the gateway)
    cluster: str | None = None

    def only(self) -> list[str]:
        """The conditions every statement on this layout carries (one cluster of several)."""
        return [f"{quote(self.cluster)} = $kubemonitor_cluster"] if self.cluster else []

    @property
    def m(self) -> str:
        return quote(self.measurement)

    @property
    def f(self) -> str:
        return quote(self.field)

    def tag(self, canonical: str) -> str | None:
        """The source's name of a canonical tag (None: the source has no such tag)."""
        return {"namespace_name": self.namespace, "pod_name": self.pod, "container_name": self.container,
                "nodename": self.node, "pod_id": self.pod_id, "type": self.series_type}[canonical]

    def canonical(self, tags: dict | None) -> dict[str, Any]:
        """A series' tags under the canonical names (others kept as they are).

        A leftover source tag never overwrites a canonical one: Telegraf's discovery adds
        `pod_name` (the DCGM exporter's own pod) beside the GPU's `pod`, which is the pod."""
        tags = dict(tags or {})
        out: dict[str, Any] = {}
        for name in (*CANONICAL_TAGS, "pod_id", "type"):
            own = self.tag(name)
            if own is not None and own in tags:
                out[name] = tags.pop(own)
        if self.node_alias is not None and self.node_alias in tags:
            alias = tags.pop(self.node_alias)
            if not out.get("nodename"):
                out["nodename"] = alias
        if self.series_type is None:
            out.setdefault("type", "pod_container")  # a source without pod-level series: all are containers
        for name, value in tags.items():
            out.setdefault(name, value)
        return out

    def identity(self, tags: dict | None) -> tuple[str, ...]:
        """What makes two series the same series of a pod (or one counter): tags a collector adds
        of its own (Telegraf's `host`) or a changed `labels` do not; another cluster
        (`cluster_name`, several in one database) does."""
        tags = tags or {}
        return tuple(tags.get(n, "") if n else "" for n in (self.namespace, self.pod, self.pod_id, self.container,
                                                           self.series_type, *self.parts, "cluster_name"))

    def value(self, stored: Any) -> Any:
        """A stored value in the catalog's unit."""
        if stored is None or (self.mul == 1 and self.div == 1):
            return stored
        return stored * self.mul / self.div


class Source:
    """A schema kubemonitor can read. Subclasses fill in `name` and `layout`."""

    name = "source"
    write_interval = 60.0       # seconds between the collector's samples when left at its default
    extra_measurements = False  # whether any other measurement is queryable as a metric (Heapster: yes)

    def layout(self, metric_name: str) -> Layout | None:
        """Where `metric_name` is stored, or None when this source does not collect it."""
        raise NotImplementedError

    def namespace_queries(self) -> list[str]:
        """Statements listing namespace names (SHOW TAG VALUES), fixed text."""
        raise NotImplementedError

    version = 0                 # raised when `learn` changed a layout (the catalog rebuilds its metrics)
    CLUSTER_TAG = "cluster_name"   # Heapster's sink tags every point with it; Telegraf's [global_tags] can too

    def __init__(self, cluster: str | None = None) -> None:
        self.cluster = cluster  # KUBEMONITOR_CLUSTER: read that cluster's points only (None: all)

    def selected(self, layout: Layout) -> Layout:
        """`layout` reading only KUBEMONITOR_CLUSTER's points, when one is set."""
        return replace(layout, cluster=self.CLUSTER_TAG) if self.cluster else layout

    async def learn(self, influx: Querier) -> None:
        """Look at the data for what a layout depends on (tag names that vary between
        versions of a collector) and adapt; nothing by default. Fixed statements only, on
        the background lane: a look never takes a thread a request is waiting for."""

    async def problems(self, influx: Querier) -> list[str]:
        """Problems with how the data is collected that would bill wrongly (for /readyz and
        statements' notes); empty when there are none. Fixed statements, no user input."""
        return []

