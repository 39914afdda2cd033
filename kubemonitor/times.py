"""Time as InfluxDB stores it: int64 nanoseconds since the epoch, shown as RFC 3339 UTC."""
from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

NS = 10**9
HOUR_NS = 3600 * NS
MAX_DAYS = 366  # the longest range a statement or one `rollup` run covers: a leap year
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# InfluxDB 1.x stores int64 nanoseconds; these are the ends it accepts.
MIN_TIME_NS = -9223372036854775806
MAX_TIME_NS = 9223372036854775806


def format_ns(ns: int) -> str:
    """RFC 3339 UTC with Z, nanoseconds trimmed like InfluxDB does."""
    secs, frac = divmod(ns, NS)
    return _second(secs) + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


@functools.lru_cache(maxsize=4096)
def _second(secs: int) -> str:
    # An answer's points share few seconds (every pod reports each interval): strftime once each.
    return (EPOCH + timedelta(seconds=secs)).strftime("%Y-%m-%dT%H:%M:%S")


def to_ns(dt: datetime) -> int:
    """An aware datetime as nanoseconds since the epoch, exactly (no float on the way)."""
    delta = dt - EPOCH
    return (delta.days * 86400 + delta.seconds) * NS + delta.microseconds * 1000
