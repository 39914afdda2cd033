"""The billing pages (README "Billing"): /web/billing (the running month) and
/web/billing/<period>, with drill-down and the same CSV as the API."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import tornado.web

from .. import audit
from ..influx import InfluxError
from ..ratecard import Period, PeriodError, current_month, month_period, period_from
from ..statement import BY
from .base import ApiError
from .billing import send_csv, statement_for
from .pages import PageHandler


def shown_gaps(statement: dict, period: Period, interval_s: float) -> list[dict]:
    """The gaps a page's banner names: any longer than max(3 sample intervals, 0.1 % of
    the period). A four-hour outage in a month is 99.46 % coverage - above any share
    threshold, yet a bill four hours short - so the banner goes by the gap, not the share."""
    floor_s = max(3 * interval_s, 0.001 * (period.end_ns - period.start_ns) / 1e9)
    zone = ZoneInfo(period.timezone)
    out = []
    for gap in statement["gaps"]:
        begin, end = (datetime.fromisoformat(gap[k].replace("Z", "+00:00")) for k in ("from", "to"))
        if (end - begin).total_seconds() > floor_s:
            out.append({"from": local_time(begin, zone), "to": local_time(end, zone), "hours": (end - begin).total_seconds() / 3600,
                        "node": gap.get("node")})
    return out


def local_time(moment: datetime, zone: ZoneInfo) -> str:
    """One format for every time on a billing page, in the rate card's zone (named once in the heading)."""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def only(rows: list[dict], group: str | None, namespace: str | None) -> list[dict]:
    """A drill-down's rows: the page's table and its CSV show the same ones."""
    if group is None and namespace is None:
        return rows
    return [r for r in rows if (group is None or r["group"] == group) and (namespace is None or r.get("namespace") == namespace)]


class BillingPageHandler(PageHandler):
    route_name = "billing"

    def period(self, label: str | None) -> Period:
        card = self.app.billing.card
        if not label:
            return current_month(card.timezone, datetime.fromtimestamp(self.app.billing.clock() / 1e9, UTC))
        try:
            return period_from({"period": label}, card.timezone)
        except PeriodError as exc:
            raise ApiError(404, f"there is no billing period {label[:20]!r}: {exc}") from None

    def by(self) -> str:
        by = self.get_argument("by", "group")
        if by not in BY:
            raise ApiError(400, f"by must be one of {', '.join(BY)}")
        return by

    @tornado.web.authenticated
    async def get(self, label: str | None = None, csv: str | None = None) -> None:
        await self.answer(label, csv)

    async def answer(self, label: str | None, csv: str | None) -> None:
        # A web user's pages share the API clients' cap (KUBEMONITOR_CLIENT_CONCURRENCY): one
        # person reloading year-long statements cannot take everyone's share of InfluxDB.
        who = f"web:{self.current_user}"
        if not await self.app.client_slots.acquire(who):
            raise ApiError(429, f"you already have {self.app.config.client_concurrency} billing pages being computed "
                                "(KUBEMONITOR_CLIENT_CONCURRENCY); wait for them, then reload", {"Retry-After": "1"})
        try:
            await self.page(label, csv)
        finally:
            self.app.client_slots.release(who)

    async def page(self, label: str | None, csv: str | None) -> None:
        billing = self.app.billing
        if not self.access.billing:
            raise ApiError(403, "your account may see usage but not billing statements; an administrator can allow "
                                f"it with `kubemonitor scope {self.current_user} --billing`")
        period, by = self.period(label), self.by()
        if period.start_ns > billing.clock():
            raise ApiError(404, f"the period {period.label} has not begun yet")
        audit.record("csv" if csv else "statement_page", self.current_user, period=period.label, by=by,
                     address=self.request.remote_ip)
        try:
            kept = await statement_for(self, period, by, f"web:{self.current_user}")
        except InfluxError as exc:
            self.set_status(exc.status)
            self.render("billing.html", statement=None, error=exc.public, period=period, by=by, daily=None,
                        **await self.billing_context(period))
            return
        statement = kept.data
        only_group, only_namespace = self.get_argument("group", None), self.get_argument("namespace", None)
        rows = only(statement["rows"], only_group, only_namespace)
        if csv:
            send_csv(self, kept.csv(by, rows), period.label, by)
            return
        shown = self.access.namespaces
        if rows is not statement["rows"]:  # a drill-down: the chart follows the table's rows
            drilled = frozenset(n for r in rows for n in ([r["namespace"]] if "namespace" in r else r["namespaces"]))
            shown = drilled if shown is None else shown & drilled
        try:
            daily = await billing.daily(period, shown)
        except InfluxError:
            daily = None
        computed_at = datetime.fromisoformat(statement["period"]["computed_at"].replace("Z", "+00:00"))
        self.render("billing.html", statement=statement, rows=rows, error=None, period=period, by=by, daily=daily,
                    only_group=only_group, only_namespace=only_namespace,
                    shown_totals=billing.totals(rows) if rows is not statement["rows"] else statement["totals"],
                    gaps=shown_gaps(statement, period, self.app.config.sample_interval),
                    computed_at=local_time(computed_at, ZoneInfo(period.timezone)), **await self.billing_context(period))

    @staticmethod
    def month_label(day: date, timezone: str) -> str | None:
        """The month of `day` as a period label; None past the years InfluxDB stores (no link there)."""
        try:
            return month_period(f"{day.year:04d}-{day.month:02d}", timezone).label
        except PeriodError:
            return None

    async def billing_context(self, period: Period) -> dict:
        card = self.app.billing.card
        before = period.first.replace(day=1) - timedelta(days=1)
        after = period.last.replace(day=28) + timedelta(days=4)
        prev_month, next_month = (self.month_label(d, card.timezone) for d in (before, after))
        if next_month is not None and month_period(next_month, card.timezone).start_ns > self.app.billing.clock():
            next_month = None
        return dict(card=card, prev_month=prev_month, next_month=next_month,
                    month_value=f"{period.first.year:04d}-{period.first.month:02d}",
                    **await self.page_context(None, "all"))


class BillingCSVHandler(BillingPageHandler):
    """GET /web/billing/<period>.csv: the same CSV as the API, for the logged-in user."""
    route_name = "billing_csv"

    @tornado.web.authenticated
    async def get(self, label: str) -> None:
        await self.answer(label, ".csv")


class BillingPickerHandler(PageHandler):
    """GET /web/billing/go?month=2026-11: the month picker without JavaScript."""
    route_name = "billing"

    @tornado.web.authenticated
    def get(self) -> None:
        month = self.get_argument("month", "")
        try:
            month_period(month, "UTC")
        except PeriodError as exc:
            raise ApiError(400, str(exc)) from None
        self.redirect(self.reverse_url("billing_period", month))
