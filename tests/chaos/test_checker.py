"""The chaos checker must see what it claims to see: each kind of violation, planted
by hand in a database (SQLite, same schema), is counted; a clean record is clean."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import delete, update

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from storage import repository as repo  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.models import InboxItem, Message, Run, StepRecord  # noqa: E402
from tests.chaos.checker import check, out_of_order  # noqa: E402

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def world(tmp_path):
    """One agent with three messages sent, processed correctly, one step each."""
    url = f"sqlite:///{tmp_path / 'chk.db'}"
    db = Database(url)
    db.upgrade()
    texts = [f"agent-0 msg-{j}" for j in range(3)]
    with db.transaction() as s:
        agent = repo.create_agent(s, name="a", blocks={"persona": "p"}, limit_chars=100)
        agent_id = agent.id
        runs = [repo.enqueue_message(s, agent_id, t, max_chars=1000, idempotency_key=f"k{j}")[0]
                for j, t in enumerate(texts)]
    with db.transaction() as s:
        for j, (t, run) in enumerate(zip(texts, runs)):
            process(s, agent_id, run.id, t, step_no=j + 1, at=T0 + timedelta(seconds=j))
    yield db, url, agent_id, texts, [r.id for r in runs]
    db.dispose()


def process(s, agent_id, run_id, text, *, step_no, at, reply=None):
    event = json.dumps({"type": "user_message", "message": text, "time": "t"})
    s.add(Message(agent_id=agent_id, run_id=run_id, step_no=step_no, role="user", content=event, created_at=at))
    s.add(Message(agent_id=agent_id, run_id=run_id, step_no=step_no, role="assistant", content=None,
                  created_at=at))
    s.execute(update(InboxItem).where(InboxItem.run_id == run_id).values(consumed_at=at))
    s.execute(update(Run).where(Run.id == run_id).values(
        status="done", steps=1, replies=[reply or f"echo: {text}"], finished_at=at))
    s.add(StepRecord(agent_id=agent_id, run_id=run_id, step_no=step_no, lease_token=step_no,
                     started_at=at, finished_at=at + timedelta(milliseconds=500), outcome="tool_ok"))


def run_check(url, agent_id, texts):
    return check(url, {agent_id: texts}, {agent_id: {t: f"k{j}" for j, t in enumerate(texts)}})


def test_clean_record_is_clean(world):
    db, url, agent_id, texts, _ = world
    r = run_check(url, agent_id, texts)
    assert (r["lost"], r["duplicated"], r["reordered"], r["overlapping"], r["wrong_replies"]) == (0,) * 5
    assert r["steps"] == 3 and r["sent"] == 3


def test_unprocessed_message_is_lost(world):
    db, url, agent_id, texts, runs = world
    with db.transaction() as s:
        s.execute(delete(Message).where(Message.run_id == runs[1]))
        s.execute(update(InboxItem).where(InboxItem.run_id == runs[1]).values(consumed_at=None))
    assert run_check(url, agent_id, texts)["lost"] == 1


def test_message_never_stored_is_lost(world):
    db, url, agent_id, texts, _ = world
    assert run_check(url, agent_id, [*texts, "agent-0 msg-3"])["lost"] == 1


def test_message_processed_twice_is_duplicated(world):
    db, url, agent_id, texts, runs = world
    with db.transaction() as s:
        event = json.dumps({"type": "user_message", "message": texts[2], "time": "t"})
        s.add(Message(agent_id=agent_id, run_id=runs[2], step_no=3, role="user", content=event,
                      created_at=T0 + timedelta(seconds=9)))
    assert run_check(url, agent_id, texts)["duplicated"] == 1


def test_second_run_for_the_same_text_is_duplicated(world):
    db, url, agent_id, texts, _ = world
    with db.transaction() as s:
        repo.enqueue_message(s, agent_id, texts[0], max_chars=1000, idempotency_key="other-key")
    r = run_check(url, agent_id, texts)
    assert r["duplicated"] >= 1


def test_reply_sent_twice_is_duplicated(world):
    db, url, agent_id, texts, runs = world
    with db.transaction() as s:
        s.execute(update(Run).where(Run.id == runs[0]).values(replies=[f"echo: {texts[0]}"] * 2))
    assert run_check(url, agent_id, texts)["duplicated"] == 1


def test_processing_out_of_inbox_order_is_reordered(world):
    db, url, agent_id, texts, runs = world
    with db.transaction() as s:
        # msg-0's event is recorded after msg-2's
        s.execute(delete(Message).where(Message.run_id == runs[0]))
        event = json.dumps({"type": "user_message", "message": texts[0], "time": "t"})
        s.add(Message(agent_id=agent_id, run_id=runs[0], step_no=1, role="user", content=event,
                      created_at=T0 + timedelta(seconds=5)))
    assert run_check(url, agent_id, texts)["reordered"] == 1


def test_inbox_out_of_send_order_is_reordered(world):
    db, url, agent_id, texts, _ = world
    assert run_check(url, agent_id, [texts[1], texts[0], texts[2]])["reordered"] == 1


def test_overlapping_steps_are_counted(world):
    db, url, agent_id, texts, _ = world
    with db.transaction() as s:
        s.execute(update(StepRecord).where(StepRecord.agent_id == agent_id, StepRecord.step_no == 2)
                  .values(finished_at=T0 + timedelta(seconds=2, milliseconds=100)))
    assert run_check(url, agent_id, texts)["overlapping"] == 1


def test_wrong_reply_is_counted(world):
    db, url, agent_id, texts, runs = world
    with db.transaction() as s:
        s.execute(update(Run).where(Run.id == runs[1]).values(replies=["echo: agent-0 msg-0"]))
    assert run_check(url, agent_id, texts)["wrong_replies"] == 1


def test_failed_runs_are_classified(world):
    db, url, agent_id, texts, runs = world
    with db.transaction() as s:
        s.execute(update(Run).where(Run.id == runs[0]).values(
            status="failed", replies=[], error="LLM call failed after 5 attempt(s): Timeout"))
        s.execute(update(Run).where(Run.id == runs[1]).values(
            status="failed", replies=[], error="gave up: the step for this event was attempted 5 times"))
    r = run_check(url, agent_id, texts)
    assert (r["failed_llm"], r["failed_gave_up"], r["failed"]) == (1, 1, 2)
    assert r["lost"] == r["duplicated"] == r["wrong_replies"] == 0


def test_out_of_order_counts_moves():
    assert out_of_order(list("abcd"), list("abcd")) == 0
    assert out_of_order(list("bacd"), list("abcd")) == 1
    assert out_of_order(list("dabc"), list("abcd")) == 1
    assert out_of_order(list("dcba"), list("abcd")) == 3
