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


def test_the_banner_names_each_gaps_node_and_leaves_short_ones_out():
    """A day at 10 s: the banner's floor is max(3 intervals, 0.1 % of the day) = 86.4 s."""
    from datetime import date

    from kubemonitor.handlers.billing_pages import shown_gaps
    from kubemonitor.ratecard import Period
    day = Period("2024-01-01", date(2024, 1, 1), date(2024, 1, 1), "UTC")
    statement = {"gaps": [{"from": "2024-01-01T00:30:00Z", "to": "2024-01-01T00:50:00Z", "node": "node-b"},
                          {"from": "2024-01-01T02:00:00Z", "to": "2024-01-01T03:00:00Z", "node": None},
                          {"from": "2024-01-01T05:00:00Z", "to": "2024-01-01T05:01:20Z", "node": "node-a"}]}
    shown = shown_gaps(statement, day, 10.0)
    assert [(g["node"], g["from"], g["to"]) for g in shown] == [("node-b", "2024-01-01 00:30", "2024-01-01 00:50"),
                                                                (None, "2024-01-01 02:00", "2024-01-01 03:00")]
