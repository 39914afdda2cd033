"""Billing what was held (README "Billing", `basis`): requests and `basis: request | max`,
on both schemas, from raw points and from rollups, against closed forms.

Two hours (2024-01-01 00:00-02:00 UTC), cpu in millicores, billed in core-hours:

| pod | requests | uses | request | max | used | efficiency (max) |
|---|---|---|---|---|---|---|
| over | 1000 | 200 | 2.0 | 2.0 | 0.4 | 0.2 |
| burst | 500 | 800, then 200 | 1.0 | 1.3 | 1.0 | 0.769231 |
| bare (no request) | - | 300 | 0 | 0.6 | 0.6 | 1.0 |
| pulling (Pending, scheduled) | 700 | 0 | 1.4 | 1.4 | 0 | 0.0 |
| done (Succeeded, still listed) | 2000 | 0 | 0 | 0 | 0 | - |
| waiting (Pending, unscheduled) | 4000 | 0 | 0 | 0 | 0 | - |

Heapster writes requests for the pods on a node only (not `done` or `waiting`);
Telegraf's kube_inventory lists them all, with their phase."""
from __future__ import annotations

import secrets

import pytest

from kubemonitor.billing import Billing
from kubemonitor.ratecard import parse, period_from
from kubemonitor.times import HOUR_NS, NS

H = 3600
T = 1_704_067_200
USES = {"over": 200, "burst": 800, "bare": 300}  # burst: 800 in the first hour, 200 in the second


def use(pod: str, t: int) -> int:
    """`max` is hour by hour: burst pays 800 in the first hour and its request (500) in the second."""
    return 200 if pod == "burst" and t >= T + H else USES[pod]
REQUESTS = {"over": ("Running", "node-a", 1000), "burst": ("Running", "node-a", 500),
            "pulling": ("Pending", "node-a", 700), "done": ("Succeeded", "node-a", 2000), "waiting": ("Pending", None, 4000)}
NAMESPACE = {"over": "lab", "burst": "lab", "bare": "lab2", "pulling": "lab2", "done": "lab2", "waiting": "lab2"}
SYSTEM = 500      # kube-system's proxy: uses and requests 500 m (excluded: never billed, not idle either)
ALLOCATABLE = 4000  # node-a's allocatable cpu: 8 core-hours in the two hours
EXPECTED = {  # pod: (request basis, max basis, used, requested)
    "over": (2.0, 2.0, 0.4, 2.0), "burst": (1.0, 1.3, 1.0, 1.0), "bare": (0.0, 0.6, 0.6, 0.0), "pulling": (1.4, 1.4, 0.0, 1.4)}


def heapster_lines() -> list[str]:
    out = []
    for t in range(T, T + 2 * H, 60):
        out.append(f"cpu/usage_rate,type=cluster value=1500.0 {t}")
        out.append(f"cpu/usage_rate,nodename=node-a,type=node value=1500.0 {t}")
        out.append(f"cpu/node_allocatable,nodename=node-a,type=node value={ALLOCATABLE}i {t}")
        for kind in ("pod", "pod_container"):
            extra = ",container_name=proxy" if kind == "pod_container" else ""
            out.append(f"cpu/usage_rate,namespace_name=kube-system,nodename=node-a,pod_name=proxy{extra},type={kind} "
                       f"value={SYSTEM}.0 {t}")
        out.append(f"cpu/request,namespace_name=kube-system,nodename=node-a,pod_name=proxy,type=pod value={SYSTEM}i {t}")
        for pod in USES:
            m = use(pod, t)
            for kind in ("pod", "pod_container"):
                extra = ",container_name=main" if kind == "pod_container" else ""
                out.append(f"cpu/usage_rate,namespace_name={NAMESPACE[pod]},nodename=node-a,pod_name={pod}{extra},type={kind} "
                           f"value={m}.0 {t}")
        for pod, (_phase, _node, m) in REQUESTS.items():
            if pod in ("done", "waiting"):  # Heapster sees the pods on its nodes' kubelets only
                continue
            out.append(f"cpu/request,namespace_name={NAMESPACE[pod]},nodename=node-a,pod_name={pod},type=pod value={m}i {t}")
    return out


def telegraf_lines() -> list[str]:
    out = []
    for t in range(T, T + 2 * H, 10):
        out.append(f"kubernetes_node,node_name=node-a cpu_usage_nanocores=1500000000i {t}")
        out.append(f"kubernetes_pod_container,container_name=proxy,namespace=kube-system,node_name=node-a,pod_name=proxy "
                   f"cpu_usage_nanocores={SYSTEM * 1_000_000}i {t}")
        for pod in USES:
            out.append(f"kubernetes_pod_container,container_name=main,namespace={NAMESPACE[pod]},node_name=node-a,pod_name={pod} "
                       f"cpu_usage_nanocores={use(pod, t) * 1_000_000}i {t}")
    for t in range(T, T + 2 * H, 60):  # kube_inventory, every minute
        out.append(f"kubernetes_node,node_name=node-a allocatable_millicpu_cores={ALLOCATABLE}i,capacity_millicpu_cores=4200i {t}")
        out.append(f"kubernetes_pod_container,container_name=proxy,namespace=kube-system,node_name=node-a,phase=Running,"
                   f"pod_name=proxy,readiness=ready,state=running resource_requests_millicpu_units={SYSTEM}i {t}")
        for pod, (phase, node, m) in REQUESTS.items():
            where = f",node_name={node}" if node else ""  # unscheduled: an empty tag is no tag
            out.append(f"kubernetes_pod_container,container_name=main,namespace={NAMESPACE[pod]}{where},phase={phase},"
                       f"pod_name={pod},readiness=ready,state=running resource_requests_millicpu_units={m}i {t}")
    return out


CARD = "currency: CHF\ntimezone: UTC\nresources:\n  cpu: {metric: cpu/usage_rate, unit: core-hours, divide_by: 1000, price: 1, basis: %s}\n"
SHARED = CARD + "idle: share\n"


@pytest.fixture(params=["heapster", "telegraf"])
def schema(request, running_influxd, scratch_db):
    running_influxd.write(scratch_db, heapster_lines() if request.param == "heapster" else telegraf_lines(), precision="s")
    extra = dict(source="telegraf", sample_interval=10.0, inventory_interval=60.0) if request.param == "telegraf" else {}
    return request.param, extra


async def statement(make_app, scratch_db, extra, basis: str, rollups: bool, card_text: str = CARD, by: str = "pod") -> dict:
    app = make_app(influxdb_db=scratch_db, rollup_rp="t_" + secrets.token_hex(4),
                   rollup_metrics=("cpu/usage_rate", "cpu/request"), **extra)
    card = parse(card_text % basis, "billing.yaml")
    period = period_from({"period": "2024-01-01"}, "UTC")
    if rollups:
        await app.rollups.prepare()
        kept = await app.rollup_writer.metrics()  # cpu/usage_rate, cpu/request and max(cpu/usage_rate)
        assert {m.name for m in kept} == {"cpu/usage_rate", "cpu/request", "max(cpu/usage_rate)"}
        for metric in kept:
            for hour in range(T * NS, (T + 2 * H) * NS, HOUR_NS):
                await app.rollup_writer.roll_up(metric, hour)
    billing = Billing(app.influx, app.catalog, card, app.rollups if rollups else None, ("kube-system",),
                      app.services.interval_ns)
    await app.catalog.resolve("cpu/usage_rate")  # the source's first look at the data
    return (await billing.compute(period, (T + 30 * H) * NS, "open", 1))[by]


@pytest.mark.parametrize("basis,column", [("request", 0), ("max", 1)])
@pytest.mark.parametrize("rollups", [False, True], ids=["raw", "rollups"])
@pytest.mark.gen_test(timeout=120)
async def test_each_basis_bills_what_was_held(make_app, scratch_db, schema, basis, column, rollups):
    _, extra = schema
    s = await statement(make_app, scratch_db, extra, basis, rollups)
    rows = {r["pod"]: r for r in s["rows"]}
    billed = {pod: round(r["usage"]["cpu"], 6) for pod, r in rows.items() if r["usage"]["cpu"] or r["used"]["cpu"]}
    assert billed == {pod: e[column] for pod, e in EXPECTED.items() if e[column] or e[2]}
    for pod, (_r, _m, used, requested) in EXPECTED.items():
        if pod in rows:
            assert (rows[pod]["used"]["cpu"], rows[pod]["requested"]["cpu"]) == (used, requested), pod
    assert "done" not in rows and "waiting" not in rows  # a finished Job and an unscheduled pod hold nothing
    if basis == "max":
        assert rows["over"]["efficiency"]["cpu"] == 0.2 and rows["burst"]["efficiency"]["cpu"] == round(1.0 / 1.3, 6)
        assert rows["pulling"]["efficiency"]["cpu"] == 0.0
    assert s["totals"]["usage"]["cpu"] == round(sum(e[column] for e in EXPECTED.values()), 6)
    assert any(note.startswith("1 pod(s) had no cpu request") for note in s["notes"]), s.get("notes")


@pytest.mark.gen_test(timeout=60)
async def test_a_basis_without_a_request_the_card_can_name_is_refused():
    from kubemonitor.ratecard import RateCardError
    with pytest.raises(RateCardError, match="needs a request"):
        parse("resources:\n  gpu: {metric: gpu/usage, unit: GB-hours, divide_by: 1000, basis: max}\n", "billing.yaml")
    with pytest.raises(RateCardError, match="not one of usage, request, max"):
        parse(CARD % "reserved", "billing.yaml")
    card = parse("resources:\n  gpu: {metric: gpu/usage, unit: GB-hours, divide_by: 1000, basis: request, "
                 "request_metric: gpu/request}\n", "billing.yaml")
    assert card.resources[0].request_metric == "gpu/request"


@pytest.mark.gen_test(timeout=60)
async def test_the_csv_carries_used_and_requested(make_app, scratch_db, schema):
    from kubemonitor.statement import to_csv
    _, extra = schema
    s = await statement(make_app, scratch_db, extra, "max", False)
    header, *lines = to_csv(s, "pod").splitlines()
    columns = header.split(",")
    assert {"cpu_used", "cpu_requested"} <= set(columns) and s["resources"][0]["basis"] == "max"
    over = dict(zip(columns, next(line for line in lines if ",over," in line).split(",")))
    assert (over["cpu_core-hours"], over["cpu_used"], over["cpu_requested"]) == ("2.000000", "0.400000", "2.000000")


@pytest.mark.parametrize("rollups", [False, True], ids=["raw", "rollups"])
@pytest.mark.gen_test(timeout=120)
async def test_capacity_system_and_idle(make_app, scratch_db, schema, rollups):
    """node-a offers 8 core-hours; kube-system's proxy took 1.0 (by max: max(0.5, 0.5) x 2 h);
    the groups were billed 5.3 by max, so 1.7 were idle."""
    _, extra = schema
    s = await statement(make_app, scratch_db, extra, "max", rollups)
    assert s["capacity"] == {"cpu": 8.0} and s["system"] == {"cpu": 1.0} and s["idle"] == {"cpu": 1.7}
    assert "proxy" not in {r["pod"] for r in s["rows"]}
    usage = await statement(make_app, scratch_db, extra, "usage", rollups)
    assert usage["idle"] == {"cpu": round(8.0 - 2.0 - 1.0, 6)}  # by usage, 2.0 billed: 5.0 idle


@pytest.mark.gen_test(timeout=120)
async def test_idle_shared_pro_rata_sums_to_the_idle_cost_in_every_view(make_app, scratch_db, schema):
    """idle: share, 1.70 CHF of idle cpu: lab was billed 3.3, lab2 2.0 -> 1.06 and 0.64 (largest
    remainder), and lab's 1.06 by pod: over 0.64, burst 0.42; every view totals 7.00."""
    _, extra = schema
    views = {by: await statement(make_app, scratch_db, extra, "max", False, SHARED, by) for by in ("group", "namespace", "pod")}
    groups = {r["group"]: r for r in views["group"]["rows"]}
    assert (groups["lab"]["idle_cost"], groups["lab2"]["idle_cost"]) == ({"cpu": 1.06}, {"cpu": 0.64})
    assert (groups["lab"]["total"], groups["lab2"]["total"]) == (4.36, 2.64)  # billed 3.30 and 2.00, plus the shares
    pods = {r["pod"]: r for r in views["pod"]["rows"]}
    assert (pods["over"]["idle_cost"], pods["burst"]["idle_cost"]) == ({"cpu": 0.64}, {"cpu": 0.42})
    for s in views.values():
        assert s["totals"]["idle_cost"] == {"cpu": 1.7} and s["totals"]["total"] == 7.0


@pytest.mark.gen_test(timeout=120)
async def test_kept_requests_bill_after_their_raw_points_are_gone(make_app, scratch_db, running_influxd):
    """Retention removed the raw requests (the measurement is gone): the rollups still bill them."""
    running_influxd.write(scratch_db, heapster_lines(), precision="s")
    app = make_app(influxdb_db=scratch_db, rollup_rp="t_" + secrets.token_hex(4), rollup_metrics=("cpu/usage_rate", "cpu/request"))
    await app.rollups.prepare()
    for metric in await app.rollup_writer.metrics():
        for hour in range(T * NS, (T + 2 * H) * NS, HOUR_NS):
            await app.rollup_writer.roll_up(metric, hour)
    running_influxd.query('DROP MEASUREMENT "cpu/request"', db=scratch_db)
    billing = Billing(app.influx, app.catalog, parse(CARD % "max", "b.yaml"), app.rollups, ("kube-system",),
                      app.services.interval_ns)
    s = (await billing.compute(period_from({"period": "2024-01-01"}, "UTC"), (T + 30 * H) * NS, "open", 1))["pod"]
    assert {r["pod"]: r["usage"]["cpu"] for r in s["rows"]}["over"] == 2.0  # its request, from the rollups


@pytest.mark.gen_test(timeout=60)
async def test_a_request_collector_down_shows_in_the_coverage(make_app, scratch_db, running_influxd):
    """kube_inventory down for 20 of the 120 minutes: cpu billed by max depends on it, so the
    statement's cpu coverage is the inventory's (100 of 120 minutes), with the gap."""
    lines = [line for line in telegraf_lines()
             if not ("resource_requests" in line and T + 1800 <= int(line.rsplit(" ", 1)[1]) < T + 3000)]
    running_influxd.write(scratch_db, lines, precision="s")
    s = await statement(make_app, scratch_db, dict(source="telegraf", sample_interval=10.0, inventory_interval=60.0),
                        "max", False)
    # the day's coverage: node-a's 120 of 1,440 inventory minutes, less 20; the kubelet's would be 120 of 1,440
    assert s["coverage"]["cpu"] == round(100 / 1440, 6)
    assert {"from": "2024-01-01T00:30:00Z", "to": "2024-01-01T00:50:00Z", "node": "node-a"} in s["gaps"]
