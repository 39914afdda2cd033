"""The collector faults `kubemonitor simulate --faults` writes (README "The simulator and
the demo"): what real collectors do to the data on real clusters, placed at fixed times
before the backfill's end so that a test, a benchmark or an operator trying kubemonitor
out knows where to look.

* `duplicate` — a second collector (a DaemonSet rolled out twice) writes every series
  again, 5 s after the first, for the hour that ends 2 h before the end. Telegraf's
  copy carries another `host` tag; Heapster's is the very same series.
* `outage` — node-1's collector writes nothing from 5 h 50 min to 5 h 30 min before the
  end (20 minutes): its node's series and its pods' are missing.
* `flush` — node-1's agent re-sends the 10 minutes from 4 h before the end, 1 s later
  (a retried flush).
* `late` — the last node's 30 minutes from 8 h before the end are held back and written
  `LATE_AFTER` seconds after the backfill (at its end, without live writing): points that
  arrive after their hour was rolled up.
* `interval` — the collector writes twice as often as `--step` says (and the live
  writer twice per `--interval`) in the last 2 h: a sample interval set too long.

Every fault works on the lines a tick produced, by the node tag of the schema; a line
that names no node (cluster and namespace sums) is left alone.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

H = 3600
FAULTS: dict[str, str] = {
    "duplicate": "a second collector writes every series again, 5 s later, in the hour ending 2 h before the end",
    "outage": "node-1's collector is down for 20 minutes, 5 h 50 min before the end",
    "flush": "node-1's agent re-sends 10 minutes of points, 1 s later, 4 h before the end",
    "late": "the last node's 30 minutes from 8 h before the end arrive after the backfill",
    "interval": "samples twice as dense as --step in the last 2 h (and live)",
}
LATE_AFTER = 120.0   # seconds after the backfill the held-back points are written (rollups have kept their hours)
_NODE = re.compile(r"[,](?:nodename|node_name|hostname|Hostname)=([^,\s]+)")


def parse_faults(text: str) -> frozenset[str]:
    """`duplicate,outage` -> the fault names; ValueError naming the choices otherwise."""
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    unknown = sorted(names - set(FAULTS))
    if unknown:
        raise ValueError(f"unknown fault {', '.join(unknown)}; choose from {', '.join(FAULTS)} (comma-separated)")
    return names


def node_of(line: str) -> str | None:
    """The node a line-protocol line's series names (any schema's node tag), or None."""
    key = line.split(" ", 1)[0]
    found = _NODE.search(key)
    return found.group(1) if found else None


def shifted(line: str, seconds: int, tag: str | None = None) -> str:
    """The same point `seconds` later (second precision), with `tag` (k=v) added to its series."""
    key, fields, ts = line.rsplit(" ", 2)
    if tag:
        measurement, _, tags = key.partition(",")
        key = f"{measurement},{tag}" + (f",{tags}" if tags else "")
    return f"{key} {fields} {int(ts) + seconds}"


@dataclass
class Faults:
    """The faults of one run, relative to the backfill's `end` (seconds); `first_node` and
    `last_node` are the cluster's node-1 and its last node (the GPU node)."""
    names: frozenset[str]
    end: float
    source: str = "heapster"
    first_node: str = "node-1"
    last_node: str = "node-1"
    held: list[str] = field(default_factory=list)   # the `late` points, written after the backfill

    def _within(self, t: float, begin_s: float, length_s: float) -> bool:
        return self.end - begin_s <= t < self.end - begin_s + length_s

    def extra_times(self, t: float, step: float) -> list[float]:
        """Samples the `interval` fault adds after the one at `t` (none without it)."""
        if "interval" in self.names and t >= self.end - 2 * H:
            return [t + step / 2]
        return []

    def apply(self, t: float, lines: Iterable[str]) -> list[str]:
        """The lines of the tick at `t` as the faulty collectors write them."""
        out: list[str] = []
        outage = "outage" in self.names and self._within(t, 5 * H + 50 * 60, 20 * 60)
        flush = "flush" in self.names and self._within(t, 4 * H, 10 * 60)
        late = "late" in self.names and self._within(t, 8 * H, 30 * 60)
        duplicate = "duplicate" in self.names and self._within(t, 3 * H, H)
        copy_tag = "host=telegraf-rollout" if self.source == "telegraf" else None
        for line in lines:
            node = node_of(line)
            if outage and node == self.first_node:
                continue
            if late and node == self.last_node:
                self.held.append(line)
                continue
            out.append(line)
            if flush and node == self.first_node:
                out.append(shifted(line, 1))
            if duplicate:
                out.append(shifted(line, 5, copy_tag))
        return out

    def release(self) -> list[str]:
        """The held-back points, once (the `late` fault)."""
        held, self.held = self.held, []
        return held
