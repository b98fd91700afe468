"""Cancelling a batch announces each run it cancelled, as a step's commit does (a run event
"<run id> cancelled <steps>" on RUN_EVENTS_CHANNEL), so a waiter on one of them ends at once
instead of at its next poll (given / when / then)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from memq.constants import RUN_EVENTS_CHANNEL
from stack import client_for, own_stack


@pytest.fixture
def idle_client(memq_env: dict[str, str]) -> Iterator[Any]:
    """A client on a database and Redis db of its own with no worker: its runs stay queued."""
    with own_stack(memq_env, "memq_batch_cancel") as env:
        client = client_for(env)
        try:
            yield client
        finally:
            client.close()


def _events(sub: Any, runs: set[str], want: int, timeout_s: float = 5.0) -> list[str]:
    """The run events of these runs (pub/sub is server-wide: other sessions' runs are announced too)."""
    got: list[str] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        m = sub.get_message(timeout=0.2)
        if m and m["type"] == "message" and m["data"].decode().split(" ", 1)[0] in runs:
            got.append(m["data"].decode())
    return got


def test_cancelling_a_batch_announces_each_cancelled_run(idle_client: Any):
    # given a batch of 6 lines for 2 agents, all queued (no worker), and a subscriber to run events
    agents = [idle_client.create_agent(f"batch-cancel-{i}") for i in range(2)]
    lines = [json.dumps({"agent_id": a.id, "message": f"n{j}"}) for j in range(3) for a in agents]
    batch_id = idle_client.submit_batch(lines)["batch_id"]
    run_ids = [r["run_id"] for r in idle_client.batch_results(batch_id)]
    assert len(run_ids) == 6 and all(run_ids)
    sub = redis.Redis.from_url(idle_client.rt.settings.resolved_redis_url).pubsub(ignore_subscribe_messages=True)
    sub.subscribe(RUN_EVENTS_CHANNEL)
    sub.get_message(timeout=1.0)  # the subscription's confirmation

    # when the batch is cancelled through the Python client
    cancelled = idle_client.cancel_batch(batch_id)
    events = _events(sub, set(run_ids), want=7, timeout_s=2.0)  # one more than expected: nothing extra may come
    sub.close()

    # then every run was cancelled, and each was announced once, with its status and its 0 steps
    assert cancelled["cancelled_runs"] == 6
    assert sorted(events) == sorted(f"{run_id} cancelled 0" for run_id in run_ids)
    assert {r["status"] for r in idle_client.batch_results(batch_id)} == {"cancelled"}
