"""An API request's body, checked field by field (README "The API").

The rules are data (`NAMESPACE`, `POD`, `TIME`, `limit_pattern` ...) used twice:
by `validate`, which applies them with messages that name the field and the fix,
and by `body_schema`, the JSON Schema that /openapi.json publishes. So the
document and the handler cannot drift apart; a schemathesis run in the test suite
checks that they agree.

The one cross-field rule a JSON Schema cannot say (the begin is not after the end)
is stated in the schema's descriptions; `pod`/`type` only without an aggregation is
part of the schema.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

from .times import MAX_TIME_NS, MIN_TIME_NS, NS, format_ns, to_ns

AGGREGATIONS = ("pod-by-namespace", "all-namespace", "all-pod")
SERIES_TYPES = ("pod_container", "pod", "ns", "node", "cluster", "sys_container")
FIELDS = ("namespace", "limit", "agg", "timeBeginInterval", "timeEndInterval", "pod", "type")
DEFAULT_LIMIT = 100
DEFAULT_WINDOW_NS = 60 * 60 * NS


@dataclass(frozen=True)
class NameRule:
    """A Kubernetes name: a pattern (matched whole) and a length limit."""
    pattern: str
    max_length: int
    what: str

    def matches(self, value: Any) -> bool:
        return isinstance(value, str) and len(value) <= self.max_length and re.fullmatch(self.pattern, value) is not None

    def schema(self, **extra: Any) -> dict:
        return {"type": "string", "pattern": f"^{self.pattern}$", "minLength": 1, "maxLength": self.max_length, **extra}


_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
NAMESPACE = NameRule(_LABEL, 63, "a Kubernetes namespace name (lower-case letters, digits and '-', at most 63 characters)")
POD = NameRule(rf"{_LABEL}(\.{_LABEL})*", 253,
               "a Kubernetes pod name (lower-case letters, digits, '-' and '.', at most 253 characters)")

# Times: a date, or a date and time (T or a space), optionally Z or an offset.
TIME = re.compile(
    r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})"
    r"(?:[T ](?P<h>[0-9]{2}):(?P<mi>[0-9]{2})(?::(?P<s>[0-9]{2})(?:\.(?P<frac>[0-9]{1,9}))?)?"
    r"(?P<tz>Z|[+-][0-9]{2}:[0-9]{2})?)?")
TIME_FORMATS = ("YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS[.fffffffff]] (T or a space, optionally Z or +HH:MM), "
                "or a number of Unix seconds")
# The same grammar for the published schema, limited to real calendar dates inside
# the years InfluxDB stores entirely (1678-2261); the handler also takes the
# partial years at the ends (1677-09-22 ... 2262-04-11).
_YEAR = r"(16(7[89]|[89][0-9])|1[7-9][0-9][0-9]|2[01][0-9][0-9]|22[0-5][0-9]|226[01])"
_LEAP = r"(16(8[048]|9[26])|(1[7-9]|2[01])(0[48]|[2468][048]|[13579][26])|2000|22(0[48]|[24][048]|[135][26]|60))"
_DATE = (rf"({_YEAR}-((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)"
         rf"|{_LEAP}-02-29)")
_CLOCK = r"[T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,9})?)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?"
TIME_SCHEMA_PATTERN = rf"^{_DATE}({_CLOCK})?$"
UNIX_SECONDS_RANGE = (MIN_TIME_NS // NS + 1, MAX_TIME_NS // NS - 1)


class BadRequest(ValueError):
    """Invalid request input; the message names the field and the fix (-> 400)."""


@dataclass(frozen=True)
class ApiQuery:
    namespace: str = "default"
    limit: int = DEFAULT_LIMIT
    agg: str | None = None
    begin_ns: int = 0
    end_ns: int = 0
    pod: str | None = None
    type: str | None = None
    ignored_agg: Any = None  # an `agg` value that is not an aggregation (seed contract: raw mode)


def parse_body(body: bytes) -> dict:
    """The request body as a dict; an empty body is {} (all defaults)."""
    if not body.strip():
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text; send a JSON object such as "
                         '{"namespace": "default", "limit": 100}') from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                         'send a JSON object such as {"namespace": "default", "limit": 100}') from None
    except RecursionError:
        raise BadRequest("the body nests too deeply; send a flat JSON object such as "
                         '{"namespace": "default", "limit": 100}') from None
    except ValueError as exc:  # e.g. an integer of thousands of digits (Python refuses to convert it)
        raise BadRequest(f"the body holds a value that cannot be read ({str(exc)[:80]}); "
                         'send ordinary numbers, e.g. {"limit": 100}') from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object, not {json_type(data)}; "
                         'send e.g. {"namespace": "default", "agg": "pod-by-namespace"}')
    return data


def _reject_constant(name: str) -> NoReturn:
    raise BadRequest(f"the body contains {name}, which is not valid JSON; send numbers as finite values")


def json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def reject_unknown(data: dict, fields: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(fields))
    if unknown:
        shown = ", ".join(repr(name[:60]) for name in unknown[:10])
        raise BadRequest(f"unknown field{'s' if len(unknown) > 1 else ''} {shown}; allowed fields are {', '.join(fields)}")


def validate(data: dict, *, now_ns: int, max_limit: int) -> ApiQuery:
    """Check every field and apply the defaults."""
    reject_unknown(data, FIELDS)

    namespace = data.get("namespace", "default")
    if not isinstance(namespace, str):
        raise BadRequest(f"'namespace' must be a string, not {json_type(namespace)}; e.g. \"default\"")
    if not NAMESPACE.matches(namespace):
        raise BadRequest(f"'namespace' must be {NAMESPACE.what}, e.g. \"team-a\"")

    limit = _limit(data.get("limit", DEFAULT_LIMIT), max_limit)

    raw_agg = data.get("agg")
    agg = raw_agg if isinstance(raw_agg, str) and raw_agg in AGGREGATIONS else None
    ignored = raw_agg if agg is None and raw_agg not in (None, "") else None

    begin = parse_time("timeBeginInterval", data.get("timeBeginInterval"), end_of_day=False)
    end = parse_time("timeEndInterval", data.get("timeEndInterval"), end_of_day=True)
    end_ns = now_ns if end is None else end
    # Without a begin, the hour before the end (before now when no end is given either).
    begin_ns = max(MIN_TIME_NS, end_ns - DEFAULT_WINDOW_NS) if begin is None else begin
    if begin_ns > end_ns:
        raise BadRequest(f"timeBeginInterval ({format_ns(begin_ns)}) is after timeEndInterval ({format_ns(end_ns)}); "
                         "swap them or widen the range")

    pod = data.get("pod")
    if pod is not None and not POD.matches(pod):
        raise BadRequest(f"'pod' must be {POD.what}, e.g. \"web-1\"")
    series_type = data.get("type")
    if series_type is not None and (not isinstance(series_type, str) or series_type not in SERIES_TYPES):
        raise BadRequest(f"'type' must be one of {', '.join(SERIES_TYPES)}")
    if agg is not None and (pod is not None or series_type is not None):
        raise BadRequest(f"'pod' and 'type' apply only without aggregation; drop them or drop \"agg\": \"{agg}\"")

    return ApiQuery(namespace=namespace, limit=limit, agg=agg, begin_ns=begin_ns, end_ns=end_ns,
                    pod=pod, type=series_type, ignored_agg=ignored)


def _limit(value: Any, max_limit: int) -> int:
    hint = f"give a whole number from 1 to {max_limit}, e.g. 100"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadRequest(f"'limit' must be a whole number, not {json_type(value)}; {hint}")
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]{1,12}", value):
            raise BadRequest(f"'limit' {value[:40]!r} is not a whole number; {hint}")
        value = int(value)
    if not 1 <= value <= max_limit:
        shown = str(value) if abs(value) < 10**15 else f"{str(value)[:12]}… ({len(str(abs(value)))} digits)"
        raise BadRequest(f"'limit' {shown} is out of range; {hint} (KUBEMONITOR_MAX_LIMIT={max_limit})")
    return value


def limit_pattern(max_limit: int) -> str:
    """A regular expression matching exactly the decimal strings 1 .. max_limit (no leading zeros),
    so the schema's string form of `limit` accepts what the handler accepts."""
    top = str(max_limit)
    alternatives = [r"[1-9]"] if len(top) > 1 else []
    alternatives += [rf"[1-9][0-9]{{{n}}}" for n in range(1, len(top) - 1)]
    # numbers with as many digits as max_limit, digit by digit below it, then max_limit itself
    for i, digit in enumerate(top):
        low = "1" if i == 0 else "0"
        if int(digit) > int(low):
            rest = len(top) - i - 1
            alternatives.append(top[:i] + f"[{low}-{int(digit) - 1}]" + (rf"[0-9]{{{rest}}}" if rest else ""))
    alternatives.append(top)
    return "^(" + "|".join(alternatives) + ")$"


def parse_time(field: str, value: Any, *, end_of_day: bool) -> int | None:
    """Nanoseconds since the epoch, or None for a missing/null/empty value (default)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRequest(f"'{field}' must be a time as text or a number, not {json_type(value)}; use {TIME_FORMATS}")
    if isinstance(value, (int, float)):
        try:
            ns = int(Decimal(repr(value)) * NS)
        except (InvalidOperation, ValueError, OverflowError):  # NaN, and 1e309 (JSON's infinity)
            raise BadRequest(f"'{field}' {value!r} is not a usable number of Unix seconds; "
                             f"send seconds between {UNIX_SECONDS_RANGE[0]} and {UNIX_SECONDS_RANGE[1]}") from None
    else:
        ns = _parse_time_text(field, value, end_of_day)
    if not MIN_TIME_NS <= ns <= MAX_TIME_NS:
        raise BadRequest(f"'{field}' is outside the range InfluxDB can store (1677-09-22 to 2262-04-11)")
    return ns


def _parse_time_text(field: str, text: str, end_of_day: bool) -> int:
    m = TIME.fullmatch(text.strip())
    if not m:
        raise BadRequest(f"'{field}' {text[:60]!r} is not a time; use {TIME_FORMATS}")
    g = m.groupdict()
    tz = UTC
    if g["tz"] and g["tz"] != "Z":
        sign = 1 if g["tz"][0] == "+" else -1
        hh, mm = int(g["tz"][1:3]), int(g["tz"][4:6])
        if hh > 23 or mm > 59:
            raise BadRequest(f"'{field}' has an impossible UTC offset {g['tz']!r}; use ±HH:MM with HH ≤ 23")
        tz = timezone(sign * timedelta(hours=hh, minutes=mm))
    try:
        dt = datetime(int(g["y"]), int(g["mo"]), int(g["d"]), int(g["h"] or 0), int(g["mi"] or 0),
                      int(g["s"] or 0), tzinfo=tz)
    except ValueError as exc:
        raise BadRequest(f"'{field}' {text[:60]!r} is not a real date or time ({exc}); "
                         "check the day of the month and the hour") from None
    ns = to_ns(dt) + int((g["frac"] or "0").ljust(9, "0"))
    if g["h"] is None and end_of_day:
        ns += 86400 * NS - 1  # a date-only end covers the whole day
    return ns


def time_schema(description: str) -> dict:
    low, high = UNIX_SECONDS_RANGE
    return {"anyOf": [{"type": "string", "pattern": TIME_SCHEMA_PATTERN, "example": "2017-12-01"},
                      {"type": "number", "minimum": low, "maximum": high, "example": 1512086400},
                      {"type": "string", "maxLength": 0, "nullable": True, "description": "null or \"\": the default"}],
            "description": f"{description} {TIME_FORMATS}. No zone means UTC; a date-only end covers that whole day. "
                           "The begin must not be after the end."}


def body_schema(max_limit: int) -> dict:
    """The JSON Schema of the body of POST /api/<metric>, from the rules above."""
    aggregating = {"required": ["agg"], "properties": {"agg": {"type": "string", "enum": list(AGGREGATIONS)}}}
    return {
        "type": "object", "additionalProperties": False,
        # with an aggregation, neither pod nor type
        "anyOf": [{"not": aggregating}, {"not": {"anyOf": [
            {"required": ["pod"], "properties": {"pod": {"type": "string"}}},
            {"required": ["type"], "properties": {"type": {"type": "string"}}}]}}],
        "properties": {
            "namespace": NAMESPACE.schema(default="default", description=NAMESPACE.what),
            "limit": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": max_limit},
                                {"type": "string", "pattern": limit_pattern(max_limit)}],
                      "default": DEFAULT_LIMIT,
                      "description": f"points to return without aggregation, 1 to {max_limit} (KUBEMONITOR_MAX_LIMIT); "
                                     "ignored with an aggregation"},
            "agg": {"description": f"one of {', '.join(AGGREGATIONS)}; empty, null or any other value means no "
                                   "aggregation (the original API's contract; a Warning header says so)",
                    "example": "all-namespace"},
            "timeBeginInterval": time_schema("Inclusive; default: the end minus 60 minutes."),
            "timeEndInterval": time_schema("Inclusive; default: now."),
            "pod": POD.schema(nullable=True, description="no aggregation only: exact pod_name (null: any pod)"),
            "type": {"type": "string", "nullable": True, "enum": [*SERIES_TYPES, None],
                     "description": "no aggregation only: one series type (null: every type)"},
        },
    }
