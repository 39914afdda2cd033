"""The data sources kubemonitor can read, by the name KUBEMONITOR_SOURCE gives (README
"Collecting data today"): the one table the configuration, the application and the CLI use."""
from __future__ import annotations

from .heapster import Heapster
from .source import Source
from .telegraf import Telegraf

SOURCES: dict[str, type[Source]] = {"heapster": Heapster, "telegraf": Telegraf}


def source_named(name: str, cluster: str | None = None) -> Source:
    """The source for KUBEMONITOR_SOURCE (the configuration has checked the name), reading
    only the points of KUBEMONITOR_CLUSTER's `cluster_name` when one is given."""
    return SOURCES[name](cluster)
