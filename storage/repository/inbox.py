"""Runs and the inbox: how inbound messages wait for their agent, in arrival order,
and how a step finds its event and learns whether more work waits."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import bindparam, exists, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from memq.constants import EventType, RunStatus
from memq.text import stored_text, stored_value
from storage.models import Agent, InboxItem, ParkedStep, Run, StepRecord, utcnow
from storage.repository.agents import get_agent
from storage.repository.errors import BadInput, NotFound
from storage.repository.messages import iso_utc


class MessageTooLong(BadInput):
    """Over MEMQ_MAX_MESSAGE_CHARS, or (detail says how) too big for the agent's window."""

    def __init__(self, size: int, limit: int, *, detail: str | None = None) -> None:
        super().__init__(detail or f"message has {size} characters; the limit is {limit}")


def enqueue_message(
    session: Session,
    agent_id: str,
    text: str,
    *,
    max_chars: int,
    idempotency_key: str | None = None,
    event_type: EventType = EventType.USER_MESSAGE,
    event_fields: dict[str, object] | None = None,
    batch_id: str | None = None,
) -> tuple[Run, bool]:
    """Store a run and its inbox event. Returns (run, created).

    A repeated idempotency key returns the existing run and writes nothing.
    Text that cannot be stored (invalid UTF-8, lone surrogates, NUL) is replaced
    with U+FFFD and a warning is logged (memq.text): every inbound path ends here.
    """
    text = stored_text(text)
    if event_fields:
        event_fields = stored_value(event_fields)
    if not text.strip():
        raise BadInput("message must not be empty")
    if len(text) > max_chars:
        raise MessageTooLong(len(text), max_chars)
    # The agent's row lock orders concurrent sends: ids are handed out and
    # committed in the same order, so a step never sees a later message first.
    get_agent(session, agent_id, for_update=True)
    if idempotency_key is not None:
        existing = session.scalars(
            select(Run).where(Run.agent_id == agent_id, Run.idempotency_key == idempotency_key)
        ).one_or_none()
        if existing is not None:
            return existing, False
    now = utcnow()
    run = Run(
        id=str(uuid.uuid4()),
        agent_id=agent_id,
        status=RunStatus.QUEUED.value,
        steps=0,
        replies=[],
        idempotency_key=idempotency_key,
        prompt_tokens=0,
        completion_tokens=0,
        cost_usd=0.0,
        batch_id=batch_id,
        created_at=now,
    )
    event = {"type": event_type.value, "message": text, **(event_fields or {}), "time": iso_utc(now)}
    if idempotency_key is None:
        session.add(run)
        session.flush()  # the inbox row's foreign key needs the run first
        session.add(InboxItem(agent_id=agent_id, run_id=run.id, event=event, created_at=now))
        session.flush()
        return run, True
    try:
        with session.begin_nested():
            session.add(run)
            session.flush()
            session.add(InboxItem(agent_id=agent_id, run_id=run.id, event=event, created_at=now))
            session.flush()
    except IntegrityError:
        # Two sends with one key raced: the other one's run stands.
        existing = session.scalars(
            select(Run).where(Run.agent_id == agent_id, Run.idempotency_key == idempotency_key)
        ).one()
        return existing, False
    return run, True


def enqueue_many(
    session: Session, items: Sequence[tuple[str, str]], *, max_chars: int, batch_id: str | None = None
) -> list[str]:
    """enqueue_message for many (agent_id, text) pairs at once (a batch): a run and an inbox
    event each, in the given order; returns the run ids in that order.

    One statement locks every agent named (in id order, so two batches cannot deadlock),
    then two multi-row INSERTs write the runs and the events: each agent's events get
    ids in the order given, as sends under the agent's lock would. Every text is
    checked (and cleaned) as enqueue_message does, before anything is written.
    """
    if not items:
        return []
    texts: list[str] = []
    for _, text in items:
        text = stored_text(text)
        if not text.strip():
            raise BadInput("message must not be empty")
        if len(text) > max_chars:
            raise MessageTooLong(len(text), max_chars)
        texts.append(text)
    agent_ids = sorted({agent_id for agent_id, _ in items})
    found = set(session.scalars(
        select(Agent.id).where(Agent.id.in_(agent_ids)).order_by(Agent.id).with_for_update()))
    missing = [a for a in agent_ids if a not in found]
    if missing:
        raise NotFound(f"unknown agent: {missing[0]}")
    now = utcnow()
    at = iso_utc(now)
    run_ids = [str(uuid.uuid4()) for _ in items]
    session.execute(insert(Run), [
        {"id": rid, "agent_id": agent_id, "status": RunStatus.QUEUED.value, "steps": 0, "replies": [],
         "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "batch_id": batch_id, "created_at": now}
        for rid, (agent_id, _) in zip(run_ids, items)])
    session.execute(insert(InboxItem), [
        {"agent_id": agent_id, "run_id": rid, "created_at": now,
         "event": {"type": EventType.USER_MESSAGE.value, "message": text, "time": at}}
        for rid, (agent_id, _), text in zip(run_ids, items, texts)])
    return run_ids


def get_run(session: Session, run_id: str, *, tenant_id: str | None = None) -> Run:
    """The run; with tenant_id, another tenant's run is as unknown as a missing one."""
    if tenant_id is None:
        run = session.get(Run, run_id)
    else:
        run = session.scalars(
            select(Run).join(Agent, Agent.id == Run.agent_id).where(Run.id == run_id, Agent.tenant_id == tenant_id)
        ).one_or_none()
    if run is None:
        raise NotFound(f"unknown run: {run_id}")
    return run


_RUN_ROW = select(Run.__table__).where(Run.id == bindparam("rid"))
_NEXT_INBOX = (
    select(InboxItem.__table__)
    .where(InboxItem.agent_id == bindparam("aid"), InboxItem.consumed_at.is_(None))
    .order_by(InboxItem.id)
    .limit(1)
)


def run_row(session: Session, run_id: str) -> Any:
    """A run as a read-only row (the step's hot path); NotFound if there is none."""
    row = session.connection().execute(_RUN_ROW, {"rid": run_id}).first()
    if row is None:
        raise NotFound(f"unknown run: {run_id}")
    return row


def next_inbox_item(session: Session, agent_id: str) -> Any | None:
    """The oldest unconsumed inbox event of the agent, as a read-only row."""
    return session.connection().execute(_NEXT_INBOX, {"aid": agent_id}).first()


_PENDING = select(Agent.id).where(
    Agent.id == bindparam("aid"),
    or_(
        Agent.active_run_id.is_not(None),
        exists().where(InboxItem.agent_id == Agent.id, InboxItem.consumed_at.is_(None)),
    ),
)


def has_pending_work(session: Session, agent_id: str) -> bool:
    """A turn in progress or an unconsumed inbox event."""
    return session.connection().execute(_PENDING, {"aid": agent_id}).first() is not None


# aid, not a correlation with steps.agent_id: SQLite's RETURNING drops table
# qualifiers, even inside a subquery.
_RECORD_STEP = insert(StepRecord).returning(
    exists().where(InboxItem.agent_id == bindparam("aid"), InboxItem.consumed_at.is_(None))
)


def record_step(session: Session, journal: Mapping[str, Any]) -> bool:
    """Write a step's journal row (columns of steps); returns whether an inbox event
    of its agent still waits (one statement: INSERT ... RETURNING EXISTS).

    Run it last in the commit transaction, after advance_and_release took the
    agent's row lock. On Postgres each statement reads a fresh snapshot, so an
    event whose send held that lock while the fence waited is seen here (the
    fence's own snapshot predates it, and that send's doorbell bounced off the
    lease). Events this transaction consumed count as consumed.
    """
    params = {**journal, "aid": journal["agent_id"]}
    return bool(session.connection().execute(_RECORD_STEP, params).scalar_one())


def _has_work(now_s: float, idle_s: float):
    """Pending work that has waited idle_s with nobody holding the agent."""
    waited_since = datetime.fromtimestamp(now_s - idle_s, timezone.utc)
    old_inbox = exists().where(
        InboxItem.agent_id == Agent.id,
        InboxItem.consumed_at.is_(None),
        InboxItem.created_at < waited_since,
    )
    # An agent whose step waits for a provider batch is rung by the collector when the reply is back.
    waits_for_provider = exists().where(ParkedStep.agent_id == Agent.id,
                                        ParkedStep.state.in_(("parked", "submitted")))
    return (
        Agent.lease_until_s < now_s - idle_s,
        or_(Agent.active_run_id.is_not(None), old_inbox),
        ~waits_for_provider,
    )


def agents_with_pending_work(
    session: Session, *, now_s: float, idle_s: float = 0.0, limit: int = 10_000
) -> list[tuple[str, str]]:
    """(agent_id, queue) of agents whose work has waited idle_s with no live lease."""
    stmt = select(Agent.id, Agent.queue).where(*_has_work(now_s, idle_s)).limit(limit)
    return [(row[0], row[1]) for row in session.execute(stmt)]


def claim_agents_to_ring(
    session: Session, *, now_s: float, idle_s: float, rering_s: float, limit: int = 10_000
) -> list[tuple[str, str]]:
    """Like agents_with_pending_work, but each agent is claimed at most once per rering_s.

    One UPDATE ... RETURNING marks the agents, so reconcilers running in several
    processes never ring the same agent twice within the interval.
    """
    candidates = (
        select(Agent.id)
        .where(*_has_work(now_s, idle_s), Agent.rung_at_s < now_s - rering_s)
        .limit(limit)
        .scalar_subquery()
    )
    rows = session.execute(
        update(Agent)
        .where(Agent.id.in_(candidates), Agent.rung_at_s < now_s - rering_s)
        .values(rung_at_s=now_s)
        .returning(Agent.id, Agent.queue)
    )
    return [(row[0], row[1]) for row in rows]
