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
EXPECTED = {  # pod: (request basis, max basis, used, requested)
    "over": (2.0, 2.0, 0.4, 2.0), "burst": (1.0, 1.3, 1.0, 1.0), "bare": (0.0, 0.6, 0.6, 0.0), "pulling": (1.4, 1.4, 0.0, 1.4)}


def heapster_lines() -> list[str]:
    out = []
    for t in range(T, T + 2 * H, 60):
        out.append(f"cpu/usage_rate,type=cluster value=1500.0 {t}")
        out.append(f"cpu/usage_rate,nodename=node-a,type=node value=1500.0 {t}")
        for pod in USES:
            m = use(pod, t)
            for kind in ("pod", "pod_container"):
                extra = ",container_name=main" if kind == "pod_container" else ""
                out.append(f"cpu/usage_rate,namespace_name=lab,nodename=node-a,pod_name={pod}{extra},type={kind} value={m}.0 {t}")
        for pod, (_phase, _node, m) in REQUESTS.items():
            if pod in ("done", "waiting"):  # Heapster sees the pods on its nodes' kubelets only
                continue
            out.append(f"cpu/request,namespace_name=lab,nodename=node-a,pod_name={pod},type=pod value={m}i {t}")
    return out


def telegraf_lines() -> list[str]:
    out = []
    for t in range(T, T + 2 * H, 10):
        out.append(f"kubernetes_node,node_name=node-a cpu_usage_nanocores=1500000000i {t}")
        for pod in USES:
            out.append(f"kubernetes_pod_container,container_name=main,namespace=lab,node_name=node-a,pod_name={pod} "
                       f"cpu_usage_nanocores={use(pod, t) * 1_000_000}i {t}")
    for t in range(T, T + 2 * H, 60):  # kube_inventory, every minute
        for pod, (phase, node, m) in REQUESTS.items():
            where = f",node_name={node}" if node else ""  # unscheduled: an empty tag is no tag
            out.append(f"kubernetes_pod_container,container_name=main,namespace=lab{where},phase={phase},pod_name={pod},"
                       f"readiness=ready,state=running resource_requests_millicpu_units={m}i {t}")
    return out


CARD = "currency: CHF\ntimezone: UTC\nresources:\n  cpu: {metric: cpu/usage_rate, unit: core-hours, divide_by: 1000, price: 1, basis: %s}\n"


@pytest.fixture(params=["heapster", "telegraf"])
def schema(request, running_influxd, scratch_db):
    running_influxd.write(scratch_db, heapster_lines() if request.param == "heapster" else telegraf_lines(), precision="s")
    extra = dict(source="telegraf", sample_interval=10.0, inventory_interval=60.0) if request.param == "telegraf" else {}
    return request.param, extra


async def statement(make_app, scratch_db, extra, basis: str, rollups: bool) -> dict:
    app = make_app(influxdb_db=scratch_db, rollup_rp="t_" + secrets.token_hex(4),
                   rollup_metrics=("cpu/usage_rate", "cpu/request"), **extra)
    card = parse(CARD % basis, "billing.yaml")
    period = period_from({"period": "2024-01-01"}, "UTC")
    if rollups:
        await app.rollups.prepare()
        for name in ("cpu/usage_rate", "cpu/request"):
            metric = await app.catalog.resolve(name)
            for hour in range(T * NS, (T + 2 * H) * NS, HOUR_NS):
                await app.rollup_writer.roll_up(metric, hour)
    billing = Billing(app.influx, app.catalog, card, app.rollups if rollups else None, (), app.services.interval_ns)
    await app.catalog.resolve("cpu/usage_rate")  # the source's first look at the data
    return (await billing.compute(period, (T + 30 * H) * NS, "open", 1))["pod"]


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
