"""A billing statement as data (README "Billing"): the `Statement` object the API, the
billing page and `kubemonitor statement` serve, the request that asks for one, its
JSON Schemas (for the OpenAPI document) and its CSV.

A statement is made once, as data; its JSON text is encoded once, when first asked
for, and a kept (closed) statement's text is the same bytes every time it is served.
"""
from __future__ import annotations

import csv
import io
from typing import Any

from .ratecard import Period, PeriodError, period_from
from .request import BadRequest, reject_unknown
from .times import MAX_DAYS
from .wire import encode

BY = ("group", "namespace", "pod")
FORMATS = ("json", "csv")
MAX_GAPS = 20


class Statement:
    """One view (by group, namespace or pod) of a period's statement."""
    __slots__ = ("data", "_text")

    def __init__(self, data: dict[str, Any]):
        self.data = data  # the header's fields, then "rows" (the order of the JSON text)
        self._text: str | None = None

    @property
    def text(self) -> str:
        """The JSON text (strict JSON: no NaN), encoded on first use."""
        if self._text is None:
            self._text = encode(self.data)
        return self._text

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.data["rows"]

    def csv(self, by: str, rows: list[dict[str, Any]] | None = None) -> str:
        """The CSV of this view (or of some of its rows: a drill-down on the billing page)."""
        return to_csv(self.data if rows is None else {**self.data, "rows": rows}, by)


REQUEST_FIELDS = ("period", "from", "to", "by", "format")


def statement_request(data: dict, timezone: str, now_ns: int) -> tuple[Period, str, str]:
    """(period, by, format) from a request body; BadRequest names the field and the fix."""
    reject_unknown(data, REQUEST_FIELDS)
    by = data.get("by", "group")
    if by not in BY:
        raise BadRequest(f"'by' must be one of {', '.join(BY)}, e.g. \"by\": \"namespace\"")
    fmt = data.get("format", "json")
    if fmt not in FORMATS:
        raise BadRequest(f"'format' must be one of {', '.join(FORMATS)}")
    try:
        period = period_from(data, timezone)
    except PeriodError as exc:
        raise BadRequest(str(exc)) from None
    if period.start_ns > now_ns:
        raise BadRequest(f"the period {period.label} has not begun yet (it starts {period.start.isoformat()}); "
                         "ask for the running month or an earlier one")
    return period, by, fmt


def request_schema() -> dict:
    """The JSON Schema of POST /api/billing/statement's body (the rules of statement_request)."""
    from .request import _DATE, _YEAR
    day = {"type": "string", "pattern": f"^{_DATE}$", "example": "2026-11-01"}
    return {
        "type": "object", "additionalProperties": False,
        "properties": {
            "period": {"type": "string", "pattern": f"^({_DATE}|({_YEAR}-(0[1-9]|1[0-2])))$", "example": "2026-11",
                       "description": "a month (YYYY-MM) or a day (YYYY-MM-DD) in the rate card's time zone; not in the future"},
            "from": {**day, "description": f"first day (inclusive); with 'to', at most {MAX_DAYS} days, not after 'to'"},
            "to": {**day, "example": "2026-11-15", "description": "last day (inclusive)"},
            "by": {"type": "string", "enum": list(BY), "default": "group"},
            "format": {"type": "string", "enum": list(FORMATS), "default": "json"},
        },
        # a month or a day, or from/to: one of the two ways
        "oneOf": [{"required": ["period"], "not": {"anyOf": [{"required": ["from"]}, {"required": ["to"]}]}},
                  {"required": ["from", "to"], "not": {"required": ["period"]}}],
    }


def response_schema() -> dict:
    money_map = {"type": "object", "nullable": True, "additionalProperties": {"type": "number"}}
    return {
        "type": "object", "required": ["period", "currency", "resources", "coverage", "gaps", "totals", "rows"],
        "properties": {
            "period": {"type": "object", "required": ["from", "to", "label", "timezone", "state", "revision", "computed_at"],
                       "properties": {"from": {"type": "string", "format": "date-time"}, "to": {"type": "string", "format": "date-time"},
                                      "label": {"type": "string"}, "timezone": {"type": "string"},
                                      "state": {"type": "string", "enum": ["closed", "ended", "provisional"]},
                                      "revision": {"type": "integer"}, "computed_at": {"type": "string", "format": "date-time"}}},
            "currency": {"type": "string", "nullable": True},
            "resources": {"type": "array", "items": {"type": "object", "properties": {
                "key": {"type": "string"}, "metric": {"type": "string"}, "unit": {"type": "string"},
                "price": {"type": "number", "nullable": True},
                "basis": {"type": "string", "enum": ["usage", "request", "max"]},
                "request_metric": {"type": "string", "description": "with basis request or max: the request read"}}}},
            "cluster": {"type": "string", "description": "the cluster_name the statement reads (KUBEMONITOR_CLUSTER), "
                                                        "when one of several in the database is selected"},
            "coverage": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1}},
            "gaps": {"type": "array", "maxItems": MAX_GAPS, "items": {"type": "object", "properties": {
                "from": {"type": "string", "format": "date-time"}, "to": {"type": "string", "format": "date-time"},
                "node": {"type": "string", "nullable": True,
                         "description": "the node whose collector wrote nothing then; null: every node that reported "
                                        "in the period (the whole cluster)"}}}},
            "capacity": {"type": "object", "additionalProperties": {"type": "number", "nullable": True},
                         "description": "the nodes' allocatable x time, in billing units (null: not known)"},
            "system": {"type": "object", "additionalProperties": {"type": "number"},
                       "description": "what the excluded namespaces were billed, by the same basis"},
            "idle": {"type": "object", "additionalProperties": {"type": "number", "nullable": True},
                     "description": "capacity - billed - system, never below 0 (null: capacity not known)"},
            "totals": {"type": "object", "properties": {"usage": {"type": "object", "additionalProperties": {"type": "number"}},
                                                        "cost": money_map, "idle_cost": money_map,
                                                        "total": {"type": "number", "nullable": True}}},
            "projection": {"type": "object", "properties": {
                "factor": {"type": "number", "description": "the period's length over the time elapsed so far"},
                "usage": {"type": "object", "additionalProperties": {"type": "number"}},
                "total": {"type": "number", "nullable": True}}},
            "scope": {"type": "array", "items": {"type": "string"},
                      "description": "present when the caller sees only these namespaces: rows and totals cover them alone"},
            "notes": {"type": "array", "items": {"type": "string"}},
            "rows": {"type": "array", "items": {"type": "object", "required": ["group", "name", "namespaces", "usage"],
                                                "properties": {"group": {"type": "string"}, "name": {"type": "string"},
                                                               "account": {"type": "string", "nullable": True},
                                                               "namespaces": {"type": "array", "items": {"type": "string"}},
                                                               "namespace": {"type": "string"}, "pod": {"type": "string"},
                                                               "usage": {"type": "object", "additionalProperties": {"type": "number"},
                                                                         "description": "billed, by each resource's basis"},
                                                               "used": {"type": "object", "additionalProperties": {"type": "number"},
                                                                        "description": "resources billed by request or max: what was used"},
                                                               "requested": {"type": "object", "additionalProperties": {"type": "number"},
                                                                             "description": "resources billed by request or max: "
                                                                                            "what was requested while held"},
                                                               "efficiency": {"type": "object", "additionalProperties": {
                                                                   "type": "number", "nullable": True},
                                                                   "description": "used / billed (null: nothing billed)"},
                                                               "cost": money_map,
                                                               "idle_cost": {**money_map, "description": "idle: share: the "
                                                                             "row's part of the idle cost (in its total)"},
                                                               "total": {"type": "number", "nullable": True}}}},
        },
    }


# ------------------------------------------------------------------ CSV
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # OWASP's list for CSV injection


def safe_cell(value: object) -> str:
    """A text cell a spreadsheet shows as text: one starting with = + - @ TAB CR gets a leading '.
    Only text goes through here: a number (a negative cost, say) must stay a number."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def to_csv(statement: dict, by: str) -> str:
    """RFC 4180 (CRLF), UTF-8, one header line, one line per row, no totals line; each line
    carries the statement's state, revision, computed_at and coverage (the lowest, then
    each resource's), so a file kept on its own still says how complete it was."""
    resources = statement["resources"]
    columns = ["period", "from", "to", "group", "name", "account"]
    columns += ["namespace"] if by in ("namespace", "pod") else []
    columns += ["pod"] if by == "pod" else []
    held = [r for r in resources if r.get("basis", "usage") != "usage"]
    for r in resources:
        columns += [f"{r['key']}_{r['unit']}", f"{r['key']}_cost"]
    for r in held:
        columns += [f"{r['key']}_used", f"{r['key']}_requested"]
    shared = [r for r in resources if any(r["key"] in row.get("idle_cost", {}) for row in statement["rows"])]
    columns += [f"{r['key']}_idle_cost" for r in shared]
    columns += ["total", "currency", "state", "revision", "computed_at", "coverage"]
    columns += [f"{r['key']}_coverage" for r in resources]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    p, coverage = statement["period"], statement["coverage"]
    for row in statement["rows"]:
        text = [p["label"], p["from"], p["to"], row["group"], row["name"], row["account"]]
        text += [row["namespace"]] if by in ("namespace", "pod") else []
        text += [row["pod"]] if by == "pod" else []
        line = [safe_cell(v) for v in text]
        for r in resources:
            line += [f"{row['usage'][r['key']]:.6f}", "" if row["cost"] is None or r["key"] not in row["cost"]
                     else f"{row['cost'][r['key']]:.2f}"]
        for r in held:
            line += [f"{row['used'][r['key']]:.6f}", f"{row['requested'][r['key']]:.6f}"]
        line += [f"{row.get('idle_cost', {}).get(r['key'], 0.0):.2f}" for r in shared]
        line += ["" if row["total"] is None else f"{row['total']:.2f}", safe_cell(statement["currency"]), safe_cell(p["state"]),
                 str(p["revision"]), safe_cell(p["computed_at"]), f"{min(coverage.values(), default=0.0):.6f}"]
        line += [f"{coverage.get(r['key'], 0.0):.6f}" for r in resources]
        writer.writerow(line)
    return out.getvalue()

