"""Usage from counters (README "Billing"): `cpu/usage` (CPU time in nanoseconds since the
container started) billed by its increase — an increase belongs to the later sample, a
reset counts from zero, an outage loses nothing, a second collector counts once — on
both schemas, against closed forms.

Two hours from T, in core-hours (the counter grows by millicores x seconds x 1e6 ns):

| pod | what happens | core-hours |
|---|---|---|
| steady | 500 m throughout | 1.0 |
| restart | 1000 m; the container restarts at T + 1 h (the counter reads 0 then) | 2 - step/3600 |
| gap | 500 m; its collector writes nothing from T + 30 min to T + 50 min | 1.0 (the gauge rule: 0.8333) |
| twice | 500 m; a second collector copies it 5 s later in the second hour | 1.0 + 5 s x 0.5 (read 5 s later) |
"""
from __future__ import annotations

import secrets

import pytest

from kubemonitor.billing import Billing
from kubemonitor.ratecard import parse, period_from
from kubemonitor.times import NS
from kubemonitor.usage import Scope, per_pod

H = 3600
T = 1_704_067_200
CARD = ("currency: CHF\ntimezone: UTC\nresources:\n"
        "  cpu: {metric: cpu/usage, unit: core-hours, divide_by: 3.6e12, price: 1%s}\n")


def counter(rate_m: float, t: int, start: int) -> int:
    """CPU time in ns of a container started at `start`, running at `rate_m` millicores."""
    return int(rate_m * (t - start) * 1_000_000)


def samples(step: int) -> list[tuple[str, int, int, str]]:
    """(pod, t, value, collector) from 10 minutes before T (the samples before the range)."""
    out = []
    for t in range(T - 600, T + 2 * H, step):
        out.append(("steady", t, counter(500, t, T - H), "a"))
        out.append(("restart", t, counter(1000, t, T - H) if t < T + H else counter(1000, t, T + H), "a"))
        if not T + 1800 <= t < T + 3000:
            out.append(("gap", t, counter(500, t, T - H), "a"))
        out.append(("twice", t, counter(500, t, T - H), "a"))
        if t >= T + H:
            out.append(("twice", t + 5, counter(500, t + 5, T - H), "b"))
    return out


def heapster_lines() -> list[str]:
    out = []
    for pod, t, value, collector in samples(60):
        if collector == "b":  # a second Heapster: the same series again
            out.append(f"cpu/usage,namespace_name=lab,pod_name={pod},type=pod value={value}i {t}")
            continue
        out.append(f"cpu/usage,namespace_name=lab,pod_name={pod},type=pod value={value}i {t}")
        out.append(f"cpu/usage,container_name=main,namespace_name=lab,pod_name={pod},type=pod_container value={value}i {t}")
    for t in range(T, T + 2 * H, 60):
        out.append(f"cpu/usage,type=cluster value=1i {t}")
    return out


def telegraf_lines() -> list[str]:
    return [f"kubernetes_pod_container,container_name=main,host=telegraf-{collector},namespace=lab,node_name=node-a,"
            f"pod_name={pod} cpu_usage_core_nanoseconds={value}i {t}" for pod, t, value, collector in samples(10)]


@pytest.fixture(params=["heapster", "telegraf"])
def schema(request, running_influxd, scratch_db):
    running_influxd.write(scratch_db, heapster_lines() if request.param == "heapster" else telegraf_lines(), precision="s")
    step = 60 if request.param == "heapster" else 10
    extra = dict(source="telegraf", sample_interval=10.0) if request.param == "telegraf" else {}
    return step, extra


def expected(step: int) -> dict[str, float]:
    # twice: the copy's last sample is 5 s after the range's last one: the counter is read up to it
    return {"steady": 1.0, "restart": 2.0 - step / H, "gap": 1.0, "twice": 1.0 + 5 * 0.5 / H}


@pytest.mark.gen_test(timeout=60)
async def test_a_counters_increases_per_pod(make_app, scratch_db, schema):
    step, extra = schema
    app = make_app(influxdb_db=scratch_db, **extra)
    metric = await app.catalog.resolve("cpu/usage")
    period = period_from({"period": "2024-01-01"}, "UTC")
    billing = Billing(app.influx, app.catalog, parse(CARD % "", "b.yaml"), None, (), app.services.interval_ns)
    pods = per_pod(await billing.increases(metric, period))
    got = {pod: c.sum / 3.6e12 for (_ns, pod, _id), c in pods.items()}
    assert got == pytest.approx(expected(step), abs=1e-12)
    # any split adds up: the increase across the split belongs to the later sample
    from kubemonitor.counters import increases
    halves = [per_pod(await increases(app.influx, metric, a * NS, b * NS, Scope())) for a, b in ((T, T + H), (T + H, T + 2 * H))]
    for key, c in pods.items():
        assert sum(h[key].sum for h in halves if key in h) == pytest.approx(c.sum, rel=1e-12)


@pytest.mark.gen_test(timeout=60)
async def test_a_statement_bills_a_counter_and_by_max_against_its_request(make_app, scratch_db, schema, running_influxd):
    step, extra = schema
    # steady requests 1000 m: by max, 2 core-hours (its request), the counter's 1.0 used (below)
    if extra:
        request = [f"kubernetes_pod_container,container_name=main,namespace=lab,node_name=node-a,phase=Running,pod_name=steady "
                   f"resource_requests_millicpu_units=1000i {t}" for t in range(T, T + 2 * H, 10)]
    else:
        request = [f"cpu/request,namespace_name=lab,pod_name=steady,type=pod value=1000i {t}" for t in range(T, T + 2 * H, 60)]
    running_influxd.write(scratch_db, request, precision="s")
    app = make_app(influxdb_db=scratch_db, rollup_rp="t_" + secrets.token_hex(4), **extra)
    await app.catalog.resolve("cpu/usage")
    period = period_from({"period": "2024-01-01"}, "UTC")
    billing = Billing(app.influx, app.catalog, parse(CARD % "", "b.yaml"), None, (), app.services.interval_ns)
    s = (await billing.compute(period, (T + 30 * H) * NS, "open", 1))["pod"]
    assert {r["pod"]: r["usage"]["cpu"] for r in s["rows"]} == {k: round(v, 6) for k, v in expected(step).items()}
    billing = Billing(app.influx, app.catalog, parse(CARD % ", basis: max", "b.yaml"), None, (), app.services.interval_ns)
    s = (await billing.compute(period, (T + 30 * H) * NS, "open", 1))["pod"]
    steady = next(r for r in s["rows"] if r["pod"] == "steady")
    assert (steady["usage"]["cpu"], steady["used"]["cpu"], steady["requested"]["cpu"]) == (2.0, 1.0, 2.0)


@pytest.mark.gen_test(timeout=60)
async def test_a_counters_rollups_are_its_increases_and_bill_the_same(make_app, scratch_db, schema, running_influxd):
    """KUBEMONITOR_ROLLUP_METRICS=cpu/usage keeps the counter's increases per pod and hour
    (as increase(cpu/usage)); a statement from them equals one from raw points."""
    from kubemonitor.rollups import increase_of
    step, extra = schema
    app = make_app(influxdb_db=scratch_db, rollup_rp="t_" + secrets.token_hex(4), rollup_metrics=("cpu/usage",), **extra)
    await app.rollups.prepare()
    (kept,) = await app.rollup_writer.metrics()
    assert kept.name == "increase(cpu/usage)" and kept == increase_of(await app.catalog.resolve("cpu/usage"))
    for hour in (T, T + H):
        await app.rollup_writer.roll_up(kept, hour * NS)
    assert not app.rollups.covers(await app.catalog.resolve("cpu/usage"))  # the counter itself: raw points
    period = period_from({"period": "2024-01-01"}, "UTC")
    card = parse(CARD % "", "b.yaml")
    async def billed(rollups) -> dict:
        s = await Billing(app.influx, app.catalog, card, rollups, (), app.services.interval_ns).compute(
            period, (T + 30 * H) * NS, "open", 1)
        return {r["pod"]: r["usage"]["cpu"] for r in s["pod"]["rows"]}
    from_raw = await billed(None)
    # the raw points of the two hours gone: the rollups alone bill them
    measurement = "kubernetes_pod_container" if extra else "cpu/usage"
    running_influxd.query(f'DELETE FROM "{measurement}" WHERE time >= {T}s AND time < {T + 2 * H}s', db=scratch_db)
    assert await billed(app.rollups) == from_raw == {k: round(v, 6) for k, v in expected(step).items()}
