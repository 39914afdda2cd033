"""Hostile files and floods met in process: operator YAML, rate-card bounds, log floods, guess back-off."""
from __future__ import annotations

import pytest


def test_a_flood_of_one_log_line_is_held_back_and_counted(tmp_path):
    import logging

    from kubemonitor.logs import RepeatFilter, setup_logging
    setup_logging(str(tmp_path), console=False)
    log = logging.getLogger("kubemonitor.flood-test")
    try:
        for _ in range(10_000):
            try:
                raise OSError(24, "Too many open files")
            except OSError:
                log.error("accept failed", exc_info=True)
        log.error("something else")
    finally:
        logging.shutdown()
    errors = (tmp_path / "errors.log").read_text()
    assert errors.count("ERROR kubemonitor.flood-test: accept failed") == 5 and "something else" in errors
    assert len(errors) < 10_000
    now = [0.0]
    f = RepeatFilter(burst=2, window=60, clock=lambda: now[0])

    def record(msg="same", args=()):
        return logging.LogRecord("x", logging.ERROR, "", 0, msg, args, None)
    assert [f.filter(record()) for _ in range(4)] == [True, True, False, False]
    now[0] = 61
    later = record()
    assert f.filter(later) and "2 more like this" in later.getMessage()


def test_lines_that_share_a_template_but_differ_in_text_are_all_logged():
    """Every access line has one template; 22 distinct calls must give 22 lines, and
    distinct failed logins and distinct tracebacks must not hide one another."""
    import logging

    from kubemonitor.logs import RepeatFilter
    f = RepeatFilter(burst=5, window=60, clock=lambda: 0.0)
    access = [logging.LogRecord("tornado.access", logging.INFO, "", 0, "%d %s %s (%s) %.2fms",
                                (200, "POST", f"/api/metrics/cpu/usage_rate?i={i}", "127.0.0.1", 3.5), None)
              for i in range(22)]
    assert all(f.filter(r) for r in access)
    logins = [logging.LogRecord("kubemonitor.auth", logging.WARNING, "", 0, "failed login for %r from %s",
                                (f"user{i}", "10.0.0.1"), None) for i in range(8)]
    assert all(f.filter(r) for r in logins)
    tracebacks = []
    for i in range(8):
        try:
            raise KeyError(f"key{i}")
        except KeyError:
            import sys
            tracebacks.append(logging.LogRecord("kubemonitor", logging.ERROR, "", 0, "request failed", (), sys.exc_info()))
    assert all(f.filter(r) for r in tracebacks)
    same = [logging.LogRecord("tornado.access", logging.INFO, "", 0, "%d %s", (200, "/same"), None) for _ in range(7)]
    assert [f.filter(r) for r in same] == [True] * 5 + [False] * 2


def test_people_logging_in_from_one_address_never_lock_it():
    """A lab behind NAT: every right password takes its count back, at each of the three
    limits, whatever the clock reads between the counts (a real clock moves on each call)."""
    from kubemonitor.handlers.auth import LoginThrottle
    now = [0.0]

    def ticking() -> float:
        now[0] += 0.001
        return now[0]
    t = LoginThrottle(clock=ticking)
    for i in range(100):
        name = f"member-{i}"
        assert t.retry_after(name, "192.0.2.7") == 0 and not t.busy(name, "192.0.2.7"), i
        t.end(t.begin(name, "192.0.2.7"), ok=True)
    for _ in range(3):
        t.fail("intruder", "192.0.2.7")
    assert t.retry_after("member-100", "192.0.2.7") == 0  # 3 failures, far from the address's 20


def test_many_addresses_against_one_name_back_off_doubling():
    from kubemonitor.handlers.auth import LoginThrottle
    now = [0.0]
    t = LoginThrottle(clock=lambda: now[0])
    for i in range(49):
        t.fail("bob", f"10.0.{i // 250}.{i % 250}")
    assert t.retry_after("bob", "192.0.2.1") == 0  # still fine for bob at home
    t.fail("bob", "10.9.9.9")                       # the 50th address: the name backs off
    first = t.retry_after("bob", "192.0.2.1")
    t.fail("bob", "10.9.9.10")
    assert first == 2 and t.retry_after("bob", "192.0.2.1") == 4
    now[0] += 15 * 60 + 1  # the window passes
    assert t.retry_after("bob", "192.0.2.1") == 0


LAUGHS = ('a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
          + "".join(f"{n}: &{n} [{','.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))
          + "users: *i\nclients: *i\nresources: *i\n")


@pytest.mark.parametrize("text,words", [
    (LAUGHS, ["alias (*name) is not allowed"]),                                    # a 640-byte billion laughs
    ("users:\n  [a, b]: {email: x}\nclients:\n  [a, b]: {sha256: x}\nresources:\n  [a]: {metric: x}\n",
     ["line 2", "a key must be a plain name"]),
    ("users:\n  alice: {? [x]: 1}\nclients:\n  r: {? {x: 1}: 1}\nresources:\n  cpu: {? [x]: 1}\n", ["a key must be a plain name"]),
])
def test_hostile_operator_yaml_is_one_error_at_once(text, words):
    import time

    from kubemonitor.apiclients import ClientsFileError, parse_clients
    from kubemonitor.ratecard import RateCardError
    from kubemonitor.ratecard import parse as parse_card
    from kubemonitor.users import UsersFileError, parse_users
    for parse, error in ((parse_users, UsersFileError), (parse_clients, ClientsFileError), (parse_card, RateCardError)):
        started = time.monotonic()
        with pytest.raises(error) as info:
            parse(text, "f.yaml")
        assert time.monotonic() - started < 1 and all(w in str(info.value) for w in words), (parse, str(info.value))


@pytest.mark.parametrize("resource,words", [
    ("{metric: cpu/usage_rate, unit: core-hours, price: 1e300}", ["price of cpu is over 1e+09"]),
    ("{metric: cpu/usage_rate, unit: core-hours, divide_by: 1e-320, price: 1}", ["divide_by of cpu must be from"]),
])
def test_rate_card_numbers_are_bounded(resource, words):
    from kubemonitor.ratecard import RateCardError
    from kubemonitor.ratecard import parse as parse_card
    with pytest.raises(RateCardError) as info:
        parse_card(f"currency: CHF\nresources:\n  cpu: {resource}\n", "billing.yaml")
    assert all(w in str(info.value) for w in words) and "line 3" in str(info.value), str(info.value)


def test_a_huge_rate_card_is_refused_before_parsing(tmp_path):
    from kubemonitor import ratecard
    card = tmp_path / "billing.yaml"
    card.write_text("currency: CHF\ngroups:\n" + "".join(f"  g{i}: {{namespaces: [ns{i}]}}\n" for i in range(60_000)))
    with pytest.raises(ratecard.RateCardError) as info:
        ratecard.load(str(card), required=True)
    assert "over 1024 KiB" in str(info.value)
