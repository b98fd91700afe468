"""Refs that name rows (id, unique prefix, agent name) and bounded columns, on SQLite and Postgres.

Given / when / then; every test runs on both backends (the `db` fixture).
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from storage.db import Database
from storage.limits import ValueTooLong
from storage.models import Agent, Schedule
from storage.repository import create_agent, enqueue_message
from storage.repository.errors import BadInput, NotFound
from storage.repository.resolve import AmbiguousRef, resolve_agent, resolve_batch, resolve_run, resolve_schedule


def _agent(db: Database, name: str, agent_id: str | None = None) -> str:
    with db.transaction() as s:
        blocks = {} if agent_id else {"persona": "p"}  # no child rows when the id is changed below
        agent = create_agent(s, name=name, blocks=blocks, limit_chars=100)
        if agent_id is not None:  # a chosen id, to make prefixes collide on purpose
            s.flush()
            s.execute(Agent.__table__.update().where(Agent.id == agent.id).values(id=agent_id))
            return agent_id
        return agent.id


def _resolve(db: Database, fn, ref: str) -> str:
    with db.transaction() as s:
        return fn(s, ref)


def test_an_agent_is_found_by_id_prefix_and_name(db: Database):
    # given two agents
    ada = _agent(db, "ada", "1f3a0000-0000-4000-8000-000000000001")
    _agent(db, "bob", "2b000000-0000-4000-8000-000000000002")
    # when / then: the whole id, a 4-character prefix, an upper-case prefix and the name all give ada
    for ref in (ada, "1f3a", "1F3A0", "ada", "  ada "):
        assert _resolve(db, resolve_agent, ref) == ada


def test_an_ambiguous_prefix_lists_the_candidates(db: Database):
    # given two agents whose ids share a prefix
    first = _agent(db, "one", "abcd1111-0000-4000-8000-000000000001")
    second = _agent(db, "two", "abcd2222-0000-4000-8000-000000000002")
    # when a prefix both share is given
    with pytest.raises(AmbiguousRef) as err:
        _resolve(db, resolve_agent, "abcd")
    # then the error names both ids, and a longer prefix picks one
    assert first in str(err.value) and second in str(err.value)
    assert _resolve(db, resolve_agent, "abcd2") == second


def test_two_agents_with_one_name_are_ambiguous(db: Database):
    # given two agents named alike
    a, b = _agent(db, "twin"), _agent(db, "twin")
    # when / then the name is refused with both ids; each id still works
    with pytest.raises(AmbiguousRef) as err:
        _resolve(db, resolve_agent, "twin")
    assert a in str(err.value) and b in str(err.value)
    assert _resolve(db, resolve_agent, a) == a


def test_short_or_unknown_refs_are_not_found(db: Database):
    # given an agent
    ada = _agent(db, "ada", "1f3a0000-0000-4000-8000-000000000001")
    # when / then a 3-character prefix is too short, and an unknown id or a wildcard names nothing
    for ref in ("1f3", "ffff", str(uuid.uuid4()), "1f3a%", "____"):
        with pytest.raises(NotFound):
            _resolve(db, resolve_agent, ref)
    with pytest.raises(BadInput):
        _resolve(db, resolve_agent, "  ")
    assert _resolve(db, resolve_agent, ada[:8]) == ada


def test_runs_schedules_and_batches_resolve_by_prefix(db: Database):
    # given an agent with a run, a schedule and a batch
    agent_id = _agent(db, "ada")
    with db.transaction() as s:
        run, _ = enqueue_message(s, agent_id, "hi", max_chars=100)
        run_id = run.id
        schedule = Schedule(id=str(uuid.uuid4()), agent_id=agent_id, kind="every", expr="60.0", tz="UTC",
                            message="m", missed="coalesce", paused=False, fires=0)
        s.add(schedule)
        from storage.repository.batches import create_batch

        batch_id = create_batch(s, source="f.jsonl", total=1, invalid=0).id
    # when / then each resolves from its first 8 characters, and not as another kind
    assert _resolve(db, resolve_run, run_id[:8]) == run_id
    assert _resolve(db, resolve_schedule, schedule.id[:8]) == schedule.id
    assert _resolve(db, resolve_batch, batch_id[:8]) == batch_id
    with pytest.raises(NotFound, match="unknown batch"):
        _resolve(db, resolve_batch, run_id)


def test_a_value_over_its_column_limit_is_refused_alike_and_nothing_is_written(db: Database):
    # when an agent name of 201 characters and an idempotency key of 201 are given
    with pytest.raises(ValueTooLong, match="agent name is 201 characters long; the limit is 200"):
        _agent(db, "x" * 201)
    agent_id = _agent(db, "x" * 200)  # the limit itself is fine
    with pytest.raises(ValueTooLong, match="idempotency key is 201 characters long; the limit is 200"):
        with db.transaction() as s:
            enqueue_message(s, agent_id, "hi", max_chars=100, idempotency_key="k" * 201)
    # then only the valid agent exists, with no run
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Agent)) == 1
