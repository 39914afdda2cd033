"""POST /api/<metric> (README "The API")."""
from __future__ import annotations

import hmac
import time
from typing import Any, cast

import tornado.web
from tornado.http1connection import HTTP1Connection

from .. import audit, influxql, usage
from .. import request as api_request
from ..access import Access
from ..config import Config
from ..influx import InfluxError
from .base import ApiError, APIHandler, encode_json, from_influx

MAX_BODY = 64 * 1024
EXAMPLE = 'e.g. curl -X POST -H "X-USERNAME: $API_USERNAME" -H "X-PASSWORD: $API_PASSWORD" -d \'{"agg": "all-namespace"}\''


WRONG = ("wrong credentials: X-USERNAME and X-PASSWORD must be the server's API_USERNAME and API_PASSWORD, "
         "or an API client's name and the secret `kubemonitor apiclient add` printed")


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))


@tornado.web.stream_request_body
class PostAPIHandler(APIHandler):
    """An API endpoint: POST only, credentials in headers, a JSON body of at most 64 KiB
    (streamed, so an oversized one is refused (413) without being buffered)."""

    async def prepare(self) -> None:
        self._body = bytearray()
        self._too_large = False
        self._holds_slot = False
        self.audit: dict = {}   # what the audit line says about this call (handlers add to it)
        # The server refuses bodies over a few KiB before any handler runs; the API takes more,
        # counted here as it streams in (and refused with a JSON 413 past MAX_BODY).
        cast(HTTP1Connection, self.request.connection).set_max_body_size(MAX_BODY + 1024 * 1024)
        if self.request.method != "POST":
            raise ApiError(405, f"{self.request.method} is not allowed here; the API answers only POST "
                                f"({EXAMPLE})")
        await self.check_credentials()
        await self.take_slot()
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            raise ApiError(413, f"the body is {int(length)} bytes; the API accepts at most {MAX_BODY} bytes (64 KiB)")

    async def check_credentials(self) -> None:
        """Who is calling: the full-access pair from the environment (API_USERNAME /
        API_PASSWORD) or a named client of the clients file; sets `self.access`."""
        config = self.app.config
        user = self.request.headers.get("X-USERNAME")
        password = self.request.headers.get("X-PASSWORD")
        if user is None or password is None:
            missing = " and ".join(h for h, v in (("X-USERNAME", user), ("X-PASSWORD", password)) if v is None)
            raise ApiError(401, f"credentials missing: send the {missing} header{'s' if ' and ' in missing else ''}")
        self._current_user = f"api:{user[:64]}"
        address = self.request.remote_ip or "?"
        guesses = self.app.api_guesses
        wait = guesses.retry_after(user[:64], address)
        if wait > 0:  # refused before the check, right or wrong: a throttled guesser learns nothing
            raise ApiError(429, f"too many wrong credentials from {address} in the last 15 minutes; check "
                                f"X-USERNAME and X-PASSWORD, then retry in {int(wait) + 1} s",
                           {"Retry-After": str(int(wait) + 1)})
        try:
            await self._check(config, user, password)
        except ApiError:
            guesses.fail(user[:64], address)
            raise

    async def _check(self, config: Config, user: str, password: str) -> None:
        if config.api_configured and _same(user, config.api_username or ""):
            if not _same(password, config.api_password or ""):
                self.audit["reason"] = "wrong secret"
                raise ApiError(401, WRONG)
            self.access = Access(user)  # every namespace, statements too
            return
        clients = self.app.clients
        await self.app.fresh(clients, now=True)  # the file is looked at on every call: a revocation counts at once
        client, why = clients.check(user, password)
        if why == "ok" and client is not None:
            self.access = client.access
            return
        self.audit["reason"] = why
        if why == "revoked" and client is not None:
            raise ApiError(401, f"API client {user!r} was revoked on {client.revoked}; ask the operator for a new "
                                "client (kubemonitor apiclient add)")
        if not config.api_configured and not clients.cached_names():
            raise ApiError(401, "the API is not configured on this server: set API_USERNAME and API_PASSWORD "
                                "in the server's environment, or add a client with `kubemonitor apiclient add NAME`")
        raise ApiError(401, WRONG)

    async def take_slot(self) -> None:
        """At most `KUBEMONITOR_CLIENT_CONCURRENCY` calls of one client at once (a call past
        it waits up to a second for a slot): a runaway script gets 429s instead of starving
        everyone else (and InfluxDB)."""
        if not await self.app.client_slots.acquire(self.access.who):
            limit = self.app.config.client_concurrency
            raise ApiError(429, f"client {self.access.who!r} already has {limit} queries running "
                                "(KUBEMONITOR_CLIENT_CONCURRENCY); wait for them, then retry", {"Retry-After": "1"})
        self._holds_slot = True

    def release_slot(self) -> None:
        if getattr(self, "_holds_slot", False):
            self._holds_slot = False
            self.app.client_slots.release(self.access.who)

    def on_connection_close(self) -> None:
        self.release_slot()
        super().on_connection_close()

    def on_finish(self) -> None:
        self.release_slot()
        who, status = getattr(self, "_current_user", None), self.get_status()
        held = None
        # Refusals are sampled: an authenticated client's per client, address and status; a
        # caller not (yet) authenticated per address and status only, whatever name it sends.
        authenticated = self._access is not None
        if status in (401, 429) or (status >= 400 and not authenticated):
            key = (who if authenticated else None, self.request.remote_ip, status)
            write, held = self.app.audit_sampler.admit(key)
            if not write:
                return
        audit.record("api", who, status=status, ms=round(self.request.request_time() * 1000, 1),
                     address=self.request.remote_ip, held_back=held or None, **getattr(self, "audit", {}))

    def forbid_namespace(self, namespace: str) -> None:
        if not self.access.sees(namespace):
            raise ApiError(403, f"namespace {namespace!r} is outside what client {self.access.who!r} may see; its "
                                "namespaces are listed in the API clients file (kubemonitor apiclient list)")

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

    async def post(self, name: str) -> None:  # type: ignore[override]  # the route has one argument
        self.audit["metric"] = name[:100]
        data = self.body_object()
        self.audit["fields"] = audit.request_fields(data, api_request.FIELDS)
        try:
            request = api_request.validate(data, now_ns=time.time_ns(), max_limit=self.app.config.max_limit)
        except api_request.BadRequest as exc:
            raise ApiError(400, str(exc)) from None
        if request.agg in (None, "pod-by-namespace"):
            self.forbid_namespace(request.namespace)
        try:
            metric = await self.app.catalog.resolve(name)
        except InfluxError as exc:
            raise from_influx(exc) from None
        if metric is None:
            raise ApiError(404, self.app.catalog.unknown(name, self.app.url_prefix))
        if request.ignored_agg is not None:
            self.set_header("Warning", f'299 kubemonitor "agg is not one of {", ".join(api_request.AGGREGATIONS)}; '
                                       'returning points without aggregation"')
        config = self.app.config
        influx = self.app.influx
        try:
            if request.agg is None:
                # Rows are encoded in the executor too: a 10,000-row answer is megabytes of JSON.
                def fetch(client: Any) -> tuple[str, int]:
                    rows = influxql.raw_points(influx.bound_select, client, metric, request)
                    return encode_json(rows), len(rows)
                body, count = await influx.call(fetch, kind="api")
            else:
                rows = await usage.aggregate(influx, metric, request, config.excluded_namespaces,
                                             usage.sample_interval_ns(metric, config), self.app.rollups,
                                             only=self.access.namespaces)
                body, count = await influx.compute(encode_json, rows), len(rows)
        except InfluxError as exc:
            raise from_influx(exc) from None
        self.audit["rows"] = count
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(body)
