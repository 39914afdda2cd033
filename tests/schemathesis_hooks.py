"""Hooks for the schemathesis run of tests/test_openapi_fuzz.py (loaded through
SCHEMATHESIS_HOOKS).

* Most valid metric names become metrics that exist, so that generated bodies run
  real queries against the test InfluxDB instead of stopping at 404.
* A body whose begin is after its end is not generated: that one rule spans two
  fields and JSON Schema cannot say it (the schema's description does).
"""
from __future__ import annotations

import time

import schemathesis

from kubemonitor.metrics import METRIC_NAME
from kubemonitor.request import BadRequest, parse_time

REAL = ("cpu/usage_rate", "memory/usage", "gpu/usage", "uptime", "custom/gpu_temperature")


@schemathesis.hook
def map_path_parameters(ctx, path_parameters):
    name = (path_parameters or {}).get("metric")
    if isinstance(name, str) and METRIC_NAME.fullmatch(name) and len(name) % 5:
        path_parameters["metric"] = REAL[len(name) % len(REAL)]
    return path_parameters


@schemathesis.hook
def filter_case(ctx, case):
    return ordered(case.body)


def ordered(body) -> bool:
    if not isinstance(body, dict):
        return True
    if any(k in body for k in ("period", "from", "to", "by", "format")):
        return statement_possible(body)
    try:
        begin = parse_time("b", body.get("timeBeginInterval"), end_of_day=False)
        end = parse_time("e", body.get("timeEndInterval"), end_of_day=True)
    except BadRequest:
        return True  # an invalid time: a negative case, keep it
    if end is None:
        end = time.time_ns()  # the default end: now
    return begin is None or begin <= end




def statement_possible(body) -> bool:
    """Statements: rules across fields (from <= to, at most 366 days) and time (not in the future)."""
    import datetime
    today = datetime.date.today()
    days = [body.get(k) for k in ("period", "from", "to") if isinstance(body.get(k), str)]
    try:
        parsed = [datetime.date.fromisoformat(d if len(d) == 10 else d + "-01") for d in days]
    except ValueError:
        return True  # not a date: a negative case, keep it
    if any(d > today for d in parsed):
        return False
    if isinstance(body.get("from"), str) and isinstance(body.get("to"), str) and len(parsed) >= 2:
        first, last = parsed[-2], parsed[-1]
        return first <= last and (last - first).days < 366
    return True
