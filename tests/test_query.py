"""The usage layer on its own: bind parameters carry hostile values harmlessly."""
from __future__ import annotations

import pytest
from conftest import DB
from influxdb import InfluxDBClient
from test_api_errors import INJECTIONS

from kubemonitor import influxql, request, usage
from kubemonitor.heapster import Heapster
from kubemonitor.influx import InfluxGateway
from kubemonitor.metrics import of_source

CPU = of_source(Heapster(), "cpu/usage_rate")
BEGIN, END = request.parse_time("b", "2017-12-01", end_of_day=False), request.parse_time("e", "2017-12-31", end_of_day=True)


@pytest.fixture
def client(running_influxd, anchors):
    c = InfluxDBClient(host="127.0.0.1", port=running_influxd.http_port, database=DB, timeout=5, retries=1)
    yield c
    c.close()




@pytest.mark.parametrize("payload", INJECTIONS)
def test_hostile_values_never_enter_the_statement_and_match_nothing(client, running_influxd, payload):
    """Bypass validation on purpose: even then the values only travel as parameters."""
    for q in (request.ApiQuery(namespace=payload, begin_ns=BEGIN, end_ns=END),
              request.ApiQuery(namespace="team-a", pod=payload, begin_ns=BEGIN, end_ns=END),
              request.ApiQuery(namespace="team-a", type=payload, begin_ns=BEGIN, end_ns=END)):
        text, params = influxql.raw_statement(CPU, q)
        benign = request.ApiQuery(namespace="x", pod=q.pod and "x", type=q.type and "x", begin_ns=BEGIN, end_ns=END)
        assert text == influxql.raw_statement(CPU, benign)[0]  # the text never depends on a value
        assert payload in params.values()
        assert influxql.raw_points(InfluxGateway.select, client, CPU, q) == []
    for scope in (usage.Scope(namespace=payload), usage.Scope(excluded=(payload,))):
        plan = usage.RawPlan(CPU, BEGIN, END, scope, 60 * 10**9)
        benign = usage.RawPlan(CPU, BEGIN, END, usage.Scope(namespace="x") if scope.namespace else usage.Scope(excluded=("x",)),
                               60 * 10**9)
        assert [text for text, _ in plan.first()] == [text for text, _ in benign.first()]
        first = [InfluxGateway.select(client, text, params) for text, params in plan.first()]
        fallback = plan.second(first)
        second = [InfluxGateway.select(client, text, params) for text, params in fallback.statements]
        pods = usage.per_pod(plan.combine(first, fallback, second))
        if scope.namespace:
            assert pods == {}
        else:
            assert {ns for ns, _pod, _id in pods} >= {"team-a", "team-b", "kube-system"}
    assert [DB] in running_influxd.query("SHOW DATABASES")["results"][0]["series"][0]["values"]




