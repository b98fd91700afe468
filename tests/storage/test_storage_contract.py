"""The storage contract: every test runs on SQLite (embedded) and Postgres.

Each test reads given / when / then. Reads that check what was committed open a
new transaction, so they see the database, not the writer's session.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select, text, update

from memq.constants import RunStatus
from storage.db import MIGRATIONS_DIR, Database
from storage.models import (
    Agent, Base, InboxItem, MemoryBlock, Message, Run, Schedule, ScheduleFire, StepRecord, utcnow,
)
from storage.repository import (
    AgentNotFound,
    BlockLimitExceeded,
    Lease,
    MessageTooLong,
    NotFound,
    StaleLease,
    CONTEXT_COLUMNS,
    acquire_lease,
    acquire_lease_with_agent,
    advance_and_release,
    advance_step_counter,
    agents_with_pending_work,
    claim_agents_to_ring,
    context_messages,
    create_agent,
    delete_agent,
    enqueue_many,
    enqueue_message,
    get_agent,
    get_run,
    has_pending_work,
    last_messages,
    list_agents,
    load_blocks,
    TurnWrites,
    active_turn,
    next_event_turn,
    next_inbox_item,
    record_step,
    release_lease,
    renew_leases,
    save_block_values,
    write_turn,
)
from storage.repository.errors import BadInput
from storage.repository.inbox import run_row
from storage.repository.lease import RELEASE_SKEW_S
from storage.repository.messages import count_from, iso_utc

TABLES = {"agents", "memory_blocks", "messages", "runs", "inbox", "steps"}
NOW = 1_000_000.0  # an arbitrary epoch second for lease arithmetic
# Where now_s is compared with row timestamps (inbox created_at), tests use the
# real clock instead: time.time().
LEASE_S = 30.0
MAX_CHARS = 50
THREAD_JOIN_S = 40.0


class Boom(Exception):
    """Raised inside a transaction to make it roll back."""


# --------------------------------------------------------------------- helpers


def make_agent(db: Database, name: str = "agent", blocks: dict[str, str] | None = None, limit: int = 100) -> str:
    if blocks is None:
        blocks = {"persona": "I am a test agent.", "human": "Unknown."}
    with db.transaction() as s:
        return create_agent(s, name=name, blocks=blocks, limit_chars=limit).id


def count(db: Database, model, agent_id: str | None = None) -> int:
    with db.transaction() as s:
        stmt = select(func.count()).select_from(model)
        if agent_id is not None:
            stmt = stmt.where(model.agent_id == agent_id)
        return s.scalar(stmt)


def block_values(db: Database, agent_id: str) -> dict[str, str]:
    with db.transaction() as s:
        return {b.label: b.value for b in load_blocks(s, agent_id)}


def agent_row(db: Database, agent_id: str) -> Agent:
    with db.transaction() as s:
        return get_agent(s, agent_id)


def enqueue(db: Database, agent_id: str, message: str = "hello", key: str | None = None):
    with db.transaction() as s:
        return enqueue_message(s, agent_id, message, max_chars=MAX_CHARS, idempotency_key=key)


def consume(db: Database, item_id: int) -> None:
    with db.transaction() as s:
        s.execute(update(InboxItem).where(InboxItem.id == item_id).values(consumed_at=utcnow()))


def add_messages(db: Database, agent_id: str, contents: list[str]) -> list[int]:
    with db.transaction() as s:
        rows = [Message(agent_id=agent_id, role="user", content=c) for c in contents]
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]


def step_row(agent_id: str, step_no: int, token: int) -> StepRecord:
    now = utcnow()
    return StepRecord(
        agent_id=agent_id, step_no=step_no, lease_token=token, started_at=now,
        finished_at=now, outcome="tool_ok",
    )


def take_lease(db: Database, agent_id: str, now_s: float = NOW, owner: str = "w1") -> Lease | None:
    with db.transaction() as s:
        return acquire_lease(s, agent_id, owner=owner, lease_s=LEASE_S, now_s=now_s)


def run_threads(targets) -> None:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(THREAD_JOIN_S)
    assert not any(t.is_alive() for t in threads), "a thread hung"


# ------------------------------------------------------------------ migrations


def test_upgrade_creates_every_table(db):
    # given a freshly migrated database / then every table of the schema exists
    assert TABLES <= set(inspect(db.engine).get_table_names())


def test_upgrade_twice_is_a_noop(db):
    # given a migrated database holding an agent
    agent_id = make_agent(db)
    insp = inspect(db.engine)
    before = {t: sorted(c["name"] for c in insp.get_columns(t)) for t in insp.get_table_names()}

    # when the migrations run again
    db.upgrade()

    # then the schema, the recorded revision and the data are unchanged
    insp = inspect(db.engine)
    after = {t: sorted(c["name"] for c in insp.get_columns(t)) for t in insp.get_table_names()}
    assert after == before
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with db.engine.connect() as conn:
        versions = [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))]
    assert versions == [head]
    assert [a.id for a in _list(db)] == [agent_id]
    assert block_values(db, agent_id) == {"persona": "I am a test agent.", "human": "Unknown."}


def test_migrated_schema_matches_the_models(db):
    # given a migrated database / then autogenerate finds nothing the models lack
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def _list(db):
    with db.transaction() as s:
        return list_agents(s)


# ---------------------------------------------------------------------- agents


def test_create_agent_stores_blocks_with_labels_positions_and_limits(db):
    # when an agent is created with three blocks
    with db.transaction() as s:
        agent = create_agent(
            s, name="Ada", blocks={"persona": "curious", "human": "", "notes": "x" * 40},
            limit_chars=40, model="openai/gpt", system_prompt="be brief", queue="batch",
        )
        agent_id = agent.id

    # then a new transaction reads back the agent and its blocks in order
    with db.transaction() as s:
        got = get_agent(s, agent_id)
        assert (got.name, got.model, got.system_prompt, got.queue) == ("Ada", "openai/gpt", "be brief", "batch")
        assert (got.lease_token, got.step_counter, got.lease_until_s) == (0, 0, 0.0)
        assert got.active_run_id is None and got.context_start_id == 0
        blocks = load_blocks(s, agent_id)
    assert [(b.label, b.value, b.position, b.limit_chars) for b in blocks] == [
        ("persona", "curious", 0, 40),
        ("human", "", 1, 40),
        ("notes", "x" * 40, 2, 40),
    ]


def test_list_agents_returns_every_agent_and_get_agent_each(db):
    # given three agents
    ids = [make_agent(db, name=f"a{i}") for i in range(3)]
    # then list_agents returns all of them (creation order) and get_agent finds each
    with db.transaction() as s:
        listed = list_agents(s)
        assert sorted(a.id for a in listed) == sorted(ids)
        assert [a.name for a in listed] == ["a0", "a1", "a2"]
        assert [get_agent(s, i).id for i in ids] == ids


def test_delete_agent_removes_all_its_rows_and_only_its_rows(db):
    # given two agents, each with blocks, runs, inbox events, messages and steps
    doomed, kept = make_agent(db, "doomed"), make_agent(db, "kept")
    for agent_id in (doomed, kept):
        enqueue(db, agent_id, "one")
        enqueue(db, agent_id, "two", key="k")
        add_messages(db, agent_id, ["m1", "m2"])
        with db.transaction() as s:
            s.add(step_row(agent_id, 1, 1))
            schedule = Schedule(id=f"sched-{agent_id[:8]}", agent_id=agent_id, kind="every", expr="60", message="tick")
            s.add(schedule)
            s.flush()
            s.add(ScheduleFire(schedule_id=schedule.id, agent_id=agent_id, scheduled_for=utcnow(), fired_at=utcnow()))
    models = (MemoryBlock, Run, InboxItem, Message, StepRecord, Schedule, ScheduleFire)
    kept_before = {m.__tablename__: count(db, m, kept) for m in models}
    assert all(count(db, m, doomed) > 0 for m in models)

    # when one agent is deleted
    with db.transaction() as s:
        delete_agent(s, doomed)

    # then none of its rows remain and the other agent is untouched
    assert {m.__tablename__: count(db, m, doomed) for m in models} == dict.fromkeys(kept_before, 0)
    assert {m.__tablename__: count(db, m, kept) for m in models} == kept_before
    with db.transaction() as s:
        with pytest.raises(AgentNotFound):
            get_agent(s, doomed)
        assert [a.id for a in list_agents(s)] == [kept]


UNKNOWN = "00000000-0000-0000-0000-00000000dead"


@pytest.mark.parametrize(
    "operation",
    [
        pytest.param(lambda s: get_agent(s, UNKNOWN), id="get_agent"),
        pytest.param(lambda s: get_agent(s, UNKNOWN, for_update=True), id="get_agent_for_update"),
        pytest.param(lambda s: delete_agent(s, UNKNOWN), id="delete_agent"),
        pytest.param(lambda s: enqueue_message(s, UNKNOWN, "hi", max_chars=MAX_CHARS), id="enqueue_message"),
    ],
)
def test_unknown_agent_raises_agent_not_found_naming_the_id(db, operation):
    # given an empty database / when an operation names an unknown agent
    with pytest.raises(AgentNotFound) as excinfo:
        with db.transaction() as s:
            operation(s)
    # then the error is a NotFound carrying the id, and nothing was written
    assert isinstance(excinfo.value, NotFound)
    assert UNKNOWN in str(excinfo.value)
    assert excinfo.value.agent_id == UNKNOWN
    assert count(db, Run) == 0 and count(db, InboxItem) == 0


@pytest.mark.parametrize("name", ["", "   ", "\t\n"])
def test_create_agent_with_empty_name_is_bad_input(db, name):
    with pytest.raises(BadInput, match="name"):
        make_agent(db, name=name)
    assert count(db, Agent) == 0 and count(db, MemoryBlock) == 0


def test_create_agent_with_block_over_limit_raises_and_writes_nothing(db):
    # given a limit of 10 characters / when one block holds 11
    with pytest.raises(BlockLimitExceeded) as excinfo:
        make_agent(db, blocks={"persona": "short", "human": "x" * 11}, limit=10)
    # then the error is BadInput naming the block, its size and limit; nothing was created
    assert isinstance(excinfo.value, BadInput)
    assert "human" in str(excinfo.value) and "11" in str(excinfo.value) and "10" in str(excinfo.value)
    assert count(db, Agent) == 0 and count(db, MemoryBlock) == 0


def test_create_agent_block_exactly_at_limit_is_accepted(db):
    agent_id = make_agent(db, blocks={"persona": "x" * 10}, limit=10)
    assert block_values(db, agent_id) == {"persona": "x" * 10}


# ----------------------------------------------------------- save_block_values


def test_save_block_values_updates_only_the_named_blocks_of_that_agent(db):
    # given two agents with the same labels
    a, b = make_agent(db, "a"), make_agent(db, "b")
    # when one block of agent a is saved
    with db.transaction() as s:
        save_block_values(s, a, {"human": "Name: Grace."})
    # then only that block changed
    assert block_values(db, a) == {"persona": "I am a test agent.", "human": "Name: Grace."}
    assert block_values(db, b) == {"persona": "I am a test agent.", "human": "Unknown."}


def test_save_block_values_over_limit_raises_and_rolls_back_everything(db):
    # given an agent whose blocks have a limit of 20
    agent_id = make_agent(db, blocks={"persona": "p", "human": "h"}, limit=20)
    # when a save updates one block within the limit and another beyond it
    with pytest.raises(BlockLimitExceeded, match="human"):
        with db.transaction() as s:
            save_block_values(s, agent_id, {"persona": "new persona", "human": "y" * 21})
    # then the rolled-back transaction changed nothing, not even the valid block
    assert block_values(db, agent_id) == {"persona": "p", "human": "h"}


def test_save_block_values_unknown_label_raises_not_found(db):
    agent_id = make_agent(db)
    with pytest.raises(NotFound, match="secrets"):
        with db.transaction() as s:
            save_block_values(s, agent_id, {"persona": "changed", "secrets": "x"})
    assert block_values(db, agent_id)["persona"] == "I am a test agent."


# ------------------------------------------------------------- enqueue_message


def test_enqueue_message_creates_a_queued_run_and_an_inbox_event(db):
    # given an agent
    agent_id = make_agent(db)
    before = datetime.now(timezone.utc)
    # when a message is enqueued
    run, created = enqueue(db, agent_id, "Hello there", key="req-1")
    after = datetime.now(timezone.utc)

    # then a queued run and one inbox event pointing at it were committed
    assert created is True
    with db.transaction() as s:
        stored = get_run(s, run.id)
        assert (stored.agent_id, stored.status, stored.steps, stored.idempotency_key) == (
            agent_id, RunStatus.QUEUED.value, 0, "req-1",
        )
        items = list(s.scalars(select(InboxItem).where(InboxItem.agent_id == agent_id)))
    assert len(items) == 1
    item = items[0]
    assert item.run_id == run.id and item.consumed_at is None
    assert set(item.event) == {"type", "message", "time"}
    assert item.event["type"] == "user_message"
    assert item.event["message"] == "Hello there"
    assert item.event["time"].endswith("Z")
    when = datetime.fromisoformat(item.event["time"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= when <= after + timedelta(seconds=1)


@pytest.mark.parametrize("message", ["", " ", "\n\t  "])
def test_enqueue_empty_message_is_bad_input_and_writes_nothing(db, message):
    agent_id = make_agent(db)
    with pytest.raises(BadInput, match="empty"):
        enqueue(db, agent_id, message)
    assert count(db, Run) == 0 and count(db, InboxItem) == 0


def test_enqueue_message_over_max_chars_raises_message_too_long(db):
    agent_id = make_agent(db)
    with pytest.raises(MessageTooLong) as excinfo:
        enqueue(db, agent_id, "x" * (MAX_CHARS + 1))
    assert isinstance(excinfo.value, BadInput)
    assert str(MAX_CHARS + 1) in str(excinfo.value) and str(MAX_CHARS) in str(excinfo.value)
    assert count(db, Run) == 0 and count(db, InboxItem) == 0
    # and a message of exactly max_chars is accepted
    _, created = enqueue(db, agent_id, "x" * MAX_CHARS)
    assert created and count(db, InboxItem) == 1


def test_enqueue_with_a_repeated_idempotency_key_returns_the_same_run(db):
    # given a message sent with a key
    agent_id = make_agent(db)
    first, created_first = enqueue(db, agent_id, "pay the bill", key="k-1")
    # when the same key is sent again (in a later transaction)
    again, created_again = enqueue(db, agent_id, "pay the bill", key="k-1")
    # then the first run comes back, created is False, and no row was added
    assert (created_first, created_again) == (True, False)
    assert again.id == first.id
    assert count(db, Run, agent_id) == 1 and count(db, InboxItem, agent_id) == 1


def test_enqueue_without_key_always_creates_a_new_run(db):
    agent_id = make_agent(db)
    r1, _ = enqueue(db, agent_id, "same")
    r2, created = enqueue(db, agent_id, "same")
    assert created and r1.id != r2.id
    assert count(db, InboxItem, agent_id) == 2


def test_different_agents_may_reuse_an_idempotency_key(db):
    a, b = make_agent(db, "a"), make_agent(db, "b")
    run_a, created_a = enqueue(db, a, "hi", key="shared")
    run_b, created_b = enqueue(db, b, "hi", key="shared")
    assert created_a and created_b and run_a.id != run_b.id
    assert count(db, InboxItem, a) == 1 and count(db, InboxItem, b) == 1


def test_enqueue_in_a_rolled_back_transaction_leaves_nothing(db):
    # (on SQLite this needs the driver's own transaction handling switched off:
    # otherwise the SAVEPOINT opens the transaction and its RELEASE commits it)
    # given an agent
    agent_id = make_agent(db)
    # when the transaction that enqueued a message fails afterwards
    with pytest.raises(Boom):
        with db.transaction() as s:
            enqueue_message(s, agent_id, "lost?", max_chars=MAX_CHARS, idempotency_key="k")
            raise Boom
    # then neither the run nor the inbox event was committed (I4)
    assert count(db, Run) == 0 and count(db, InboxItem) == 0
    # and the key is still free
    _, created = enqueue(db, agent_id, "again", key="k")
    assert created


def test_enqueue_many_keeps_each_agents_order_and_matches_one_by_one_sends(db):
    # given two agents
    a, b = make_agent(db, "a"), make_agent(db, "b")
    pairs = [(a, "a1"), (b, "b1"), (a, "a2"), (a, "a3"), (b, "b2")]
    # when a batch enqueues their messages interleaved
    with db.transaction() as s:
        run_ids = enqueue_many(s, pairs, max_chars=MAX_CHARS, batch_id=None)
    # then there is one queued run per pair, returned in the given order
    assert len(set(run_ids)) == 5
    with db.transaction() as s:
        runs = [get_run(s, rid) for rid in run_ids]
        items = list(s.scalars(select(InboxItem).order_by(InboxItem.id)))
    assert [(r.agent_id, r.status) for r in runs] == [(agent, RunStatus.QUEUED.value) for agent, _ in pairs]
    # and each agent's events come in the given order, shaped as a single send's are
    assert [i.event["message"] for i in items if i.agent_id == a] == ["a1", "a2", "a3"]
    assert [i.event["message"] for i in items if i.agent_id == b] == ["b1", "b2"]
    assert {i.run_id: i.event["message"] for i in items} == {rid: text for rid, (_, text) in zip(run_ids, pairs)}
    assert all(set(i.event) == {"type", "message", "time"} and i.event["type"] == "user_message" for i in items)


@pytest.mark.parametrize("bad", ["", "x" * (MAX_CHARS + 1), "unknown-agent"])
def test_enqueue_many_with_one_bad_pair_writes_nothing(db, bad):
    # given a batch whose last pair is empty, too long, or names no agent
    a = make_agent(db, "a")
    pairs = [(a, "fine"), ("no-such-agent", "hi") if bad == "unknown-agent" else (a, bad)]
    # when it is enqueued, then it is refused as a whole
    with pytest.raises((BadInput, NotFound)):
        with db.transaction() as s:
            enqueue_many(s, pairs, max_chars=MAX_CHARS)
    assert count(db, Run) == 0 and count(db, InboxItem) == 0


def test_enqueue_many_cleans_text_as_enqueue_message_does(db):
    a = make_agent(db, "a")
    with db.transaction() as s:
        enqueue_many(s, [(a, "caf\udce9 \x00")], max_chars=MAX_CHARS)
    with db.transaction() as s:
        item = s.scalars(select(InboxItem)).one()
    assert item.event["message"] == "caf\ufffd \ufffd"


def test_get_run_unknown_raises_not_found(db):
    with pytest.raises(NotFound, match="nope"):
        with db.transaction() as s:
            get_run(s, "nope")


# ------------------------------------------------------------------------ inbox


def test_next_inbox_item_returns_the_oldest_unconsumed_event_of_that_agent(db):
    # given three messages for one agent, interleaved with another agent's
    a, other = make_agent(db, "a"), make_agent(db, "other")
    for i in range(3):
        enqueue(db, a, f"m{i}")
        enqueue(db, other, f"other{i}")
    seen = []
    # when the agent consumes its inbox one event at a time
    while True:
        with db.transaction() as s:
            item = next_inbox_item(s, a)
        if item is None:
            break
        assert item.agent_id == a
        seen.append(item.event["message"])
        consume(db, item.id)
        assert len(seen) <= 3
    # then it saw exactly its own events, in arrival order
    assert seen == ["m0", "m1", "m2"]
    with db.transaction() as s:
        assert next_inbox_item(s, other).event["message"] == "other0"


def test_has_pending_work(db):
    # given a fresh agent / then it has no pending work (nor has an unknown agent)
    agent_id = make_agent(db)
    with db.transaction() as s:
        assert has_pending_work(s, agent_id) is False
        assert has_pending_work(s, UNKNOWN) is False
    # when a message arrives / then it has
    run, _ = enqueue(db, agent_id)
    with db.transaction() as s:
        assert has_pending_work(s, agent_id) is True
        item = next_inbox_item(s, agent_id)
    # when the event is consumed but its turn is in progress / then it still has
    with db.transaction() as s:
        s.execute(update(InboxItem).where(InboxItem.id == item.id).values(consumed_at=utcnow()))
        s.execute(update(Agent).where(Agent.id == agent_id).values(active_run_id=run.id))
    with db.transaction() as s:
        assert has_pending_work(s, agent_id) is True
    # when the turn ends / then it has none
    with db.transaction() as s:
        s.execute(update(Agent).where(Agent.id == agent_id).values(active_run_id=None))
    with db.transaction() as s:
        assert has_pending_work(s, agent_id) is False


def test_next_event_turn_returns_the_run_of_the_oldest_unconsumed_event_with_that_event_and_the_blocks(db):
    # given an agent with no events / then there is no turn
    a = make_agent(db, "a", blocks={"persona": "P", "human": "H", "notes": "N"})
    other = make_agent(db, "other")
    with db.transaction() as s:
        assert next_event_turn(s, a) is None
    # given two messages for the agent, and one for another agent before them
    enqueue(db, other, "other0")
    first, _ = enqueue(db, a, "m0")
    enqueue(db, a, "m1")
    # when the step looks for its event / then it gets the first run with its event
    with db.transaction() as s:
        got, blocks = next_event_turn(s, a)
        item = next_inbox_item(s, a)
        run = run_row(s, first.id)
        stored_blocks = [(b.label, b.value, b.limit_chars) for b in load_blocks(s, a)]
    assert got.id == first.id and got.inbox_id == item.id and got.inbox_event == item.event
    assert got.inbox_event["message"] == "m0"
    # and the run's columns are those run_row gives, the blocks those load_blocks gives, in order
    assert {k: getattr(got, k) for k in run._fields} == run._asdict()
    assert blocks == stored_blocks == [("persona", "P", 100), ("human", "H", 100), ("notes", "N", 100)]
    # when that event is consumed / then the next one's run comes back
    consume(db, item.id)
    with db.transaction() as s:
        assert next_event_turn(s, a).run.inbox_event["message"] == "m1"
        assert next_event_turn(s, other).run.inbox_event["message"] == "other0"


def test_active_turn_returns_the_run_and_the_blocks_or_refuses_an_unknown_run(db):
    # given a run of an agent with blocks, and a run of an agent with none
    a = make_agent(db, "a", blocks={"persona": "P", "human": "H"})
    bare = make_agent(db, "bare", blocks={})
    run, _ = enqueue(db, a, "m0")
    bare_run, _ = enqueue(db, bare, "m0")
    # when the turn in progress is read
    with db.transaction() as s:
        got = active_turn(s, run.id)
        got_bare = active_turn(s, bare_run.id)
        stored = run_row(s, run.id)
    # then the run is as run_row gives it and the blocks come in order
    assert {k: getattr(got.run, k) for k in stored._fields} == stored._asdict()
    assert got.blocks == [("persona", "P", 100), ("human", "H", 100)]
    # and an agent without blocks still gets its run
    assert got_bare.run.id == bare_run.id and got_bare.blocks == []
    # and an unknown run is refused by name
    with db.transaction() as s, pytest.raises(NotFound, match="unknown run"):
        active_turn(s, UNKNOWN)


def journal_row(agent_id: str, step_no: int, token: int = 1) -> dict:
    now = utcnow()
    return {"agent_id": agent_id, "step_no": step_no, "lease_token": token, "started_at": now,
            "finished_at": now, "outcome": "tool_ok"}


def test_record_step_writes_the_journal_row_and_reports_whether_an_event_of_that_agent_waits(db):
    # given an agent without events, and another agent with one
    a, other = make_agent(db, "a"), make_agent(db, "other")
    enqueue(db, other, "other0")
    # when a step of a is recorded / then nothing waits for a
    with db.transaction() as s:
        assert record_step(s, journal_row(a, 1)) is False
    # given an event for a / then it waits
    enqueue(db, a, "m0")
    with db.transaction() as s:
        assert record_step(s, journal_row(a, 2)) is True
    # when the step consumed that event earlier in its transaction / then nothing waits
    with db.transaction() as s:
        item = next_inbox_item(s, a)
        s.execute(update(InboxItem).where(InboxItem.id == item.id).values(consumed_at=utcnow()))
        assert record_step(s, journal_row(a, 3)) is False
    # then every journal row was written
    with db.transaction() as s:
        steps = list(s.scalars(select(StepRecord.step_no).where(StepRecord.agent_id == a)))
    assert sorted(steps) == [1, 2, 3]


def _turn_writes(agent_id: str, run_id: str, step_no: int, inbox_id: int | None, **run) -> TurnWrites:
    now = utcnow()
    call = [{"id": "call_1", "type": "function", "function": {"name": "send_message", "arguments": "{}"}}]
    return TurnWrites(
        agent_id=agent_id, run_id=run_id, step_no=step_no, at=now, inbox_id=inbox_id,
        messages=[
            {"role": "user", "content": "event", "tool_calls": None, "tool_call_id": None, "tokens": 5},
            {"role": "assistant", "content": None, "tool_calls": call, "tool_call_id": None, "tokens": 7},
            {"role": "tool", "content": "ok", "tool_calls": None, "tool_call_id": "call_1", "tokens": 3},
        ],
        run={"status": "done", "steps": 1, "replies": ["hi"], "error": None, "prompt_tokens": 10,
             "completion_tokens": 2, "cost_usd": 0.5, "started_at": now, "finished_at": now, **run},
        journal={**journal_row(agent_id, step_no), "run_id": run_id, "prompt_messages": 3, "prompt_chars": 42,
                 "prompt_tokens": 10, "completion_tokens": 2, "cost_usd": 0.5, "context_tokens": 99,
                 "evicted_messages": 0, "llm_latency_ms": 1.5, "llm_attempts": 1, "worker": "w1",
                 "tool_name": "send_message", "error": None, "llm_mode": "normal"},
    )


def test_write_turn_stores_messages_in_order_consumes_the_event_and_updates_run_and_journal(db):
    # given an agent with two events
    a = make_agent(db, "a")
    first, _ = enqueue(db, a, "m0")
    second, _ = enqueue(db, a, "m1")
    with db.transaction() as s:
        item = next_inbox_item(s, a)
    # when its step writes the turn of the first event
    with db.transaction() as s:
        waits = write_turn(s, _turn_writes(a, first.id, 1, item.id))
    # then the second event is reported as waiting
    assert waits is True
    with db.transaction() as s:
        rows = s.execute(select(Message.__table__).where(Message.agent_id == a).order_by(Message.id)).all()
        run = run_row(s, first.id)
        journal = s.execute(select(StepRecord.__table__).where(StepRecord.agent_id == a)).one()
        still = next_inbox_item(s, a)
    # and the messages are stored in their order, with their fields
    assert [(r.role, r.content, r.tool_call_id, r.tokens, r.step_no, r.run_id) for r in rows] == [
        ("user", "event", None, 5, 1, first.id), ("assistant", None, None, 7, 1, first.id),
        ("tool", "ok", "call_1", 3, 1, first.id)]
    assert rows[1].tool_calls[0]["function"]["name"] == "send_message" and rows[0].tool_calls is None
    # and the run has its new values, the event is consumed, the journal row is there
    assert (run.status, run.steps, run.replies, run.prompt_tokens, run.cost_usd) == ("done", 1, ["hi"], 10, 0.5)
    assert still.run_id == second.id
    assert (journal.step_no, journal.prompt_chars, journal.tool_name, journal.llm_latency_ms) == (
        1, 42, "send_message", 1.5)


def test_write_turn_reports_more_work_only_for_another_event(db):
    # given an agent whose only event this step consumes
    a = make_agent(db, "a")
    run, _ = enqueue(db, a, "m0")
    with db.transaction() as s:
        item = next_inbox_item(s, a)
    # when the step writes its turn / then nothing else waits (the consumed event does not count)
    with db.transaction() as s:
        assert write_turn(s, _turn_writes(a, run.id, 1, item.id)) is False
    # when a heartbeat step writes with no event waiting / then nothing waits
    with db.transaction() as s:
        assert write_turn(s, _turn_writes(a, run.id, 2, None, status="running", finished_at=None)) is False
    # given a new event / when a heartbeat step writes / then it waits
    enqueue(db, a, "m1")
    with db.transaction() as s:
        assert write_turn(s, _turn_writes(a, run.id, 3, None, status="running", finished_at=None)) is True
    assert count(db, StepRecord, a) == 3 and count(db, Message, a) == 9


def test_write_turn_refuses_a_withdrawn_event_and_its_transaction_writes_nothing(db):
    # given an event that was consumed (its batch cancelled) after the step read it
    a = make_agent(db, "a")
    run, _ = enqueue(db, a, "m0")
    with db.transaction() as s:
        item = next_inbox_item(s, a)
    consume(db, item.id)
    # when the step writes its turn / then it is stale and its transaction rolls back
    with pytest.raises(StaleLease, match="withdrawn"), db.transaction() as s:
        write_turn(s, _turn_writes(a, run.id, 1, item.id))
    assert count(db, Message, a) == 0 and count(db, StepRecord, a) == 0
    with db.transaction() as s:
        assert run_row(s, run.id).status == "queued"


def test_agents_with_pending_work_skips_live_leases_until_they_expire(db):
    # given: leased has an inbox event and a live lease; free has an event and no
    # lease; midturn has only an active run; idle has nothing
    leased = make_agent(db, "leased")
    free = make_agent(db, "free")
    midturn = make_agent(db, "midturn")
    idle = make_agent(db, "idle")
    with db.transaction() as s:
        create_agent(s, name="batchy", blocks={}, limit_chars=10, queue="batch")
    batchy = [a.id for a in _list(db) if a.name == "batchy"][0]
    for agent_id in (leased, free, batchy):
        enqueue(db, agent_id)
    with db.transaction() as s:
        s.execute(update(Agent).where(Agent.id == midturn).values(active_run_id="some-run"))
    now = time.time()
    assert take_lease(db, leased, now_s=now) is not None
    assert take_lease(db, idle, now_s=now) is not None

    # when the reconciler looks while the lease is live / then leased is excluded
    with db.transaction() as s:
        live = set(agents_with_pending_work(s, now_s=now + 1))
    assert live == {(free, "interactive"), (midturn, "interactive"), (batchy, "batch")}

    # when it looks after the lease expired / then leased is included again
    with db.transaction() as s:
        expired = set(agents_with_pending_work(s, now_s=now + LEASE_S + 1))
    assert expired == live | {(leased, "interactive")}

    # and limit caps the answer
    with db.transaction() as s:
        assert len(agents_with_pending_work(s, now_s=now + LEASE_S + 1, limit=2)) == 2


def test_agents_with_pending_work_waits_idle_s_after_arrival_and_release(db):
    # given a message that just arrived
    agent_id = make_agent(db)
    enqueue(db, agent_id)
    now = time.time()
    # then with idle_s=5 the reconciler leaves it to the doorbell for 5 s
    with db.transaction() as s:
        assert agents_with_pending_work(s, now_s=now, idle_s=5) == []
        assert agents_with_pending_work(s, now_s=now + 6, idle_s=5) == [(agent_id, "interactive")]
    # when a worker took and released the lease at now+6
    lease = take_lease(db, agent_id, now_s=now + 6)
    with db.transaction() as s:
        assert release_lease(s, lease, now_s=now + 6)
    # then the agent counts as idle only idle_s after the release
    with db.transaction() as s:
        assert agents_with_pending_work(s, now_s=now + 7, idle_s=5) == []
        assert agents_with_pending_work(s, now_s=now + 6 + 5 + RELEASE_SKEW_S + 0.5, idle_s=5) == [
            (agent_id, "interactive")
        ]


def test_claim_agents_to_ring_claims_each_agent_once_per_rering_interval(db):
    # given two agents with pending work and one with work under a live lease
    a, b, leased = make_agent(db, "a"), make_agent(db, "b"), make_agent(db, "leased")
    for agent_id in (a, b, leased):
        enqueue(db, agent_id)
    now = time.time()
    take_lease(db, leased, now_s=now)

    def claim(at: float) -> set[str]:
        with db.transaction() as s:
            return {aid for aid, _ in claim_agents_to_ring(s, now_s=at, idle_s=0, rering_s=10)}

    # when the reconciler claims / then it gets the unleased agents
    assert claim(now + 1) == {a, b}
    # when it claims again within rering_s / then nothing
    assert claim(now + 5) == set()
    # when rering_s has passed (and the lease expired) / then all three again
    assert claim(now + LEASE_S + 12) == {a, b, leased}


# ----------------------------------------------------------------------- leases


def test_acquire_lease_succeeds_once_then_again_after_expiry_with_a_larger_token(db):
    agent_id = make_agent(db)
    # when a worker takes the lease
    first = take_lease(db, agent_id, now_s=NOW, owner="w1")
    # then it holds it with token 1 at step 0
    assert first == Lease(agent_id=agent_id, token=1, step_counter=0, owner="w1")
    row = agent_row(db, agent_id)
    assert (row.lease_token, row.lease_owner, row.lease_until_s) == (1, "w1", NOW + LEASE_S)
    # when another worker tries while it is live / then it gets nothing
    assert take_lease(db, agent_id, now_s=NOW + LEASE_S - 1, owner="w2") is None
    assert agent_row(db, agent_id).lease_owner == "w1"
    # when the lease has expired / then the other worker takes it with a larger token
    second = take_lease(db, agent_id, now_s=NOW + LEASE_S + 1, owner="w2")
    assert second is not None and second.token > first.token and second.owner == "w2"
    assert agent_row(db, agent_id).lease_owner == "w2"


def test_acquire_lease_of_unknown_agent_returns_none(db):
    assert take_lease(db, UNKNOWN) is None


def test_leases_of_different_agents_are_independent(db):
    a, b = make_agent(db, "a"), make_agent(db, "b")
    assert take_lease(db, a) is not None
    assert take_lease(db, b) is not None


def test_advance_step_counter_succeeds_once_per_token_and_counter(db):
    # given a held lease at step 0
    agent_id = make_agent(db)
    lease = take_lease(db, agent_id)
    # when the step commits / then the counter moves to 1
    with db.transaction() as s:
        assert advance_step_counter(s, lease) == 1
    # when the same (token, counter) commits again / then it is stale
    with pytest.raises(StaleLease):
        with db.transaction() as s:
            advance_step_counter(s, lease)
    # when the holder moves on to the next counter / then it commits
    with db.transaction() as s:
        assert advance_step_counter(s, dataclasses.replace(lease, step_counter=1)) == 2
    assert agent_row(db, agent_id).step_counter == 2


def test_advance_step_counter_with_an_old_token_is_stale(db):
    # given a lease that expired and was taken over
    agent_id = make_agent(db)
    old = take_lease(db, agent_id, now_s=NOW)
    new = take_lease(db, agent_id, now_s=NOW + LEASE_S + 1)
    assert new.step_counter == old.step_counter == 0
    # when the old holder commits / then it is stale; the new holder commits
    with pytest.raises(StaleLease, match=agent_id):
        with db.transaction() as s:
            advance_step_counter(s, old)
    with db.transaction() as s:
        assert advance_step_counter(s, new) == 1


def test_stale_lease_rolls_back_everything_written_in_its_transaction(db):
    # given a step that already committed under the lease
    agent_id = make_agent(db)
    lease = take_lease(db, agent_id)
    with db.transaction() as s:
        advance_step_counter(s, lease)
    run, _ = enqueue(db, agent_id)
    # when a duplicate of that step writes a message, memory, a journal row and the
    # run status, then hits the fence
    with pytest.raises(StaleLease):
        with db.transaction() as s:
            s.add(Message(agent_id=agent_id, role="assistant", content="dup"))
            save_block_values(s, agent_id, {"human": "overwritten"})
            s.add(step_row(agent_id, 1, lease.token))
            s.execute(update(Run).where(Run.id == run.id).values(status="done"))
            s.flush()
            advance_step_counter(s, lease)
    # then none of it was committed
    assert count(db, Message, agent_id) == 0
    assert count(db, StepRecord, agent_id) == 0
    assert block_values(db, agent_id)["human"] == "Unknown."
    with db.transaction() as s:
        assert get_run(s, run.id).status == RunStatus.QUEUED.value
    assert agent_row(db, agent_id).step_counter == 1


def test_release_lease_with_a_stale_token_does_nothing(db):
    # given a lease taken over by a second holder
    agent_id = make_agent(db)
    old = take_lease(db, agent_id, now_s=NOW, owner="old")
    new = take_lease(db, agent_id, now_s=NOW + LEASE_S + 1, owner="new")
    # when the old holder releases / then nothing changes
    with db.transaction() as s:
        assert release_lease(s, old, now_s=NOW + LEASE_S + 2) is False
    row = agent_row(db, agent_id)
    assert (row.lease_token, row.lease_owner, row.lease_until_s) == (new.token, "new", NOW + 2 * LEASE_S + 1)
    assert take_lease(db, agent_id, now_s=NOW + LEASE_S + 2) is None
    # when the live holder releases / then the lease is free at once, token kept growing
    with db.transaction() as s:
        assert release_lease(s, new, now_s=NOW + LEASE_S + 2) is True
    row = agent_row(db, agent_id)
    assert (row.lease_token, row.lease_owner) == (new.token, None)
    assert row.lease_until_s == NOW + LEASE_S + 2 - RELEASE_SKEW_S
    third = take_lease(db, agent_id, now_s=NOW + LEASE_S + 2)
    assert third is not None and third.token == new.token + 1


def test_lease_attempts_count_takes_of_one_step_and_reset_when_it_commits(db):
    # given a step whose lease expired twice without committing
    agent_id = make_agent(db)
    first = take_lease(db, agent_id, now_s=NOW)
    second = take_lease(db, agent_id, now_s=NOW + LEASE_S + 1)
    assert (first.attempts, second.attempts) == (1, 2)
    # when the step commits / then the next step's first lease is attempt 1
    with db.transaction() as s:
        advance_step_counter(s, second)
        assert release_lease(s, second, now_s=NOW + LEASE_S + 2)
    third = take_lease(db, agent_id, now_s=NOW + LEASE_S + 2)
    assert (third.attempts, third.step_counter) == (1, 1)
    # when a step ends without committing but normally (reset_attempts) / then too
    with db.transaction() as s:
        assert release_lease(s, third, now_s=NOW + LEASE_S + 3, reset_attempts=True)
    assert take_lease(db, agent_id, now_s=NOW + LEASE_S + 3).attempts == 1


def test_an_attempt_that_failed_on_the_database_is_not_counted(db):
    # given a step whose first attempt crashed (counted) and whose second failed on the database
    agent_id = make_agent(db)
    first = take_lease(db, agent_id, now_s=NOW)
    second = take_lease(db, agent_id, now_s=NOW + LEASE_S + 1)
    with db.transaction() as s:
        assert release_lease(s, second, now_s=NOW + LEASE_S + 2, error="DiskFull: no space", uncounted=True)
    # when the next attempt takes the lease / then only the crash counts
    assert take_lease(db, agent_id, now_s=NOW + LEASE_S + 2).attempts == 2
    assert first.attempts == 1
    # and the error is still shown
    with db.transaction() as s:
        assert s.get(Agent, agent_id).last_error == "DiskFull: no space"


def test_renew_leases_only_renews_matching_tokens(db):
    # given agent a leased under its current token, b whose lease was taken over
    a, b = make_agent(db, "a"), make_agent(db, "b")
    lease_a = take_lease(db, a, now_s=NOW)
    old_b = take_lease(db, b, now_s=NOW)
    new_b = take_lease(db, b, now_s=NOW + LEASE_S + 1)
    # when a worker renews what it believes it holds
    with db.transaction() as s:
        renewed = renew_leases(
            s, {a: lease_a.token, b: old_b.token, UNKNOWN: 1}, lease_s=LEASE_S, now_s=NOW + 10
        )
    # then only the matching token was extended
    assert renewed == {a}
    assert agent_row(db, a).lease_until_s == NOW + 10 + LEASE_S
    assert agent_row(db, b).lease_until_s == NOW + 2 * LEASE_S + 1
    assert agent_row(db, b).lease_token == new_b.token


def test_acquire_lease_with_agent_returns_the_lease_and_the_agents_row_under_it(db):
    # given an agent whose lease was taken and expired once
    agent_id = make_agent(db)
    take_lease(db, agent_id, now_s=NOW, owner="w1")
    # when another worker takes it with the agent's row
    with db.transaction() as s:
        taken = acquire_lease_with_agent(s, agent_id, owner="w2", lease_s=LEASE_S, now_s=NOW + LEASE_S + 1)
        if not db.is_sqlite:  # the lease's transaction alone commits without waiting for the WAL flush
            assert s.connection().exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
    if not db.is_sqlite:
        with db.transaction() as s:
            assert s.connection().exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    # then the lease is what acquire_lease gives, and the row the agent as it now stands
    assert taken.lease == Lease(agent_id=agent_id, token=2, step_counter=0, owner="w2", attempts=2)
    with db.transaction() as s:
        stored = s.connection().execute(select(Agent.__table__).where(Agent.id == agent_id)).one()
    assert taken.agent._asdict() == stored._asdict()
    assert (taken.agent.lease_owner, taken.agent.lease_until_s) == ("w2", NOW + 2 * LEASE_S + 1)
    # when the lease is live, or the agent unknown / then nothing is taken
    with db.transaction() as s:
        assert acquire_lease_with_agent(s, agent_id, owner="w3", lease_s=LEASE_S, now_s=NOW + LEASE_S + 2) is None
        assert acquire_lease_with_agent(s, UNKNOWN, owner="w3", lease_s=LEASE_S, now_s=NOW) is None
    assert agent_row(db, agent_id).lease_owner == "w2"


def _advance_and_release(s, lease: Lease, **state) -> int:
    """advance_and_release with a plain turn state unless given."""
    state = {"active_run_id": None, "heartbeat_reason": None, "new_messages": 1, **state}
    return advance_and_release(s, lease, now_s=NOW + 5, **state)


def test_advance_and_release_fences_writes_the_turn_and_releases_the_lease(db):
    # given a held lease on its second attempt, and a run in progress
    agent_id = make_agent(db)
    take_lease(db, agent_id, now_s=NOW - LEASE_S - 1)
    lease = take_lease(db, agent_id, now_s=NOW)
    run, _ = enqueue(db, agent_id)
    context = {c: v for c, v in zip(CONTEXT_COLUMNS, (7, "summary", 12, True, 345, 8000), strict=True)}
    # when the step commits with its turn state and context
    with db.transaction() as s:
        step_no = _advance_and_release(s, lease, active_run_id=run.id, heartbeat_reason="again",
                                       new_messages=3, context=context)
    # then the counter moved, the turn and context are stored, and the lease is free
    assert step_no == 1
    row = agent_row(db, agent_id)
    assert (row.step_counter, row.step_attempts, row.lease_token) == (1, 0, lease.token)
    assert (row.active_run_id, row.heartbeat_reason, row.message_count) == (run.id, "again", 3)
    assert {c: getattr(row, c) for c in CONTEXT_COLUMNS} == context
    assert (row.lease_owner, row.lease_until_s) == (None, NOW + 5 - RELEASE_SKEW_S)
    # when a renewal comes after the release / then it revives nothing
    with db.transaction() as s:
        assert renew_leases(s, {agent_id: lease.token}, lease_s=LEASE_S, now_s=NOW + 6) == set()
    # when the same (token, counter) commits again / then it is stale and writes nothing
    with pytest.raises(StaleLease, match=agent_id):
        with db.transaction() as s:
            _advance_and_release(s, lease, new_messages=5)
    assert (agent_row(db, agent_id).step_counter, agent_row(db, agent_id).message_count) == (1, 3)
    # when the next step commits without a context / then the turn ends, the context stays
    next_lease = take_lease(db, agent_id, now_s=NOW + 6)
    with db.transaction() as s:
        assert _advance_and_release(s, next_lease, new_messages=2) == 2
    row = agent_row(db, agent_id)
    assert (row.active_run_id, row.heartbeat_reason, row.message_count) == (None, None, 5)
    assert {c: getattr(row, c) for c in CONTEXT_COLUMNS} == context


def test_advance_and_release_with_an_old_token_is_stale(db):
    # given a lease that expired and was taken over
    agent_id = make_agent(db)
    old = take_lease(db, agent_id, now_s=NOW)
    new = take_lease(db, agent_id, now_s=NOW + LEASE_S + 1, owner="w2")
    # when the old holder commits / then it is stale, and the new holder keeps the lease
    with pytest.raises(StaleLease):
        with db.transaction() as s:
            _advance_and_release(s, old)
    row = agent_row(db, agent_id)
    assert (row.step_counter, row.lease_owner, row.message_count) == (0, "w2", 0)


# ------------------------------------------------------------------ concurrency


def test_ten_threads_racing_for_one_lease_exactly_one_wins(db):
    # given one agent and ten workers released at the same instant
    agent_id = make_agent(db)
    barrier = threading.Barrier(10)
    results: list[Lease | None] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            lease = take_lease(db, agent_id, now_s=NOW, owner=f"w{n}")
            with lock:
                results.append(lease)
        except BaseException as exc:  # surfaced below
            with lock:
                errors.append(exc)

    # when they all try to take the lease
    run_threads([lambda n=n: worker(n) for n in range(10)])

    # then exactly one holds it, with token 1
    assert errors == []
    winners = [r for r in results if r is not None]
    assert len(results) == 10 and len(winners) == 1
    assert winners[0].token == 1
    row = agent_row(db, agent_id)
    assert (row.lease_token, row.lease_owner) == (1, winners[0].owner)


FENCES = pytest.mark.parametrize("fence", [advance_step_counter, _advance_and_release],
                                 ids=["advance_step_counter", "advance_and_release"])


def _commit_step(db: Database, lease: Lease, content: str, fence=advance_step_counter) -> str:
    """One worker's commit: fence first (as DESIGN §2 step 6), then its writes."""
    try:
        with db.transaction() as s:
            step_no = fence(s, lease)
            s.add(Message(agent_id=lease.agent_id, role="assistant", content=content, step_no=step_no))
            s.add(step_row(lease.agent_id, step_no, lease.token))
        return "committed"
    except StaleLease:
        return "stale"


@FENCES
def test_two_workers_racing_the_same_step_exactly_one_commits(db, fence):
    # given two workers holding the same (token, counter)
    agent_id = make_agent(db)
    lease = take_lease(db, agent_id)
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def worker(name: str) -> None:
        barrier.wait(timeout=10)
        try:
            outcomes[name] = _commit_step(db, lease, name, fence)
        except BaseException as exc:
            outcomes[name] = repr(exc)

    # when both commit at once
    run_threads([lambda: worker("A"), lambda: worker("B")])

    # then exactly one committed and only its writes exist
    assert sorted(outcomes.values()) == ["committed", "stale"], outcomes
    winner = next(k for k, v in outcomes.items() if v == "committed")
    with db.transaction() as s:
        contents = list(s.scalars(select(Message.content).where(Message.agent_id == agent_id)))
    assert contents == [winner]
    assert count(db, StepRecord, agent_id) == 1
    assert agent_row(db, agent_id).step_counter == 1


@FENCES
def test_a_worker_blocked_behind_a_live_commit_is_rejected_after_it(db, fence):
    # given worker A inside its commit transaction, past the fence, not yet committed
    agent_id = make_agent(db)
    lease = take_lease(db, agent_id)
    fenced = threading.Event()
    outcomes: dict[str, str] = {}

    def worker_a() -> None:
        try:
            with db.transaction() as s:
                fence(s, lease)
                s.add(Message(agent_id=agent_id, role="assistant", content="A"))
                s.flush()
                fenced.set()
                time.sleep(0.3)  # B now tries to commit the same step
            outcomes["A"] = "committed"
        except BaseException as exc:
            fenced.set()
            outcomes["A"] = repr(exc)

    def worker_b() -> None:
        assert fenced.wait(10)
        try:
            outcomes["B"] = _commit_step(db, lease, "B", fence)
        except BaseException as exc:
            outcomes["B"] = repr(exc)

    # when B commits the same (token, counter) while A's transaction is open
    run_threads([worker_a, worker_b])

    # then B waited for A and was rejected; only A's writes exist
    assert outcomes == {"A": "committed", "B": "stale"}
    with db.transaction() as s:
        assert list(s.scalars(select(Message.content).where(Message.agent_id == agent_id))) == ["A"]
    assert agent_row(db, agent_id).step_counter == 1


def test_a_send_that_held_the_agents_row_while_the_fence_waited_is_seen_as_more_work(db):
    # given a send inside its transaction, holding the agent's row, and a worker
    # that holds the lease (the send's doorbell will bounce off it)
    agent_id = make_agent(db)
    lease = take_lease(db, agent_id)
    sending = threading.Event()
    more: list[bool] = []
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            with db.transaction() as s:
                enqueue_message(s, agent_id, "late", max_chars=MAX_CHARS)
                sending.set()
                time.sleep(0.3)  # the worker's commit now starts and waits for the row
        except BaseException as exc:
            sending.set()
            errors.append(exc)

    def worker() -> None:
        assert sending.wait(10)
        try:
            with db.transaction() as s:
                step_no = _advance_and_release(s, lease)
                more.append(record_step(s, journal_row(agent_id, step_no, lease.token)))
        except BaseException as exc:
            errors.append(exc)

    # when the worker commits its step (fence first, journal last)
    run_threads([sender, worker])

    # then the commit saw the event that arrived while it waited, so it re-rings
    assert errors == [] and more == [True]


# --------------------------------------------------------------------- messages


def test_context_messages_returns_the_agents_messages_from_start_id_in_order(db):
    # given five messages for one agent, interleaved with another agent's
    a, other = make_agent(db, "a"), make_agent(db, "other")
    ids = []
    for i in range(5):
        ids += add_messages(db, a, [f"a{i}"])
        add_messages(db, other, [f"o{i}"])
    # when the context is read from the third message on
    with db.transaction() as s:
        got = context_messages(s, a, ids[2])
        everything = context_messages(s, a, 0)
        counted = count_from(s, a, ids[2])
        counted_all = count_from(s, a, 0)
    # then exactly messages with id >= start_id come back, in id order
    assert (counted, counted_all) == (3, 5)
    assert [m.id for m in got] == ids[2:]
    assert [m.content for m in got] == ["a2", "a3", "a4"]
    assert [m.id for m in everything] == ids


def test_last_messages_returns_the_last_n_oldest_first(db):
    a, other = make_agent(db, "a"), make_agent(db, "other")
    add_messages(db, a, [f"a{i}" for i in range(6)])
    add_messages(db, other, ["o"])
    with db.transaction() as s:
        assert [m.content for m in last_messages(s, a, 3)] == ["a3", "a4", "a5"]
        assert [m.content for m in last_messages(s, a, 100)] == [f"a{i}" for i in range(6)]
        assert last_messages(s, UNKNOWN, 5) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05Z"),
        (datetime(2024, 1, 2, 3, 4, 5, 123456), "2024-01-02T03:04:05.123456Z"),
        (datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "2024-01-02T03:04:05Z"),
        (datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))), "2024-01-02T01:04:05Z"),
        (datetime(2024, 1, 1, 23, 0, 0, tzinfo=timezone(timedelta(hours=-5))), "2024-01-02T04:00:00Z"),
    ],
)
def test_iso_utc(value, expected):
    assert iso_utc(value) == expected


def test_iso_utc_of_a_stored_timestamp_is_utc_z_on_both_backends(db):
    # given a message stored at a known UTC instant (read back naive on SQLite)
    agent_id = make_agent(db)
    at = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    with db.transaction() as s:
        s.add(Message(agent_id=agent_id, role="user", content="x", created_at=at))
    with db.transaction() as s:
        stored = last_messages(s, agent_id, 1)[0].created_at
    assert iso_utc(stored) == "2024-05-06T07:08:09Z"


def test_concurrent_reconcilers_claim_each_agent_at_most_once(db):
    # given five agents with pending work and four reconcilers racing
    ids = {make_agent(db, f"a{i}") for i in range(5)}
    for agent_id in ids:
        enqueue(db, agent_id)
    now = time.time()
    barrier = threading.Barrier(4)
    claimed: list[list[str]] = []
    errors: list[BaseException] = []

    def reconciler() -> None:
        try:
            barrier.wait(timeout=10)
            with db.transaction() as s:
                got = claim_agents_to_ring(s, now_s=now + 1, idle_s=0, rering_s=60)
            claimed.append([aid for aid, _ in got])
        except BaseException as exc:
            errors.append(exc)

    run_threads([reconciler] * 4)

    # then every agent was claimed exactly once in all
    assert errors == []
    flat = [aid for batch in claimed for aid in batch]
    assert sorted(flat) == sorted(ids)


def test_concurrent_sends_to_one_agent_all_land_once(db):
    # given one agent and eight clients sending at the same instant (two reuse a key)
    agent_id = make_agent(db)
    barrier = threading.Barrier(8)
    results: list[tuple[str, bool]] = []
    errors: list[BaseException] = []

    def sender(n: int) -> None:
        key = "dup" if n < 2 else f"k{n}"
        try:
            barrier.wait(timeout=10)
            run, created = enqueue(db, agent_id, f"m{n}", key=key)
            results.append((run.id, created))
        except BaseException as exc:
            errors.append(exc)

    run_threads([lambda n=n: sender(n) for n in range(8)])

    # then every send succeeded; the shared key made one run, the others one each
    assert errors == []
    assert len(results) == 8 and sum(created for _, created in results) == 7
    assert len({run_id for run_id, _ in results}) == 7
    assert count(db, Run, agent_id) == 7 and count(db, InboxItem, agent_id) == 7
