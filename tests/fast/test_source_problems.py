"""The source's collection problems are looked for at most once a minute (every statement
and /readyz asks for them), and again after it: a fixed set-up stops being reported."""
from __future__ import annotations

import asyncio

from kubemonitor.services import SourceProblems
from kubemonitor.source import Querier, Source


class Counting(Source):
    """A source whose check counts its calls and reports what `found` holds."""
    def __init__(self) -> None:
        self.calls, self.found = 0, ["a problem"]

    async def problems(self, influx: Querier) -> list[str]:
        self.calls += 1
        return list(self.found)


def test_looked_for_once_a_minute_then_again():
    now = [1000.0]
    source = Counting()
    problems = SourceProblems(source, influx=None, clock=lambda: now[0])  # type: ignore[arg-type]

    async def ask() -> list[str]:
        return await problems()
    assert asyncio.run(ask()) == ["a problem"] and asyncio.run(ask()) == ["a problem"] and source.calls == 1
    source.found = []          # the operator fixed the collection
    now[0] += 59
    assert asyncio.run(ask()) == ["a problem"] and source.calls == 1   # still the minute's answer
    now[0] += 2
    assert asyncio.run(ask()) == [] and source.calls == 2
