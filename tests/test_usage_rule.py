"""The usage rule and the counting rule per pod instance and clock hour, on the cases an
independent audit measured (tests/dataset.py, "usage-rule block"; the sample interval
is 60 s, so integral = sum / 60). Each case's answer is known in closed form."""
from __future__ import annotations

import pytest
from dataset import DAY_SAMPLES, D

from kubemonitor.times import HOUR_NS, NS, format_ns

DAY_NS = 24 * HOUR_NS
WHOLE_DAY = {"timeBeginInterval": "2018-03-05", "timeEndInterval": "2018-03-05"}


async def pod(api, namespace, body=WHOLE_DAY):
    status, rows, _ = await api("cpu/usage_rate", {"agg": "pod-by-namespace", "namespace": namespace, **body})
    assert status == 200, rows
    assert len(rows) <= 1
    return rows[0] if rows else None


def usage(count, total, top):
    return {"count": count, "sum": float(total), "max": float(top), "mean": total / count, "integral": total / 60}


def check(row, count, total, top):
    assert {k: row[k] for k in ("count", "sum", "max", "mean", "integral")} == usage(count, total, top)


@pytest.mark.gen_test
async def test_containers_reporting_2_s_apart_are_summed_per_sample_interval(api):
    row = await pod(api, "case-skew")
    # one sample interval each minute holding 100 + 200 (never paired by timestamp)
    check(row, DAY_SAMPLES, DAY_SAMPLES * 300, 300)
    assert row["series_type"] == "pod_container"


@pytest.mark.gen_test
async def test_a_pod_recreated_after_a_gap_is_not_billed_for_the_gap(api):
    row = await pod(api, "case-recreate")
    check(row, 2 * 660, 2 * 660 * 600, 600)  # 11 h + 11 h of samples; the 2 h between cost nothing
    assert row["pod_name"] == "job-1"  # both instances (pod_id a and b) under the pod's name


@pytest.mark.gen_test
async def test_pod_level_series_for_part_of_the_range_lose_nothing(api):
    row = await pod(api, "case-partial")
    check(row, DAY_SAMPLES, DAY_SAMPLES * 400, 400)  # 22 h from containers + 2 h from the pod series
    assert row["series_type"] == "mixed"


@pytest.mark.gen_test
async def test_a_range_ending_on_a_single_pod_level_point(api):
    row = await pod(api, "case-partial", {"timeBeginInterval": "2018-03-05", "timeEndInterval": "2018-03-05T22:00:00Z"})
    check(row, 22 * 60 + 1, (22 * 60 + 1) * 400, 400)


@pytest.mark.gen_test
async def test_the_clock_hour_decides_even_when_a_range_covers_part_of_it(api):
    """Hour 12 has pod-level samples from 12:30: the whole hour is the pod-level series', so a
    range ending at 12:15 counts none of that hour's container samples."""
    check(await pod(api, "case-midhour"), 12 * 60 + 30 + 11 * 60, (12 * 60 + 30 + 11 * 60) * 100, 100)
    morning = await pod(api, "case-midhour", {"timeBeginInterval": "2018-03-05", "timeEndInterval": "2018-03-05T12:14:59.999999999Z"})
    check(morning, 12 * 60, 12 * 60 * 100, 100)
    rest = await pod(api, "case-midhour", {"timeBeginInterval": "2018-03-05T12:15:00Z", "timeEndInterval": "2018-03-05"})
    check(rest, 30 + 11 * 60, (30 + 11 * 60) * 100, 100)


@pytest.mark.gen_test
async def test_a_changed_labels_tag_is_still_one_pod(api):
    status, rows, _ = await api("cpu/usage_rate", {"agg": "all-pod", **WHOLE_DAY})
    assert [r["pod_name"] for r in rows if r["namespace_name"] == "case-labels"] == ["web-1"]
    check(await pod(api, "case-labels"), DAY_SAMPLES, DAY_SAMPLES * 500, 500)


@pytest.mark.gen_test
async def test_a_one_sample_range_is_the_value_times_the_interval(api):
    at = format_ns(D + 5 * HOUR_NS)
    check(await pod(api, "case-labels", {"timeBeginInterval": at, "timeEndInterval": at}), 1, 500, 500)


async def all_pods(api, begin_ns, end_ns):
    status, rows, _ = await api("cpu/usage_rate", {"agg": "all-pod", "timeBeginInterval": format_ns(begin_ns),
                                                   "timeEndInterval": format_ns(end_ns)})
    assert status == 200, rows
    return {(r["namespace_name"], r["pod_name"]): r for r in rows if r["namespace_name"].startswith("case-")}


def added(parts):
    total = {}
    for part in parts:
        for key, row in part.items():
            t = total.setdefault(key, {"count": 0, "sum": 0.0, "integral": 0.0})
            for field in t:
                t[field] += row[field]
    return total


@pytest.mark.gen_test(timeout=60)
async def test_24_hourly_queries_add_up_to_the_daily_one(api):
    day = await all_pods(api, D, D + DAY_NS - 1)
    hours = [await all_pods(api, D + h * HOUR_NS, D + (h + 1) * HOUR_NS - 1) for h in range(24)]
    assert added(hours) == {key: {"count": r["count"], "sum": r["sum"], "integral": r["integral"]} for key, r in day.items()}
    assert len(day) == 6


@pytest.mark.gen_test
async def test_day_one_plus_day_two_is_the_two_day_query(api):
    one, two = await all_pods(api, D, D + DAY_NS - 1), await all_pods(api, D + DAY_NS, D + 2 * DAY_NS - 1)
    both = await all_pods(api, D, D + 2 * DAY_NS - 1)
    assert added([one, two]) == {key: {"count": r["count"], "sum": r["sum"], "integral": r["integral"]} for key, r in both.items()}
    check(both["case-twoday", "long-1"], 2 * DAY_SAMPLES, 2 * DAY_SAMPLES * 250, 250)


@pytest.mark.gen_test
@pytest.mark.parametrize("split", [13 * HOUR_NS + 37 * 60 * NS + NS // 2, 22 * HOUR_NS + 30 * 60 * NS, 1, 10 * HOUR_NS + 2 * NS,
                                   12 * HOUR_NS + 15 * 60 * NS])
async def test_a_split_at_any_instant_adds_up(api, split):
    whole = await all_pods(api, D, D + DAY_NS - 1)
    parts = [await all_pods(api, D, D + split - 1), await all_pods(api, D + split, D + DAY_NS - 1)]
    expected = {key: {"count": r["count"], "sum": r["sum"], "integral": r["integral"]} for key, r in whole.items()}
    total = added(parts)
    for key in expected:  # sums and usage always add up; counts too unless a split cuts a sample interval
        assert total[key]["sum"] == expected[key]["sum"] and total[key]["integral"] == pytest.approx(expected[key]["integral"], rel=1e-15)
    if split % (60 * NS) == 0:
        assert total == expected
