"""The same cluster in Heapster's schema and in Telegraf's + DCGM's (tests/dual_data.py)
gives the same answers everywhere: API rows of every aggregation, raw points, live
snapshots, rollups and statements. Each check runs on both schemas and compares them
(and the closed-form figures), so a difference in either is caught.

The one intended difference: Telegraf has no pod-level series, so a pod's rows say
`series_type: pod_container` where Heapster's pod-level series give `pod`.
"""
from __future__ import annotations

import json
import time

import dual_data as D
import pytest

from kubemonitor.app import KubeMonitorApp
from kubemonitor.influxql import raw_points
from kubemonitor.request import validate
from kubemonitor.services import Services
from kubemonitor.usage import aggregate, sample_interval_ns

SCHEMAS = ("heapster", "telegraf")
HOUR = 3600


@pytest.fixture(scope="module")
def dual(influxd):
    influxd.start()
    end = int(time.time()) // 60 * 60
    return D.load(influxd, end), end


@pytest.fixture
def apps(dual, config, io_loop, tmp_path):
    import secrets
    dbs, end = dual
    card = tmp_path / "billing.yaml"
    card.write_text("currency: CHF\ntimezone: UTC\nclose_after: 6h\nresources:\n"
                    "  cpu: {metric: cpu/usage_rate, unit: core-hours, divide_by: 1000, price: 0.02}\n"
                    "  memory: {metric: memory/usage, unit: GiB-hours, divide_by: 1073741824, price: 0.004}\n"
                    "  gpu: {metric: gpu/usage, unit: GB-hours, divide_by: 1000, price: 0.05}\n"
                    "groups:\n  a: {name: Team A, namespaces: [team-a]}\n")
    built = {schema: KubeMonitorApp(Services(config.replace(influxdb_db=db, source=schema, sample_interval=60.0,
                                                            gpu_sample_interval=60.0, billing_file=str(card),
                                                            rollup_rp="t_" + secrets.token_hex(4), rollup_settle=1.0)))
             for schema, db in dbs.items()}
    yield built, end
    for application in built.values():
        io_loop.run_sync(application.shutdown)


def both(io_loop, apps, work):
    """`await work(app)` for each schema: {schema: result}."""
    return {schema: io_loop.run_sync(lambda app=app: work(app)) for schema, app in apps.items()}


def without_series_type(rows):
    return [{k: v for k, v in row.items() if k != "series_type"} for row in rows]


RANGES = {"whole": (0, D.MINUTES), "first hour": (0, 60), "a split inside": (37, 131), "one minute": (95, 96)}


@pytest.mark.parametrize("metric", ["cpu/usage_rate", "memory/usage", "gpu/usage"])
@pytest.mark.parametrize("agg", ["all-namespace", "all-pod", "pod-by-namespace"])
def test_every_aggregation_is_the_same_in_both_schemas(io_loop, apps, metric, agg):
    apps, end = apps
    times = D.minutes(end)
    namespace = {"cpu/usage_rate": "team-a", "memory/usage": "team-b", "gpu/usage": "team-gpu"}[metric]
    for name, (a, b) in RANGES.items():
        body = {"agg": agg, "namespace": namespace, "timeBeginInterval": times[a], "timeEndInterval": times[b - 1]}
        q = validate(body, now_ns=time.time_ns(), max_limit=10000)

        async def rows(app, q=q):
            m = await app.catalog.resolve(metric)
            return await aggregate(app.influx, m, q, app.config.excluded_namespaces, sample_interval_ns(m, app.config))
        answers = both(io_loop, apps, rows)
        assert answers["heapster"], (metric, agg, name)
        assert without_series_type(answers["heapster"]) == without_series_type(answers["telegraf"]), (metric, agg, name)
        assert {r.get("series_type") for r in answers["telegraf"]} <= {"pod_container", None}
    # closed form over the whole range: 180 samples of each pod (batch-1: 90), kube-system left out
    body = {"agg": "all-namespace", "timeBeginInterval": times[0], "timeEndInterval": times[-1]}
    q = validate(body, now_ns=time.time_ns(), max_limit=10000)

    async def namespace_rows(app):
        m = await app.catalog.resolve(metric)
        return {r["namespace_name"]: r for r in await aggregate(app.influx, m, q, app.config.excluded_namespaces,
                                                                 sample_interval_ns(m, app.config))}
    for schema, rows in both(io_loop, apps, namespace_rows).items():
        if metric == "cpu/usage_rate":
            assert rows["team-a"]["sum"] == 180 * 500 + 90 * 1500 and rows["team-b"]["count"] == 180
            assert "kube-system" not in rows, schema
        elif metric == "memory/usage":
            assert rows["team-b"]["sum"] == 180 * 2 * D.GIB and rows["team-b"]["integral"] == 180 / 60 * 2 * D.GIB
        else:  # the pod with two GPUs: one sample a minute, their sum; the idle GPU counts nowhere
            assert set(rows) == {"team-gpu"} and rows["team-gpu"]["count"] == 180
            assert rows["team-gpu"]["sum"] == 180 * D.GPU_MB and rows["team-gpu"]["max"] == D.GPU_MB


def test_inventory_points_in_the_same_measurement_never_count_as_usage(io_loop, apps):
    apps, end = apps
    app = apps["telegraf"]
    times = D.minutes(end)
    q = validate({"agg": "all-pod", "timeBeginInterval": times[0], "timeEndInterval": times[-1]}, now_ns=time.time_ns(),
                 max_limit=10000)

    async def work(app):
        cpu = await app.catalog.resolve("cpu/usage_rate")
        request = await app.catalog.resolve("cpu/request")
        usage = await aggregate(app.influx, cpu, q, (), sample_interval_ns(cpu, app.config))
        requests = await aggregate(app.influx, request, q, (), sample_interval_ns(request, app.config))
        return usage, requests
    usage, requests = io_loop.run_sync(lambda: work(app))
    web = next(r for r in usage if r["pod_name"] == "web-1")
    assert web["count"] == 180 and web["max"] == 500  # 2 containers x 180 inventory points would make 360 and 1000
    # and the inventory itself reads as cpu/request: twice the usage here, by construction
    assert next(r for r in requests if r["pod_name"] == "web-1")["sum"] == 2 * web["sum"]


def test_raw_points_are_the_same_in_both_schemas(io_loop, apps):
    apps, end = apps
    times = D.minutes(end)
    for body in ({"namespace": "team-a", "limit": 50, "type": "pod_container", "timeBeginInterval": times[0]},
                 {"namespace": "team-gpu", "limit": 5, "timeBeginInterval": times[0]},
                 {"namespace": "team-a", "pod": "batch-1", "limit": 10000, "timeBeginInterval": times[0]}):
        q = validate(body, now_ns=time.time_ns(), max_limit=10000)

        async def rows(app, body=body, q=q):
            metric = await app.catalog.resolve("gpu/usage" if body["namespace"] == "team-gpu" else "cpu/usage_rate")
            points = await app.influx.call(lambda client: raw_points(app.influx.select, client, metric, q))
            keys = ("time", "value", "namespace_name", "pod_name", "container_name", "nodename", "type")
            return [{k: p[k] for k in keys} for p in points]
        answers = both(io_loop, apps, rows)
        if body["namespace"] == "team-gpu":  # DCGM: one point per GPU; Heapster: their sum per container
            assert sum(p["value"] for p in answers["telegraf"][:2]) == answers["heapster"][0]["value"] == D.GPU_MB
            assert {p["container_name"] for p in answers["telegraf"]} == {"trainer"}
        else:
            assert answers["heapster"] == answers["telegraf"] and answers["heapster"]
    assert len(answers["telegraf"]) == 90 * 2  # batch-1's containers, 90 minutes


def test_live_snapshots_are_the_same_in_both_schemas(io_loop, apps):
    from conftest import clear_of_boundary
    apps, _ = apps
    clear_of_boundary(60, 15)  # "the current minute" must be the same for both schemas' snapshots

    async def snapshots(app):
        out = {}
        for metric in ("cpu/usage_rate", "memory/usage", "gpu/usage"):
            m = await app.catalog.resolve(metric)
            for namespace in ("all", "team-a", "team-gpu"):
                snap = await app.poller.snapshot(m, namespace, "6h")
                out[(metric, namespace)] = {k: v for k, v in snap.items() if k != "polled_at"}
        return out
    answers = both(io_loop, apps, snapshots)
    for key, snap in answers["heapster"].items():
        assert snap == answers["telegraf"][key], key
    cpu_all = answers["telegraf"][("cpu/usage_rate", "all")]
    assert cpu_all["current"]["values"] == {"team-a": 500, "team-b": 250}
    assert answers["telegraf"][("gpu/usage", "all")]["current"]["total"] == D.GPU_MB


def test_rollups_and_statements_are_the_same_in_both_schemas(io_loop, apps):
    apps, end = apps
    times = D.minutes(end)
    first_hour = times[0] - times[0] % HOUR + HOUR
    hours = [h for h in range(first_hour, times[-1] - HOUR + 1, HOUR)]
    assert hours, "the data covers at least one whole hour"

    async def rolled(app):
        await app.rollups.prepare()
        out = {}
        for metric in ("cpu/usage_rate", "memory/usage", "gpu/usage"):
            m = await app.catalog.resolve(metric)
            for hour in hours:
                await app.rollup_writer.roll_up(m, hour * 10**9)
            series = await app.influx.query(f'SELECT "count", "sum", "max", "namespace_name", "pod_name" FROM '
                                            f'"{app.rollups.rp}"."kubemonitor_usage_hourly" WHERE "metric" = $metric',
                                            {"metric": metric}, kind="test")
            out[metric] = sorted(tuple(v) for s in series for v in s.get("values", []))
            hours_written = await app.influx.query(f'SELECT "covered", "intervals", "pods" FROM "{app.rollups.rp}".'
                                                   '"kubemonitor_rollup_hours" WHERE "metric" = $metric',
                                                   {"metric": metric}, kind="test")
            out[metric + " hours"] = [v for s in hours_written for v in s.get("values", [])]
        return out
    answers = both(io_loop, apps, rolled)
    for key, value in answers["heapster"].items():
        assert value and value == answers["telegraf"][key], key

    from kubemonitor.ratecard import period_from
    day = time.strftime("%Y-%m-%d", time.gmtime(times[0]))
    last = time.strftime("%Y-%m-%d", time.gmtime(times[-1]))

    now_ns = time.time_ns()  # one instant for both: an open period's coverage runs up to now

    async def statements(app):
        period = period_from({"from": day, "to": last}, "UTC")
        return {by: (await app.billing.statement(period, by, now_ns)).data for by in ("group", "namespace", "pod")}
    answers = both(io_loop, apps, statements)
    for by in ("group", "namespace", "pod"):
        h, t = answers["heapster"][by], answers["telegraf"][by]
        for part in ("rows", "totals", "coverage", "gaps", "resources"):
            assert h[part] == t[part], (by, part)
    totals = answers["telegraf"]["group"]["totals"]["usage"]
    assert totals["cpu"] == (180 * 750 + 90 * 1500) / 60 / 1000  # core-hours
    assert totals["gpu"] == 180 * D.GPU_MB / 60 / 1000            # GB-hours
    coverage = answers["telegraf"]["group"]["coverage"]
    assert coverage["cpu"] == coverage["memory"] < coverage["gpu"]  # the nodes' 10-minute gap; GPUs had none


def test_a_counter_reset_drops_one_interval_and_never_goes_negative(io_loop, make_app, scratch_db, running_influxd):
    end = int(time.time()) // 60 * 60
    lines, total = [], 0
    for i in range(30):
        t = end - (29 - i) * 60
        total = 0 if i == 15 else total + 6000  # the container restarted at minute 15
        lines.append(f"kubernetes_pod_network,namespace=team-a,node_name=n1,pod_name=web-1 rx_bytes={total}i,"
                     f"tx_bytes={2 * total}i {t}")
    running_influxd.write(scratch_db, lines, precision="s")
    app = make_app(influxdb_db=scratch_db, source="telegraf")
    q = validate({"agg": "all-pod", "timeBeginInterval": end - 3600}, now_ns=time.time_ns(), max_limit=100)

    async def work():
        rx, tx = await app.catalog.resolve("network/rx_rate"), await app.catalog.resolve("network/tx_rate")
        return ([await aggregate(app.influx, m, q, (), sample_interval_ns(m, app.config)) for m in (rx, tx)],
                await app.influx.call(lambda client: raw_points(
                    app.influx.select, client, rx, validate({"namespace": "team-a", "limit": 100}, now_ns=time.time_ns(),
                                                            max_limit=100))))
    (rx, tx), points = io_loop.run_sync(work)
    (row,) = rx
    # 30 samples: the first has no rate, the reset's is dropped: 28 intervals of 6000 B / 60 s
    assert row["count"] == 28 and row["sum"] == 28 * 100 and row["max"] == 100 and row["unit"] == "bytes/s"
    assert tx[0]["sum"] == 28 * 200
    assert len(points) == 28 and all(p["value"] == 100 for p in points)


def test_a_counters_points_stamped_ahead_of_influxdbs_clock_are_counted(io_loop, make_app, scratch_db, running_influxd):
    """A collector's clock a little ahead (or kubemonitor's, or a faked one): a counter's
    rate is a subquery, whose outer query InfluxDB ended at its own now() when it had no
    time range of its own - the points after it were read and then dropped."""
    start = (int(time.time()) // 60 - 10) * 60
    lines = [f"kubernetes_pod_network,namespace=team-a,node_name=n1,pod_name=web-1 rx_bytes={6000 * i}i,"
             f"tx_bytes={6000 * i}i {start + 60 * i}" for i in range(20)]  # the last 9 are ahead of now
    running_influxd.write(scratch_db, lines, precision="s")
    app = make_app(influxdb_db=scratch_db, source="telegraf")
    q = validate({"agg": "all-pod", "timeBeginInterval": start, "timeEndInterval": start + 19 * 60},
                 now_ns=time.time_ns(), max_limit=100)

    async def work():
        rx = await app.catalog.resolve("network/rx_rate")
        return await aggregate(app.influx, rx, q, (), sample_interval_ns(rx, app.config))
    (row,) = io_loop.run_sync(work)
    assert row["count"] == 19 and row["sum"] == 19 * 100


def test_the_telegraf_source_does_not_offer_what_it_does_not_collect(io_loop, make_app, dual):
    dbs, _ = dual
    app = make_app(influxdb_db=dbs["telegraf"], source="telegraf")

    async def work():
        return ([m.name for m in await app.catalog.available()], await app.catalog.resolve("filesystem/usage"),
                await app.catalog.resolve("kubernetes_pod_container"), await app.catalog.namespaces())
    available, filesystem, measurement, namespaces = io_loop.run_sync(work)
    assert {"cpu/usage_rate", "memory/usage", "gpu/usage", "gpu/utilization", "network/rx_rate"} <= set(available)
    assert "filesystem/usage" not in available and filesystem is None and measurement is None
    from kubemonitor.openapi import openapi_document
    listed = openapi_document(app.config, list(app.catalog.known))["x-kubemonitor"]
    assert listed["source"] == "telegraf" and "gpu/utilization" in listed["metrics"]
    assert "filesystem/usage" not in listed["metrics"]
    message = app.catalog.unknown("filesystem/usage")
    assert "telegraf source (KUBEMONITOR_SOURCE) does not collect it" in message and "gpu/utilization" in message
    assert namespaces == ["kube-system", "team-a", "team-b", "team-gpu"]


@pytest.mark.gen_test(timeout=30)
async def test_dcgm_namespaces_overwritten_by_telegraf_are_reported_not_billed_silently(http_client, make_app, scratch_db,
                                                                                          running_influxd, tmp_path):
    """Telegraf scraping the exporter with monitor_kubernetes_pods, without pod_namespace_label_name:
    its own `namespace` (the exporter's) and `pod_name` replace DCGM's namespace."""
    from conftest import serve_app
    t = int(time.time()) // 60 * 60
    running_influxd.write(scratch_db, [
        f"DCGM_FI_DEV_FB_USED,Hostname=n1,UUID=GPU-0,container=trainer,gpu=0,namespace=gpu-operator,pod=train-1,"
        f"pod_name=nvidia-dcgm-exporter-x7k2p gauge=15625 {t}"], precision="s")
    card = tmp_path / "billing.yaml"
    card.write_text("currency: CHF\ntimezone: UTC\nresources:\n  gpu: {metric: gpu/usage, unit: GB-hours, divide_by: 1000}\n")
    app = make_app(influxdb_db=scratch_db, source="telegraf", billing_file=str(card))
    base, server = await serve_app(app)
    ready = json.loads((await http_client.fetch(base + "/readyz")).body)
    assert ready["status"] == "ready" and ready["source"]["name"] == "telegraf"
    (problem,) = ready["source"]["problems"]
    assert "pod_namespace_label_name" in problem and "exporter" in problem
    from kubemonitor.ratecard import period_from
    day = time.strftime("%Y-%m-%d", time.gmtime(t))
    statement = (await app.billing.statement(period_from({"from": day, "to": day}, "UTC"), "namespace")).data
    assert problem in statement["notes"]
    # set up right (the exporter's namespace under pod_namespace), nothing to report
    running_influxd.write(scratch_db, [
        f"DCGM_FI_DEV_FB_USED,Hostname=n1,UUID=GPU-0,container=trainer,gpu=0,namespace=team-gpu,pod=train-1,"
        f"pod_name=nvidia-dcgm-exporter-x7k2p,pod_namespace=gpu-operator gauge=15625 {t}"], precision="s")
    assert await app.source.problems(app.influx) == []  # (the server looks again within a minute)
    server.stop()
    heapster = make_app()
    base, server = await serve_app(heapster)
    ready = json.loads((await http_client.fetch(base + "/readyz")).body)
    assert ready["source"] == {"name": "heapster", "problems": []}
    server.stop()


def test_a_bad_source_is_one_line():
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "kubemonitor", "serve", "--source", "prometheus"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "--source='prometheus'" in r.stderr and "one of heapster, telegraf" in r.stderr


def test_simulate_writes_the_cluster_in_telegrafs_schema(io_loop, make_app, scratch_db, running_influxd):
    """`kubemonitor simulate --source telegraf`: Telegraf 10 s (its default step), DCGM 30 s, kube_inventory in
    the same measurement."""
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "kubemonitor", "simulate", "--source", "telegraf", "--backfill", "10m",
                        "--influxdb-host", "127.0.0.1", "--influxdb-port", str(running_influxd.http_port),
                        "--influxdb-db", scratch_db], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    answer = running_influxd.query("SHOW MEASUREMENTS", db=scratch_db)
    measurements = {row[0] for s in answer["results"][0]["series"] for row in s["values"]}
    assert measurements == {"kubernetes_pod_container", "kubernetes_pod_network", "kubernetes_node", "DCGM_FI_DEV_FB_USED"}
    app = make_app(influxdb_db=scratch_db, source="telegraf", sample_interval=10.0)
    q = validate({"agg": "all-pod"}, now_ns=time.time_ns(), max_limit=100)

    async def work():
        out = {}
        for name in ("cpu/usage_rate", "gpu/usage", "cpu/request"):
            m = await app.catalog.resolve(name)
            out[name] = await aggregate(app.influx, m, q, app.config.excluded_namespaces, sample_interval_ns(m, app.config))
        return out
    rows = io_loop.run_sync(work)
    services = [r for r in rows["cpu/usage_rate"] if not r["pod_name"].startswith(("job-", "train-"))]
    assert services and all(r["count"] == 60 for r in services)  # 10 minutes at 10 s
    gpu = rows["gpu/usage"]
    # DCGM: the first tick of each 30 s slot; 590 s of ticks touch 20 or 21 slots
    assert gpu and all(r["count"] <= 21 for r in gpu) and any(r["count"] >= 20 for r in gpu)
    requests = {(r["namespace_name"], r["pod_name"]): r for r in rows["cpu/request"]}
    # every service requests cpu, but notebooks (started without requests: kube_inventory writes no field)
    notebooks = [r for r in services if r["pod_name"].startswith("notebook-")]
    assert notebooks and all((r["namespace_name"], r["pod_name"]) not in requests for r in notebooks)
    assert all(requests[(r["namespace_name"], r["pod_name"])]["mean"] > 0 for r in services if r not in notebooks)


@pytest.mark.parametrize("board,metric", [("telegraf-cpu-usage_rate.json", "cpu/usage_rate"),
                                          ("telegraf-memory-usage.json", "memory/usage"),
                                          ("telegraf-gpu-usage.json", "gpu/usage")])
def test_the_telegraf_dashboards_agree_with_the_api(io_loop, apps, dual, running_influxd, board, metric):
    """Grafana's Telegraf panels over the Telegraf database: the usage table equals the API's integral
    per pod, and the by-namespace panel the pods' sums (kube_inventory's points never counted)."""
    from test_deploy import dashboards
    apps, end = apps
    dbs, _ = dual
    times = D.minutes(end)
    begin, last = (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) for t in (times[0], times[-1]))
    panels = {p["id"]: p["targets"][0]["query"] for p in dashboards()[board]["panels"]}
    interval = next(v["query"] for v in dashboards()[board]["templating"]["list"] if v["name"] == "sample_interval")
    assert interval == ("30" if metric == "gpu/usage" else "10")

    def run(query):
        q = (query.replace("$timeFilter", f"time >= '{begin}' AND time <= '{last}'").replace("$__interval", "1m")
                  .replace("$sample_interval", "60").replace("/^$namespace$/", "/^(team-a|team-b|team-gpu)$/"))
        result = running_influxd.query(q, dbs["telegraf"])["results"][0]
        assert "error" not in result, (q, result)
        return result["series"]
    table = {(s["tags"]["namespace"], s["tags"].get("pod_name") or s["tags"].get("pod")): s["values"][0][1] for s in run(panels[3])}
    q = validate({"agg": "all-pod", "timeBeginInterval": times[0], "timeEndInterval": times[-1]}, now_ns=time.time_ns(),
                 max_limit=100)

    async def rows():
        app = apps["telegraf"]
        m = await app.catalog.resolve(metric)
        return await aggregate(app.influx, m, q, (), sample_interval_ns(m, app.config))
    api = {(r["namespace_name"], r["pod_name"]): r["integral"] for r in io_loop.run_sync(rows)
           if r["namespace_name"] != "kube-system"}  # the panel's $namespace here
    assert set(table) == set(api) and api
    for key, integral in api.items():
        assert table[key] == pytest.approx(integral, rel=1e-12), key
    by_namespace = {s["tags"]["namespace"]: s["values"][0][1] for s in run(panels[1])}
    expected = {"cpu/usage_rate": {"team-a": 2000, "team-b": 250}, "memory/usage": {"team-a": 1.5 * D.GIB, "team-b": 2 * D.GIB},
                "gpu/usage": {"team-gpu": D.GPU_MB}}[metric]
    assert by_namespace == pytest.approx(expected)


def test_a_scoped_aggregation_is_the_same_in_both_schemas(io_loop, apps):
    """A scoped client's cluster-wide aggregation: its namespaces, by either schema's tag names."""
    apps, end = apps
    times = D.minutes(end)
    q = validate({"agg": "all-namespace", "timeBeginInterval": times[0], "timeEndInterval": times[-1]},
                 now_ns=time.time_ns(), max_limit=100)

    async def rows(app):
        m = await app.catalog.resolve("cpu/usage_rate")
        return await aggregate(app.influx, m, q, app.config.excluded_namespaces, sample_interval_ns(m, app.config),
                               only=("team-b", "kube-system"))
    answers = both(io_loop, apps, rows)
    assert answers["heapster"] == answers["telegraf"]
    assert [r["namespace_name"] for r in answers["telegraf"]] == ["team-b"]  # kube-system stays excluded


def test_a_gpu_point_is_stale_on_dcgms_clock_not_telegrafs(io_loop, make_app, scratch_db, running_influxd):
    """Telegraf every 10 s, DCGM every 30 s: a 35 s old GPU point is the newest DCGM wrote, not a
    pod that stopped; a 35 s old container point is (two Telegraf intervals missed)."""
    t = time.time_ns() - 35 * 10**9
    running_influxd.write(scratch_db, [
        f"kubernetes_pod_container,container_name=app,namespace=team-a,node_name=n1,pod_name=web-1 cpu_usage_nanocores=5i {t}",
        f"DCGM_FI_DEV_FB_USED,Hostname=n1,UUID=GPU-0,container=trainer,gpu=0,namespace=team-g,pod=train-1 gauge=1 {t}"])
    app = make_app(influxdb_db=scratch_db, source="telegraf", sample_interval=10.0, gpu_sample_interval=30.0,
                   poll_interval=0.5)

    async def latest():
        out = {}
        for name in ("cpu/usage_rate", "gpu/usage"):
            snap = await app.poller.snapshot(await app.catalog.resolve(name), "all", "1h")
            (row,) = snap["latest"]
            out[name] = row["stale"]
        return out
    assert io_loop.run_sync(latest) == {"cpu/usage_rate": True, "gpu/usage": False}


def test_a_gpu_point_keeps_its_pod_when_telegraf_adds_the_exporters_pod_name():
    """inputs.prometheus with pod discovery tags each DCGM series with the exporter's own
    `pod_name`; the GPU's pod is DCGM's `pod` label and must not be overwritten by it."""
    from kubemonitor.telegraf import LAYOUTS
    tags = {"namespace": "astro-lab", "pod": "trainer-0", "container": "main", "Hostname": "gpu-1", "gpu": "0",
            "pod_name": "nvidia-dcgm-exporter-x7k2p", "pod_namespace": "gpu-operator"}
    out = LAYOUTS["gpu/usage"].canonical(tags)
    assert out["pod_name"] == "trainer-0" and out["namespace_name"] == "astro-lab" and out["nodename"] == "gpu-1"
    assert out["gpu"] == "0" and out["pod_namespace"] == "gpu-operator"


@pytest.mark.gen_test(timeout=30)
async def test_a_rate_card_resource_the_source_does_not_collect_is_a_note_not_a_crash(make_app, dual, tmp_path):
    """filesystem/usage is in the catalog but not in Telegraf's schema: the statement bills
    the rest and says why that resource shows 0 (it once asked that metric's interval)."""
    from kubemonitor.ratecard import period_from
    dbs, end = dual
    card = tmp_path / "billing.yaml"
    card.write_text("currency: CHF\ntimezone: UTC\nresources:\n"
                    "  cpu: {metric: cpu/usage_rate, unit: core-hours, divide_by: 1000, price: 0.02}\n"
                    "  disk: {metric: filesystem/usage, unit: GB-hours, divide_by: 1e9, price: 0.001}\n")
    app = make_app(influxdb_db=dbs["telegraf"], source="telegraf", sample_interval=60.0, billing_file=str(card))
    day = time.strftime("%Y-%m-%d", time.gmtime(end))
    body = (await app.billing.statement(period_from({"from": day, "to": day}, "UTC"), "group")).data
    assert body["totals"]["usage"]["disk"] == 0 and body["totals"]["usage"]["cpu"] > 0
    assert any("filesystem/usage is not in the database" in note for note in body["notes"])
