"""Billing periods, the rate card without a file, and CSV cells: arithmetic and text, no database."""
from __future__ import annotations

import csv
import io
import json

import pytest

from kubemonitor import ratecard
from kubemonitor.times import NS


def test_a_dst_month_and_day_in_zurich():
    october = ratecard.period_from({"period": "2026-10"}, "Europe/Zurich")
    assert (october.start_ns, october.end_ns) == (1790805600 * NS, 1793487600 * NS)  # 2026-09-30T22:00Z .. 2026-10-31T23:00Z
    assert len(october.days()) == 31
    hours = [(d.end_ns - d.start_ns) // (3600 * NS) for d in october.days()]
    assert hours.count(25) == 1 and hours[24] == 25 and set(hours) == {24, 25}  # 25 October 2026
    assert sum(hours) == 31 * 24 + 1
    march = ratecard.period_from({"period": "2026-03-29"}, "Europe/Zurich")
    assert (march.end_ns - march.start_ns) // (3600 * NS) == 23


def test_without_a_rate_card_statements_show_usage_only(tmp_path):
    card = ratecard.load(str(tmp_path / "none.yaml"))
    assert card is ratecard.DEFAULT and not card.priced
    assert [r.key for r in card.resources] == ["cpu", "memory", "gpu"]


def test_csv_guards_text_cells_only():
    """TAB and CR start a formula too (OWASP's list); a negative cost stays a number."""
    from kubemonitor.statement import to_csv
    period = {"label": "2026-02", "from": "2026-02-01", "to": "2026-02-28", "state": "closed", "revision": 1,
              "computed_at": "2026-03-01T00:10:00Z"}
    rows = [{"group": "\t=1+1", "name": "\r@SUM(A1)", "account": "-acct", "namespace": "+ns",
             "usage": {"cpu": -435.0}, "cost": {"cpu": -8.7}, "total": -8.7}]
    statement = {"period": period, "rows": rows, "coverage": {"cpu": 1.0}, "currency": "CHF",
                 "resources": [{"key": "cpu", "unit": "core-hours"}]}
    row = next(csv.DictReader(io.StringIO(to_csv(statement, "namespace"))))
    assert [row[k] for k in ("group", "name", "account", "namespace")] == ["'\t=1+1", "'\r@SUM(A1)", "'-acct", "'+ns"]
    assert (row["cpu_core-hours"], row["cpu_cost"], row["total"]) == ("-435.000000", "-8.70", "-8.70")


def test_a_statement_is_encoded_once_and_its_csv_follows_its_rows():
    """The API, the billing page and `kubemonitor statement` serve one Statement: its text is
    strict JSON made once (a kept statement's bytes never change); a drill-down's CSV has
    only the rows shown."""
    from kubemonitor.statement import Statement
    period = {"label": "2026-02", "from": "2026-02-01", "to": "2026-02-28", "state": "closed", "revision": 2,
              "computed_at": "2026-03-01T00:10:00Z"}
    rows = [{"group": g, "name": g.upper(), "account": None, "namespace": g, "usage": {"cpu": u}, "cost": None,
             "total": None} for g, u in (("astro", 1.5), ("bio", 2.25))]
    statement = Statement({"period": period, "currency": None, "resources": [{"key": "cpu", "unit": "core-hours"}],
                           "coverage": {"cpu": 0.5}, "rows": rows})
    text = statement.text
    assert statement.text is text and json.loads(text) == statement.data and list(json.loads(text))[-1] == "rows"
    statement.data["rows"].append({"group": "late"})  # the text was made once: it does not follow
    assert statement.text is text
    drilled = list(csv.DictReader(io.StringIO(statement.csv("namespace", rows[1:2]))))
    assert [(r["group"], r["cpu_core-hours"], r["revision"], r["coverage"]) for r in drilled] == [
        ("bio", "2.250000", "2", "0.500000")]
    with pytest.raises(ValueError):
        Statement({"rows": [], "x": float("nan")}).text  # noqa: B018 - strict JSON refuses NaN
