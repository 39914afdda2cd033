"""The test dataset: Heapster's schema, with answers known in closed form.

December 2017 block, 60 points one minute apart from T0 = 2017-12-01T10:00:00Z
(i = 0..59, t_i = T0 + 60 i s), metric cpu/usage_rate unless said otherwise:

  team-a/web-1    containers nginx = 300, sidecar = 200; pod series = 500
                  (tags also carry pod_id and labels)
  team-a/web-2    containers app = 60 + 10 i, sidecar = 40; pod series = 100 + 10 i
  team-a/batch-1  containers only (no pod series): c1 = 1000, c2 = 500, i = 0..29
  team-b/web-1    same pod name as in team-a: container nginx = 250; pod = 250
  kube-system/kube-dns-1   container dns = 50; pod = 50
  ns, node, cluster series with the sums, and a sys_container series (999): they
  must never be counted.
  team-c/edge-1   pod series at 2017-11-30T23:59:59.999999999Z (1), 2017-12-01T00:00:00Z (2),
                  2017-12-31T23:59:59.999999999Z (4), 2018-01-01T00:00:00Z (8): inclusive ranges.
  gpu/usage:      team-gpu/train-1 pod 8000 (container trainer 8000);
                  team-gpu/train-2 container-only trainer 4000.
  memory/usage:   team-a/web-1 pod 1073741824 (integers, as Heapster writes them),
                  containers 805306368 + 268435456.

Usage-rule block, 5-6 March 2018 (day D = 2018-03-05, one sample a minute unless said;
cpu/usage_rate), one namespace per case the audit measured:

  case-skew/skew-1         containers only: a = 100 at each minute, b = 200 two seconds later
  case-recreate/job-1      containers only, 600: pod_id a from 00:00 to 10:59, then gone for two
                           hours, pod_id b from 13:00 to 23:59
  case-partial/mixed-1     container 400 all day; a pod-level series (400) only 22:00-23:59
  case-labels/web-1        pod-level 500 (containers 300 + 200) all day; the `labels` tag changes
                           from app:v1 to app:v2 at 12:00
  case-twoday/long-1       pod-level 250 (container 250) on D and D+1
  case-midhour/late-1      container 100 all day; a pod-level series (100) from 12:30 on, so the
                           clock hour 12 belongs to the pod-level series (30 samples)

Last-hour block: ten points one minute apart starting 15 minutes before the
fixture was written (`Anchors.recent[0]`), so the default window (now - 60 min ..
now) holds all ten for 45 minutes:

  cpu/usage_rate: team-a/web-1 pod 500 (containers 300 + 200), team-b/web-1 pod 250,
                  kube-system/kube-dns-1 pod 50, default/hello-1 pod 10 (container 10)
  gpu/usage:      team-gpu/train-1 pod 8000
  uptime:         team-a/web-1 pod 60000 * (k + 1)
  custom/gpu_temperature (not in the catalog): team-gpu/train-1 pod 123
"""
from __future__ import annotations

import calendar
import time
from dataclasses import dataclass

NS = 10**9
MINUTE = 60 * NS
T0 = calendar.timegm((2017, 12, 1, 10, 0, 0)) * NS
N = 60


def at(text: str) -> int:
    """'2017-12-31T23:59:59' (UTC) -> ns."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%S")) * NS


EDGE_TIMES = {
    1: at("2017-11-30T23:59:59") + NS - 1,
    2: at("2017-12-01T00:00:00"),
    4: at("2017-12-31T23:59:59") + NS - 1,
    8: at("2018-01-01T00:00:00"),
}


@dataclass(frozen=True)
class Anchors:
    written_ns: int
    recent: tuple[int, ...]


def line(metric: str, tags: dict, value, t: int) -> str:
    tag_text = ",".join(f"{k}={v}" for k, v in sorted(tags.items()) if v is not None)
    v = f"{value}i" if isinstance(value, int) else repr(float(value))
    return f"{metric},{tag_text} value={v} {t}"


def pod_tags(ns, pod, node, kind, container=None, **extra):
    return {"namespace_name": ns, "pod_name": pod, "nodename": node, "type": kind,
            "container_name": container, **extra}


def _pod(metric, ns, pod, node, containers: dict, t, with_pod=True, value_type=float, **extra):
    out = [line(metric, pod_tags(ns, pod, node, "pod_container", c, **extra), value_type(v), t)
           for c, v in containers.items()]
    if with_pod:
        out.append(line(metric, pod_tags(ns, pod, node, "pod", **extra), value_type(sum(containers.values())), t))
    return out


def month_lines() -> list[str]:
    out: list[str] = []
    cpu = "cpu/usage_rate"
    for i in range(N):
        t = T0 + i * MINUTE
        out += _pod(cpu, "team-a", "web-1", "node-1", {"nginx": 300, "sidecar": 200}, t,
                    pod_id="uid-a-web-1", labels="app:web")
        out += _pod(cpu, "team-a", "web-2", "node-2", {"app": 60 + 10 * i, "sidecar": 40}, t)
        batch = {"c1": 1000, "c2": 500} if i < 30 else {}
        out += _pod(cpu, "team-a", "batch-1", "node-1", batch, t, with_pod=False)
        out += _pod(cpu, "team-b", "web-1", "node-2", {"nginx": 250}, t)
        out += _pod(cpu, "kube-system", "kube-dns-1", "node-1", {"dns": 50}, t)
        team_a = 500 + (100 + 10 * i) + sum(batch.values())
        out.append(line(cpu, {"namespace_name": "team-a", "type": "ns"}, float(team_a), t))
        out.append(line(cpu, {"namespace_name": "team-b", "type": "ns"}, 250.0, t))
        out.append(line(cpu, {"namespace_name": "kube-system", "type": "ns"}, 50.0, t))
        node1 = 500 + sum(batch.values()) + 50
        out.append(line(cpu, {"nodename": "node-1", "type": "node"}, float(node1), t))
        out.append(line(cpu, {"nodename": "node-2", "type": "node"}, float(100 + 10 * i + 250), t))
        out.append(line(cpu, {"type": "cluster"}, float(team_a + 250 + 50), t))
        out.append(line(cpu, {"nodename": "node-1", "container_name": "kubelet", "type": "sys_container"}, 999.0, t))
        out += _pod("gpu/usage", "team-gpu", "train-1", "node-3", {"trainer": 8000}, t)
        out += _pod("gpu/usage", "team-gpu", "train-2", "node-3", {"trainer": 4000}, t, with_pod=False)
        out.append(line("gpu/usage", {"namespace_name": "team-gpu", "type": "ns"}, 12000.0, t))
        out += _pod("memory/usage", "team-a", "web-1", "node-1", {"nginx": 805306368, "sidecar": 268435456}, t,
                    value_type=int)
    for value, t in EDGE_TIMES.items():
        out.append(line(cpu, pod_tags("team-c", "edge-1", "node-1", "pod"), float(value), t))
    return out


D = at("2018-03-05T00:00:00")
DAY_SAMPLES = 1440


def usage_rule_lines() -> list[str]:
    cpu = "cpu/usage_rate"
    out: list[str] = []
    for i in range(DAY_SAMPLES):
        t = D + i * MINUTE
        hour = i // 60
        out.append(line(cpu, pod_tags("case-skew", "skew-1", "n1", "pod_container", "a"), 100.0, t))
        out.append(line(cpu, pod_tags("case-skew", "skew-1", "n1", "pod_container", "b"), 200.0, t + 2 * NS))
        if hour <= 10 or hour >= 13:
            pod_id = "a" if hour <= 10 else "b"
            out.append(line(cpu, pod_tags("case-recreate", "job-1", "n2", "pod_container", "main", pod_id=pod_id), 600.0, t))
        out += _pod(cpu, "case-partial", "mixed-1", "n1", {"main": 400}, t, with_pod=hour >= 22)
        out += _pod(cpu, "case-labels", "web-1", "n2", {"nginx": 300, "sidecar": 200}, t,
                    labels="app:v1" if hour < 12 else "app:v2")
        out += _pod(cpu, "case-midhour", "late-1", "n1", {"main": 100}, t, with_pod=i >= 12 * 60 + 30)
    for i in range(2 * DAY_SAMPLES):
        out += _pod(cpu, "case-twoday", "long-1", "n1", {"main": 250}, D + i * MINUTE)
    return out


def recent_lines(start: int) -> list[str]:
    out: list[str] = []
    cpu = "cpu/usage_rate"
    for k in range(10):
        t = start + k * MINUTE
        out += _pod(cpu, "team-a", "web-1", "node-1", {"nginx": 300, "sidecar": 200}, t)
        out += _pod(cpu, "team-b", "web-1", "node-2", {"nginx": 250}, t)
        out += _pod(cpu, "kube-system", "kube-dns-1", "node-1", {"dns": 50}, t)
        out += _pod(cpu, "default", "hello-1", "node-2", {"hello": 10}, t)
        out += _pod("gpu/usage", "team-gpu", "train-1", "node-3", {"trainer": 8000}, t)
        out += _pod("uptime", "team-a", "web-1", "node-1", {"nginx": 60000 * (k + 1)}, t, value_type=int)
        out.append(line("custom/gpu_temperature", pod_tags("team-gpu", "train-1", "node-3", "pod"), 123.0, t))
    return out


def load(influxd, db: str) -> Anchors:
    influxd.query(f'CREATE DATABASE "{db}"')
    now = time.time_ns()
    start = (now // MINUTE) * MINUTE - 15 * MINUTE
    influxd.write(db, month_lines() + usage_rule_lines() + recent_lines(start))
    return Anchors(written_ns=now, recent=tuple(start + k * MINUTE for k in range(10)))
