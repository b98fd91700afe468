"""commit_turn, on every backend: the fence and the turn's rows land together or not at all
(on Postgres one explicit transaction of two round trips on an autocommit connection)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from storage.models import Agent, Message, StepRecord
from storage.repository import (
    StaleLease, acquire_lease, commit_turn, next_inbox_item, run_row,
)
from test_storage_contract import LEASE_S, NOW, _turn_writes, consume, count, enqueue, make_agent

ADVANCE = {"now_s": NOW, "active_run_id": None, "heartbeat_reason": None, "new_messages": 3}


def _leased_event(db, name: str = "a"):
    agent = make_agent(db, name)
    run, _ = enqueue(db, agent, "m0")
    with db.transaction() as s:
        item = next_inbox_item(s, agent)
        lease = acquire_lease(s, agent, owner="w1", lease_s=LEASE_S, now_s=NOW)
    return agent, run, item, lease


def test_a_commit_advances_releases_and_writes_the_turn(db):
    # given a leased agent and its event
    agent, run, item, lease = _leased_event(db)
    # when its step commits
    with db.autocommit() as s:
        waits = commit_turn(s, lease, _turn_writes(agent, run.id, lease.step_counter + 1, item.id), **ADVANCE)
    # then nothing else waits, the turn's rows are there and the lease is released at the next step
    assert waits is False
    assert count(db, Message, agent) == 3 and count(db, StepRecord, agent) == 1
    with db.transaction() as s:
        row = s.get(Agent, agent)
        assert (row.step_counter, row.lease_owner, row.message_count) == (lease.step_counter + 1, None, 3)
        assert run_row(s, run.id).status == "done"


def test_a_stale_lease_writes_nothing_and_leaves_the_connection_clean(db):
    # given a lease taken over by another worker
    agent, run, item, lease = _leased_event(db)
    with db.transaction() as s:
        acquire_lease(s, agent, owner="w2", lease_s=LEASE_S, now_s=NOW + LEASE_S + 1)
    # when the first worker commits / then it is stale and none of its rows land
    with pytest.raises(StaleLease), db.autocommit() as s:
        commit_turn(s, lease, _turn_writes(agent, run.id, lease.step_counter + 1, item.id), **ADVANCE)
    assert count(db, Message, agent) == 0 and count(db, StepRecord, agent) == 0
    with db.transaction() as s:
        assert run_row(s, run.id).status == "queued" and next_inbox_item(s, agent).id == item.id
    # and the pooled connection is back in autocommit with no transaction left open
    with db.autocommit() as s:
        if s.connection().dialect.name == "postgresql":
            assert s.execute(text("select now() = statement_timestamp()")).scalar() is True


def test_a_withdrawn_event_rolls_the_fence_back_too(db):
    # given an event consumed (its batch cancelled) after the step read it
    agent, run, item, lease = _leased_event(db)
    consume(db, item.id)
    # when the step commits / then it is stale, and the agent's counter did not move
    with pytest.raises(StaleLease, match="withdrawn"), db.autocommit() as s:
        commit_turn(s, lease, _turn_writes(agent, run.id, lease.step_counter + 1, item.id), **ADVANCE)
    assert count(db, Message, agent) == 0
    with db.transaction() as s:
        assert s.execute(select(Agent.step_counter).where(Agent.id == agent)).scalar() == lease.step_counter
