"""InfluxQL pieces and the usage rule's arithmetic, without a database."""
from __future__ import annotations

import pytest

from kubemonitor import request, usage
from kubemonitor.metrics import Metric
from kubemonitor.times import HOUR_NS, format_ns

END = request.parse_time("e", "2017-12-31", end_of_day=True)


def test_quote_refuses_names_outside_the_pattern():
    for bad in ['cpu"; DROP', "cpu/usage_rate'", "a b", "", "cpu//x", "CPU"]:
        with pytest.raises(ValueError):
            usage.quote_measurement(Metric(bad, "", None))


def test_format_ns_round_trips_rfc3339():
    assert format_ns(0) == "1970-01-01T00:00:00Z"
    assert format_ns(END) == "2017-12-31T23:59:59.999999999Z"
    assert request.parse_time("t", format_ns(END), end_of_day=True) == END


def test_the_usage_rule_is_samples_times_the_interval():
    assert usage.integral(20.0, 60 * 10**9) == 20 / 60           # 20 millicores for one minute
    assert usage.integral(20.0, 10 * 10**9) == 20 * 10 / 3600     # Telegraf's 10 s
    assert usage.integral(0.0, 60 * 10**9) == 0.0
    assert usage.hour_of(HOUR_NS * 5 + 1) == HOUR_NS * 5 and usage.hour_of(-1) == -HOUR_NS
