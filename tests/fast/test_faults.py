"""The simulator's collector faults (kubemonitor/faults.py), on the lines of real ticks."""
from __future__ import annotations

import pytest

from kubemonitor.faults import FAULTS, Faults, node_of, parse_faults
from kubemonitor.simulate import DAY, Cluster

END = 1_700_000_000 // DAY * DAY + 12 * 3600
H = 3600


def tick(source: str, t: float) -> list[str]:
    return Cluster(seed=5, namespaces=2, pods=4, nodes=2, start=END, source=source).tick(t)


@pytest.mark.parametrize("source", ["heapster", "telegraf"])
def test_an_outage_drops_node_1s_lines_in_its_twenty_minutes_only(source):
    faults = Faults(frozenset({"outage"}), END, source)
    inside, outside = END - 5 * H - 40 * 60, END - 5 * H - 55 * 60
    lines = tick(source, inside)
    kept = faults.apply(inside, lines)
    assert {node_of(line) for line in lines} >= {"node-1", "node-2"}
    assert [line for line in lines if node_of(line) != "node-1"] == kept
    assert faults.apply(outside, tick(source, outside)) == tick(source, outside)


@pytest.mark.parametrize("source", ["heapster", "telegraf"])
def test_a_duplicate_collector_writes_every_line_again_five_seconds_later(source):
    faults = Faults(frozenset({"duplicate"}), END, source)
    t = END - 3 * H + 600
    lines = tick(source, t)
    out = faults.apply(t, lines)
    assert len(out) == 2 * len(lines) and out[0::2] == lines
    copy, original = out[1], out[0]
    assert int(copy.rsplit(" ", 1)[1]) == int(original.rsplit(" ", 1)[1]) + 5
    assert ("host=telegraf-rollout" in copy) == (source == "telegraf")  # Heapster's is the very same series


def test_a_retried_flush_resends_node_1s_ten_minutes_a_second_later():
    faults = Faults(frozenset({"flush"}), END, "telegraf")
    t = END - 4 * H + 300
    lines = tick("telegraf", t)
    out = faults.apply(t, lines)
    again = [line for line in out if line not in lines]
    assert again and len(again) == sum(1 for line in lines if node_of(line) == "node-1")
    assert faults.apply(END - 4 * H + 700, tick("telegraf", END - 4 * H + 700)) == tick("telegraf", END - 4 * H + 700)


def test_late_points_are_held_back_and_released_once():
    faults = Faults(frozenset({"late"}), END, "heapster", last_node="node-2")
    t = END - 8 * H + 60
    lines = tick("heapster", t)
    out = faults.apply(t, lines)
    held = [line for line in lines if node_of(line) == "node-2"]
    assert held and out == [line for line in lines if node_of(line) != "node-2"]
    assert faults.release() == held and faults.release() == []


def test_the_interval_fault_doubles_the_samples_of_the_last_two_hours():
    faults = Faults(frozenset({"interval"}), END)
    assert faults.extra_times(END - 3 * H, 60.0) == []
    assert faults.extra_times(END - H, 60.0) == [END - H + 30.0]


def test_an_unknown_fault_names_the_choices():
    assert parse_faults("duplicate, outage") == {"duplicate", "outage"}
    with pytest.raises(ValueError) as info:
        parse_faults("duplicate,flood")
    assert "flood" in str(info.value) and all(name in str(info.value) for name in FAULTS)
