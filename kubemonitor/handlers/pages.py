"""The dashboard pages (README "The web dashboard"). The first paint carries the poller's cached data;
the page's script then keeps it live over /web/live."""
from __future__ import annotations

import os
import re

import tornado.web

from ..influx import InfluxError
from ..metrics import CATALOG, MAIN_METRICS, Metric
from ..poller import ALL
from .base import ApiError, BaseHandler

NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
UPLOT_JS = "vendor/uplot/uPlot.iife.min.js"
UPLOT_CSS = "vendor/uplot/uPlot.min.css"


def format_value(value: float | None, unit: str | None) -> str:
    """Human-readable value with its unit (the same rules as static/js/live.js)."""
    if value is None:
        return "–"
    if unit == "bytes":
        v, i = abs(value), 0
        names = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        while v >= 1024 and i < len(names) - 1:
            v, i = v / 1024, i + 1
        return f"{'-' if value < 0 else ''}{v:.{2 if i else 0}f} {names[i]}"
    digits = 1 if abs(value) >= 100 else (2 if abs(value) >= 1 else 4)
    return f"{value:.{digits}f}" + (f" {unit}" if unit else "")


def current_values(snapshot: dict | None) -> dict[str, float]:
    """Each line's newest value: a namespace's (or pod's) current usage."""
    if not snapshot:
        return {}
    return {name: points[-1][1] for name, points in snapshot["series"].items() if points}


class PageHandler(BaseHandler):
    async def page_context(self, metric: Metric | None, namespace: str) -> dict:
        catalog = self.app.catalog
        try:
            metrics = await catalog.available()
            namespaces = await catalog.namespaces()
        except InfluxError:
            metrics, namespaces = list(CATALOG.values()), []
        static = self.settings["static_path"]
        return dict(
            metric=metric, namespace=namespace, all_metrics=metrics, namespaces=namespaces,
            main_metrics=[CATALOG[m] for m in MAIN_METRICS], user=self.current_user,
            uplot=os.path.exists(os.path.join(static, UPLOT_JS)), uplot_js=UPLOT_JS, uplot_css=UPLOT_CSS,
            poll_interval=self.app.config.poll_interval, live_state=self.app.poller.state,
            live_message=self.app.poller.message, fmt=format_value,
        )


class WebRootHandler(PageHandler):
    route_name = "web"

    @tornado.web.authenticated
    def get(self) -> None:
        self.redirect("/web/stats/index")


class OverviewHandler(PageHandler):
    route_name = "overview"

    @tornado.web.authenticated
    async def get(self) -> None:
        cards = []
        for name in MAIN_METRICS:
            metric = CATALOG[name]
            snapshot = await self.app.poller.snapshot(metric, ALL)
            values = current_values(snapshot)
            cards.append({"metric": metric, "snapshot": snapshot, "values": values,
                          "total": sum(values.values()) if snapshot else None})
        self.render("overview.html", cards=cards, **await self.page_context(None, ALL))


class StatsHandler(PageHandler):
    route_name = "stats"

    async def resolve(self, path: str) -> tuple[Metric, str]:
        """The longest prefix of the path naming a metric; what follows is the namespace."""
        segments = path.split("/")
        try:
            await self.app.catalog.measurements()
        except InfluxError:
            pass  # catalog names still resolve
        for i in range(len(segments), 0, -1):
            metric = self.app.catalog.resolve_cached("/".join(segments[:i]))
            if metric is None:
                continue
            rest = segments[i:]
            if not rest:
                return metric, ALL
            if len(rest) == 1 and NAMESPACE.match(rest[0]) and len(rest[0]) <= 63:
                return metric, rest[0]
            break
        raise ApiError(404, f"there is no metric at /web/stats/{path[:200]}; pick one from the sidebar or the picker")

    @tornado.web.authenticated
    async def get(self, path: str) -> None:
        metric, namespace = await self.resolve(path)
        snapshot = await self.app.poller.snapshot(metric, namespace)
        self.render("stats.html", snapshot=snapshot, values=current_values(snapshot),
                    **await self.page_context(metric, namespace))


class PickerHandler(PageHandler):
    """GET /web/go?metric=M&namespace=N: the picker without JavaScript."""

    route_name = "picker"

    @tornado.web.authenticated
    def get(self) -> None:
        metric = self.get_argument("metric", "")
        namespace = self.get_argument("namespace", ALL)
        if self.app.catalog.resolve_cached(metric) is None:
            raise ApiError(404, f"unknown metric {metric[:100]!r}; pick one from the list")
        if namespace != ALL and not (NAMESPACE.match(namespace) and len(namespace) <= 63):
            raise ApiError(400, "the namespace must be a namespace name or 'all'")
        self.redirect(f"/web/stats/{metric}" + ("" if namespace == ALL else f"/{namespace}"))
