"""A live socket's outbox and the token buckets of the live views (no server)."""
from __future__ import annotations

from kubemonitor.handlers.live import LiveSockets, Outbox, TokenBucket


def drain(outbox: Outbox) -> list[str]:
    out = []
    while (text := outbox.take()) is not None:
        out.append(text)
    return out


def test_a_status_change_does_not_displace_a_snapshot():
    """The newest snapshot of each view and the newest status, in arrival order; nothing else is dropped."""
    box = Outbox()
    box.put("cpu-1", ("cpu", "all", "1h"))
    box.put("status-degraded", "status")
    box.put("mem-1", ("mem", "all", "1h"))
    box.put("cpu-2", ("cpu", "all", "1h"))
    box.put("status-ok", "status")
    assert drain(box) == ["mem-1", "cpu-2", "status-ok"] and box.dropped == 2


def test_error_replies_keep_their_order_up_to_the_cap_and_free_it_when_sent():
    box = Outbox(max_errors=3)
    assert [box.put(f"error-{i}") for i in range(5)] == [True, True, True, False, False]
    box.put("cpu", ("cpu", "all", "1h"))
    assert drain(box) == ["error-0", "error-1", "error-2", "cpu"]
    assert box.put("error-again") and drain(box) == ["error-again"]  # sent ones no longer count


def test_a_bucket_spends_its_burst_then_refills_at_its_rate():
    now = [0.0]
    bucket = TokenBucket(burst=3, per_second=2, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5  # one token back
    assert [bucket.take(), bucket.take()] == [True, False]
    now[0] += 100  # never more than the burst
    assert sum(bucket.take() for _ in range(10)) == 3


def test_reconnecting_in_a_loop_is_refused_per_user():
    now = [0.0]
    sockets = LiveSockets(clock=lambda: now[0])
    assert all(sockets.refusal("alice") is None for _ in range(20))
    assert sockets.refusal("alice") == "reconnecting too fast" and sockets.refusal("bob") is None
    now[0] += 1.0
    assert sockets.refusal("alice") is None


def test_a_snapshot_says_when_influxdb_answered_and_ends_its_window_when_asked():
    """`polled_at` is when the answer was in (what a viewer's 'updated' means, and where the
    fan-out's delivery time starts); the window and "current" minute follow the asking time."""
    from kubemonitor.heapster import Heapster
    from kubemonitor.metrics import of_source
    from kubemonitor.poller import build_snapshot
    from kubemonitor.views import WINDOWS
    asked = 1_790_000_000 * 10**9 + 123_456_789
    snapshot, _ = build_snapshot(of_source(Heapster(), "cpu/usage_rate"), "all", WINDOWS["1h"], [], asked, 60 * 10**9,
                                 answered_ns=asked + 80_000_000)
    assert snapshot["polled_at"].endswith(":20.203Z")  # 80 ms later, in milliseconds
    assert snapshot["current"]["at"] == (asked // (60 * 10**9) - 1) * 60_000
