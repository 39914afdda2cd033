"""Where the statements of closed periods are kept (README "Billing"): points in the
rollups' retention policy, one per row plus the header, which is written last (a
statement whose header is there is complete; a string field holds at most 64 KB, so
a month is not one point). Rebuilding rollups drops the kept statements of the
periods it touches and raises their revision."""
from __future__ import annotations

import json
from dataclasses import dataclass

from .influx import InfluxGateway
from .ratecard import Period, period_from
from .statement import Statement
from .wire import encode

STATEMENT = "kubemonitor_statement"
REVISION = "kubemonitor_statement_revision"


def kept_key(period: Period, by: str) -> str:
    return f"{period.label}|{period.timezone}|{by}"


@dataclass
class Kept:
    """Where statements of closed periods are kept: points in the rollups' retention policy."""
    influx: InfluxGateway
    rp: str

    async def load(self, key: str) -> Statement | None:
        """The kept statement, or None."""
        series = await self.influx.query(f'SELECT "part", "json" FROM "{self.rp}"."{STATEMENT}" WHERE "key" = $key',
                                         {"key": key}, kind="statement")
        parts = sorted((row[1], row[2]) for s in series for row in s.get("values", []))
        if not parts or parts[0][0] != 0:
            return None
        header = json.loads(parts[0][1])
        if len(parts) - 1 != header.pop("row_count"):
            return None  # an interrupted write: compute it again
        header["rows"] = [json.loads(text) for _, text in parts[1:]]
        return Statement(header)

    async def keep(self, key: str, statement: dict) -> None:
        """Keep one view's data (its rows, then its header)."""
        header = {k: v for k, v in statement.items() if k != "rows"}
        header["row_count"] = len(statement["rows"])
        points = [{"measurement": STATEMENT, "tags": {"key": key, "part": f"{i:06d}"}, "time": i,
                   "fields": {"part": i, "json": encode(row)}} for i, row in enumerate(statement["rows"], 1)]
        # The header last: a statement whose header is there is complete.
        points.append({"measurement": STATEMENT, "tags": {"key": key, "part": "000000"}, "time": 0,
                       "fields": {"part": 0, "json": encode(header)}})
        await self.influx.write(points[:-1], self.rp, kind="statement")
        await self.influx.write(points[-1:], self.rp, kind="statement")

    async def revision(self, label: str) -> int:
        series = await self.influx.query(f'SELECT last("revision") FROM "{self.rp}"."{REVISION}" WHERE "period" = $label',
                                         {"label": label}, kind="statement")
        return int(next((v for s in series for _, v in s.get("values", [])), 0) or 0)

    async def invalidate(self, first_ns: int, end_ns: int) -> list[str]:
        """Hours in [first_ns, end_ns) were rebuilt: drop every kept statement whose period
        overlaps them and raise that period's revision. Returns the labels."""
        series = await self.influx.query(f'SHOW TAG VALUES FROM "{self.rp}"."{STATEMENT}" WITH KEY = "key"',
                                         kind="statement")
        touched = []
        for key in sorted({row[1] for s in series for row in s.get("values", [])}):
            label, timezone, _by = key.split("|")  # kept_key's layout
            first, _, last = label.partition("..")
            body = {"from": first, "to": last} if last else {"period": label}
            period = period_from(body, timezone)
            if period.start_ns < end_ns and first_ns < period.end_ns:
                await self.influx.execute(f'DELETE FROM "{STATEMENT}" WHERE "key" = $key', {"key": key}, kind="statement")
                if label not in touched:
                    touched.append(label)
        for label in touched:
            revision = await self.revision(label)
            await self.influx.write([{"measurement": REVISION, "tags": {"period": label}, "time": 0,
                                      "fields": {"revision": revision + 1}}], self.rp, kind="statement")
        return touched
