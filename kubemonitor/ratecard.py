"""The rate card (README "Billing"): `conf/billing.yaml` (KUBEMONITOR_BILLING_FILE), and
the calendar periods statements cover, in the card's time zone.

Without the file, statements show usage only (no prices) for cpu, memory and gpu,
in UTC. A bad file stops start-up with one line naming the file, the line and the fix.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml

from . import yamlfile
from .config import parse_duration
from .errors import UserError
from .metrics import METRIC_NAME, REQUEST_OF
from .request import NAMESPACE
from .resources import resource_dir
from .times import MAX_DAYS, to_ns

Fail = Callable[[yaml.Node | None, str, str], NoReturn]  # names the line, the problem and the fix
KEY = re.compile(r"[a-z][a-z0-9_-]{0,31}")


# The commented example card shipped in the package: what error messages point at, and
# the one place the usual resources (cpu, memory, gpu with their units) are written.
EXAMPLE = os.path.join(resource_dir("conf"), "billing.example.yaml")


def example_resources(*keys: str, basis: dict[str, str] | None = None) -> str:
    """The example card's `resources:` block (only `keys`, when named), for a card that
    bills the usual resources with its own groups: the demo's, the tests', the benchmarks'.
    `basis` bills some of them by another basis ({"cpu": "max"})."""
    with open(EXAMPLE, encoding="utf-8") as fh:
        text = fh.read()
    block = text[text.index("\nresources:\n") + 1:].split("\n\n", 1)[0].splitlines()
    lines = [line for line in block[1:] if line.strip() and not line.lstrip().startswith("#")
             and (not keys or line.split(":", 1)[0].strip() in keys)]
    for key, how in (basis or {}).items():
        lines = [line.replace("}", f", basis: {how}}}", 1) if line.split(":", 1)[0].strip() == key else line for line in lines]
    return "\n".join(["resources:", *lines]) + "\n"


class RateCardError(UserError):
    """The billing file cannot be used; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class Resource:
    key: str            # cpu
    metric: str         # cpu/usage_rate
    unit: str           # core-hours
    divide_by: float    # metric unit-hours / divide_by = billing unit
    price: float | None  # per billing unit; None = usage only
    basis: str = "usage"        # usage | request | max (README "Billing": what is billed)
    request_metric: str | None = None  # the request of `metric` (cpu/request for cpu/usage_rate); None: none known
    capacity_metric: str | None = None  # the nodes' allocatable of `metric` (cpu/node_allocatable); None: not known

    @property
    def requested(self) -> bool:
        """Whether the bill depends on the request (basis request or max)."""
        return self.basis != "usage"


@dataclass(frozen=True)
class Group:
    key: str
    name: str
    account: str | None
    namespaces: tuple[str, ...]


@dataclass(frozen=True)
class RateCard:
    currency: str | None
    timezone: str
    close_after: float            # seconds after a period's end when it is closed
    resources: tuple[Resource, ...]
    groups: tuple[Group, ...]
    path: str | None = None
    idle: str = "report"          # report: capacity, system and idle stated; share: idle cost divided among the rows

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def priced(self) -> bool:
        return any(r.price is not None for r in self.resources)

    def month_closes_ns(self, at_ns: int) -> int:
        """When the billing month holding the instant `at_ns` (in the card's zone) closes:
        its end plus `close_after`. Before then its figures may still change."""
        local = datetime.fromtimestamp(at_ns / 1e9, self.zone)
        return month_period(f"{local.year:04d}-{local.month:02d}", self.timezone).end_ns + int(self.close_after * 1e9)

    def group_of(self, namespace: str) -> Group:
        """A namespace's group; a namespace no group lists is a group of its own."""
        for group in self.groups:
            if namespace in group.namespaces:
                return group
        return Group(namespace, namespace, None, (namespace,))


DEFAULT_RESOURCES = (
    Resource("cpu", "cpu/usage_rate", "core-hours", 1000, None, capacity_metric="cpu/node_allocatable"),
    Resource("memory", "memory/usage", "GiB-hours", 1073741824, None, capacity_metric="memory/node_allocatable"),
    Resource("gpu", "gpu/usage", "GB-hours", 1000, None),
)
DEFAULT = RateCard(None, "UTC", 6 * 3600.0, DEFAULT_RESOURCES, ())
TOP_KEYS = ("currency", "timezone", "close_after", "resources", "groups", "idle")
RESOURCE_KEYS = ("metric", "unit", "divide_by", "price", "basis", "request_metric", "capacity_metric")
BASES = ("usage", "request", "max")
# what the cluster offers of a usage metric: its nodes' allocatable (a statement's capacity)
CAPACITY_OF = {"cpu/usage_rate": "cpu/node_allocatable", "cpu/usage": "cpu/node_allocatable",
               "memory/usage": "memory/node_allocatable",
               "memory/working_set": "memory/node_allocatable", "memory/rss": "memory/node_allocatable"}
IDLE = ("report", "share")
GROUP_KEYS = ("name", "account", "namespaces")


MAX_CARD_BYTES = 1024 * 1024  # thousands of groups; a bigger file is a mistake, and parsing it takes seconds
MAX_PRICE = 1e9               # per billing unit: past this a cost no longer fits in cents
DIVIDE_BY = (1e-9, 1e18)


def load(path: str | None, required: bool = False) -> RateCard:
    """The rate card at `path`; the default (usage only) when there is no file there and
    the path is the default one. A path someone named (`required`) that is missing is an
    error: billing usage-only, in UTC months, and keeping that as a closed statement is
    worse than not starting."""
    if not path or not os.path.exists(path):
        if required:
            raise RateCardError(f"KUBEMONITOR_BILLING_FILE={path!r} does not exist; create it "
                                f"({EXAMPLE} shows the layout), fix the path, or unset "
                                "KUBEMONITOR_BILLING_FILE for usage-only statements")
        return DEFAULT
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read(MAX_CARD_BYTES + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise RateCardError(f"billing file {path} cannot be read: {exc}; check KUBEMONITOR_BILLING_FILE and the file's mode") from None
    if len(text) > MAX_CARD_BYTES:
        raise RateCardError(f"billing file {path} is over {MAX_CARD_BYTES // 1024} KiB; a rate card has a few resources "
                            f"and groups ({EXAMPLE} shows the layout)")
    return parse(text, path)


def parse(text: str, path: str) -> RateCard:
    def fail(node: yaml.Node | None, problem: str, fix: str) -> NoReturn:
        line = f" line {node.start_mark.line + 1}" if node is not None else ""
        raise RateCardError(f"billing file {path}{line}: {problem}; {fix}")

    root = yamlfile.compose(text, f"billing file {path}", "fix the indentation or quoting there "
                            f"({EXAMPLE} shows the layout)", RateCardError)
    if root is None:
        return RateCard(**{**DEFAULT.__dict__, "path": path})
    mapping = _mapping(root, fail, "the file must be a mapping of currency, timezone, close_after, resources, groups")
    for key, (key_node, _) in mapping.items():
        if key not in TOP_KEYS:
            fail(key_node, f"unknown key {key!r}", f"use only {', '.join(TOP_KEYS)}")

    def scalar(name: str, default: str | None) -> tuple[str | None, yaml.Node | None]:
        entry = mapping.get(name)
        if entry is None:
            return default, None
        if not isinstance(entry[1], yaml.ScalarNode):
            fail(entry[1], f"{name} must be a single value", f"e.g. {name}: {default or 'CHF'}")
        return entry[1].value, entry[1]

    currency, node = scalar("currency", None)
    if currency is not None and not re.fullmatch(r"[A-Z]{3}", currency):
        fail(node, f"currency {currency!r} is not a 3-letter code", "use an ISO 4217 code such as CHF or EUR")
    timezone_text, node = scalar("timezone", "UTC")
    timezone_name = "UTC" if timezone_text is None else timezone_text
    if timezone_name not in available_timezones() and timezone_name != "UTC":
        fail(node, f"unknown time zone {timezone_name!r}", "use an IANA name such as Europe/Zurich or UTC")
    try:
        ZoneInfo(timezone_name)
    except (ZoneInfoNotFoundError, ValueError):
        fail(node, f"unknown time zone {timezone_name!r}", "use an IANA name such as Europe/Zurich or UTC")
    close_text, node = scalar("close_after", "6h")
    try:
        close_after = parse_duration("6h" if close_text is None else close_text)
    except ValueError as exc:
        fail(node, f"close_after: {exc}", "e.g. close_after: 6h")

    idle_text, node = scalar("idle", "report")
    idle = idle_text or "report"
    if idle not in IDLE:
        fail(node, f"idle {idle!r} is not one of {', '.join(IDLE)}",
             "idle: report states the cluster's idle capacity; idle: share divides its cost among the rows")

    resources: list[Resource] = []
    entry = mapping.get("resources")
    if entry is None:
        resources = list(DEFAULT_RESOURCES)
    else:
        for key, value, fields in _entries(entry[1], fail, "resource", RESOURCE_KEYS, "e.g. cpu, memory, gpu"):
            metric = _text(fields, "metric", fail, value, f"resource {key} needs a metric, e.g. metric: cpu/usage_rate")
            # Any metric the API answers may be billed: the catalog's, or (Heapster) any other
            # measurement, such as accelerator/memory_used; one the database lacks is a note
            # on each statement ("... is not in the database"), not a refusal to start.
            if not METRIC_NAME.fullmatch(metric) or len(metric) > 200:
                fail(fields["metric"][1], f"unknown metric {metric!r} in resource {key}: not a metric name",
                     "use a catalog metric such as cpu/usage_rate, memory/usage or gpu/usage, or a measurement in "
                     "InfluxDB (lower-case words joined by /)")
            unit = _text(fields, "unit", fail, value, f"resource {key} needs a unit, e.g. unit: core-hours")
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,31}", unit):
                fail(fields["unit"][1], f"unit {unit!r} must be a short name", "e.g. core-hours or GiB-hours")
            divide_by = _number(fields, "divide_by", fail, 1.0) or 0.0  # (given: a number; 0 refused below)
            if divide_by <= 0:
                fail(fields["divide_by"][1], f"divide_by of {key} must be greater than 0", "e.g. divide_by: 1000")
            if not DIVIDE_BY[0] <= divide_by <= DIVIDE_BY[1]:
                fail(fields["divide_by"][1], f"divide_by of {key} must be from {DIVIDE_BY[0]:g} to {DIVIDE_BY[1]:g}",
                     "e.g. divide_by: 1000")
            price = _number(fields, "price", fail, None)
            if price is not None and price < 0:
                fail(fields["price"][1], f"the price of {key} is negative", "give a price of 0 or more")
            if price is not None and price > MAX_PRICE:
                fail(fields["price"][1], f"the price of {key} is over {MAX_PRICE:g}", "give a price per billing unit, e.g. 0.02")
            basis = fields["basis"][1].value if "basis" in fields else "usage"
            if basis not in BASES:
                fail(fields["basis"][1], f"basis {basis!r} of {key} is not one of {', '.join(BASES)}",
                     "basis: usage bills what was used, request what was requested, max the larger of the two per hour")
            request_metric = fields["request_metric"][1].value if "request_metric" in fields else REQUEST_OF.get(metric)
            if request_metric is not None and (not METRIC_NAME.fullmatch(request_metric) or len(request_metric) > 200):
                fail(fields["request_metric"][1], f"request_metric {request_metric!r} of {key} is not a metric name",
                     "e.g. request_metric: cpu/request")
            if basis != "usage" and request_metric is None:
                fail(fields["basis"][1], f"basis {basis} of {key} needs a request, and {metric} has none kubemonitor knows",
                     "name it (request_metric: cpu/request), or bill usage (basis: usage)")
            capacity_metric = (fields["capacity_metric"][1].value if "capacity_metric" in fields
                               else CAPACITY_OF.get(metric))
            if capacity_metric is not None and (not METRIC_NAME.fullmatch(capacity_metric) or len(capacity_metric) > 200):
                fail(fields["capacity_metric"][1], f"capacity_metric {capacity_metric!r} of {key} is not a metric name",
                     "e.g. capacity_metric: cpu/node_allocatable")
            resources.append(Resource(key, metric, unit, divide_by, price, basis, request_metric, capacity_metric))
        if not resources:
            fail(entry[1], "resources is empty", "list at least one resource, e.g. cpu")

    groups: list[Group] = []
    owner: dict[str, str] = {}
    entry = mapping.get("groups")
    if entry is not None and not (isinstance(entry[1], yaml.ScalarNode) and entry[1].value in ("", "null", "~")):
        for key, value, fields in _entries(entry[1], fail, "group", GROUP_KEYS, "e.g. astro"):
            namespaces_entry = fields.get("namespaces")
            if namespaces_entry is None or not isinstance(namespaces_entry[1], yaml.SequenceNode) or not namespaces_entry[1].value:
                fail(value, f"group {key} needs a list of namespaces", "e.g. namespaces: [astro-lab, astro-dev]")
            namespaces = []
            for item in namespaces_entry[1].value:
                if not isinstance(item, yaml.ScalarNode) or not NAMESPACE.matches(item.value):
                    fail(item, f"{getattr(item, 'value', item)!r} in group {key} is not a namespace name",
                         "use Kubernetes namespace names (lower-case letters, digits, '-')")
                if item.value in owner:
                    fail(item, f"namespace {item.value!r} is in two groups ({owner[item.value]} and {key})",
                         "list each namespace in one group only")
                owner[item.value] = key
                namespaces.append(item.value)
            name = _text(fields, "name", fail, value, None) if "name" in fields else key
            account = _text(fields, "account", fail, value, None) if "account" in fields else None
            groups.append(Group(key, name, account, tuple(namespaces)))
    return RateCard(currency, timezone_name, close_after, tuple(resources), tuple(groups), path, idle)


def _mapping(node: yaml.Node, fail: Fail, hint: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        fail(node, "expected a mapping here", hint)
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key, value in node.value:
        if key.value in out:
            fail(key, f"{key.value!r} appears twice", "keep one")
        out[key.value] = (key, value)
    return out


def _entries(node: yaml.Node, fail: Fail, kind: str, allowed: tuple[str, ...],
             example: str) -> Iterator[tuple[str, yaml.Node, dict[str, tuple[yaml.Node, yaml.Node]]]]:
    """(key, value node, fields) of a `resources:` or `groups:` mapping, keys and field names checked."""
    fields_hint = "{" + ", ".join(allowed) + "}"
    for key, (key_node, value) in _mapping(node, fail, f"{kind}s maps a key to {fields_hint}").items():
        if not KEY.fullmatch(key):
            fail(key_node, f"{kind} key {key!r} is not a short lower-case name", example)
        fields = _mapping(value, fail, f"{kind} {key} must be a mapping of {', '.join(allowed)}")
        for name, (name_node, _) in fields.items():
            if name not in allowed:
                fail(name_node, f"unknown key {name!r} in {kind} {key}", f"use only {', '.join(allowed)}")
        yield key, value, fields


def _text(fields: dict[str, tuple[yaml.Node, yaml.Node]], name: str, fail: Fail, parent: yaml.Node,
          hint: str | None) -> str:
    entry = fields.get(name)
    if entry is None or not isinstance(entry[1], yaml.ScalarNode) or entry[1].value == "":
        fail(parent if entry is None else entry[1], f"{name} is missing or empty", hint or f"give a {name}")
    return entry[1].value


def _number(fields: dict[str, tuple[yaml.Node, yaml.Node]], name: str, fail: Fail,
            default: float | None) -> float | None:
    entry = fields.get(name)
    if entry is None:
        return default
    try:
        value = float(entry[1].value)
    except (AttributeError, ValueError):
        fail(entry[1], f"{name} {getattr(entry[1], 'value', '')!r} is not a number", f"e.g. {name}: 0.02")
    if value != value or value in (float("inf"), float("-inf")):
        fail(entry[1], f"{name} must be a finite number", f"e.g. {name}: 0.02")
    return value


# ------------------------------------------------------------------ periods
MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
DAY = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
YEARS = (1678, 2261)  # the years InfluxDB stores entirely (int64 nanoseconds)


class PeriodError(ValueError):
    """A period that cannot be billed; the message names the field and the fix (-> 400)."""


@dataclass(frozen=True)
class Period:
    label: str          # "2026-11", "2026-11-27", "2026-11-01..2026-11-15"
    first: date         # first day, inclusive
    last: date          # last day, inclusive
    timezone: str

    @property
    def start(self) -> datetime:
        return datetime(self.first.year, self.first.month, self.first.day, tzinfo=ZoneInfo(self.timezone))

    @property
    def end(self) -> datetime:
        """Exclusive: the first instant after the period (so days add up to their month)."""
        after = self.last + timedelta(days=1)
        return datetime(after.year, after.month, after.day, tzinfo=ZoneInfo(self.timezone))

    @property
    def start_ns(self) -> int:
        return to_ns(self.start)

    @property
    def end_ns(self) -> int:
        return to_ns(self.end)

    @property
    def is_month(self) -> bool:
        return self.first.day == 1 and (self.last + timedelta(days=1)).day == 1 and self.first.month == self.last.month

    def days(self) -> list[Period]:
        out, day = [], self.first
        while day <= self.last:
            out.append(Period(day.isoformat(), day, day, self.timezone))
            day += timedelta(days=1)
        return out


def _date(field: str, text: object, example: str) -> date:
    if not isinstance(text, str) or not DAY.fullmatch(text):
        raise PeriodError(f"'{field}' must be a day as YYYY-MM-DD, e.g. \"{example}\"")
    try:
        day = date.fromisoformat(text)
    except ValueError as exc:
        raise PeriodError(f"'{field}' {text!r} is not a real day ({exc}); check the day of the month") from None
    _year(field, day.year)
    return day


def _year(field: str, year: int) -> None:
    if not YEARS[0] <= year <= YEARS[1]:
        raise PeriodError(f"'{field}' is in {year}; InfluxDB keeps {YEARS[0]} to {YEARS[1]}")


def month_period(text: object, timezone: str, field: str = "period") -> Period:
    m = MONTH.fullmatch(text) if isinstance(text, str) else None
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise PeriodError(f"'{field}' {str(text)[:20]!r} is not a month or a day; use YYYY-MM (e.g. \"2026-11\") or "
                          "YYYY-MM-DD (e.g. \"2026-11-27\")")
    _year(field, int(m.group(1)))
    first = date(int(m.group(1)), int(m.group(2)), 1)
    nxt = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    return Period(m.group(0), first, nxt - timedelta(days=1), timezone)


def period_from(data: dict, timezone: str) -> Period:
    """The period of a request: {"period": "2026-11"} or {"period": "2026-11-27"}, or
    {"from": "2026-11-01", "to": "2026-11-15"} (inclusive days)."""
    if "period" in data and ("from" in data or "to" in data):
        raise PeriodError("give either 'period' or 'from'/'to', not both")
    if "period" in data:
        text = data["period"]
        if isinstance(text, str) and DAY.fullmatch(text):
            day = _date("period", text, "2026-11-27")
            return Period(text, day, day, timezone)
        return month_period(text, timezone)
    if "from" in data or "to" in data:
        if "from" not in data or "to" not in data:
            raise PeriodError("give both 'from' and 'to' (inclusive days), e.g. {\"from\": \"2026-11-01\", \"to\": \"2026-11-15\"}")
        first, last = _date("from", data["from"], "2026-11-01"), _date("to", data["to"], "2026-11-15")
        if first > last:
            raise PeriodError(f"'from' ({first}) is after 'to' ({last}); swap them")
        if (last - first).days + 1 > MAX_DAYS:
            raise PeriodError(f"the period is {(last - first).days + 1} days; a statement covers at most {MAX_DAYS} days")
        return Period(f"{first}..{last}", first, last, timezone)
    raise PeriodError("say which period: {\"period\": \"2026-11\"} (a month), {\"period\": \"2026-11-27\"} (a day) or "
                      "{\"from\": \"2026-11-01\", \"to\": \"2026-11-15\"}")


def current_month(timezone: str, now: datetime) -> Period:
    local = now.astimezone(ZoneInfo(timezone))
    return month_period(f"{local.year:04d}-{local.month:02d}", timezone)
