"""`kubemonitor simulate`: a believable cluster written in Heapster's schema, or with
`--source telegraf` in Telegraf's and the DCGM exporter's (README "The simulator").

The cluster (nodes, research-group namespaces, services, batch jobs, GPU training
jobs, kube-system) is drawn once from `--seed`. Every tick it writes, for all 37
catalog metrics, the series Heapster would: `pod_container` values, their per-pod
sums (`pod`), per-namespace (`ns`), per-node (`node`: its pods plus the system
containers) and cluster (`cluster`) sums. Network metrics exist at pod level only,
as in Heapster. Cumulative counters grow monotonically and reset when a container
restarts; each `_rate` metric is the counter's increase over the last tick.

Batch and GPU jobs run on a 24 h schedule: a job's pod exists only while it runs,
with a new pod name per run, so pods come and go over the day. Load follows the time
of day (busiest mid-afternoon UTC): services follow a daily curve and jobs start
in working hours.
"""
from __future__ import annotations

import hashlib
import math
import queue
import random
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .collectors import source_named
from .errors import UserError
from .faults import LATE_AFTER, Faults
from .progress import Progress

if TYPE_CHECKING:
    from .config import Config
    from .source import Layout

SIMULATED = ("heapster", "telegraf")  # the schemas the simulator writes (a new source adds its writer here)
DAY = 86400
GROUPS = ["astro-lab", "bio-sim", "climate", "nlp-group", "vision-lab", "quantum", "genomics", "robotics",
          "materials", "neuro", "econ-lab", "hep"]
SERVICE_IMAGES = [("api", "python:3.11"), ("web", "nginx:1.25"), ("db", "postgres:15"), ("worker", "python:3.11"),
                  ("notebook", "jupyter/scipy-notebook")]
SIDECARS = [("log-shipper", "fluent-bit:2.2"), ("metrics", "prom/statsd-exporter")]

CONTAINER_METRICS = (
    "cpu/usage_rate", "cpu/usage", "cpu/limit", "cpu/request",
    "memory/usage", "memory/working_set", "memory/rss", "memory/cache", "memory/limit", "memory/request",
    "memory/page_faults", "memory/page_faults_rate", "memory/major_page_faults", "memory/major_page_faults_rate",
    "filesystem/usage", "filesystem/limit", "filesystem/available", "filesystem/inodes", "filesystem/inodes_free",
    "gpu/usage",
)
NETWORK_METRICS = ("network/rx", "network/rx_rate", "network/rx_errors", "network/rx_errors_rate",
                   "network/tx", "network/tx_rate", "network/tx_errors", "network/tx_errors_rate")
NODE_METRICS = ("cpu/node_capacity", "cpu/node_allocatable", "cpu/node_reservation", "cpu/node_utilization",
                "memory/node_capacity", "memory/node_allocatable", "memory/node_reservation", "memory/node_utilization")
# Metrics Heapster writes as integers; the rest are floats.
INTEGER_METRICS = {"cpu/usage", "cpu/limit", "cpu/request", "memory/usage", "memory/working_set", "memory/rss",
                   "memory/cache", "memory/limit", "memory/request", "memory/page_faults", "memory/major_page_faults",
                   "filesystem/usage", "filesystem/limit", "filesystem/available", "filesystem/inodes",
                   "filesystem/inodes_free", "network/rx", "network/tx", "network/rx_errors", "network/tx_errors",
                   "uptime", "cpu/node_capacity", "cpu/node_allocatable", "memory/node_capacity",
                   "memory/node_allocatable", "accelerator/memory_used", "accelerator/memory_total",
                   "accelerator/duty_cycle"}
# Heapster's InfluxDB sink drops these labels (metrics/sinks/influxdb: influxdbBlacklistLabels)
# and tags every point with its cluster_name option ("default" unless set).
SINK_DROPS = frozenset({"pod_id", "hostname", "host_id", "namespace_id"})
SINK_CLUSTER = "default"
GPU_MODEL = "tesla-v100"
GPU_MEMORY_TOTAL = 32_000_000_000  # bytes
GIB = 1024**3
MIB = 1024**2


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def series_key(metric: str, tags: dict[str, str]) -> str:
    return metric + "," + ",".join(f"{k}={_escape(v)}" for k, v in sorted(tags.items()) if v)


def sink_key(metric: str, tags: dict[str, str]) -> str:
    """A series as Heapster's InfluxDB sink writes it: without the labels it drops, with
    `cluster_name` (the simulator models what the sink writes, not what Heapster holds)."""
    return series_key(metric, {**{k: v for k, v in tags.items() if k not in SINK_DROPS}, "cluster_name": SINK_CLUSTER})


# --------------------------------------------------------------- the telegraf schema
# What the simulator writes for Telegraf comes from the reader's own table (telegraf.py's
# layouts, through the registry): measurement, field, tag names and unit factor are
# written once. What follows are only facts of how the collectors write that a reader
# never needs: the extra tags each adds, and when DCGM samples.
DCGM_INTERVAL = 30  # DCGM's default collection interval: GPU points only every 30 s
INVENTORY_TAGS = {"phase": "Running", "state": "running", "readiness": "ready"}  # kube_inventory's own tags
INVENTORY_PREFIX = "resource_"  # kube_inventory's fields (resource_requests_*, resource_limits_*)


@dataclass(frozen=True)
class TelegrafEntry:
    series: str       # measurement and tags, escaped
    field: str
    mul: float = 1.0  # stored = catalog value x mul
    integer: bool = True
    gpu: bool = False


def telegraf_entry(metric: str, tags: dict[str, str], layout_of: Callable[[str], Layout | None]) -> TelegrafEntry | None:
    """Where Telegraf (inputs.kubernetes, kube_inventory) or DCGM (through inputs.prometheus)
    writes what Heapster wrote as (metric, tags), by the reader's layout `layout_of(metric)`;
    None when they write nothing like it (pod, namespace and cluster sums; metrics they do
    not collect)."""
    kind = tags.get("type")
    if kind == "node":  # the node's own totals: the measurement a layout's coverage reads, when it is another one
        layout = layout_of(metric)
        if layout is None or layout.collected is None:
            return None
        if layout.node_level is None and layout.collected[0] == layout.measurement:
            # a node metric of its own (kube_inventory's allocatable and capacity): as it is
            return TelegrafEntry(series_key(layout.measurement, {layout.node: tags["nodename"]}), layout.field,
                                 layout.div / layout.mul)
        if layout.collected[0] == layout.measurement:
            return None
        measurement, field, _ = layout.collected
        return TelegrafEntry(series_key(measurement, {layout.node: tags["nodename"]}), field, layout.div / layout.mul)
    if kind == "pod":  # only counters of the pod's network namespace, whose rate is the catalog metric
        layout = layout_of(metric + "_rate")
        if layout is None or not layout.rate:
            return None
        names = {layout.namespace: tags["namespace_name"], layout.pod: tags["pod_name"], layout.node: tags["nodename"]}
    elif kind == "pod_container":
        layout = layout_of(metric)
        if layout is None or layout.rate:
            return None
        names = {layout.namespace: tags["namespace_name"], layout.pod: tags["pod_name"],
                 layout.container: tags["container_name"], layout.node: tags["nodename"]}
    else:
        return None
    if layout.gpu:  # one GPU per container here: the device's index and UUID
        names.update({part: "0" for part in layout.parts}, UUID="GPU-" + _uid(tags["nodename"], 0))
    elif layout.field.startswith(INVENTORY_PREFIX):
        names.update(INVENTORY_TAGS)
    return TelegrafEntry(series_key(layout.measurement, names), layout.field, layout.div / layout.mul,
                         integer=not layout.gpu, gpu=layout.gpu)


def _uid(*parts: object) -> str:
    digest = hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


@dataclass
class Container:
    name: str
    image: str
    cpu_base: float           # millicores at the daily mean
    cpu_request: int
    cpu_limit: int
    mem_base: float           # bytes
    mem_request: int
    mem_limit: int
    gpu_mb: float = 0.0
    fs_limit: int = 10 * GIB
    restart_period: int = 0   # seconds between restarts (0 = never)
    restart_phase: int = 0
    # counters, reset on restart
    cpu_ns: float = 0.0
    faults: float = 0.0
    major_faults: float = 0.0
    started: float | None = None


@dataclass
class Pod:
    namespace: str
    base_name: str
    node: str
    kind: str                 # service | batch | gpu | system
    containers: list[Container]
    labels: str
    start_offset: int = 0     # batch/gpu: seconds after midnight the run starts
    duration: int = DAY       # batch/gpu: how long a run lasts
    net_rx_base: float = 0.0  # bytes/s
    net_tx_base: float = 0.0
    counters: dict = field(default_factory=lambda: defaultdict(float))
    run: int | None = None    # which daily run is current (batch/gpu)

    def active_run(self, t: float) -> int | None:
        if self.kind in ("service", "system"):
            return 0
        day, second = divmod(int(t), DAY)
        if 0 <= (second - self.start_offset) % DAY < self.duration:
            return day if second >= self.start_offset else day - 1
        return None

    def name(self, run: int) -> str:
        if self.kind in ("service", "system"):
            return self.base_name
        return f"{self.base_name}-{hashlib.sha1(f'{self.base_name}/{run}'.encode()).hexdigest()[:5]}"


@dataclass
class Node:
    name: str
    cpu_capacity: int         # millicores
    mem_capacity: int         # bytes
    gpu: bool
    booted: float
    sys_cpu: float = 150.0
    sys_mem: float = 900 * MIB
    cpu_ns: float = 0.0

    @property
    def cpu_allocatable(self) -> int:
        return int(self.cpu_capacity * 0.94)

    @property
    def mem_allocatable(self) -> int:
        return int(self.mem_capacity * 0.92)


class Cluster:
    """The simulated cluster and its state; `tick(t)` yields the line-protocol lines of one sample."""

    def __init__(self, seed: int = 1, namespaces: int = 5, pods: int = 30, nodes: int = 4, start: float | None = None,
                 source: str = "heapster"):
        if source not in SIMULATED:
            raise ValueError(f"--source must be one of {', '.join(SIMULATED)}")
        self.source = source
        self._layout_of = source_named(source).layout
        if not 1 <= namespaces <= len(GROUPS):
            raise ValueError(f"--namespaces must be from 1 to {len(GROUPS)}")
        if pods < namespaces:
            raise ValueError("--pods must be at least --namespaces (each group gets one pod)")
        if nodes < 1:
            raise ValueError("--nodes must be at least 1")
        self.seed = seed
        rng = random.Random(seed)
        boot = (start if start is not None else time.time()) - 40 * DAY
        self.nodes = [Node(f"node-{i + 1}", cpu_capacity=rng.choice([16000, 32000]),
                           mem_capacity=rng.choice([64, 128]) * GIB, gpu=(i == nodes - 1 and nodes > 1) or nodes == 1,
                           booted=boot + rng.randint(0, DAY)) for i in range(nodes)]
        self.pods: list[Pod] = []
        groups = GROUPS[:namespaces]
        for i in range(pods):
            self.pods.append(self._make_pod(rng, groups[i % namespaces], i))
        for name, cpu, mem in (("kube-dns", 30, 70 * MIB), ("heapster", 20, 120 * MIB), ("kube-proxy", 10, 40 * MIB)):
            c = Container(name, f"k8s.gcr.io/{name}", cpu, 100, 0, mem, 100 * MIB, 0)
            self.pods.append(Pod("kube-system", f"{name}-{_uid(seed, name)[:5]}", self.nodes[0].name, "system",
                                 [c], f"k8s-app:{name}", net_rx_base=2e3, net_tx_base=2e3))
        self._keys: dict[tuple, object] = {}
        self._last_t: float | None = None
        self._gpu_slot: int | None = None

    def _make_pod(self, rng: random.Random, namespace: str, i: int) -> Pod:
        roll = rng.random()
        gpu_nodes = [n for n in self.nodes if n.gpu]
        if roll < 0.2 and gpu_nodes:
            kind, node = "gpu", rng.choice(gpu_nodes)
            name = f"train-{rng.choice(['resnet', 'bert', 'unet', 'gan', 'vit'])}-{i}"
            cont = [Container("trainer", "pytorch/pytorch:2.1", rng.uniform(2500, 7000), 4000, 8000,
                              rng.uniform(8, 24) * GIB, 16 * GIB, 32 * GIB, gpu_mb=rng.uniform(6000, 30000))]
        elif roll < 0.5:
            kind, node = "batch", rng.choice(self.nodes)
            name = f"job-{rng.choice(['align', 'simulate', 'reduce', 'render', 'fit'])}-{i}"
            cont = [Container("main", "python:3.11", rng.uniform(800, 3500), 1000, 4000,
                              rng.uniform(1, 6) * GIB, 2 * GIB, 8 * GIB)]
        else:
            kind, node = "service", rng.choice(self.nodes)
            base, image = rng.choice(SERVICE_IMAGES)
            name = f"{base}-{i}"
            # a notebook is started without requests (it holds nothing, and `basis: max` bills its usage)
            requests = (0, 0) if base == "notebook" else (250, 512 * MIB)
            cont = [Container(base, image, rng.uniform(50, 900), requests[0], 2000, rng.uniform(0.2, 2) * GIB, requests[1],
                              4 * GIB, restart_period=rng.choice([0, 0, 5 * 3600, 9 * 3600]),
                              restart_phase=rng.randint(0, DAY))]
            if rng.random() < 0.5:
                side, simage = rng.choice(SIDECARS)
                cont.append(Container(side, simage, rng.uniform(5, 60), 50, 200, rng.uniform(30, 120) * MIB,
                                      64 * MIB, 256 * MIB))
        # Jobs are submitted during the working day (06:00-14:00 UTC) and run 2-10 h, so the
        # cluster is busiest in the afternoon. The first GPU job is a long training run
        # that never stops (a new run each day), so GPU usage is always there to see.
        pod = Pod(namespace, name, node.name, kind, cont, f"app:{name.rsplit('-', 1)[0]},group:{namespace}",
                  start_offset=rng.randint(6 * 3600, 14 * 3600), duration=rng.randint(2 * 3600, 10 * 3600),
                  net_rx_base=rng.uniform(1e3, 5e6), net_tx_base=rng.uniform(1e3, 2e6))
        if kind == "gpu" and not any(p.kind == "gpu" for p in self.pods):
            pod.duration = DAY
        return pod

    # -- values ---------------------------------------------------------------------
    @staticmethod
    def diurnal(t: float) -> float:
        hour = (t % DAY) / 3600
        return 0.6 + 0.4 * math.sin(2 * math.pi * (hour - 9) / 24)

    def _noise(self, t: float) -> random.Random:
        return random.Random(self.seed * 1_000_003 + int(t))

    def _key(self, metric: str, series: tuple[str, ...], tags: dict[str, str]) -> Any:
        """A series' key (Heapster: its escaped text; Telegraf: where it goes), made once.
        `series` names the series among those of `metric` (its tags are fixed by it): hashing
        it is far cheaper than the tags, and a backfill asks a million times."""
        key = self._keys.get((metric, series))
        if key is None:
            key = self._keys[(metric, series)] = (sink_key(metric, tags) if self.source == "heapster"
                                                  else telegraf_entry(metric, tags, self._layout_of))
        return key

    def tick(self, t: float) -> list[str]:
        """All points of one sample at time t (seconds), as line protocol with second precision."""
        ts = int(t)
        step = 60.0 if self._last_t is None else max(1.0, t - self._last_t)
        self._last_t = t
        rng = self._noise(t)
        day_load = self.diurnal(t)
        lines: list[str] = []
        ns_sum: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        node_sum: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        emit = lines.append
        telegraf: dict[str, list[str]] = defaultdict(list)  # series -> its fields at this tick (one line each)
        gpu_due = ts // DCGM_INTERVAL != self._gpu_slot  # DCGM: the first tick of each 30 s slot
        self._gpu_slot = ts // DCGM_INTERVAL

        def put(key: Any, metric: str, value: float) -> float:
            """Write one point; return the value as written, so that sums add what was written."""
            if metric in INTEGER_METRICS:
                value = int(value)
            if self.source == "heapster":
                emit(f"{key} value={value}i {ts}" if metric in INTEGER_METRICS else f"{key} value={value:.6g} {ts}")
            elif key is not None and (not key.gpu or gpu_due):
                if not value and key.field.startswith(INVENTORY_PREFIX + "requests_"):
                    return value  # kube_inventory writes no field for a request the pod does not make
                stored = value * key.mul
                telegraf[key.series].append(f"{key.field}={round(stored)}i" if key.integer else f"{key.field}={stored:.6g}")
            return value

        for pod in self.pods:
            run = pod.active_run(t)
            if run is None:
                pod.run = None
                if self.source == "telegraf":
                    lines.extend(self._finished(pod, t, ts))
                continue
            if pod.run != run:  # a new pod (a job's next run): fresh counters
                pod.run = run
                pod.counters.clear()
                for c in pod.containers:
                    c.cpu_ns = c.faults = c.major_faults = 0.0
                    c.started = None
            pod_name = pod.name(run)
            pod_id = _uid(self.seed, pod.namespace, pod_name)
            base_tags = dict(namespace_name=pod.namespace, pod_name=pod_name, nodename=pod.node, hostname=pod.node,
                             pod_id=pod_id, namespace_id=_uid(self.seed, pod.namespace), labels=pod.labels)
            pod_sum: dict[str, float] = defaultdict(float)
            pod_uptime = 0.0
            run_start = t - ((int(t) % DAY - pod.start_offset) % DAY) if pod.kind in ("batch", "gpu") else None
            for c in pod.containers:
                restarts = int((t + c.restart_phase) // c.restart_period) if c.restart_period else 0
                last_restart = (restarts * c.restart_period - c.restart_phase) if c.restart_period else None
                start = max(x for x in (run_start, last_restart, self._node(pod.node).booted) if x is not None)
                if c.started is not None and start > c.started:  # restarted since the last tick
                    c.cpu_ns = c.faults = c.major_faults = 0.0
                c.started = start
                since = max(0.0, t - start)
                warm = min(1.0, 0.3 + since / 600) if pod.kind in ("batch", "gpu") else 1.0
                cpu = c.cpu_base * day_load * warm * rng.uniform(0.85, 1.15)
                if pod.kind in ("batch", "gpu"):
                    cpu = c.cpu_base * warm * rng.uniform(0.9, 1.1)
                if c.cpu_limit:
                    cpu = min(cpu, c.cpu_limit)
                mem = c.mem_base * (0.85 + 0.15 * day_load) * warm * rng.uniform(0.97, 1.03)
                if c.mem_limit:
                    mem = min(mem, c.mem_limit * 0.98)
                c.cpu_ns += cpu / 1000 * min(step, since or step) * 1e9
                fault_rate = mem / MIB * 0.05 * rng.uniform(0.5, 1.5)
                major_rate = fault_rate * 0.002
                c.faults += fault_rate * step
                c.major_faults += major_rate * step
                rss = mem * 0.72
                fs_used = (0.2 + 0.5 * min(1.0, since / DAY)) * c.fs_limit * 0.5
                inodes = 655360
                values = {
                    "cpu/usage_rate": cpu, "cpu/usage": c.cpu_ns, "cpu/limit": c.cpu_limit, "cpu/request": c.cpu_request,
                    "memory/usage": mem, "memory/working_set": mem * 0.9, "memory/rss": rss, "memory/cache": mem - rss,
                    "memory/limit": c.mem_limit, "memory/request": c.mem_request,
                    "memory/page_faults": c.faults, "memory/page_faults_rate": fault_rate,
                    "memory/major_page_faults": c.major_faults, "memory/major_page_faults_rate": major_rate,
                    "filesystem/usage": fs_used, "filesystem/limit": c.fs_limit,
                    "filesystem/available": c.fs_limit - fs_used, "filesystem/inodes": inodes,
                    "filesystem/inodes_free": inodes - int(fs_used / (64 * 1024)),
                }
                gpu_mb = c.gpu_mb * warm * rng.uniform(0.95, 1.0) if c.gpu_mb else 0.0
                if gpu_mb and self.source != "heapster":
                    values["gpu/usage"] = gpu_mb
                container = ("pod_container", pod_id, c.name)
                container_tags = dict(type="pod_container", container_name=c.name, container_base_image=c.image,
                                      **base_tags)
                if gpu_mb and self.source == "heapster":
                    # Heapster's GPU metrics: accelerator/*, per container and GPU (no pod-level sums)
                    gpu_tags = dict(container_tags, make="nvidia", model=GPU_MODEL, accelerator_id="GPU-" + _uid(pod.node, 0))
                    for metric, value in (("accelerator/memory_used", gpu_mb * 1e6),
                                          ("accelerator/memory_total", GPU_MEMORY_TOTAL),
                                          ("accelerator/duty_cycle", min(100.0, gpu_mb / 300))):
                        put(self._key(metric, container, gpu_tags), metric, value)
                for metric, value in values.items():
                    pod_sum[metric] += put(self._key(metric, container, container_tags), metric, value)
                uptime = since * 1000
                put(self._key("uptime", container, container_tags), "uptime", uptime)
                pod_uptime = max(pod_uptime, uptime)
            # network: pod level only (the pod's network namespace), counters since the pod started
            load = day_load if pod.kind in ("service", "system") else 1.0
            rates = {"rx": pod.net_rx_base * load * rng.uniform(0.7, 1.3), "tx": pod.net_tx_base * load * rng.uniform(0.7, 1.3)}
            for way in ("rx", "tx"):
                err_rate = rates[way] * 1e-7
                pod.counters[way] += rates[way] * step
                pod.counters[way + "_errors"] += err_rate * step
                pod_sum[f"network/{way}"] = pod.counters[way]
                pod_sum[f"network/{way}_rate"] = rates[way]
                pod_sum[f"network/{way}_errors"] = pod.counters[way + "_errors"]
                pod_sum[f"network/{way}_errors_rate"] = err_rate
            pod_tags = dict(type="pod", **base_tags)
            for metric, value in pod_sum.items():
                value = put(self._key(metric, ("pod", pod_id), pod_tags), metric, value)
                ns_sum[pod.namespace][metric] += value
                node_sum[pod.node][metric] += value
            put(self._key("uptime", ("pod", pod_id), pod_tags), "uptime", pod_uptime)

        for ns, sums in ns_sum.items():
            for metric, value in sums.items():
                put(self._key(metric, ("ns", ns), dict(type="ns", namespace_name=ns, namespace_id=_uid(self.seed, ns))),
                    metric, value)
        cluster: dict[str, float] = defaultdict(float)
        for node in self.nodes:
            sums = node_sum[node.name]
            # system containers (kubelet, container runtime) count on the node, not in any pod
            sys_cpu = node.sys_cpu * rng.uniform(0.8, 1.2)
            node.cpu_ns += sys_cpu / 1000 * step * 1e9
            for cname, share in (("kubelet", 0.6), ("runtime", 0.4)):
                for metric, value in (("cpu/usage_rate", sys_cpu * share), ("memory/usage", node.sys_mem * share)):
                    sums[metric] += put(self._key(metric, ("sys_container", node.name, cname), dict(
                        type="sys_container", container_name=cname, nodename=node.name, hostname=node.name)), metric, value)
            sums["memory/working_set"] += node.sys_mem
            sums["cpu/usage"] += node.cpu_ns
            sums["cpu/node_capacity"] = node.cpu_capacity
            sums["cpu/node_allocatable"] = node.cpu_allocatable
            sums["memory/node_capacity"] = node.mem_capacity
            sums["memory/node_allocatable"] = node.mem_allocatable
            sums["cpu/node_reservation"] = sums["cpu/request"] / node.cpu_allocatable
            sums["cpu/node_utilization"] = sums["cpu/usage_rate"] / node.cpu_allocatable
            sums["memory/node_reservation"] = sums["memory/request"] / node.mem_allocatable
            sums["memory/node_utilization"] = sums["memory/working_set"] / node.mem_allocatable
            node_tags = dict(type="node", nodename=node.name, hostname=node.name, host_id=_uid(self.seed, node.name))
            for metric, value in sums.items():
                value = put(self._key(metric, ("node", node.name), node_tags), metric, value)
                if metric not in ("cpu/node_reservation", "cpu/node_utilization",
                                  "memory/node_reservation", "memory/node_utilization"):
                    cluster[metric] += value
            put(self._key("uptime", ("node", node.name), node_tags), "uptime", (t - node.booted) * 1000)
        for metric, value in cluster.items():
            put(self._key(metric, ("cluster",), {"type": "cluster"}), metric, value)
        lines.extend(f"{series} {','.join(fields)} {ts}" for series, fields in telegraf.items())
        return lines

    @staticmethod
    def _finished(pod: Pod, t: float, ts: int) -> list[str]:
        """kube_inventory still lists a Job's pod for a while after it succeeded, with its
        requests (phase Succeeded): two hours here. It holds nothing, and is never billed."""
        if pod.kind != "batch":
            return []
        day, second = divmod(int(t), DAY)
        since_start = (second - pod.start_offset) % DAY
        if not pod.duration <= since_start < pod.duration + 2 * 3600:
            return []
        name = pod.name(day if second >= pod.start_offset else day - 1)
        return [f"kubernetes_pod_container,container_name={_escape(c.name)},namespace={_escape(pod.namespace)},"
                f"node_name={_escape(pod.node)},phase=Succeeded,pod_name={_escape(name)},readiness=unready,state=terminated "
                f"resource_requests_millicpu_units={int(c.cpu_request)}i,resource_requests_memory_bytes={int(c.mem_request)}i {ts}"
                for c in pod.containers]

    def _node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)


# ------------------------------------------------------------------------ writing
class Writer:
    """Writes batches of lines to InfluxDB from a background thread, so generating the
    next batch overlaps with InfluxDB ingesting the last one."""

    def __init__(self, client: Any, batch_points: int = 50_000):
        self.client = client
        self.batch_points = batch_points
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="simulate-writer", daemon=True)
        self._thread.start()
        self.points = 0

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            try:
                if self._error is None:
                    self.client.write(batch, params={"db": self.client._database, "precision": "s"},
                                      protocol="line")
            except Exception as exc:  # noqa: BLE001 - reported on the caller's thread
                self._error = exc

    def put(self, lines: list[str]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(lines)
        self.points += len(lines)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def backfill(cluster: Cluster, client: Any, seconds: float, step: float, end: float | None = None,
             progress: bool = True, faults: Faults | None = None) -> int:
    """Write `seconds` of history ending at `end` (now), one sample every `step` s, with the
    collector `faults` (kubemonitor/faults.py) where given. Returns points written."""
    end = time.time() if end is None else end
    n = int(seconds // step)
    times = [end - (n - i) * step for i in range(n)]
    writer = Writer(client)
    report = Progress("backfill", n, "samples") if progress else None
    batch: list[str] = []
    try:
        for i, t in enumerate(times, 1):
            for moment in (t, *faults.extra_times(t, step)) if faults else (t,):
                lines = cluster.tick(moment)
                batch.extend(faults.apply(moment, lines) if faults else lines)
            if len(batch) >= writer.batch_points:
                writer.put(batch)
                batch = []
            if report is not None:
                report.update(i, f"{writer.points + len(batch):,} points")
        if batch:
            writer.put(batch)
    finally:
        writer.close()
    return writer.points


class SimulateError(UserError):
    """InfluxDB refused or did not take the simulated points."""


def write_problem(exc: BaseException, config: Config) -> SimulateError | None:
    """One line for a failed write, or None when `exc` is not a database problem (a bug)."""
    import requests
    from influxdb.exceptions import InfluxDBClientError, InfluxDBServerError
    where = f"InfluxDB at {config.influxdb_host}:{config.influxdb_port}"
    if isinstance(exc, requests.exceptions.Timeout):
        return SimulateError(f"{where} did not answer within {config.influxdb_timeout:g} s; check that it runs and is not "
                             "overloaded (or raise INFLUXDB_TIMEOUT / --influxdb-timeout)")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return SimulateError(f"{where} is unreachable; check INFLUXDB_HOST/INFLUXDB_PORT (or --influxdb-host/--influxdb-port)")
    if isinstance(exc, (InfluxDBClientError, InfluxDBServerError, requests.exceptions.RequestException)):
        return SimulateError(f"{where} refused the write: {str(exc).strip()[:300]}")
    return None


def live(cluster: Cluster, client: Any, interval: float, stop: threading.Event,
         on_error: Callable[[BaseException | None], None] | None = None) -> None:
    """Write one sample every `interval` seconds until `stop` is set.

    A failed write skips that sample and tries again at the next one: the live
    writer outlives an InfluxDB outage. `on_error(exc)` hears of the first failure of
    an outage (and of the recovery, with None); without it the failure is raised.
    """
    failing = False
    while not stop.is_set():
        began = time.time()
        try:
            client.write(cluster.tick(began), params={"db": client._database, "precision": "s"}, protocol="line")
        except Exception as exc:  # noqa: BLE001 - reported to on_error, or raised
            if on_error is None:
                raise
            if not failing:  # once per outage, not once per skipped sample
                on_error(exc)
            failing = True
        else:
            if failing and on_error is not None:
                failing = False
                on_error(None)
        stop.wait(max(0.0, interval - (time.time() - began)))


def client_for(config: Config, timeout: float | None = None) -> Any:
    from influxdb import InfluxDBClient
    return InfluxDBClient(host=config.influxdb_host, port=config.influxdb_port, username=config.influxdb_user,
                          password=config.influxdb_pass, database=config.influxdb_db, ssl=config.influxdb_ssl,
                          verify_ssl=config.influxdb_verify_ssl, timeout=timeout or max(30.0, config.influxdb_timeout),
                          retries=1)


def run(config: Config, cluster: Cluster, backfill_seconds: float, step: float, interval: float,
        stop: threading.Event | None = None, faults: frozenset[str] = frozenset()) -> None:
    """`kubemonitor simulate`: create the database, backfill, then write live until `stop`.

    Database failures become one-line SimulateErrors; in live mode a failure is
    reported once (and the recovery too) while the writer keeps trying. `faults` are
    written into the backfill (kubemonitor/faults.py); the `late` fault's points follow
    LATE_AFTER seconds after it (at once without live writing).
    """
    client = client_for(config)
    faulty = Faults(faults, time.time(), config.source, cluster.nodes[0].name, cluster.nodes[-1].name) if faults else None
    try:
        client.create_database(config.influxdb_db)  # no-op when it exists
        if backfill_seconds:
            started = time.monotonic()
            points = backfill(cluster, client, backfill_seconds, step, end=faulty.end if faulty else None,
                              faults=faulty)
            print(f"backfilled {backfill_seconds / 3600:g} h: {points:,} points in {time.monotonic() - started:.1f} s "
                  f"into InfluxDB at {config.influxdb_host}:{config.influxdb_port}, database {config.influxdb_db}"
                  + (f", with the faults {', '.join(sorted(faults))}" if faults else ""), file=sys.stderr)
        if faulty is not None and faulty.held and not interval:
            held = faulty.release()
            client.write(held, params={"db": client._database, "precision": "s"}, protocol="line")
            print(f"wrote the {len(held):,} late points (the late fault)", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - mapped to one line, or re-raised as a bug
        problem = write_problem(exc, config)
        if problem is None:
            raise
        raise problem from None
    if not interval:
        return
    stop = stop or threading.Event()

    def report(exc: BaseException | None) -> None:
        if exc is None:
            print("simulate: InfluxDB takes samples again", file=sys.stderr, flush=True)
            return
        problem = write_problem(exc, config)
        if problem is None:
            raise exc
        print(f"simulate: {problem}; sample skipped, trying again every {interval:g} s", file=sys.stderr, flush=True)

    if faulty is not None and faulty.held:
        held = faulty.release()

        def write_late() -> None:
            if stop.wait(LATE_AFTER):
                return
            try:
                client_for(config).write(held, params={"db": config.influxdb_db, "precision": "s"}, protocol="line")
                print(f"simulate: wrote the {len(held):,} late points (the late fault)", file=sys.stderr, flush=True)
            except Exception as exc:  # noqa: BLE001 - reported, the live writer goes on
                print(f"simulate: the late points were not written: {write_problem(exc, config) or exc}", file=sys.stderr)
        threading.Thread(target=write_late, daemon=True, name="late-points").start()
        print(f"the late fault's {len(held):,} points follow in {LATE_AFTER:g} s", file=sys.stderr)
    if "interval" in faults:
        interval /= 2  # the interval fault: twice as dense as said
    print(f"writing a sample every {interval:g} s; Ctrl-C stops", file=sys.stderr)
    live(cluster, client_for(config, timeout=config.influxdb_timeout), interval, stop, on_error=report)
