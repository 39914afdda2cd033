"""Collectors as they really write (README "Collecting data today"): a second collector,
a retried flush, a series written more often than the interval. Each case is data
written the way the collector writes it into a database of its own, and an answer
known in closed form: at most one value per series per sample interval counts (the
mean of its samples there), from raw points and from rollups alike."""
from __future__ import annotations

import json
import secrets

import pytest

from kubemonitor.request import ApiQuery
from kubemonitor.times import NS
from kubemonitor.usage import aggregate, sample_interval_ns

H = 3600
T = 1_704_067_200  # 2024-01-01T00:00:00Z: three whole hours from here
STEP = 10          # Telegraf's [agent] interval


def telegraf_cpu(pod: str, millicores: float, start: int, stop: int, host: str, offset: int = 0,
                 namespace: str = "team-a", container: str = "main") -> list[str]:
    """inputs.kubernetes' container series, every STEP s in [start, stop), `offset` s late;
    Telegraf's global `host` tag is the agent's own (its pod's name in a DaemonSet)."""
    return [f"kubernetes_pod_container,container_name={container},host={host},namespace={namespace},node_name=node-a,"
            f"pod_name={pod} cpu_usage_nanocores={int(millicores * 1_000_000)}i {t + offset}"
            for t in range(start, stop, STEP)]


async def rows(app, metric_name: str, begin_s: int, end_s: int, rollups: bool = False) -> dict[str, dict]:
    metric = await app.catalog.resolve(metric_name)
    q = ApiQuery(namespace="default", agg="all-pod", begin_ns=begin_s * NS, end_ns=end_s * NS - 1)
    answer = await aggregate(app.influx, metric, q, (), sample_interval_ns(metric, app.config),
                             app.rollups if rollups else None)
    return {r["pod_name"]: r for r in answer}


def usage(row: dict) -> tuple:
    return row["count"], row["sum"], row["max"]


@pytest.fixture
def telegraf_app(make_app, scratch_db):
    return make_app(influxdb_db=scratch_db, source="telegraf", sample_interval=float(STEP), gpu_sample_interval=float(STEP),
                    rollup_rp="t_" + secrets.token_hex(4))


@pytest.fixture
def rollout(running_influxd, scratch_db):
    """A second Telegraf DaemonSet for the middle hour (a rollout): the same container series
    again, 5 s after the first, reading 620 where the first reads 600. web-2 is untouched."""
    lines = (telegraf_cpu("web-1", 600, T, T + 3 * H, "telegraf-a1b2c")
             + telegraf_cpu("web-1", 620, T + H, T + 2 * H, "telegraf-x9y8z", offset=5)
             + telegraf_cpu("web-2", 300, T, T + 3 * H, "telegraf-a1b2c"))
    running_influxd.write(scratch_db, lines, precision="s")
    per_hour = H // STEP
    # hours 1 and 3: 360 intervals of 600; hour 2: 360 intervals of mean(600, 620)
    return {"web-1": (3 * per_hour, 2 * per_hour * 600 + per_hour * 610, 610.0), "web-2": (3 * per_hour, 3 * per_hour * 300, 300.0)}


@pytest.mark.gen_test(timeout=60)
async def test_a_second_telegraf_daemonset_counts_each_interval_once(telegraf_app, rollout):
    whole = await rows(telegraf_app, "cpu/usage_rate", T, T + 3 * H)
    assert {pod: usage(r) for pod, r in whole.items()} == rollout
    assert whole["web-1"]["integral"] == rollout["web-1"][1] * STEP / H  # millicore-hours: 1,803.33..., not 2,420
    # the duplicated hour alone (a short range: another statement) and the hours around it add up
    parts = [await rows(telegraf_app, "cpu/usage_rate", T + h * H, T + (h + 1) * H) for h in range(3)]
    assert usage(parts[1]["web-1"]) == (H // STEP, H // STEP * 610, 610.0)
    assert sum(p["web-1"]["sum"] for p in parts) == whole["web-1"]["sum"]
    assert sum(p["web-1"]["count"] for p in parts) == whole["web-1"]["count"]


@pytest.mark.gen_test(timeout=60)
async def test_rollups_of_a_duplicated_hour_count_each_interval_once(telegraf_app, rollout):
    app = telegraf_app
    await app.rollups.prepare()
    assert app.rollups.state == "on", app.rollups.reason
    metric = await app.catalog.resolve("cpu/usage_rate")
    for hour in range(3):
        await app.rollup_writer.roll_up(metric, (T + hour * H) * NS)
    from_rollups = await rows(app, "cpu/usage_rate", T, T + 3 * H, rollups=True)
    assert {pod: usage(r) for pod, r in from_rollups.items()} == rollout


@pytest.mark.gen_test(timeout=60)
async def test_a_retried_flush_counts_once(telegraf_app, running_influxd, scratch_db):
    """Node-a's agent re-sent 02:00-02:09 after a timeout, stamped a second later. job-2 only
    ran from 02:00 to 02:20, so its hour holds fewer samples than an hour has intervals:
    the duplicates are found by the 20 minutes the series spans, not by the hour."""
    lines = (telegraf_cpu("job-1", 500, T, T + H, "telegraf-a1b2c") + telegraf_cpu("job-1", 500, T, T + 600, "telegraf-a1b2c", 1)
             + telegraf_cpu("job-2", 800, T, T + 1200, "telegraf-a1b2c") + telegraf_cpu("job-2", 800, T, T + 600, "telegraf-a1b2c", 1))
    running_influxd.write(scratch_db, lines, precision="s")
    answer = await rows(telegraf_app, "cpu/usage_rate", T, T + 3 * H)
    assert usage(answer["job-1"]) == (H // STEP, H // STEP * 500, 500.0)
    assert usage(answer["job-2"]) == (120, 120 * 800, 800.0)


@pytest.mark.gen_test(timeout=60)
async def test_a_counter_written_twice_counts_each_interval_once(telegraf_app, running_influxd, scratch_db):
    """A network counter read by two agents (100 B/s): each series' rate is 100, and each
    interval counts one mean rate, not two."""
    def counter(host, offset, start, stop):
        return [f"kubernetes_pod_network,host={host},interface=eth0,namespace=team-a,node_name=node-a,pod_name=web-1 "
                f"rx_bytes={100 * (t + offset - T)}i,tx_bytes=0i {t + offset}" for t in range(start, stop, STEP)]
    running_influxd.write(scratch_db, counter("telegraf-a1b2c", 0, T, T + 2 * H) + counter("telegraf-x9y8z", 5, T + H, T + 2 * H),
                          precision="s")
    answer = await rows(telegraf_app, "network/rx_rate", T, T + 2 * H)
    # 720 samples of the first agent: 719 rates (the first has none); the second agent's ride along
    assert usage(answer["web-1"]) == (719, 719 * 100.0, 100.0)


@pytest.mark.gen_test(timeout=60)
async def test_a_gpu_scraped_by_two_agents_counts_each_interval_once(telegraf_app, running_influxd, scratch_db):
    """DCGM's exporter scraped by two Telegrafs: the same two GPUs of one container twice.
    A container's GPUs are still summed (two series of the same pod that are not duplicates)."""
    def gpu(host, offset, which, mib):
        return [f"DCGM_FI_DEV_FB_USED,Hostname=node-a,UUID=GPU-{which},container=train,gpu={which},host={host},"
                f"namespace=team-gpu,pod=train-1 gauge={mib} {t + offset}" for t in range(T, T + H, STEP)]
    running_influxd.write(scratch_db, gpu("telegraf-a1b2c", 0, 0, 1000) + gpu("telegraf-a1b2c", 0, 1, 3000)
                          + gpu("telegraf-x9y8z", 5, 0, 1000) + gpu("telegraf-x9y8z", 5, 1, 3000), precision="s")
    answer = await rows(telegraf_app, "gpu/usage", T, T + H)
    mb = 4000 * 1.048576  # MiB -> MB
    count, total, top = usage(answer["train-1"])
    assert count == H // STEP and total == pytest.approx(H // STEP * mb, rel=1e-12) and top == pytest.approx(mb, rel=1e-12)


@pytest.fixture
def heapster_app(make_app, scratch_db):
    return make_app(influxdb_db=scratch_db, sample_interval=60.0)


def heapster_cpu(pod: str, millicores: int, start: int, stop: int, offset: int = 0) -> list[str]:
    """Heapster's sink: the pod's series and its container's, every 60 s; a second Heapster
    writes exactly the same series (it tags nothing of its own)."""
    out = []
    for t in range(start, stop, 60):
        base = f"namespace_name=team-a,nodename=node-a,pod_name={pod}"
        out += [f"cpu/usage_rate,container_name=main,{base},type=pod_container value={millicores} {t + offset}",
                f"cpu/usage_rate,{base},type=pod value={millicores} {t + offset}"]
    return out


@pytest.mark.gen_test(timeout=60)
async def test_a_second_heapster_counts_each_interval_once(heapster_app, running_influxd, scratch_db):
    """Two Heapsters for an hour, the second 5 s behind: the same series (Heapster adds no tag
    of its own), twice as dense. job-1 ran 25 minutes of that hour only."""
    lines = (heapster_cpu("web-1", 400, T, T + 3 * H) + heapster_cpu("web-1", 400, T + H, T + 2 * H, offset=5)
             + heapster_cpu("job-1", 900, T + H, T + H + 1500) + heapster_cpu("job-1", 900, T + H, T + H + 1500, offset=5))
    running_influxd.write(scratch_db, lines, precision="s")
    for begin, end in ((T, T + 3 * H), (T + H, T + 2 * H)):  # the long statement and the short one
        answer = await rows(heapster_app, "cpu/usage_rate", begin, end)
        hours = (end - begin) // H
        assert usage(answer["web-1"]) == (hours * 60, hours * 60 * 400.0, 400.0)
        assert answer["web-1"]["series_type"] == "pod"
        assert usage(answer["job-1"]) == (25, 25 * 900.0, 900.0)


@pytest.mark.gen_test(timeout=60)
async def test_an_interval_setting_longer_than_telegrafs_bills_the_truth(make_app, scratch_db, running_influxd):
    """Telegraf writes every 10 s; KUBEMONITOR_SAMPLE_INTERVAL left at 60 s counted every
    sample for 60 s (x 6). Now each 60 s interval counts once: 600 millicores for an hour
    is 600 millicore-hours."""
    running_influxd.write(scratch_db, telegraf_cpu("web-1", 600, T, T + H, "telegraf-a1b2c"), precision="s")
    app = make_app(influxdb_db=scratch_db, source="telegraf", sample_interval=60.0)
    (row,) = (await rows(app, "cpu/usage_rate", T, T + H)).values()
    assert usage(row) == (60, 60 * 600.0, 600.0) and row["integral"] == 600.0


@pytest.mark.gen_test(timeout=60)
async def test_dcgm_scraped_more_often_than_it_collects_bills_the_truth(make_app, scratch_db, running_influxd):
    """DCGM collects every 30 s; Telegraf scrapes it every 10 s, so each reading is written
    three times. With KUBEMONITOR_GPU_SAMPLE_INTERVAL = 30s each reading counts once."""
    readings = [1000 + 10 * k for k in range(H // 30)]
    running_influxd.write(scratch_db, [
        f"DCGM_FI_DEV_FB_USED,Hostname=node-a,UUID=GPU-0,container=train,gpu=0,host=telegraf-a1b2c,namespace=team-gpu,"
        f"pod=train-1 gauge={readings[(t - T) // 30]} {t}" for t in range(T, T + H, STEP)], precision="s")
    app = make_app(influxdb_db=scratch_db, source="telegraf", gpu_sample_interval=30.0)
    (row,) = (await rows(app, "gpu/usage", T, T + H)).values()
    assert row["count"] == H // 30
    assert row["integral"] == pytest.approx(sum(readings) * 1.048576 * 30 / H, rel=1e-12)  # MB-hours, not x 3


def now_minute() -> int:
    import time
    return int(time.time()) // 60 * 60


@pytest.mark.gen_test(timeout=60)
async def test_telegraf_left_at_a_60_s_interval_is_reported_with_the_spacing_and_the_setting(make_app, scratch_db,
                                                                                              running_influxd):
    end = now_minute()
    running_influxd.write(scratch_db, telegraf_cpu("web-1", 600, end - H, end, "telegraf-a1b2c")
                          + telegraf_cpu("web-2", 300, end - H, end, "telegraf-a1b2c"), precision="s")
    app = make_app(influxdb_db=scratch_db, source="telegraf", sample_interval=60.0)
    (problem,) = await app.source_problems()
    assert "cpu/usage_rate samples are 10s apart (the median of 2 series" in problem
    assert "KUBEMONITOR_SAMPLE_INTERVAL is 60s" in problem and "KUBEMONITOR_SAMPLE_INTERVAL=10s" in problem
    fixed = make_app(influxdb_db=scratch_db, source="telegraf", sample_interval=10.0)
    assert await fixed.source_problems() == []


@pytest.mark.gen_test(timeout=60)
async def test_an_interval_setting_shorter_than_the_collectors_is_reported_as_under_billing(make_app, scratch_db,
                                                                                             running_influxd):
    """Heapster at its 60 s resolution, the setting at 10 s: each sample billed for a sixth
    of its interval. Reported in /readyz and on statements."""
    end = now_minute()
    running_influxd.write(scratch_db, heapster_cpu("web-1", 400, end - H, end), precision="s")
    app = make_app(influxdb_db=scratch_db, sample_interval=10.0)
    (problem,) = await app.source_problems()
    assert "samples are 60s apart" in problem and "under-billed 6.0x" in problem
    assert "Set KUBEMONITOR_SAMPLE_INTERVAL=60s" in problem


@pytest.mark.gen_test(timeout=60)
async def test_a_gpu_interval_left_at_30_s_under_dcgm_scraped_every_10_s_is_reported(make_app, scratch_db, running_influxd):
    end = now_minute()
    running_influxd.write(scratch_db, [
        f"DCGM_FI_DEV_FB_USED,Hostname=node-a,UUID=GPU-0,container=train,gpu=0,host=telegraf-a1b2c,namespace=team-gpu,"
        f"pod=train-1 gauge=1000 {t}" for t in range(end - H, end, STEP)]
        + telegraf_cpu("web-1", 600, end - H, end, "telegraf-a1b2c"), precision="s")
    app = make_app(influxdb_db=scratch_db, source="telegraf", sample_interval=10.0, gpu_sample_interval=30.0)
    (problem,) = await app.source_problems()
    assert problem.startswith("gpu/usage samples are 10s apart") and "KUBEMONITOR_GPU_SAMPLE_INTERVAL is 30s" in problem


def telegraf_node(node: str, start: int, stop: int, skip: tuple[int, int] = (0, 0)) -> list[str]:
    """inputs.kubernetes on one node: the node's own totals and one pod's container, every
    STEP s in [start, stop) except in `skip` (that node's agent was down)."""
    return [line for t in range(start, stop, STEP) if not skip[0] <= t < skip[1]
            for line in (f"kubernetes_node,host=telegraf-{node},node_name={node} cpu_usage_nanocores=900000000i {t}",
                         f"kubernetes_pod_container,container_name=main,host=telegraf-{node},namespace=team-a,"
                         f"node_name={node},pod_name=web-{node} cpu_usage_nanocores=600000000i {t}")]


@pytest.fixture
def node_outage(running_influxd, scratch_db):
    """Two nodes for two hours; node-b's Telegraf is down from 00:30 to 00:50."""
    outage = (T + 1800, T + 3000)
    running_influxd.write(scratch_db, telegraf_node("node-a", T, T + 2 * H) + telegraf_node("node-b", T, T + 2 * H, outage),
                          precision="s")
    return outage


@pytest.mark.gen_test(timeout=60)
async def test_one_nodes_collector_down_shows_in_coverage_and_names_the_node(telegraf_app, node_outage):
    """Cluster-wide, some node wrote in every interval (coverage 100 % before); per node,
    node-b's 120 missing intervals of 2 x 720 show, and the gap names node-b."""
    app = telegraf_app
    metric = await app.catalog.resolve("cpu/usage_rate")
    share, gaps = await app.billing.coverage(metric, T * NS, (T + 2 * H) * NS)
    assert share == (2 * 720 - 120) / (2 * 720)
    assert gaps == [(node_outage[0] * NS, node_outage[1] * NS, "node-b")]
    # the same from rollups: the hour keeps its intervals per node
    await app.rollups.prepare()
    for hour in range(2):
        await app.rollup_writer.roll_up(metric, (T + hour * H) * NS)
    index = await app.rollups.index(metric, T * NS, (T + 2 * H) * NS)
    assert index.nodes[T * NS] == {"node-a": 360, "node-b": 240} and index.nodes[(T + H) * NS] == {"node-a": 360, "node-b": 360}
    assert await app.billing.coverage(metric, T * NS, (T + 2 * H) * NS, index) == (share, gaps)


@pytest.mark.gen_test(timeout=60)
async def test_a_cluster_wide_outage_is_one_gap_naming_no_node(telegraf_app, running_influxd, scratch_db):
    outage = (T + 600, T + 1200)
    running_influxd.write(scratch_db, telegraf_node("node-a", T, T + H, outage) + telegraf_node("node-b", T, T + H, outage),
                          precision="s")
    metric = await telegraf_app.catalog.resolve("cpu/usage_rate")
    share, gaps = await telegraf_app.billing.coverage(metric, T * NS, (T + H) * NS)
    assert share == 300 / 360 and gaps == [(outage[0] * NS, outage[1] * NS, None)]


@pytest.mark.gen_test(timeout=60)
async def test_a_statement_and_its_csv_name_the_node_of_each_gap(make_app, scratch_db, node_outage, tmp_path):
    from kubemonitor.ratecard import period_from
    from kubemonitor.statement import to_csv
    card = tmp_path / "billing.yaml"
    card.write_text("currency: CHF\ntimezone: UTC\nresources:\n"
                    "  cpu: {metric: cpu/usage_rate, unit: core-hours, divide_by: 1000, price: 0.02}\n")
    app = make_app(influxdb_db=scratch_db, source="telegraf", sample_interval=float(STEP), billing_file=str(card),
                   rollup_rp="t_" + secrets.token_hex(4))
    body = (await app.billing.statement(period_from({"period": "2024-01-01"}, "UTC"), "group")).data
    # the day's 8,640 intervals on each of the two nodes that reported; 720 + 600 of them have data
    assert body["coverage"]["cpu"] == round((720 + 600) / (2 * 8640), 6)
    assert body["gaps"] == [{"from": "2024-01-01T02:00:00Z", "to": "2024-01-02T00:00:00Z", "node": None},
                            {"from": "2024-01-01T00:30:00Z", "to": "2024-01-01T00:50:00Z", "node": "node-b"}]
    header = to_csv(body, "group").splitlines()[0].split(",")
    assert {"coverage", "revision", "computed_at", "cpu_coverage"} <= set(header)


DCGM_LABELS = {
    # dcgm-exporter >= 4.8 (May 2026), older versions, and --use-old-namespace
    "current": "hostname=gpu-1,namespace=team-gpu,pod=train-1,container=main",
    "before 4.8": "Hostname=gpu-1,namespace=team-gpu,pod=train-1,container=main",
    "--use-old-namespace": "hostname=gpu-1,pod_namespace=team-gpu,pod_name=train-1,container_name=main",
}
GPU_STEP = 30
RANGE = {"timeBeginInterval": "2024-01-01T00:00:00Z", "timeEndInterval": "2024-01-01T00:59:59Z"}  # T's first hour


def dcgm_fb_used(labels: str, start: int, stop: int, mib: int = 30_000) -> list[str]:
    return [f"DCGM_FI_DEV_FB_USED,{labels},UUID=GPU-0,gpu=0,modelName=NVIDIA\\ A100-SXM4-40GB gauge={mib} {t}"
            for t in range(start, stop, GPU_STEP)]


@pytest.fixture
def dcgm_app(make_app, scratch_db):
    return make_app(influxdb_db=scratch_db, source="telegraf", sample_interval=float(STEP),
                    gpu_sample_interval=float(GPU_STEP), rollup_rp="t_" + secrets.token_hex(4))


@pytest.mark.parametrize("variant", list(DCGM_LABELS))
@pytest.mark.gen_test(timeout=60)
async def test_each_dcgm_label_variant_bills_its_gpu(dcgm_app, running_influxd, scratch_db, variant, http_client):
    """30,000 MiB for an hour = 31,457.28 MB-h, however the exporter names its labels
    (with the old names it was 0 rows and no problem); raw points name the pod and node."""
    from conftest import API_PASS, API_USER, serve_app
    running_influxd.write(scratch_db, dcgm_fb_used(DCGM_LABELS[variant], T, T + H), precision="s")
    app = dcgm_app
    metric = await app.catalog.resolve("gpu/usage")
    q = ApiQuery(namespace="team-gpu", agg="all-pod", begin_ns=T * NS, end_ns=(T + H) * NS - 1)
    (row,) = await aggregate(app.influx, metric, q, (), sample_interval_ns(metric, app.config), None)
    assert row["pod_name"] == "train-1" and row["count"] == H // GPU_STEP
    assert row["integral"] == pytest.approx(31_457.28, abs=1e-6)
    assert await app.source.problems(app.influx) == []
    base, server = await serve_app(app)
    try:
        r = await http_client.fetch(f"{base}/api/gpu/usage", method="POST", headers={"X-USERNAME": API_USER, "X-PASSWORD": API_PASS},
                                    body=json.dumps({"namespace": "team-gpu", "limit": 1, **RANGE}))
    finally:
        server.stop()
    (point,) = json.loads(r.body)
    assert (point["namespace_name"], point["pod_name"], point["container_name"], point["nodename"]) == (
        "team-gpu", "train-1", "main", "gpu-1")
    share, gaps = await app.billing.coverage(metric, T * NS, (T + H) * NS)
    assert (share, gaps) == (1.0, [])


@pytest.mark.gen_test(timeout=60)
async def test_dcgm_without_pod_labels_is_a_problem_naming_the_kubernetes_flag(dcgm_app, running_influxd, scratch_db):
    running_influxd.write(scratch_db, dcgm_fb_used("hostname=gpu-1", T, T + H), precision="s")
    (problem,) = await dcgm_app.source.problems(dcgm_app.influx)
    assert "-k" in problem and "--kubernetes" in problem and "no pod labels" in problem


@pytest.mark.gen_test(timeout=60)
async def test_old_dcgm_names_under_telegrafs_pod_discovery_are_a_problem(dcgm_app, running_influxd, scratch_db):
    """monitor_kubernetes_pods overwrites --use-old-namespace's pod_name with the exporter's pod."""
    labels = "hostname=gpu-1,pod_namespace=team-gpu,pod_name=nvidia-dcgm-exporter-x7k2p,container_name=main,namespace=gpu-operator"
    running_influxd.write(scratch_db, dcgm_fb_used(labels, T, T + H), precision="s")
    (problem,) = await dcgm_app.source.problems(dcgm_app.influx)
    assert "--use-old-namespace" in problem and "monitor_kubernetes_pods" in problem


@pytest.mark.gen_test(timeout=60)
async def test_a_gpu_raw_point_keeps_its_pod_under_telegrafs_discovery_tags(dcgm_app, running_influxd, scratch_db,
                                                                             http_client):
    from conftest import API_PASS, API_USER, serve_app
    labels = ("hostname=gpu-1,namespace=team-gpu,pod=train-1,container=main,pod_name=nvidia-dcgm-exporter-x7k2p,"
              "pod_namespace=gpu-operator")
    running_influxd.write(scratch_db, dcgm_fb_used(labels, T, T + 60), precision="s")
    base, server = await serve_app(dcgm_app)
    try:
        r = await http_client.fetch(f"{base}/api/gpu/usage", method="POST", headers={"X-USERNAME": API_USER, "X-PASSWORD": API_PASS},
                                    body=json.dumps({"namespace": "team-gpu", **RANGE}))
    finally:
        server.stop()
    points = json.loads(r.body)
    assert len(points) == 2 and {(p["pod_name"], p["namespace_name"]) for p in points} == {("train-1", "team-gpu")}


@pytest.mark.gen_test(timeout=120)
async def test_the_simulators_faults_are_what_kubemonitor_handles(make_app, running_influxd):
    """`simulate --faults`, backfilled for 9 h into three databases from one seed: with a
    duplicate collector and a retried flush every pod's usage equals the faultless run's;
    node-1's outage is a 20-minute gap naming node-1; the interval fault is reported by
    the interval check; the late points are found after their hours were rolled up."""
    import asyncio

    from kubemonitor.faults import Faults
    from kubemonitor.simulate import Cluster, backfill, client_for
    end = float(int(__import__("time").time()) // 60 * 60)  # on the minute: +5 s and +1 s stay in their interval
    apps, held = {}, {}
    for name, faults in (("none", frozenset()), ("twice", frozenset({"duplicate", "flush"})),
                         ("broken", frozenset({"outage", "late", "interval"}))):
        db = f"faults_{name}_{secrets.token_hex(3)}"
        running_influxd.query(f'CREATE DATABASE "{db}"')
        app = apps[name] = make_app(influxdb_db=db, rollup_rp="t_" + secrets.token_hex(4))
        cluster = Cluster(seed=4, namespaces=2, pods=6, nodes=2, start=end)
        faulty = Faults(faults, end, "heapster", "node-1", "node-2")
        await asyncio.get_running_loop().run_in_executor(
            None, backfill, cluster, client_for(app.config), 9 * H, 60.0, end, False, faulty)
        held[name] = faulty
    begin = int(end) - 9 * H
    plain = await rows(apps["none"], "cpu/usage_rate", begin, int(end))
    twice = await rows(apps["twice"], "cpu/usage_rate", begin, int(end))
    assert plain and set(twice) == set(plain)
    for pod, row in plain.items():  # the same counts and peaks; the sums but for the order of adding
        assert (twice[pod]["count"], twice[pod]["max"]) == (row["count"], row["max"])
        assert twice[pod]["sum"] == pytest.approx(row["sum"], rel=1e-12)

    broken = apps["broken"]
    metric = await broken.catalog.resolve("cpu/usage_rate")
    share, gaps = await broken.billing.coverage(metric, begin * NS, int(end) * NS)
    outage = (int(end) - 5 * H - 50 * 60, int(end) - 5 * H - 30 * 60)
    late = (int(end) - 8 * H, int(end) - 8 * H + 30 * 60)
    assert (outage[0] * NS, outage[1] * NS, "node-1") in gaps and (late[0] * NS, late[1] * NS, "node-2") in gaps
    problems = await broken.services.problems.intervals.problems()
    # cpu and (Heapster's GPUs have no interval of their own) gpu: both name the one setting
    assert len(problems) == 2 and all("30s apart" in p and "Set KUBEMONITOR_SAMPLE_INTERVAL=30s" in p for p in problems)
    await broken.rollups.prepare()
    for hour in range(late[0] // H * H, late[1] // H * H + H, H):
        await broken.rollup_writer.roll_up(metric, hour * NS)
    running_influxd.write(broken.config.influxdb_db, held["broken"].release(), precision="s")
    found = 0
    for _ in range(2):
        found += await broken.rollup_writer.count_late_points(metric)
    assert found > 0
    # the hours were rolled up again (the period is open) or are listed for a rebuild (closed)
    assert all(h["metric"] == metric.name for h in broken.rollup_writer.late_hours())
