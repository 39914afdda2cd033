"""POST /api/billing/statement (README "Billing"): a period's statement as JSON or CSV."""
from __future__ import annotations

import json
import time

from ..billing import statement_request, to_csv
from ..influx import InfluxError
from ..request import BadRequest
from .api import PostAPIHandler
from .base import ApiError, from_influx


def csv_filename(label: str, by: str) -> str:
    return f"kubemonitor-{label.replace('..', '_')}-by-{by}.csv"


class StatementHandler(PostAPIHandler):
    route_name = "statement"

    async def post(self) -> None:
        billing = self.app.billing
        try:
            period, by, fmt = statement_request(self.body_object(), billing.card.timezone, time.time_ns())
        except BadRequest as exc:
            raise ApiError(400, str(exc)) from None
        try:
            text = await billing.statement(period, by)
        except InfluxError as exc:
            raise from_influx(exc) from None
        if fmt == "csv":
            body = await self.app.influx.compute(lambda: to_csv(json.loads(text), by))
            self.set_header("Content-Type", "text/csv; charset=UTF-8")
            self.set_header("Content-Disposition", f'attachment; filename="{csv_filename(period.label, by)}"')
            self.finish(body.encode("utf-8"))
            return
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(text)
