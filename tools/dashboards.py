"""The Grafana sidecar's Telegraf dashboards, made from the Heapster ones in deploy/kube-monitoring.yaml.

    python tools/dashboards.py          # rewrite the telegraf-*.json entries of the dashboards ConfigMap
    python tools/dashboards.py --check  # exit 1 when they differ from what this makes (the tests run it)

Each Heapster dashboard's panels (by namespace, by pod, usage over the range) become the
same panels over Telegraf's and DCGM's series, with kubemonitor's telegraf layouts: the
measurement, the field and its factor to the catalog's unit, the tag names, and —
as Telegraf has no pod-level series — each pod as the sum of its containers (and a
container's GPUs). The usage table uses the source's sample interval (10 s; DCGM 30 s).
"""
from __future__ import annotations

import copy
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
MANIFEST = os.path.join(ROOT, "deploy", "kube-monitoring.yaml")
CONFIGMAP = "kube-monitoring-grafana-dashboards"
METRICS = {"cpu-usage_rate.json": "cpu/usage_rate", "memory-usage.json": "memory/usage", "gpu-usage.json": "gpu/usage"}


def scale(layout) -> str:
    """` * mul / div`: the stored value to the catalog's unit (empty when they are the same)."""
    return (f" * {layout.mul}" if layout.mul != 1 else "") + (f" / {layout.div}" if layout.div != 1 else "")


def queries(layout) -> dict[int, str]:
    ns, pod, container = f'"{layout.namespace}"', f'"{layout.pod}"', f'"{layout.container}"'
    parts = "".join(f', "{p}"' for p in layout.parts)
    where = " AND ".join(x for x in (
        layout.container_level[0].replace("$empty", "''") if layout.container_level else None,
        f"{ns} =~ /^$namespace$/", "$timeFilter") if x)
    inner = (f'SELECT mean("{layout.field}"){scale(layout)} AS "value" FROM "{layout.measurement}" '
             f"WHERE {where} GROUP BY time($__interval), {ns}, {pod}, {container}{parts}")
    # The outer query has the time range too: without one InfluxDB ends it at its own now(),
    # and points stamped ahead of InfluxDB's clock vanish from the chart.
    return {
        1: f"SELECT sum(\"value\") FROM ({inner}) WHERE $timeFilter GROUP BY time($__interval), {ns} fill(none)",
        2: f"SELECT sum(\"value\") FROM ({inner}) WHERE $timeFilter GROUP BY time($__interval), {ns}, {pod} fill(none)",
        3: (f'SELECT sum("{layout.field}"){scale(layout)} * $sample_interval / 3600 AS "usage" '
            f'FROM "{layout.measurement}" WHERE {where} GROUP BY {ns}, {pod}'),
    }


def telegraf_board(board: dict, metric: str) -> dict:
    from kubemonitor.telegraf import LAYOUTS
    layout = LAYOUTS[metric]
    out = copy.deepcopy(board)
    out["uid"] += "-telegraf"
    out["title"] += " \u00b7 Telegraf"
    out["tags"] = ["kubemonitor", "telegraf"]
    out["description"] = (f"{metric} from {layout.measurement}.{layout.field} (Telegraf"
                          f"{' / DCGM exporter' if layout.gpu else ''}); each pod is the sum of its containers"
                          f"{' (and their GPUs)' if layout.parts else ''}, as kubemonitor counts it. "
                          "kube_inventory's points in the same measurement have other fields and never count.")
    for variable in out["templating"]["list"]:
        if variable["name"] == "sample_interval":
            variable["query"] = "30" if layout.gpu else "10"
        if variable["name"] == "namespace":
            variable["query"] = f'SHOW TAG VALUES FROM "{layout.measurement}" WITH KEY = "{layout.namespace}"'
    made = queries(layout)
    for panel in out["panels"]:
        for target in panel["targets"]:
            target["query"] = made[panel["id"]]
            if "alias" in target:
                target["alias"] = target["alias"].replace("$tag_namespace_name", f"$tag_{layout.namespace}") \
                                                 .replace("$tag_pod_name", f"$tag_{layout.pod}")
    return out


def entry(name: str, board: dict) -> str:
    body = json.dumps(board, indent=2)
    return f"  {name}: |\n" + "".join(f"    {line}\n" for line in body.splitlines())


def render(text: str) -> str:
    """The manifest with the telegraf-*.json entries (re)made after the Heapster ones."""
    import yaml
    docs = [d for d in yaml.safe_load_all(text) if d]
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == CONFIGMAP]
    made = "".join(entry("telegraf-" + name, telegraf_board(json.loads(cm["data"][name]), metric))
                   for name, metric in METRICS.items())
    start = text.index(f"  name: {CONFIGMAP}\n")
    end = text.index("\n---\n", start) + 1
    block = re.sub(r"  telegraf-[\w.-]+\.json: \|\n(?:    .*\n|\n)*", "", text[start:end])
    return text[:start] + block + made + text[end:]


def main() -> int:
    with open(MANIFEST, encoding="utf-8") as fh:
        text = fh.read()
    new = render(text)
    if "--check" in sys.argv:
        if new != text:
            print("deploy/kube-monitoring.yaml: the Telegraf dashboards are out of date; run python tools/dashboards.py",
                  file=sys.stderr)
            return 1
        return 0
    with open(MANIFEST, "w", encoding="utf-8") as fh:
        fh.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
