"""InfluxQL pieces and the usage rule's arithmetic, without a database."""
from __future__ import annotations

import pytest

from kubemonitor import influxql, request, usage
from kubemonitor.heapster import Heapster
from kubemonitor.metrics import Metric, of_source
from kubemonitor.source import quote
from kubemonitor.times import HOUR_NS, format_ns

END = request.parse_time("e", "2017-12-31", end_of_day=True)


def test_a_name_is_quoted_whatever_it_holds_and_a_metric_brings_its_layout():
    """Identifiers are joined into InfluxQL only quoted (a measurement InfluxDB listed may
    hold anything); a metric without its source's layout is refused, never taken as Heapster's."""
    assert quote('cpu"; DROP DATABASE k8s; --') == '"cpu\\"; DROP DATABASE k8s; --"'
    assert quote('a\\"b') == '"a\\\\\\"b"'
    assert influxql.quote_measurement(of_source(Heapster(), "cpu/usage_rate")) == '"cpu/usage_rate"'
    with pytest.raises(ValueError, match="of_source"):
        influxql.quote_measurement(Metric("cpu/usage_rate", "millicores", None))


def test_format_ns_round_trips_rfc3339():
    assert format_ns(0) == "1970-01-01T00:00:00Z"
    assert format_ns(END) == "2017-12-31T23:59:59.999999999Z"
    assert request.parse_time("t", format_ns(END), end_of_day=True) == END


def test_the_usage_rule_is_samples_times_the_interval():
    assert usage.integral(20.0, 60 * 10**9) == 20 / 60           # 20 millicores for one minute
    assert usage.integral(20.0, 10 * 10**9) == 20 * 10 / 3600     # Telegraf's 10 s
    assert usage.integral(0.0, 60 * 10**9) == 0.0
    assert usage.hour_of(HOUR_NS * 5 + 1) == HOUR_NS * 5 and usage.hour_of(-1) == -HOUR_NS
