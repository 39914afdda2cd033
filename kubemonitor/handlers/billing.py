"""POST /api/billing/statement (README "Billing"): a period's statement as JSON or CSV."""
from __future__ import annotations

from .. import audit
from ..influx import InfluxError
from ..ratecard import Period
from ..request import BadRequest
from ..statement import REQUEST_FIELDS, Statement, statement_request
from .api import PostAPIHandler
from .base import ApiError, BaseHandler, from_influx


def csv_filename(label: str, by: str) -> str:
    return f"kubemonitor-{label.replace('..', '_')}-by-{by}.csv"


def send_csv(handler: BaseHandler, text: str, label: str, by: str) -> None:
    """A statement's CSV as a download (the API's and the billing page's are the same file)."""
    handler.set_header("Content-Type", "text/csv; charset=UTF-8")
    handler.set_header("Content-Disposition", f'attachment; filename="{csv_filename(label, by)}"')
    handler.finish(text.encode("utf-8"))


async def statement_for(handler: BaseHandler, period: Period, by: str, who: str) -> Statement:
    """The statement `handler.access` may see: the whole one, or its namespaces' part.

    One at a time per client or web user (`who`): a statement is some forty InfluxDB
    queries, so four of one client's at once would take the CPU the others' small queries
    need. The next waits up to a second for the running one (a script's burst is served
    in order), then is a 429."""
    billing, access, slots = handler.app.billing, handler.access, handler.app.statement_slots
    if not await slots.acquire(who):
        raise ApiError(429, "a statement of yours is being computed; statements are computed one at a time per "
                            "client or user: wait for it, then ask again", {"Retry-After": "1"})
    try:
        if access.namespaces is None:
            return await billing.statement(period, by)
        return await billing.scoped_statement(period, by, access.namespaces)
    finally:
        slots.release(who)


class StatementHandler(PostAPIHandler):
    route_name = "statement"

    async def post(self) -> None:  # type: ignore[override]  # the route has no argument
        self.audit["statement"] = "statement"
        billing = self.app.billing
        data = self.body_object()
        self.audit["fields"] = audit.request_fields(data, REQUEST_FIELDS)
        if not self.access.billing:
            raise ApiError(403, f"client {self.access.who!r} may not fetch statements; the operator can allow it "
                                f"with `kubemonitor apiclient scope {self.access.who} --billing`")
        try:
            period, by, fmt = statement_request(data, billing.card.timezone, billing.clock())
        except BadRequest as exc:
            raise ApiError(400, str(exc)) from None
        try:
            statement = await statement_for(self, period, by, self.access.who)
        except InfluxError as exc:
            raise from_influx(exc) from None
        self.audit.update(period=period.label, rows=len(statement.rows), format=fmt)
        if fmt == "csv":  # a month by pod is megabytes: encoded off the event loop
            send_csv(self, await self.app.influx.compute(statement.csv, by), period.label, by)
            return
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(await self.app.influx.compute(lambda: statement.text))
