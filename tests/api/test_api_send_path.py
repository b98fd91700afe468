"""The API's event-loop send (memq/api/send_path.py) against the repository's: the same run
and inbox event, the tenant fence, and a run's answer read after the send's floor."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from memq.api import send_path
from memq.api.apg import AsyncPg
from memq.isotime import iso_utc
from stack import own_database
from storage import repository as repo
from storage.db import Database
from storage.models import InboxItem, Message, Run
from storage.repository.agents import AgentNotFound
from storage.repository.errors import NotFound


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    with own_database() as url:
        yield url


@pytest.fixture
def on_loop(db_url: str) -> Callable[[Callable[[AsyncPg], Awaitable[Any]]], Any]:
    """fn(pool) run on an event loop with a pool of the test's database."""

    def run(fn: Callable[[AsyncPg], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            apg = AsyncPg(db_url, max_size=2)
            try:
                return await fn(apg)
            finally:
                await apg.close()

        return asyncio.run(main())

    return run


def test_the_send_writes_what_the_repository_writes(db_url: str, on_loop):
    # given an agent of tenant acme
    db = Database(db_url)
    with db.transaction() as s:
        agent = repo.create_agent(s, name="ada", blocks={"human": "?"}, limit_chars=500, tenant_id="acme")
        repo_run, _ = repo.enqueue_message(s, agent.id, "hello", max_chars=5000)
    # when the event-loop send queues a message
    sent = on_loop(lambda apg: send_path.enqueue(apg, "acme", agent.id, "héllo \"world\"\n"))
    # then the run and its event are those the repository would write, in arrival order
    with db.transaction() as s:
        run = s.get(Run, sent.run.id)
        event = s.query(InboxItem).filter_by(run_id=run.id).one()
        first = s.query(InboxItem).filter_by(run_id=repo_run.id).one()
    assert (run.status, run.steps, run.replies, run.prompt_tokens, run.cost_usd) == ("queued", 0, [], 0, 0.0)
    assert sent.run.created_at == run.created_at and sent.queue == agent.queue
    assert event.event == {"type": "user_message", "message": "héllo \"world\"\n", "time": iso_utc(run.created_at)}
    assert set(event.event) == set(first.event) and event.id > first.id and event.created_at == run.created_at
    assert run.created_at >= first.created_at
    db.dispose()


def test_the_events_time_is_written_as_iso_utc_writes_it(on_loop):
    # given instants with and without a fraction of a second, when Postgres formats them as the
    # send's statement does, then they read as iso_utc writes them
    for instant in (datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
                    datetime(2026, 1, 2, 3, 4, 5, 120, tzinfo=timezone.utc),
                    datetime(2026, 7, 2, 23, 59, 59, 999999, tzinfo=timezone.utc)):
        sql = f"SELECT {send_path.iso_utc_sql('%(t)s::timestamptz')}"
        assert on_loop(lambda apg: apg.fetch(sql, {"t": instant}))[0][0] == iso_utc(instant)


def test_another_tenants_agent_and_run_are_not_found(db_url: str, on_loop):
    db = Database(db_url)
    with db.transaction() as s:
        agent = repo.create_agent(s, name="bob", blocks={"human": "?"}, limit_chars=500, tenant_id="acme")
    sent = on_loop(lambda apg: send_path.enqueue(apg, "acme", agent.id, "hi"))
    with pytest.raises(AgentNotFound):
        on_loop(lambda apg: send_path.enqueue(apg, "globex", agent.id, "hi"))
    with pytest.raises(NotFound):
        on_loop(lambda apg: send_path.run_messages(apg, "globex", sent.run.id))
    with db.transaction() as s:
        assert s.query(Run).filter_by(agent_id=agent.id).count() == 1  # the refused send stored nothing
    db.dispose()


def test_the_answer_holds_the_runs_messages_after_the_floor(db_url: str, on_loop):
    # given an agent with history, and a run sent after it
    db = Database(db_url)
    with db.transaction() as s:
        agent = repo.create_agent(s, name="cy", blocks={"human": "?"}, limit_chars=500, tenant_id="acme")
        s.add(Message(agent_id=agent.id, run_id=None, role="user", content="old", tokens=1))
    sent = on_loop(lambda apg: send_path.enqueue(apg, "acme", agent.id, "new"))
    with db.transaction() as s:
        old_max = max(m.id for m in s.query(Message).filter_by(agent_id=agent.id))
        assert sent.floor == old_max
        # when its step writes its messages
        for role, content in (("user", '{"type": "user_message"}'), ("assistant", "thinking")):
            s.add(Message(agent_id=agent.id, run_id=sent.run.id, step_no=1, role=role, content=content, tokens=1))
        s.get(Run, sent.run.id).status = "done"
    # then the answer reads them (and only them), oldest first, with the run
    run, rows = on_loop(lambda apg: send_path.run_messages(apg, "acme", sent.run.id, None, sent.floor))
    assert run.status == "done" and [m.content for m in rows] == ['{"type": "user_message"}', "thinking"]
    _, later = on_loop(lambda apg: send_path.run_messages(apg, "acme", sent.run.id, rows[0].id, sent.floor))
    assert [m.content for m in later] == ["thinking"]
    db.dispose()


def test_the_statement_takes_only_what_the_repository_would_write_as_it_is():
    # given the repository's rules: a deployment's message limit, the door's text rule, keys and callbacks
    assert send_path.applies("hello", None, None, max_chars=5000)
    assert not send_path.applies("x" * 600, None, None, max_chars=500)  # the repository refuses it (422)
    assert not send_path.applies("x" * 1001, None, None, max_chars=5000)  # checked against the agent's window
    assert not send_path.applies("caf\udce9", None, None, max_chars=5000)  # the door cleans it
    assert not send_path.applies("   ", None, None, max_chars=5000)  # the repository refuses it
    assert not send_path.applies("hello", "key-1", None, max_chars=5000)
    assert not send_path.applies("hello", None, "https://example.com/hook", max_chars=5000)
