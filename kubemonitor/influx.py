"""InfluxDB access: every call off the event loop, with a timeout, mapped to HTTP errors.

The `influxdb` client is blocking, has no timeout by default and retries failed
requests; its `requests` session is not documented as thread-safe. So:

* each executor thread gets its own client (thread-local), created with an explicit
  timeout and `retries=1` (one attempt, no retry: a retry would double the time a
  caller waits for an unreachable database);
* `InfluxGateway.call` runs a function of the client in the executor (whose
  worker count bounds the load we put on InfluxDB), times it for Prometheus and turns failures into `InfluxError` with the
  status README "Errors" gives (502 InfluxDB answered with an error, 503 unreachable, 504 too
  slow);
* queries take their values only as bind parameters (`$name`).
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import requests
from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError, InfluxDBServerError

from .config import Config
from .telemetry import Telemetry

log = logging.getLogger("kubemonitor.influx")
T = TypeVar("T")


class InfluxError(Exception):
    """An InfluxDB failure, carrying the HTTP status the API answers with."""

    def __init__(self, status: int, message: str, retry_after: int | None = None, where: str | None = None,
                 public: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message  # for the log and the operator: names InfluxDB's host and port
        self.retry_after = retry_after
        # for callers (API answers, pages, live views): the same words without where InfluxDB is
        self.public = public or (message.replace(where, "InfluxDB") if where else message)


# How long a call may wait for one of the executor's threads before it is refused (503):
# a request that cannot start soon is refused early instead of piling up behind others.
QUEUE_WAIT = 1.0

# Calls made inside `InfluxGateway.patient()` (a billing statement and the tasks it starts)
# queue for a thread until their deadline instead: a statement is asked for rarely, by
# someone who waits for it, and must not fail because it fans out into more queries
# than there are threads. They may hold at most half of a lane, so the API's own calls
# still find threads while a month is computed.
_PATIENT: contextvars.ContextVar[bool] = contextvars.ContextVar("kubemonitor_influx_patient", default=False)

# The end (event-loop time) of the HTTP request a call is made for: a request chains several
# calls, and together they may take KUBEMONITOR_REQUEST_TIMEOUT at most; a call past it is not
# started, and a running one is waited for only until then. Patient calls (statements, which
# must complete to be kept) are bounded per call instead.
_REQUEST_END: contextvars.ContextVar[float | None] = contextvars.ContextVar("kubemonitor_request_end", default=None)


def map_error(exc: BaseException, config: Config) -> InfluxError:
    where = f"InfluxDB at {config.influxdb_host}:{config.influxdb_port}"
    if isinstance(exc, InfluxError):
        return exc
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return InfluxError(503, f"{where} is unreachable (connect timed out); check INFLUXDB_HOST/INFLUXDB_PORT and that InfluxDB runs", where=where)
    if isinstance(exc, (requests.exceptions.Timeout, asyncio.TimeoutError, TimeoutError)):
        return InfluxError(504, f"{where} did not answer within {config.influxdb_timeout:g} s (INFLUXDB_TIMEOUT); "
                                "narrow the time range or raise the timeout", where=where)
    if isinstance(exc, requests.exceptions.ConnectionError):
        return InfluxError(503, f"{where} is unreachable; check INFLUXDB_HOST/INFLUXDB_PORT and that InfluxDB runs", where=where)
    if isinstance(exc, InfluxDBClientError):
        detail = str(getattr(exc, "content", exc)).strip()
        if getattr(exc, "code", None) == 401:
            return InfluxError(502, f"{where} refused our credentials; check INFLUXDB_USER/INFLUXDB_PASS", where=where)
        return InfluxError(502, f"{where} answered with an error: {detail}", where=where)
    if isinstance(exc, InfluxDBServerError):
        return InfluxError(502, f"{where} failed: {str(exc).strip()}", where=where)
    if isinstance(exc, (ValueError, requests.exceptions.RequestException)):
        return InfluxError(502, f"{where} sent an answer we could not read: {exc}", where=where,
                           public="InfluxDB sent an answer kubemonitor could not read; the server's log has the details")
    raise exc  # a bug, not a database fault: let it become a logged 500


def settle_environment(client: InfluxDBClient, config: Config) -> None:
    """Read the proxy and CA-bundle environment once, not on every query.

    `requests` looks the environment up on every request (proxies, NO_PROXY, CA bundle):
    over half a millisecond per query, a fifth of the API's own overhead on small
    queries. The answers cannot change while the process runs, so resolve them here
    and switch the per-request lookup off. (`_session` and `_verify_ssl` are the
    client's own attributes; the 5.3 client line is frozen.)
    """
    scheme = "https" if config.influxdb_ssl else "http"
    session = client._session
    session.proxies.update(requests.utils.get_environ_proxies(f"{scheme}://{config.influxdb_host}:{config.influxdb_port}"))
    if config.influxdb_ssl and config.influxdb_verify_ssl:
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            client._verify_ssl = bundle
    session.trust_env = False


class InfluxGateway:
    """The one door to InfluxDB. Share one per process; it owns its executor."""

    # Lanes: threads of their own for the live views and for background work (rollups), so
    # 500 API clients cannot delay a live update, and a rollup pass cannot slow the API.
    LANES = {"api": 8, "live": 4, "background": 2}

    def __init__(self, config: Config, telemetry: Telemetry | None = None, workers: int | None = None):
        self.config = config
        self.telemetry = telemetry or Telemetry()
        sizes = {**self.LANES, **({"api": workers} if workers else {})}
        self._executors = {lane: ThreadPoolExecutor(max_workers=n, thread_name_prefix=f"influx-{lane}")
                           for lane, n in sizes.items()}
        self._sizes = sizes
        self._slots: dict[str, asyncio.Semaphore] = {}  # made in the running loop, on first use
        self._patient_slots: dict[str, asyncio.Semaphore] = {}  # at most half a lane for patient calls
        # Shaping and encoding answers is CPU work: its own small pool, so it never waits
        # behind (or holds up) calls to InfluxDB.
        self._cpu = ThreadPoolExecutor(max_workers=2, thread_name_prefix="compute")
        self._local = threading.local()
        # bound to every statement: KUBEMONITOR_CLUSTER, which a layout's `only()` conditions name
        self.bound: dict[str, Any] = {"kubemonitor_cluster": config.cluster} if getattr(config, "cluster", None) else {}

    # -- blocking side (executor threads) ---------------------------------------------
    def _client(self) -> InfluxDBClient:
        client = getattr(self._local, "client", None)
        if client is None:
            c = self.config
            client = InfluxDBClient(
                host=c.influxdb_host, port=c.influxdb_port, username=c.influxdb_user, password=c.influxdb_pass,
                database=c.influxdb_db, ssl=c.influxdb_ssl, verify_ssl=c.influxdb_verify_ssl,
                timeout=c.influxdb_timeout, retries=1, pool_size=1,
            )
            settle_environment(client, c)
            self._local.client = client
        return client

    @staticmethod
    def select(client: InfluxDBClient, influxql: str, params: dict[str, Any] | None = None) -> list[dict]:
        """Run one statement; return its raw series list ([] when nothing matched).

        Times always come back as integer nanoseconds (`epoch=ns`): the client's own
        decoding of RFC 3339 times drops the nanoseconds and overflows before 1970.
        """
        result = client.query(influxql, bind_params=params or None, epoch="ns")
        return result.raw.get("series", [])

    # -- event-loop side ----------------------------------------------------------------
    @staticmethod
    @contextlib.contextmanager
    def patient() -> Iterator[None]:
        """Calls made inside (tasks started inside included) queue until their deadline."""
        token = _PATIENT.set(True)
        try:
            yield
        finally:
            _PATIENT.reset(token)

    @staticmethod
    @contextlib.contextmanager
    def request_deadline(seconds: float) -> Iterator[None]:
        """Calls made inside (for one HTTP request) end, all together, within `seconds`."""
        token = _REQUEST_END.set(asyncio.get_running_loop().time() + seconds)
        try:
            yield
        finally:
            _REQUEST_END.reset(token)

    def _past_deadline(self) -> InfluxError:
        self.telemetry.influx_errors.labels("504").inc()
        return InfluxError(504, f"the request took longer than KUBEMONITOR_REQUEST_TIMEOUT "
                                f"({self.config.request_timeout:g} s) waiting for InfluxDB; narrow the time range, "
                                "or raise the timeout")

    async def _acquire(self, lane: str, patient: bool) -> asyncio.Semaphore | None:
        """Take a thread slot of the lane (and a patient slot), or raise 503/504."""
        tel = self.telemetry
        slots = self._slots.get(lane)
        if slots is None:
            slots = self._slots[lane] = asyncio.Semaphore(self._sizes[lane])
        if not patient:
            try:
                async with asyncio.timeout(min(QUEUE_WAIT, self.config.influxdb_timeout)):
                    await slots.acquire()
            except TimeoutError:
                tel.influx_errors.labels("503").inc()
                raise InfluxError(503, f"InfluxDB is busy: all {self._sizes[lane]} connections to it are in use; try again "
                                       "in a few seconds", retry_after=2) from None
            return None
        share = self._patient_slots.get(lane)
        if share is None:
            share = self._patient_slots[lane] = asyncio.Semaphore(max(1, self._sizes[lane] // 2))

        async def both() -> None:
            await share.acquire()
            try:
                await slots.acquire()
            except BaseException:
                share.release()
                raise
        try:
            async with asyncio.timeout(self.config.influxdb_timeout):
                await both()
        except TimeoutError:
            tel.influx_errors.labels("504").inc()
            raise InfluxError(504, f"InfluxDB is busy: no connection to it came free within {self.config.influxdb_timeout:g} s "
                                   "(INFLUXDB_TIMEOUT); try again later or raise the timeout", retry_after=5) from None
        return share

    async def call(self, fn: Callable[[InfluxDBClient], T], kind: str = "query", lane: str = "api") -> T:
        """Run `fn(client)` in the lane's executor; raise InfluxError (502/503/504) on failure.

        INFLUXDB_TIMEOUT bounds the whole call, the wait for a thread included; a call that
        cannot get a thread within QUEUE_WAIT is refused at once (503, Retry-After), unless
        it is made inside `patient()`.
        """
        tel = self.telemetry
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.influxdb_timeout
        request_end = None if _PATIENT.get() else _REQUEST_END.get()
        if request_end is not None:
            if loop.time() >= request_end:
                raise self._past_deadline()  # not started: what remains of a late request is cancelled
            deadline = min(deadline, request_end)
        share = await self._acquire(lane, _PATIENT.get())
        slots = self._slots[lane]
        tel.influx_inflight.inc()
        try:
            running = loop.run_in_executor(self._executors[lane], self._run, fn, kind)
        except BaseException:
            slots.release()
            if share is not None:
                share.release()
            tel.influx_inflight.dec()
            raise

        def free(_: object) -> None:
            slots.release()
            if share is not None:
                share.release()
            tel.influx_inflight.dec()
        # The slot is free when the thread is, not when we stop waiting for it: a thread
        # still stuck in a timed-out call keeps counting.
        running.add_done_callback(free)
        try:
            # The client's own timeout bounds each socket operation; this bounds the whole
            # call (the wait for a thread included), so nothing holds a caller for longer.
            async with asyncio.timeout_at(deadline):
                return await asyncio.shield(running)
        except TimeoutError as exc:
            if request_end is not None and deadline == request_end:
                raise self._past_deadline() from exc
            err = map_error(exc, self.config)
            tel.influx_errors.labels(str(err.status)).inc()
            log.warning("InfluxDB %s failed: %s", kind, err.message)
            raise err from exc
        except Exception as exc:  # noqa: BLE001 - mapped, or re-raised as a bug
            err = map_error(exc, self.config)
            tel.influx_errors.labels(str(err.status)).inc()
            log.warning("InfluxDB %s failed: %s", kind, err.message)
            raise err from exc

    def _run(self, fn: Callable[[InfluxDBClient], T], kind: str) -> T:
        started = time.perf_counter()
        try:
            return fn(self._client())
        finally:
            self.telemetry.influx_seconds.labels(kind).observe(time.perf_counter() - started)

    async def query(self, influxql: str, params: dict[str, Any] | None = None, kind: str = "query",
                    lane: str = "api") -> list[dict]:
        return await self.call(lambda client: self.select(client, influxql, self.bind(params)), kind, lane)

    def bind(self, params: dict[str, Any] | None) -> dict[str, Any] | None:
        """A statement's parameters with the ones every statement may name (the cluster)."""
        return {**self.bound, **params} if self.bound and params else (params or self.bound or None)

    def bound_select(self, client: InfluxDBClient, influxql: str, params: dict[str, Any] | None = None) -> list[dict]:
        """`select` with the parameters every statement may name (for callers that run in the executor)."""
        return self.select(client, influxql, self.bind(params))

    async def execute(self, influxql: str, params: dict[str, Any] | None = None, kind: str = "execute",
                      lane: str = "api") -> None:
        """A statement that changes something (CREATE, DELETE): InfluxDB wants those as POST."""
        await self.call(lambda client: client.query(influxql, bind_params=params or None, method="POST"), kind, lane)

    async def write(self, points: list[dict], retention_policy: str | None = None, kind: str = "write",
                    lane: str = "api") -> None:
        """Write points (times in integer nanoseconds), in batches, to a retention policy."""
        if points:
            await self.call(lambda client: client.write_points(points, time_precision="n", retention_policy=retention_policy,
                                                               batch_size=5000), kind, lane)

    async def compute(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU work (combining, encoding) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._cpu, fn, *args)

    async def ping(self) -> str:
        """InfluxDB's version; raises InfluxError when it is not reachable."""
        return await self.call(lambda client: client.ping(), "ping")

    async def list_measurements(self) -> list[str]:
        series = await self.query("SHOW MEASUREMENTS", kind="measurements")
        return [row[0] for s in series for row in s.get("values", [])]

    async def list_namespaces(self, statements: list[str]) -> list[str]:
        """Namespace names: the source's SHOW TAG VALUES statements (fixed text)."""
        names: set[str] = set()
        for text in statements:
            series = await self.query(text, kind="namespaces")
            names.update(row[1] for s in series for row in s.get("values", []) if row[1])
        return sorted(names)

    def close(self) -> None:
        for executor in self._executors.values():
            executor.shutdown(wait=False, cancel_futures=True)
        self._cpu.shutdown(wait=False, cancel_futures=True)
