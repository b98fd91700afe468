"""Schedules: cron with zones and DST, intervals, one-shots; each fire exactly once."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from helpers import tick_until_fired
from scheduler.beat import fire_due
from scheduler.timing import ScheduleError
from storage.repository import schedules as sched_repo

UTC = timezone.utc


def _fires(client, schedule_id):
    with client.rt.db.transaction() as s:
        return sched_repo.schedule_fires(s, schedule_id)


def _set_next(client, schedule_id, when):
    with client.rt.db.transaction() as s:
        sched_repo.get_schedule(s, schedule_id).next_fire_at = when


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"cron": "61 * * * *"}, "invalid cron"),
        ({"cron": "0 9 * * *", "tz": "Mars/Olympus"}, "unknown time zone"),
        ({"every": "soon"}, "invalid duration"),
        ({"every": "0s"}, "positive"),
        ({"at": "2001-01-01T00:00:00+00:00"}, "in the past"),
        ({"at": "next tuesday"}, "invalid time"),
        ({"cron": "0 9 * * *", "every": "5m"}, "exactly one"),
        ({"every": "5m", "missed": "sometimes"}, "missed-fire policy"),
    ],
)
def test_invalid_schedules_are_refused_with_a_reason(client, agent, kwargs, match):
    with pytest.raises(ScheduleError, match=match):
        client.add_schedule(agent.id, "wake up", **kwargs)
    assert client.list_schedules(agent.id) == []


def test_cron_in_a_time_zone_fires_at_the_right_instants_across_dst(client, agent):
    # given a daily 02:30 Berlin wake-up and an hourly one, both across DST changes
    daily = client.add_schedule(agent.id, "daily", cron="30 2 * * *", tz="Europe/Berlin")
    hourly = client.add_schedule(agent.id, "hourly", cron="0 * * * *", tz="Europe/Berlin")
    start = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
    for sch in (daily, hourly):
        _set_next(client, sch.id, None)
    from scheduler.timing import ScheduleKind, Spec, first_fire

    _set_next(client, daily.id, first_fire(Spec(ScheduleKind.CRON, "30 2 * * *", "Europe/Berlin"), start))
    fall = datetime(2026, 10, 24, 23, 30, tzinfo=UTC)
    # when the beat's clock walks through the spring change (daily) and the fall change (hourly)
    for base, hours, step_min in ((start, 72, 5), (fall, 4, 1)):
        now = base
        while now <= base + timedelta(hours=hours):
            fire_due(client.rt, now, "test-beat")
            now += timedelta(minutes=step_min)
        if base == start:
            _set_next(client, daily.id, None)
            _set_next(client, hourly.id, first_fire(Spec(ScheduleKind.CRON, "0 * * * *", "Europe/Berlin"), fall))
    # then the daily one fired at 02:30 CET, 03:00 CEST (02:30 did not exist) and 02:30 CEST
    daily_utc = [f.scheduled_for.astimezone(UTC).replace(tzinfo=None) for f in _fires(client, daily.id)]
    assert daily_utc == [datetime(2026, 3, 28, 1, 30), datetime(2026, 3, 29, 1, 0), datetime(2026, 3, 30, 0, 30)]
    # and the hourly one fired every real hour through the repeated 02:00
    hourly_utc = [f.scheduled_for.astimezone(UTC).replace(tzinfo=None) for f in _fires(client, hourly.id)]
    # (from 01:30 CEST: 02:00 CEST, 02:00 CET, 03:00 CET, 04:00 CET)
    assert hourly_utc == [datetime(2026, 10, 25, h, 0) for h in range(0, 4)]


@pytest.mark.parametrize("policy, expected", [("coalesce", 1), ("skip", 0), ("all", 5)])
def test_missed_fires_follow_the_policy_after_a_beat_outage(client, agent, policy, expected):
    sch = client.add_schedule(agent.id, "tick", every="60s", missed=policy)
    t0 = datetime.now(UTC).replace(microsecond=0)
    _set_next(client, sch.id, t0 + timedelta(seconds=60))
    # when the beat was down for over five minutes and comes back at t0+335s
    # (the latest instant, t0+300s, is older than the 30 s grace)
    fired = fire_due(client.rt, t0 + timedelta(seconds=335), "test-beat")
    # then the missed instants fired as the policy says, and the next one is in the future
    assert len([a for a, _ in fired if a == agent.id]) == expected
    shown = next(s for s in client.list_schedules(agent.id) if s.id == sch.id)
    assert datetime.fromisoformat(shown.next_fire_at.replace("Z", "+00:00")) == t0 + timedelta(seconds=360)
    if policy == "coalesce":
        assert _fires(client, sch.id)[0].scheduled_for.replace(tzinfo=UTC) == t0 + timedelta(seconds=300)
    client.delete_schedule(sch.id)


def test_pause_resume_delete(client, agent):
    sch = client.add_schedule(agent.id, "tick", every="1s")
    now = datetime.now(UTC)
    assert client.pause_schedule(sch.id).paused
    assert [a for a, _ in fire_due(client.rt, now + timedelta(seconds=5), "b") if a == agent.id] == []
    resumed = client.resume_schedule(sch.id)
    assert not resumed.paused
    assert len([a for a, _ in fire_due(client.rt, now + timedelta(seconds=5), "b") if a == agent.id]) == 1
    client.delete_schedule(sch.id)
    assert client.list_schedules(agent.id) == []
    from storage.repository.errors import NotFound

    with pytest.raises(NotFound):
        client.pause_schedule(sch.id)


def test_one_shot_fires_once_and_shows_its_run(client, agent, worker):
    at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    sch = client.add_schedule(agent.id, "remind me", at=at)
    shown = tick_until_fired(client, agent.id, 20)
    assert shown.fires == 1 and shown.next_fire_at is None and shown.last_run_status == "done"
    run = client.get_run(shown.last_run_id)
    assert run.replies == ["echo: remind me"]
    event = [m for m in client.messages(agent.id) if m.role == "user"][0].content
    assert '"scheduled_wakeup"' in event and sch.id in event


def test_two_beats_fire_each_instant_exactly_once_and_every_fire_is_answered(client, agent, memq_env, tmp_path):
    # given an every-2-seconds schedule and two beat processes
    sch = client.add_schedule(agent.id, "tick", every="2s")
    cmd = [sys.executable, "-m", "memq.cli.main", "beat"]
    beats = [
        subprocess.Popen(cmd, env=memq_env, stdout=open(tmp_path / f"beat{i}.log", "wb"), stderr=subprocess.STDOUT)
        for i in range(2)
    ]
    try:
        time.sleep(15)
    finally:
        for b in beats:
            b.terminate()
        for b in beats:
            b.wait(timeout=15)
    fires = _fires(client, sch.id)
    # then each instant fired once, 2 s apart, by whichever beat got there first
    instants = [f.scheduled_for for f in fires]
    assert 6 <= len(fires) <= 8, [str(i) for i in instants]
    assert len(set(instants)) == len(instants)
    assert all((b - a) == timedelta(seconds=2) for a, b in zip(instants, instants[1:]))
    # and every fire became a run that was answered
    for f in fires:
        run = client.wait(f.run_id, 20)
        assert run.status == "done" and run.replies == ["echo: tick"]
    jitter_ms = sorted((f.fired_at - f.scheduled_for).total_seconds() * 1000 for f in fires)
    print(f"\nfire jitter over {len(fires)} fires: p50 {statistics.median(jitter_ms):.0f} ms, "
          f"p95 {jitter_ms[int(0.95 * (len(jitter_ms) - 1))]:.0f} ms, by beats {sorted({f.beat for f in fires})}")
    assert max(jitter_ms) < 2000
