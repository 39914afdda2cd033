"""The one place that builds kubemonitor's object graph from a Config: the InfluxDB
gateway, the data source, the metric catalog, the rollups, billing and the live-view
poller. `serve` (through the Tornado application) and every CLI command that reads
InfluxDB take a `Services`; nothing else constructs these."""
from __future__ import annotations

import time
from collections.abc import Callable
from functools import cached_property

from . import ratecard
from .billing import Billing
from .collectors import source_named
from .config import Config
from .influx import InfluxGateway
from .kept import Kept
from .metrics import Metric, MetricCatalog
from .poller import Poller
from .ratecard import RateCard
from .rollup_writer import RollupWriter
from .rollups import Rollups
from .source import Source
from .spacing import IntervalCheck
from .telemetry import Telemetry
from .usage import sample_interval_ns


class SourceProblems:
    """The data source's collection problems (/readyz, notes on statements), looked for at
    most once a `ttl`: every statement and probe would otherwise ask InfluxDB again."""

    def __init__(self, source: Source, influx: InfluxGateway, ttl: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, intervals: IntervalCheck | None = None):
        self.source, self.influx, self.ttl, self.clock, self.intervals = source, influx, ttl, clock, intervals
        self._found: tuple[float, list[str]] | None = None

    async def __call__(self) -> list[str]:
        now = self.clock()
        if self._found is None or now - self._found[0] > self.ttl:
            found = await self.source.problems(self.influx)
            if self.intervals is not None:  # the collector's spacing against the interval settings
                found = [*found, *await self.intervals.problems()]
            self._found = (now, found)
        return self._found[1]


class Services:
    """What the server and the commands share, built once from `config`. `influx`,
    `telemetry` and `card` may be given (tests: a gateway with a narrower pool; `statement`:
    the rate card it has already checked)."""

    def __init__(self, config: Config, *, influx: InfluxGateway | None = None, telemetry: Telemetry | None = None,
                 card: RateCard | None = None):
        self.config = config
        self.telemetry = telemetry or (influx.telemetry if influx else Telemetry())
        self.influx = influx or InfluxGateway(config, self.telemetry)
        self.source = source_named(config.source, config.cluster)
        self.catalog = MetricCatalog.of(self.influx, self.source)
        self.problems = SourceProblems(self.source, self.influx,
                                       intervals=IntervalCheck(self.influx, self.catalog, self.interval_ns))
        self.rollups = Rollups(self.influx, self.catalog, rp=config.rollup_rp, metrics=config.rollup_metrics)
        self.rollup_writer = RollupWriter(self.rollups, self.catalog, settle=config.rollup_settle,
                                          interval_ns=self.interval_ns, closes_ns=self.month_closes_ns)
        self._card = card

    @cached_property
    def billing(self) -> Billing:
        """Statements by the rate card (read when first needed: `rollup` runs without one)."""
        config = self.config
        card = self._card or ratecard.load(config.billing_file, config.billing_file_named)
        return Billing(self.influx, self.catalog, card, self.rollups, config.excluded_namespaces, self.interval_ns,
                       problems=self.problems)

    @cached_property
    def kept(self) -> Kept:
        """The kept statements of closed periods (beside the rollups)."""
        return Kept(self.influx, self.rollups.rp)

    def month_closes_ns(self, at_ns: int) -> int:
        """When the billing month holding `at_ns` closes (the rate card's zone and close_after):
        late points for a closed month's hours wait for a rebuild, so kept statements stand."""
        card = self._card or ratecard.load(self.config.billing_file, self.config.billing_file_named)
        self._card = card
        return card.month_closes_ns(at_ns)

    def interval_ns(self, metric: Metric) -> int:
        """The collector's sample interval for `metric` (the usage rule's weight of a sample)."""
        return sample_interval_ns(metric, self.config)

    @cached_property
    def poller(self) -> Poller:
        """The live views' poller (only `serve` starts it)."""
        config = self.config
        return Poller(self.influx, config.poll_interval, config.excluded_namespaces, self.telemetry,
                      sample_interval=config.sample_interval, gpu_sample_interval=config.gpu_sample_interval)

    def close(self) -> None:
        self.influx.close()
