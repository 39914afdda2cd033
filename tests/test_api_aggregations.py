"""Aggregations and raw points against the closed-form dataset (tests/dataset.py)."""
from __future__ import annotations

import pytest
from dataset import EDGE_TIMES, T0

HOUR_RANGE = {"timeBeginInterval": "2017-12-01T10:00:00Z", "timeEndInterval": "2017-12-01T10:59:00Z"}
INTERVAL_H = 60 / 3600  # the usage rule: each sample stands for the 60 s sample interval


def by_pod(rows):
    return {(r["namespace_name"], r["pod_name"]): r for r in rows}


def assert_usage(row, *, count, total, top):
    """count, sum, max, mean, and the usage rule: integral = sum x 60 s / 3600 (unit x hours)."""
    assert row["count"] == count
    assert row["sum"] == pytest.approx(total)
    assert row["max"] == pytest.approx(top)
    assert row["mean"] == pytest.approx(total / count)
    assert row["integral"] == pytest.approx(total * INTERVAL_H, rel=1e-12)


@pytest.mark.gen_test
async def test_pod_by_namespace_counts_each_pod_once(api):
    status, rows, _ = await api("cpu/usage_rate", {"agg": "pod-by-namespace", "namespace": "team-a", **HOUR_RANGE})
    assert status == 200
    assert [(r["namespace_name"], r["pod_name"]) for r in rows] == [
        ("team-a", "batch-1"), ("team-a", "web-1"), ("team-a", "web-2")]
    pods = by_pod(rows)
    # web-1: pod series 500 at 60 points (its containers 300 + 200 must not add to it)
    assert_usage(pods["team-a", "web-1"], count=60, total=60 * 500, top=500)
    # web-2: 100 + 10 i
    assert_usage(pods["team-a", "web-2"], count=60, total=60 * 100 + 10 * sum(range(60)), top=690)
    # batch-1 has container series only: counted per sample interval, 1000 + 500
    assert_usage(pods["team-a", "batch-1"], count=30, total=30 * 1500, top=1500)
    assert pods["team-a", "batch-1"]["series_type"] == "pod_container"
    assert pods["team-a", "web-1"]["series_type"] == "pod"
    assert {r["unit"] for r in rows} == {"millicores"}
    assert {r["integral_unit"] for r in rows} == {"millicore-hours"}


@pytest.mark.gen_test
async def test_all_pod_keeps_same_pod_name_in_two_namespaces_and_excludes_kube_system(api):
    status, rows, _ = await api("cpu/usage_rate", {"agg": "all-pod", "namespace": "ignored", "limit": 1, **HOUR_RANGE})
    assert status == 200
    keys = [(r["namespace_name"], r["pod_name"]) for r in rows]
    assert keys == [("team-a", "batch-1"), ("team-a", "web-1"), ("team-a", "web-2"), ("team-b", "web-1")]
    assert_usage(by_pod(rows)["team-b", "web-1"], count=60, total=60 * 250, top=250)


@pytest.mark.gen_test
async def test_all_namespace_is_the_sum_of_its_pods(api):
    status, rows, _ = await api("cpu/usage_rate", {"agg": "all-namespace", **HOUR_RANGE})
    assert status == 200
    assert [r["namespace_name"] for r in rows] == ["team-a", "team-b"]
    team_a, team_b = rows
    web2_sum = 60 * 100 + 10 * sum(range(60))
    assert team_a["pods"] == 3
    assert_usage(team_a, count=150, total=30000 + web2_sum + 45000, top=1500)
    assert team_b["pods"] == 1
    assert_usage(team_b, count=60, total=15000, top=250)


@pytest.mark.gen_test
async def test_excluded_namespace_is_still_reachable_by_name(api):
    status, rows, _ = await api("cpu/usage_rate", {"agg": "pod-by-namespace", "namespace": "kube-system", **HOUR_RANGE})
    assert status == 200
    assert_usage(rows[0], count=60, total=3000, top=50)


@pytest.mark.gen_test
async def test_gpu_pods_with_and_without_pod_series(api):
    status, rows, _ = await api("gpu/usage", {"agg": "all-pod", **HOUR_RANGE})
    assert status == 200
    pods = by_pod(rows)
    assert set(pods) == {("team-gpu", "train-1"), ("team-gpu", "train-2")}
    assert_usage(pods["team-gpu", "train-1"], count=60, total=60 * 8000, top=8000)
    assert_usage(pods["team-gpu", "train-2"], count=60, total=60 * 4000, top=4000)
    assert rows[0]["unit"] == "megabytes" and rows[0]["integral_unit"] == "megabyte-hours"


@pytest.mark.gen_test
async def test_integer_fields_are_aggregated_exactly(api):
    status, rows, _ = await api("memory/usage", {"agg": "pod-by-namespace", "namespace": "team-a", **HOUR_RANGE})
    assert status == 200
    assert_usage(rows[0], count=60, total=60 * 2**30, top=2**30)
    assert rows[0]["unit"] == "bytes"


@pytest.mark.gen_test
async def test_date_only_range_is_inclusive_of_whole_days(api):
    async def edge(begin, end):
        status, rows, _ = await api("cpu/usage_rate", {"agg": "pod-by-namespace", "namespace": "team-c",
                                                       "timeBeginInterval": begin, "timeEndInterval": end})
        assert status == 200
        return rows[0]["sum"] if rows else 0
    # the values are powers of two, so the sum says exactly which points were counted
    assert await edge("2017-12-01", "2017-12-31") == 2 + 4
    assert await edge("2017-11-30", "2017-12-31") == 1 + 2 + 4
    assert await edge("2017-12-01", "2018-01-01") == 2 + 4 + 8
    assert await edge("2017-12-01", "2017-12-31T23:59:59") == 2
    assert await edge("2017-12-01", "2017-12-31T23:59:59.999999999Z") == 2 + 4
    assert await edge("2017-12-01T01:00:00+01:00", "2017-12-31 23:59:59.999999999") == 2 + 4
    assert await edge("2017-12-01T00:00:00.000000001Z", "2017-12-31") == 4


@pytest.mark.gen_test
async def test_month_integral_of_the_edge_pod(api):
    """Two samples a month apart are two samples of 60 s, not a month of interpolated usage."""
    status, rows, _ = await api("cpu/usage_rate", {"agg": "all-namespace",
                                                   "timeBeginInterval": "2017-12-01", "timeEndInterval": "2017-12-31"})
    assert status == 200
    team_c = {r["namespace_name"]: r for r in rows}["team-c"]
    assert (EDGE_TIMES[4] - EDGE_TIMES[2]) / 3600e9 > 700  # a month apart
    assert team_c["count"] == 2 and team_c["integral"] == (2 + 4) * 60 / 3600


@pytest.mark.gen_test
async def test_unix_seconds_and_offsets_select_the_same_hour(api):
    begin, end = T0 // 10**9, T0 // 10**9 + 59 * 60
    _, by_number, _ = await api("cpu/usage_rate", {"agg": "all-pod", "timeBeginInterval": begin, "timeEndInterval": end})
    _, by_offset, _ = await api("cpu/usage_rate", {"agg": "all-pod", "timeBeginInterval": "2017-12-01T11:00+01:00",
                                                   "timeEndInterval": "2017-12-01 05:59-05:00"})
    _, by_text, _ = await api("cpu/usage_rate", {"agg": "all-pod", **HOUR_RANGE})
    assert by_number == by_offset == by_text
    assert len(by_text) == 4


@pytest.mark.gen_test
async def test_raw_points_newest_first_with_all_tags(api):
    status, rows, _ = await api("cpu/usage_rate", {"namespace": "team-a", "limit": 10, **HOUR_RANGE})
    assert status == 200
    assert len(rows) == 10
    times = [r["time"] for r in rows]
    assert times == sorted(times, reverse=True)
    # at 10:59 team-a has web-1 (2 containers + pod), web-2 (2 + pod) and its ns series: 7 points
    assert times.count("2017-12-01T10:59:00Z") == 7 and times.count("2017-12-01T10:58:00Z") == 3
    for r in rows:
        assert set(r) >= {"time", "value", "namespace_name", "pod_name", "container_name", "nodename", "type"}
        assert r["namespace_name"] == "team-a"
        assert isinstance(r["value"], float)
    ns_row = next(r for r in rows if r["type"] == "ns")
    assert ns_row["pod_name"] is None and ns_row["container_name"] is None
    web1_pod = next(r for r in rows if r["pod_name"] == "web-1" and r["type"] == "pod")
    assert web1_pod["labels"] == "app:web" and web1_pod["pod_id"] == "uid-a-web-1"
    assert web1_pod["value"] == 500.0 and web1_pod["container_name"] is None


@pytest.mark.gen_test
async def test_raw_pod_and_type_filters(api):
    status, rows, _ = await api("cpu/usage_rate", {"namespace": "team-a", "pod": "web-1", "type": "pod", **HOUR_RANGE})
    assert status == 200 and len(rows) == 60
    assert {(r["namespace_name"], r["pod_name"], r["type"], r["value"]) for r in rows} == {("team-a", "web-1", "pod", 500.0)}
    status, rows, _ = await api("cpu/usage_rate", {"namespace": "team-a", "pod": "web-2", "type": "pod_container",
                                                   "limit": "1000", **HOUR_RANGE})
    assert status == 200 and len(rows) == 120
    assert {r["container_name"] for r in rows} == {"app", "sidecar"}


@pytest.mark.gen_test
async def test_defaults_are_default_namespace_last_hour_limit_100(api, anchors):
    status, rows, _ = await api("cpu/usage_rate")
    assert status == 200
    assert len(rows) == 20  # default/hello-1: container + pod series, ten points each
    assert {r["namespace_name"] for r in rows} == {"default"}
    status, rows, _ = await api("cpu/usage_rate", raw=b"  ")
    assert status == 200 and len(rows) == 20
    status, rows, _ = await api("cpu/usage_rate", {"namespace": "team-a"})
    assert len(rows) == 30  # web-1: two containers + pod, ten points


@pytest.mark.gen_test
async def test_default_window_aggregates_recent_points(api):
    status, rows, _ = await api("cpu/usage_rate", {"agg": "all-namespace"})
    assert status == 200
    ns = {r["namespace_name"]: r for r in rows}
    assert set(ns) == {"default", "team-a", "team-b"}
    assert_usage(ns["team-a"], count=10, total=5000, top=500)
    assert_usage(ns["default"], count=10, total=100, top=10)


@pytest.mark.gen_test
async def test_other_agg_values_mean_no_aggregation(api):
    for agg in ("", None, "all-pods", 5):
        status, rows, resp = await api("cpu/usage_rate", {"agg": agg, "namespace": "team-b", **HOUR_RANGE})
        assert status == 200
        assert "time" in rows[0] and "count" not in rows[0]
        assert ("Warning" in resp.headers) == (agg not in ("", None))


@pytest.mark.gen_test
async def test_form_content_type_from_the_seed_example_is_read_as_json(http_client, base_url):
    from conftest import API_PASS, API_USER
    r = await http_client.fetch(base_url + "/api/cpu/usage_rate", method="POST", raise_error=False,
                                headers={"x-username": API_USER, "x-password": API_PASS,
                                         "Content-Type": "application/x-www-form-urlencoded"},
                                body='{"agg":"pod-by-namespace","namespace":"team-a",'
                                     '"timeBeginInterval":"2017-12-01","timeEndInterval":"2017-12-31"}')
    assert r.code == 200
    import json
    assert [row["pod_name"] for row in json.loads(r.body)] == ["batch-1", "web-1", "web-2"]


@pytest.mark.gen_test
async def test_metric_without_slash_and_measurement_outside_catalog(api):
    status, rows, _ = await api("uptime", {"namespace": "team-a", "type": "pod"})
    assert status == 200 and sorted(r["value"] for r in rows) == [60000.0 * (k + 1) for k in range(10)]
    status, rows, _ = await api("custom/gpu_temperature", {"agg": "pod-by-namespace", "namespace": "team-gpu"})
    assert status == 200
    assert rows[0]["count"] == 10 and rows[0]["unit"] is None
    status, body, _ = await api("custom/does_not_exist", {})
    assert status == 404 and "unknown metric" in body["message"]


@pytest.mark.gen_test
@pytest.mark.parametrize("agg", ["all-namespace", "pod-by-namespace", None])
async def test_times_before_1970_are_answered_not_a_500(api, agg):
    for begin, end in ((-1, 10), ("1960-01-01", "1969-12-31"), ("1677-09-22T00:12:44Z", "1677-09-23"), (-1, "2017-12-31")):
        status, rows, _ = await api("cpu/usage_rate", {"agg": agg, "namespace": "team-a", "timeBeginInterval": begin,
                                                       "timeEndInterval": end})
        assert status == 200, rows
        # team-a has 3 pods; with team-b and team-c (its edge points) 3 namespaces; raw: the default limit
        expected = 0 if end != "2017-12-31" else (100 if agg is None else 3)
        assert len(rows) == expected


@pytest.mark.gen_test
async def test_raw_times_keep_their_nanoseconds(api):
    status, rows, _ = await api("cpu/usage_rate", {"namespace": "team-c", "limit": 10,
                                                   "timeBeginInterval": "2017-11-30", "timeEndInterval": "2018-01-01"})
    assert status == 200
    assert [r["time"] for r in rows] == ["2018-01-01T00:00:00Z", "2017-12-31T23:59:59.999999999Z",
                                         "2017-12-01T00:00:00Z", "2017-11-30T23:59:59.999999999Z"]
