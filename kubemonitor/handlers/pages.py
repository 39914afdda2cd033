"""The dashboard pages (README "The web dashboard").

A page carries its views' first snapshots (from the poller's cache) as JSON; the
page's script renders every figure, table row and chart from them and keeps them
live over /web/live. So a value is formatted in one place (static/js/live.js),
whether it arrived with the page or a second later.
"""
from __future__ import annotations

import os

import tornado.web

from ..influx import InfluxError
from ..metrics import MAIN_METRICS, REQUEST_OF, Metric
from ..poller import ALL
from ..request import NAMESPACE
from ..views import DEFAULT_WINDOW, WINDOWS
from .base import ApiError, BaseHandler

UPLOT_JS = "vendor/uplot/uPlot.iife.min.js"
UPLOT_CSS = "vendor/uplot/uPlot.min.css"


class PageHandler(BaseHandler):
    def stats_url(self, metric: str, namespace: str = ALL, window: str | None = None) -> str:
        path = metric if namespace == ALL else f"{metric}/{namespace}"
        window = window or self.window
        return self.reverse_url("stats", path) + ("" if window == DEFAULT_WINDOW else f"?range={window}")

    @property
    def window(self) -> str:
        """The page's range (`?range=24h`); an unknown one is a 400 naming the choices."""
        value = self.get_argument("range", DEFAULT_WINDOW)
        if value not in WINDOWS:
            raise ApiError(400, f"range {value[:20]!r} is not offered; use one of {', '.join(WINDOWS)}, e.g. ?range=24h")
        return value

    async def page_context(self, metric: Metric | None, namespace: str) -> dict:
        catalog = self.app.catalog
        try:
            metrics = await catalog.available()
            namespaces = self.access.visible(await catalog.namespaces())
        except InfluxError:
            metrics, namespaces = list(catalog.known.values()), []
        static = self.settings["static_path"]
        return dict(
            metric=metric, namespace=namespace, all_metrics=metrics, namespaces=namespaces,
            picked=metric.name if metric is not None else MAIN_METRICS[0],
            main_metrics=[catalog.known[m] for m in MAIN_METRICS if m in catalog.known], user=self.current_user,
            uplot=os.path.exists(os.path.join(static, UPLOT_JS)), uplot_js=UPLOT_JS, uplot_css=UPLOT_CSS,
            poll_interval=self.app.config.poll_interval, live_state=self.app.poller.state,
            live_message=self.app.poller.message, window=self.window, windows=list(WINDOWS),
            stats_url=self.stats_url, excluded=self.app.config.excluded_namespaces, access=self.access,
            all_label="your namespaces" if self.access.scoped else "all namespaces",
        )

    def visible_namespace(self, namespace: str) -> None:
        """Another group's namespace is answered like one that does not exist."""
        if namespace != ALL and not self.access.sees(namespace):
            raise ApiError(404, f"there is no page at {self.request.path[:200]}; pick a namespace from the sidebar")


class WebRootHandler(PageHandler):
    route_name = "web"

    @tornado.web.authenticated
    def get(self) -> None:
        self.redirect(self.reverse_url("overview"))


class OverviewHandler(PageHandler):
    route_name = "overview"

    @tornado.web.authenticated
    async def get(self) -> None:
        cards = []
        for name in MAIN_METRICS:
            metric = self.app.catalog.known.get(name)  # as the data source stores it
            if metric is None:
                continue
            cards.append({"metric": metric, "snapshot": await self.app.poller.snapshot(metric, ALL, self.window,
                                                                                        self.access.namespaces)})
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
            if len(rest) == 1 and NAMESPACE.matches(rest[0]):
                return metric, rest[0]
            break
        raise ApiError(404, f"there is no metric at {self.request.path[:200]}; pick one from the sidebar or the picker")

    @tornado.web.authenticated
    async def get(self, path: str) -> None:
        metric, namespace = await self.resolve(path)
        self.visible_namespace(namespace)
        snapshot = await self.app.poller.snapshot(metric, namespace, self.window, self.access.namespaces)
        # usage with a request (cpu, memory): the request drawn dashed over it, a live view of its own
        request = self.app.catalog.resolve_cached(REQUEST_OF[metric.name]) if metric.name in REQUEST_OF else None
        request_snapshot = (await self.app.poller.snapshot(request, namespace, self.window, self.access.namespaces)
                            if request is not None else None)
        self.render("stats.html", snapshot=snapshot, request_metric=request, request_snapshot=request_snapshot,
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
        if namespace != ALL and not NAMESPACE.matches(namespace):
            raise ApiError(400, "the namespace must be a namespace name or 'all'")
        self.visible_namespace(namespace)
        self.redirect(self.stats_url(metric, namespace))
