"""POST /api/<metric> (README "The API")."""
from __future__ import annotations

import hmac
import time

import tornado.web

from .. import request as api_request
from .. import usage
from ..influx import InfluxError
from .base import ApiError, APIHandler, encode_json, from_influx

MAX_BODY = 64 * 1024
EXAMPLE = 'e.g. curl -X POST -H "X-USERNAME: $API_USERNAME" -H "X-PASSWORD: $API_PASSWORD" -d \'{"agg": "all-namespace"}\''


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))


@tornado.web.stream_request_body
class PostAPIHandler(APIHandler):
    """An API endpoint: POST only, credentials in headers, a JSON body of at most 64 KiB
    (streamed, so an oversized one is refused (413) without being buffered)."""

    async def prepare(self) -> None:
        self._body = bytearray()
        self._too_large = False
        # The server refuses bodies over a few KiB before any handler runs; the API takes more,
        # counted here as it streams in (and refused with a JSON 413 past MAX_BODY).
        self.request.connection.set_max_body_size(MAX_BODY + 1024 * 1024)
        if self.request.method != "POST":
            raise ApiError(405, f"{self.request.method} is not allowed here; the API answers only POST "
                                f"({EXAMPLE})")
        self.check_credentials()
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            raise ApiError(413, f"the body is {int(length)} bytes; the API accepts at most {MAX_BODY} bytes (64 KiB)")

    def check_credentials(self) -> None:
        config = self.app.config
        if not config.api_configured:
            raise ApiError(401, "the API is not configured on this server: set API_USERNAME and API_PASSWORD "
                                "in the server's environment and restart it")
        user = self.request.headers.get("X-USERNAME")
        password = self.request.headers.get("X-PASSWORD")
        if user is None or password is None:
            missing = " and ".join(h for h, v in (("X-USERNAME", user), ("X-PASSWORD", password)) if v is None)
            raise ApiError(401, f"credentials missing: send the {missing} header{'s' if ' and ' in missing else ''}")
        # Both comparisons always run, in constant time, so timing tells nothing.
        user_ok = _same(user, config.api_username)
        password_ok = _same(password, config.api_password)
        if not (user_ok and password_ok):
            raise ApiError(401, "wrong credentials: X-USERNAME and X-PASSWORD must equal the server's "
                                "API_USERNAME and API_PASSWORD")
        self._current_user = f"api:{user}"

    def data_received(self, chunk: bytes) -> None:
        if len(self._body) + len(chunk) > MAX_BODY:
            self._too_large = True  # keep reading (and dropping) so the answer can be sent cleanly
            return
        self._body.extend(chunk)

    def body_object(self) -> dict:
        """The body as a JSON object, or a 400/413 that says why."""
        if self._too_large:
            raise ApiError(413, f"the body is over {MAX_BODY} bytes (64 KiB); send a smaller JSON object")
        try:
            return api_request.parse_body(bytes(self._body))
        except api_request.BadRequest as exc:
            raise ApiError(400, str(exc)) from None

    def allowed_methods(self) -> tuple[str, ...]:
        return ("POST",)

    async def post(self, *args: str) -> None:
        raise NotImplementedError

    # Every other method gets the 405 from prepare(); Tornado needs them defined to reach it.
    def get(self, *args: str) -> None:
        raise ApiError(405, "POST only")

    head = put = patch = delete = options = get


class MetricHandler(PostAPIHandler):
    route_name = "api"

    async def post(self, name: str) -> None:
        data = self.body_object()
        try:
            request = api_request.validate(data, now_ns=time.time_ns(), max_limit=self.app.config.max_limit)
        except api_request.BadRequest as exc:
            raise ApiError(400, str(exc)) from None
        try:
            metric = await self.app.catalog.resolve(name)
        except InfluxError as exc:
            raise from_influx(exc) from None
        if metric is None:
            raise ApiError(404, f"unknown metric {name[:100]!r}: it is neither in the catalog nor a measurement "
                                "in InfluxDB; GET /openapi.json lists the catalog, e.g. /api/cpu/usage_rate")
        if request.ignored_agg is not None:
            self.set_header("Warning", f'299 kubemonitor "agg is not one of {", ".join(api_request.AGGREGATIONS)}; '
                                       'returning points without aggregation"')
        config = self.app.config
        influx = self.app.influx
        try:
            if request.agg is None:
                # Rows are encoded in the executor too: a 10,000-row answer is megabytes of JSON.
                body = await influx.call(lambda client: encode_json(usage.raw_points(influx.select, client, metric, request)),
                                         kind="api")
            else:
                rows = await usage.aggregate(influx, metric, request, config.excluded_namespaces,
                                             usage.sample_interval_ns(metric, config), self.app.rollups)
                body = await influx.compute(encode_json, rows)
        except InfluxError as exc:
            raise from_influx(exc) from None
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(body)

