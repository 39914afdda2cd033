"""Hourly rollups in the test's real influxd (a retention policy of their own): answers
from rollups equal answers from raw points, replicas and restarts and kills cannot
corrupt them, late points are counted and left alone until a rebuild, and a
read-only account turns them off without changing any answer."""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time

import pytest
from conftest import API_PASS, API_USER, DB, clear_of_boundary
from dataset import T0, D

from kubemonitor.heapster import Heapster
from kubemonitor.influx import InfluxError
from kubemonitor.influxd import Influxd
from kubemonitor.metrics import of_source
from kubemonitor.request import ApiQuery
from kubemonitor.rollups import HOURS, USAGE
from kubemonitor.times import HOUR_NS, NS
from kubemonitor.usage import aggregate

CPU = of_source(Heapster(), "cpu/usage_rate")
INTERVAL = 60 * NS


@pytest.fixture
def rp():
    return "t_" + secrets.token_hex(4)  # each test its own retention policy in the shared database


@pytest.fixture
def rollup_app(make_app, rp):
    return make_app(rollup_rp=rp)


async def roll(app, first, hours, metric=CPU):
    await app.rollups.prepare()
    assert app.rollups.state == "on", app.rollups.reason
    for hour in range(first, first + hours * HOUR_NS, HOUR_NS):
        await app.rollup_writer.roll_up(metric, hour)


async def both(app, metric, agg, begin, end, namespace="default"):
    q = ApiQuery(namespace=namespace, agg=agg, begin_ns=begin, end_ns=end)
    excluded = app.config.excluded_namespaces
    from_rollups = await aggregate(app.influx, metric, q, excluded, INTERVAL, app.rollups)
    from_raw = await aggregate(app.influx, metric, q, excluded, INTERVAL, None)
    return from_rollups, from_raw


@pytest.mark.gen_test(timeout=60)
async def test_rollups_answer_exactly_what_raw_points_answer(rollup_app):
    await roll(rollup_app, D, 30)  # day D and the first 6 hours of D+1
    assert len(await rollup_app.rollups.covered_hours(CPU, D, D + 30 * HOUR_NS)) == 30
    index = await rollup_app.rollups.index(CPU, D, D + 48 * HOUR_NS)  # hours and days, in one query
    assert index.days == {D} and len(index.hours) == 30  # day D is kept whole: read as one day
    # per namespace (what statements by group or namespace read): the pods' sums, exactly
    from kubemonitor.usage import Scope
    for begin, end in ((D, D + 24 * HOUR_NS - 1), (D - 90 * 60 * NS, D + 29 * HOUR_NS + 7)):
        pods = await rollup_app.rollups.usage(CPU, begin, end, Scope(), INTERVAL)
        namespaces = await rollup_app.rollups.usage(CPU, begin, end, Scope(), INTERVAL, per_namespace=True)
        summed: dict = {}
        for (ns, _pod, _id), counted in pods.items():
            summed.setdefault(ns, [0, 0.0])
            summed[ns][0] += counted.count
            summed[ns][1] += counted.sum
        assert {ns: [c.count, c.sum] for (ns, _, _), c in namespaces.items()} == summed
    ranges = [(D, D + 24 * HOUR_NS - 1), (D + 30 * 60 * NS, D + 23 * HOUR_NS + 15 * 60 * NS),
              (D + 5 * HOUR_NS, D + 5 * HOUR_NS), (D, D + 48 * HOUR_NS - 1), (D - 3 * HOUR_NS, D + 2 * HOUR_NS + 7),
              (T0, T0 + HOUR_NS)]  # the last is not rolled up at all
    for begin, end in ranges:
        for agg, namespace in (("all-pod", "x"), ("all-namespace", "x"), ("pod-by-namespace", "case-partial")):
            from_rollups, from_raw = await both(rollup_app, CPU, agg, begin, end, namespace)
            assert from_rollups == from_raw, (agg, begin - D, end - D)
            assert from_raw or (agg == "pod-by-namespace" and begin == T0)  # never an empty comparison by accident


@pytest.mark.gen_test(timeout=60)
async def test_whole_hours_come_from_the_rollups(rollup_app, running_influxd, rp):
    """A kept hour is read from the rollups, not recomputed: a point planted in the rollups shows."""
    await roll(rollup_app, D, 2)
    running_influxd.write(DB, f"{USAGE},metric=cpu/usage_rate,namespace_name=case-planted,pod_name=p,source=pod "
                              f"count=3i,sum=30.0,max=10.0 {D}", rp=rp)
    rows, raw = await both(rollup_app, CPU, "all-namespace", D, D + 2 * HOUR_NS - 1)
    planted = {r["namespace_name"]: r for r in rows}["case-planted"]
    assert (planted["count"], planted["sum"], planted["max"]) == (3, 30.0, 10.0)
    assert "case-planted" not in {r["namespace_name"] for r in raw}
    # but a range that only touches part of that hour reads raw points for it
    rows, _ = await both(rollup_app, CPU, "all-namespace", D + 1, D + 2 * HOUR_NS - 1)
    assert "case-planted" not in {r["namespace_name"] for r in rows}


def kept(influxd, rp):
    usage = influxd.query(f'SELECT * FROM "{rp}"."{USAGE}"', DB)["results"][0].get("series", [])
    hours = influxd.query(f'SELECT * FROM "{rp}"."{HOURS}"', DB)["results"][0].get("series", [])
    return [sorted(map(tuple, s["values"])) for s in usage + hours]


@pytest.mark.gen_test(timeout=60)
async def test_two_replicas_at_once_and_again_write_the_same(make_app, running_influxd, rp):
    a, b = make_app(rollup_rp=rp), make_app(rollup_rp=rp)
    await asyncio.gather(roll(a, D, 6), roll(b, D, 6))
    first = kept(running_influxd, rp)
    await roll(a, D, 6)  # idempotent: the same hours again
    assert kept(running_influxd, rp) == first
    assert sum(len(s) for s in first) > 6


def sample_lines(namespace, t, value=10.0):
    return [f"cpu/usage_rate,namespace_name={namespace},pod_name=p-1,container_name=c,type=pod_container value={value} {t}",
            f"cpu/usage_rate,namespace_name={namespace},pod_name=p-1,type=pod value={value} {t}"]


@pytest.mark.gen_test(timeout=90)
async def test_late_points_within_the_settle_delay_count_after_it_and_an_open_periods_hour_is_rolled_again(
        make_app, scratch_db, running_influxd, rp):
    app = make_app(influxdb_db=scratch_db, rollup_rp=rp)
    rollups, writer = app.rollups, app.rollup_writer
    clear_of_boundary(3600, 30)  # "the hour that ended last" must not change while the test runs
    last = (time.time_ns() // HOUR_NS - 1) * HOUR_NS  # the hour that ended last
    running_influxd.write(scratch_db, [line for m in range(0, 60, 10) for line in sample_lines("late", last - 3 * HOUR_NS + m * 60 * NS)])
    running_influxd.write(scratch_db, [line for m in range(0, 60, 10) for line in sample_lines("late", last + m * 60 * NS)])
    await rollups.prepare()
    writer.settle_ns = time.time_ns() - (last + HOUR_NS) + 60 * NS  # the last hour has not settled yet
    assert await writer.catch_up(CPU) == 3 and await writer.last_hour(CPU) == last - HOUR_NS
    running_influxd.write(scratch_db, sample_lines("late", last + 59 * 60 * NS, 1000.0))  # late, but within the delay
    writer.settle_ns = 0
    assert await writer.catch_up(CPU) == 1
    q = ApiQuery(agg="all-namespace", begin_ns=last, end_ns=last + HOUR_NS - 1)
    (row,) = await aggregate(app.influx, CPU, q, (), INTERVAL, rollups)
    assert row["sum"] == 6 * 10 + 1000 and row["count"] == 7
    assert not writer.closed(last)  # the hour that ended last is in an open period, whatever the date
    running_influxd.write(scratch_db, sample_lines("late", last + 58 * 60 * NS, 500.0))  # after the hour was kept
    assert await writer.count_late_points(CPU) == 2  # its pod and container samples
    assert await writer.count_late_points(CPU) == 0  # counted once
    assert app.telemetry.registry.get_sample_value("kubemonitor_rollup_late_points_total", {"metric": CPU.name}) == 2
    (row,) = await aggregate(app.influx, CPU, q, (), INTERVAL, rollups)
    assert row["sum"] == 1560 and row["count"] == 8  # the open period's hour was rolled up again at once
    assert writer.late_hours() == []  # nothing is waiting for a rebuild


@pytest.mark.gen_test(timeout=90)
async def test_points_however_late_are_found_and_a_closed_periods_hour_waits_for_a_rebuild(
        make_app, scratch_db, running_influxd, rp, http_client, base_url):
    """Points for January 2024 arrive today: far past the six hours the task re-reads every
    minute. The older kept hours are looked at a day's worth a pass, so they are found;
    January is closed, so its rollups stay as they were kept (statements kept from them
    never change) and /readyz lists the hour until `rollup --rebuild`."""
    from conftest import serve_app
    jan = 1_704_067_200 * NS  # 2024-01-01T00:00:00Z
    running_influxd.write(scratch_db, [line for h in range(3) for m in range(0, 60, 10)
                                       for line in sample_lines("old", jan + h * HOUR_NS + m * 60 * NS)])
    app = make_app(influxdb_db=scratch_db, rollup_rp=rp)
    writer = app.rollup_writer
    await app.rollups.prepare()
    for h in range(3):
        await writer.roll_up(CPU, jan + h * HOUR_NS)
    assert writer.closed(jan + HOUR_NS)
    running_influxd.write(scratch_db, sample_lines("old", jan + HOUR_NS + 5 * 60 * NS, 700.0))  # almost three years late
    found = 0
    for _ in range(3):  # the recent hours every pass, the kept history a chunk at a time
        found += await writer.count_late_points(CPU)
    assert found == 2
    assert writer.late_hours() == [{"metric": "cpu/usage_rate", "hour": "2024-01-01T01:00:00Z", "points": 2,
                                    "fix": "kubemonitor rollup --from 2024-01-01 --to 2024-01-01 --rebuild"}]
    base, server = await serve_app(app)
    try:
        ready = json.loads((await http_client.fetch(base + "/readyz")).body)
    finally:
        server.stop()
    assert ready["rollups"]["late"] == writer.late_hours()
    q = ApiQuery(agg="all-namespace", begin_ns=jan + HOUR_NS, end_ns=jan + 2 * HOUR_NS - 1)
    (row,) = await aggregate(app.influx, CPU, q, (), INTERVAL, app.rollups)
    assert row["sum"] == 60.0  # as kept
    await writer.roll_up(CPU, jan + HOUR_NS, rebuild=True)
    (row,) = await aggregate(app.influx, CPU, q, (), INTERVAL, app.rollups)
    assert row["sum"] == 760.0 and row["count"] == 7
    for _ in range(3):
        await writer.count_late_points(CPU)
    assert writer.late_hours() == []  # the rebuild took them in


@pytest.mark.gen_test(timeout=60)
async def test_a_rebuild_keeps_hours_whose_raw_points_have_expired(make_app, scratch_db, running_influxd, rp):
    """Retention removed an hour's raw points: a rebuild leaves the kept hour as it was
    instead of replacing it with nothing (which re-issued closed statements with less usage)."""
    app = make_app(influxdb_db=scratch_db, rollup_rp=rp)
    rollups, writer = app.rollups, app.rollup_writer
    hour = (time.time_ns() // HOUR_NS - 3) * HOUR_NS
    running_influxd.write(scratch_db, [line for m in range(0, 60, 10) for line in sample_lines("old", hour + m * 60 * NS)])
    await rollups.prepare()
    assert await writer.roll_up(CPU, hour) == 1
    q = ApiQuery(agg="all-namespace", begin_ns=hour, end_ns=hour + HOUR_NS - 1)
    (before,) = await aggregate(app.influx, CPU, q, (), INTERVAL, rollups)
    running_influxd.query(f'DELETE FROM "cpu/usage_rate" WHERE time >= {hour} AND time < {hour + HOUR_NS}', db=scratch_db)
    assert await writer.roll_up(CPU, hour, rebuild=True) is None
    (after,) = await aggregate(app.influx, CPU, q, (), INTERVAL, rollups)
    assert after == before and before["sum"] == 60


@pytest.mark.gen_test(timeout=90)
async def test_influxdb_frozen_while_rolling_up_marks_nothing_and_the_next_pass_completes(make_app, running_influxd, rp):
    app = make_app(rollup_rp=rp, influxdb_timeout=1.0)
    await app.rollups.prepare()
    os.kill(running_influxd.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(InfluxError) as info:
            await app.rollup_writer.roll_up(CPU, D)
        assert info.value.status == 504
    finally:
        os.kill(running_influxd.process.pid, signal.SIGCONT)
    assert await app.rollups.covered_hours(CPU, D, D + HOUR_NS) == []  # not marked as done
    await app.rollup_writer.roll_up(CPU, D)
    assert await app.rollups.covered_hours(CPU, D, D + HOUR_NS) == [D]


def rollup_cli(running_influxd, rp, *args, db=DB):
    return [sys.executable, "-m", "kubemonitor", "rollup", *args, "--influxdb-host", "127.0.0.1",
            "--influxdb-port", str(running_influxd.http_port), "--influxdb-db", db, "--rollup-rp", rp,
            "--rollup-metrics", "cpu/usage_rate"]


@pytest.mark.slow
def test_a_rollup_killed_with_sigkill_is_completed_by_the_next_run(running_influxd, anchors, rp):
    proc = subprocess.Popen(rollup_cli(running_influxd, rp, "--from", "2018-03-01", "--to", "2018-03-09"),
                            stderr=subprocess.PIPE, text=True)
    while "rollup" not in (line := proc.stderr.readline()):  # the first tenth is done
        assert line, "the rollup command ended early"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    marked = running_influxd.query(f'SELECT count("pods") FROM "{rp}"."{HOURS}"', DB)["results"][0]["series"][0]["values"][0][1]
    assert 0 < marked < 9 * 24
    r = subprocess.run(rollup_cli(running_influxd, rp, "--from", "2018-03-01", "--to", "2018-03-09"), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    marked = running_influxd.query(f'SELECT count("pods") FROM "{rp}"."{HOURS}"', DB)["results"][0]["series"][0]["values"][0][1]
    assert marked == 9 * 24
    clean = "t_" + secrets.token_hex(4)
    subprocess.run(rollup_cli(running_influxd, clean, "--from", "2018-03-01", "--to", "2018-03-09"), check=True,
                   capture_output=True, timeout=120)
    assert kept(running_influxd, rp) == kept(running_influxd, clean)


@pytest.mark.parametrize("args,words", [
    (["--from", "2018-03-02", "--to", "2018-03-01"], ["--from is after --to"]),
    (["--from", "2018-02-30"], ["--from", "not a real date"]),
    (["--from", "yesterday"], ["--from", "is not a time"]),
    (["--from", "2000-01-01", "--to", "2020-01-01"], ["more than 366 days"]),
    (["--from", "2099-01-01"], ["--from 2099-01-01 is in the future", "now"]),  # was "--from is after --to"
])
def test_rollup_command_refuses_bad_ranges_in_one_line(running_influxd, rp, args, words):
    r = subprocess.run(rollup_cli(running_influxd, rp, *args), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("kubemonitor: ")]
    assert len(lines) == 1 and all(w in lines[0] for w in words), r.stderr


@pytest.mark.gen_test(timeout=60)
async def test_the_serve_task_rolls_up_settled_hours_and_resumes_after_a_restart(make_app, scratch_db, running_influxd, rp):
    now_hour = time.time_ns() // HOUR_NS * HOUR_NS
    running_influxd.write(scratch_db, [line for h in range(5, 0, -1) for line in sample_lines("task", now_hour - h * HOUR_NS)])
    app = make_app(influxdb_db=scratch_db, rollup_rp=rp, rollup_settle=1.0)
    app.rollup_every = 0.2
    await app.start()
    deadline = time.monotonic() + 30
    while app.rollups.state != "on" or len(await app.rollups.covered_hours(CPU, now_hour - 5 * HOUR_NS, now_hour)) < 5:
        assert time.monotonic() < deadline, app.rollups.status()
        await asyncio.sleep(0.2)
    await app.shutdown()
    before = app.telemetry.registry.get_sample_value("kubemonitor_rollup_hours_total", {"metric": CPU.name})
    assert before >= 5
    # a new process resumes where the rollups end: nothing is done twice
    again = make_app(influxdb_db=scratch_db, rollup_rp=rp, rollup_settle=1.0)
    await again.rollups.prepare()
    assert await again.rollup_writer.catch_up(CPU) == 0


@pytest.mark.gen_test(timeout=60)
async def test_a_read_only_account_turns_rollups_off_and_answers_from_raw(make_app, tmp_path, http_client):
    import dataset
    (tmp_path / "ro").mkdir()
    server = Influxd(root=str(tmp_path / "ro"), auth=True).start()
    try:
        admin = ("admin", "admin-pw-1")
        server.query("CREATE USER admin WITH PASSWORD 'admin-pw-1' WITH ALL PRIVILEGES")
        server.query('CREATE DATABASE "k8s_ro"', user=admin)
        server.query("CREATE USER reader WITH PASSWORD 'reader-pw-1'", user=admin)
        server.query('GRANT READ ON "k8s_ro" TO "reader"', user=admin)
        import urllib.request
        req = urllib.request.Request(f"{server.url}/write?db=k8s_ro&u=admin&p=admin-pw-1", method="POST",
                                     data="\n".join(dataset.usage_rule_lines()).encode())
        urllib.request.urlopen(req, timeout=60)
        app = make_app(influxdb_port=server.http_port, influxdb_db="k8s_ro", influxdb_user="reader", influxdb_pass="reader-pw-1")
        await app.rollups.prepare()
        assert app.rollups.state == "off" and "read-only" in app.rollups.reason
        from conftest import serve_app
        base, http = await serve_app(app)
        try:
            r = await http_client.fetch(base + "/readyz")
            import json
            assert json.loads(r.body)["rollups"]["state"] == "off"
            r = await http_client.fetch(base + "/api/cpu/usage_rate", method="POST",
                                        headers={"X-USERNAME": API_USER, "X-PASSWORD": API_PASS},
                                        body=json.dumps({"agg": "pod-by-namespace", "namespace": "case-skew",
                                                         "timeBeginInterval": "2018-03-05", "timeEndInterval": "2018-03-05"}))
            (row,) = json.loads(r.body)
            assert row["count"] == 1440 and row["integral"] == 1440 * 300 / 60
            # nothing can be kept, so a long-past day is "ended", never "closed", and says why
            r = await http_client.fetch(base + "/api/billing/statement", method="POST",
                                        headers={"X-USERNAME": API_USER, "X-PASSWORD": API_PASS},
                                        body=json.dumps({"period": "2018-03-05", "by": "namespace"}))
            s = json.loads(r.body)
            assert s["period"]["state"] == "ended"
            assert any("cannot be kept" in note and "late" in note for note in s["notes"]), s.get("notes")
            assert {row["namespace"]: row["usage"]["cpu"] for row in s["rows"]}["case-skew"] == 1440 * 300 / 60 / 1000
            ready = json.loads((await http_client.fetch(base + "/readyz")).body)
            assert ready["statements"]["kept"] is False and "read-only" in ready["statements"]["reason"]
        finally:
            http.stop()
    finally:
        server.cleanup()


@pytest.mark.gen_test(timeout=90)
async def test_rollups_equal_raw_points_on_the_simulated_cluster(make_app, scratch_db, rp):
    from kubemonitor.simulate import Cluster, backfill, client_for
    end = time.time() // 3600 * 3600 - 120  # the last three hours before the current one, and then some
    app = make_app(influxdb_db=scratch_db, rollup_rp=rp)
    await asyncio.get_running_loop().run_in_executor(
        None, lambda: backfill(Cluster(seed=3, namespaces=3, pods=12), client_for(app.config), 3.5 * 3600, 60.0, end=end,
                               progress=False))
    first = int(end // 3600 - 3) * HOUR_NS
    for name in ("cpu/usage_rate", "memory/usage", "gpu/usage"):  # gpu/usage: from the sink's accelerator/memory_used
        metric = await app.catalog.resolve(name)
        await roll(app, first, 3, metric)
        for begin, stop in ((first, first + 3 * HOUR_NS - 1), (first - 20 * 60 * NS, int(end * NS)),
                            (first + 17 * 60 * NS, first + 2 * HOUR_NS + 3 * NS)):
            for agg in ("all-pod", "all-namespace"):
                from_rollups, from_raw = await both(app, metric, agg, begin, stop)
                assert from_raw and [r.keys() for r in from_rollups] == [r.keys() for r in from_raw]
                for a, b in zip(from_rollups, from_raw):
                    assert {k: v for k, v in a.items() if not isinstance(v, float)} == \
                           {k: v for k, v in b.items() if not isinstance(v, float)}
                    for k, v in a.items():
                        if isinstance(v, float):
                            assert v == pytest.approx(b[k], rel=1e-12), (name, agg, k)


def test_rollup_into_a_database_that_does_not_exist_names_it(running_influxd, rp):
    """It was blamed on "a read-only InfluxDB account?"."""
    r = subprocess.run(rollup_cli(running_influxd, rp, "--from", "2018-03-01", "--to", "2018-03-01", db="no_such_db_x"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = [line for line in r.stderr.splitlines() if line.startswith("kubemonitor: ")]
    assert "no database 'no_such_db_x'" in line and "INFLUXDB_DB" in line and "read-only" not in line, r.stderr


@pytest.mark.gen_test(timeout=60)
async def test_negative_gauge_samples_are_left_out_and_counted(make_app, scratch_db, running_influxd, rp):
    """A collector fault that writes a negative usage sample is never billed as a credit: the
    sample is left out (as if missing), from raw points and from rollups alike, and a
    statement can say how many there were."""
    app = make_app(influxdb_db=scratch_db, rollup_rp=rp)
    hour = (time.time_ns() // HOUR_NS - 3) * HOUR_NS
    lines = [line for m in range(0, 60, 10) for line in sample_lines("neg", hour + m * 60 * NS)]        # 6 x 10
    lines += [line for m in (5, 15) for line in sample_lines("neg", hour + m * 60 * NS, value=-500.0)]  # 2 faults
    running_influxd.write(scratch_db, lines)
    q = ApiQuery(agg="all-namespace", begin_ns=hour, end_ns=hour + HOUR_NS - 1)
    (raw,) = await aggregate(app.influx, CPU, q, (), INTERVAL, None)
    assert raw["sum"] == 60 and raw["count"] == 6
    await app.rollups.prepare()
    await app.rollup_writer.roll_up(CPU, hour)
    (rolled,) = await aggregate(app.influx, CPU, q, (), INTERVAL, app.rollups)
    assert rolled["sum"] == 60 and rolled["count"] == 6
    assert await app.billing.negative_samples(CPU, hour, hour + HOUR_NS) == 4  # pod and container series, twice
