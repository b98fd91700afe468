"""The worker's run events and doorbell over memq's own RESP connection (memq/resp.py),
against the real Redis: every thread's PUBLISH arrives, a dropped connection is
re-opened, a refused command is an error; and the step's journal record keeps the
steps table's columns."""

from __future__ import annotations

import threading
import time
from dataclasses import fields
from urllib.parse import urlsplit

import pytest
import redis

from memq.constants import RUN_EVENTS_CHANNEL
from memq.resp import PlainResp, command
from workers.run_events import RunEvents


@pytest.fixture
def url(spare_redis_url: str) -> str:
    return spare_redis_url


def _listen(url: str):
    sub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
    sub.subscribe(RUN_EVENTS_CHANNEL)
    sub.get_message(timeout=1.0)  # the subscription's confirmation
    return sub


def _drain(sub, got: list[bytes], want: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        m = sub.get_message(timeout=0.2)
        if m and m["type"] == "message":
            got.append(m["data"])


def test_publishes_from_many_threads_each_arrive_once(url: str):
    # given a subscriber and the worker's publisher
    got: list[bytes] = []
    sub = _listen(url)
    events = RunEvents(url)
    # when 8 threads publish 25 run events each (as a worker's step threads do)
    def publish(t: int) -> None:
        for i in range(25):
            events.publish(f"run-{t}-{i}", "running", i + 1)

    threads = [threading.Thread(target=publish, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    events.publish_many([("run-x", "done", 3), ("run-y", "cancelled", 0)])
    _drain(sub, got, 202)
    events.close()
    sub.close()
    # then every one arrived once, as "<run id> <status> <steps>"
    expected = {f"run-{t}-{i} running {i + 1}".encode() for t in range(8) for i in range(25)}
    expected |= {b"run-x done 3", b"run-y cancelled 0"}
    assert len(got) == 202 and set(got) == expected


def test_a_dropped_connection_is_reopened_on_the_next_call(url: str):
    resp = PlainResp(urlsplit(url), timeout_s=2.0)
    resp.call([command("LPUSH", "q", "before")])
    server = redis.Redis.from_url(url)
    # when Redis drops memq's connection (only that one: the server is shared)
    host, port = resp._sock.getsockname()[:2]  # this connection, not another test's idle one on the db
    mine = [c for c in server.client_list() if c["addr"] == f"{host}:{port}"]
    assert len(mine) == 1
    assert server.client_kill_filter(_id=mine[0]["id"]) == 1
    # then the next call still lands, on the URL's database
    resp.call([command("LPUSH", "q", "after")])
    resp.close()
    assert server.lrange("q", 0, -1) == [b"after", b"before"]


def test_an_error_reply_is_an_error_naming_it(url: str):
    resp = PlainResp(urlsplit(url), timeout_s=2.0)
    with pytest.raises(ConnectionError, match="WRONGTYPE|wrong kind"):
        redis.Redis.from_url(url).set("k", "a string")
        resp.call([command("LPUSH", "k", "x")])
    # and the connection is usable afterwards (no unread reply is left behind)
    resp.call([command("LPUSH", "q", "x")])
    resp.close()
    assert redis.Redis.from_url(url).llen("q") == 1


def test_a_publisher_without_redis_stays_quiet_and_one_that_cannot_reach_it_never_raises():
    RunEvents(None).publish("r", "done", 1)  # embedded mode: nothing to publish to
    unreachable = RunEvents("redis://127.0.0.1:1/0")
    t0 = time.monotonic()
    unreachable.publish("r", "done", 1)
    unreachable.publish("r", "done", 2)  # skipped: the first failure pauses publishing
    assert time.monotonic() - t0 < 2.0


def test_the_journal_record_has_every_column_of_the_steps_table():
    from storage.repository.turn_writes import JOURNAL_COLUMNS
    from workers.step_writes import JournalRow

    assert {f.name for f in fields(JournalRow)} == set(JOURNAL_COLUMNS)
