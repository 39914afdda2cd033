"""The check that finds series written twice without averaging every interval in
InfluxDB (kubemonitor/usage.py, RawPlan.suspects): a pure function of counts per
series and hour and each series' first and last sample."""
from __future__ import annotations

from kubemonitor.heapster import Heapster
from kubemonitor.metrics import of_source
from kubemonitor.times import HOUR_NS, NS
from kubemonitor.usage import RawPlan, Scope

H = 3600
T = 1_704_067_200  # 2024-01-01T00:00:00Z


def test_an_hour_is_checked_against_the_intervals_its_series_spans():
    """A series' samples in an hour against the intervals it spans there; two series of one pod."""
    plan = RawPlan(of_source(Heapster(), "cpu/usage_rate"), T * NS, (T + 3 * H) * NS - 1, Scope(), 60 * NS)
    tags = {"namespace_name": "a", "pod_name": "p", "type": "pod"}
    hour = T * NS

    def found(count, first_s, last_s, other_host=False):
        series = [{"tags": tags, "values": [[hour, count]]}]
        if other_host:
            series.append({"tags": {**tags, "labels": "x"}, "values": [[hour, 1]]})
        span = [{"tags": s["tags"], "values": [[t * NS, 1.0]]} for s in series for t in (first_s,)]
        last = [{"tags": s["tags"], "values": [[t * NS, 1.0]]} for s in series for t in (last_s,)]
        return dict(plan.suspects(series, span, last))
    assert found(60, T, T + H - 60) == {}                       # one per interval, the whole hour
    assert found(61, T, T + H - 1) == {("a", "p", ""): {hour}}    # one more than the hour has
    assert found(20, T, T + 19 * 60) == {}                      # 20 minutes, 20 samples
    assert found(21, T, T + 19 * 60) == {("a", "p", ""): {hour}}  # 20 minutes, 21 samples
    assert found(20, T, T + 19 * 60, other_host=True) == {("a", "p", ""): {hour}}  # two series of one pod
    assert HOUR_NS == H * NS
