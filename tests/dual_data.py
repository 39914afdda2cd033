"""One cluster, written in Heapster's schema and in Telegraf's + DCGM's (tests/test_sources.py).

The last three hours before `end` (minute-aligned), one sample a minute in both:

  team-a/web-1     containers nginx 300 + sidecar 200 millicores; 1 GiB + 0.5 GiB memory
  team-a/batch-1   containers c1 1000 + c2 500, the first 90 minutes only (Heapster: no pod-level series)
  team-b/api-1     container app 250; 2 GiB
  kube-system/dns  container dns 50 (excluded from cluster views and statements)
  team-gpu/train-1 container trainer holding two GPUs: 15625 MiB (16384 MB) and 31250 MiB (32768 MB);
                   Heapster's gpu/usage is their sum, 49152 MB; DCGM writes one series per GPU
  an idle GPU      (DCGM only: no namespace/pod labels; it counts for coverage, never as usage)

Every value is an integer in both units (nanocores are millicores x 10^6; the MiB values
are multiples of 15625, so x 1.048576 is exact): both schemas must give identical sums.
Telegraf's series carry kube_inventory points too (requests and limits, with the
inventory's own tags) in the same measurement, which must never count as usage.
Nodes write their own totals (Heapster `type=node`, Telegraf `kubernetes_node`) except
in one 10-minute gap (GPUs have none), so coverage is the same in both.
"""
from __future__ import annotations

MINUTE = 60
MINUTES = 180
GIB = 1024**3
CPU = {("team-a", "web-1"): {"nginx": 300, "sidecar": 200}, ("team-a", "batch-1"): {"c1": 1000, "c2": 500},
       ("team-b", "api-1"): {"app": 250}, ("kube-system", "dns-1"): {"dns": 50}}
MEMORY = {("team-a", "web-1"): {"nginx": GIB, "sidecar": GIB // 2}, ("team-b", "api-1"): {"app": 2 * GIB}}
GPUS_MIB = (15625, 31250)           # two GPUs of team-gpu/train-1
GPU_MB = 16384 + 32768
BATCH_MINUTES = 90
GAP = range(100, 110)              # minutes without node-level samples
NODE = "node-1"


def minutes(end: int) -> list[int]:
    start = end // MINUTE * MINUTE - (MINUTES - 1) * MINUTE
    return [start + i * MINUTE for i in range(MINUTES)]


def _running(pod: tuple[str, str], i: int) -> bool:
    return pod != ("team-a", "batch-1") or i < BATCH_MINUTES


def heapster_lines(end: int) -> list[str]:
    out = []
    for i, t in enumerate(minutes(end)):
        for (ns, pod), containers in CPU.items():
            if not _running((ns, pod), i):
                continue
            tags = f"namespace_name={ns},pod_name={pod},nodename={NODE}"
            for c, v in containers.items():
                out.append(f"cpu/usage_rate,{tags},container_name={c},type=pod_container value={v} {t}")
            if pod != "batch-1":  # batch-1 has container series only: the counting rule's fallback
                out.append(f"cpu/usage_rate,{tags},type=pod value={sum(containers.values())} {t}")
        for (ns, pod), containers in MEMORY.items():
            tags = f"namespace_name={ns},pod_name={pod},nodename={NODE}"
            for c, v in containers.items():
                out.append(f"memory/usage,{tags},container_name={c},type=pod_container value={v}i {t}")
            out.append(f"memory/usage,{tags},type=pod value={sum(containers.values())}i {t}")
        out.append(f"gpu/usage,namespace_name=team-gpu,pod_name=train-1,nodename={NODE},container_name=trainer,"
                   f"type=pod_container value={GPU_MB} {t}")
        if i not in GAP:
            running = sum(sum(c.values()) for p, c in CPU.items() if _running(p, i))
            out.append(f"cpu/usage_rate,nodename={NODE},type=node value={running} {t}")
            out.append(f"memory/usage,nodename={NODE},type=node value={sum(sum(c.values()) for c in MEMORY.values())}i {t}")
        out.append(f"gpu/usage,nodename={NODE},type=node value={GPU_MB} {t}")  # GPUs have no gap (DCGM neither)
    return out


def telegraf_lines(end: int) -> list[str]:
    out = []
    for i, t in enumerate(minutes(end)):
        for (ns, pod), containers in CPU.items():
            if not _running((ns, pod), i):
                continue
            for c, v in containers.items():
                tags = f"container_name={c},namespace={ns},node_name={NODE},pod_name={pod}"
                memory = MEMORY.get((ns, pod), {}).get(c)
                fields = f"cpu_usage_nanocores={v * 1_000_000}i" + (f",memory_usage_bytes={memory}i" if memory else "")
                out.append(f"kubernetes_pod_container,{tags} {fields} {t}")
                # kube_inventory: the same measurement, its own tags and fields (never usage)
                out.append(f"kubernetes_pod_container,{tags},phase=Running,readiness=ready,state=running "
                           f"resource_requests_millicpu_units={v * 2}i,resource_limits_memory_bytes={4 * GIB}i {t}")
        for gpu, mib in enumerate(GPUS_MIB):
            out.append(f"DCGM_FI_DEV_FB_USED,Hostname={NODE},UUID=GPU-{gpu},container=trainer,gpu={gpu},namespace=team-gpu,"
                       f"pod=train-1 gauge={mib} {t}")
        out.append(f"DCGM_FI_DEV_FB_USED,Hostname={NODE},UUID=GPU-idle,gpu=2 gauge=1 {t}")  # no pod holds it
        if i not in GAP:
            running = sum(sum(c.values()) for p, c in CPU.items() if _running(p, i))
            out.append(f"kubernetes_node,node_name={NODE} cpu_usage_nanocores={running * 1_000_000}i,"
                       f"memory_usage_bytes={sum(sum(c.values()) for c in MEMORY.values())}i {t}")
    return out


def load(influxd, end: int) -> dict[str, str]:
    """Both databases; {schema: database}."""
    dbs = {"heapster": "dual_heapster", "telegraf": "dual_telegraf"}
    for schema, db in dbs.items():
        influxd.query(f'DROP DATABASE "{db}"')
        influxd.query(f'CREATE DATABASE "{db}"')
        influxd.write(db, heapster_lines(end) if schema == "heapster" else telegraf_lines(end), precision="s")
    return dbs
