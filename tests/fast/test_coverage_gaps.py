"""A statement's coverage gaps, found from the intervals that have data alone."""
from __future__ import annotations

import random

import pytest

from kubemonitor.billing import unseen_spans
from kubemonitor.rollups import merge_spans


def interval_by_interval(begin: int, end: int, seen: set[int], interval: int) -> list[tuple[int, int]]:
    """The definition: every sample interval in [begin, end) whose start has no data."""
    holes, t = [], begin - begin % interval
    while t < end:
        if t not in seen:
            holes.append((t, t + interval))
        t += interval
    return merge_spans(holes)


@pytest.mark.parametrize("seed", range(5))
def test_gaps_are_the_intervals_without_data(seed):
    rng = random.Random(seed)
    for _ in range(500):
        interval = rng.choice([1, 3, 10, 60])
        begin = rng.randrange(0, 500)
        end = begin + rng.randrange(1, 400)
        seen = {t - t % interval for t in (rng.randrange(begin - 20, end + 20) for _ in range(rng.randrange(0, 30)))}
        assert merge_spans(unseen_spans(begin, end, seen, interval)) == interval_by_interval(begin, end, seen, interval)


def test_a_year_with_one_day_of_data_costs_that_day():
    """366 days at 60 s are 527,040 intervals; the answer is two spans, found from 1,440."""
    day, interval = 86_400, 60
    seen = set(range(200 * day, 201 * day, interval))
    assert unseen_spans(0, 366 * day, seen, interval) == [(0, 200 * day), (201 * day, 366 * day)]
