"""Tenant-scoped listings for the HTTP API: runs and messages in cursor pages, and
cancelling an agent's queued runs. Every query is limited to one tenant's rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import select, tuple_, update
from sqlalchemy.orm import Session

from memq.constants import RunStatus
from storage.models import Agent, InboxItem, Message, Run, utcnow
from storage.repository.inbox import get_run


def message_page(
    session: Session,
    agent_id: str,
    *,
    after: int | None = None,
    before: int | None = None,
    limit: int = 100,
    descending: bool = True,
) -> list[Message]:
    """A page of the agent's messages in the given order. ``after``/``before`` are
    message ids and mean "following / preceding this one in that order"."""
    stmt = select(Message).where(Message.agent_id == agent_id)
    newer, older = (before, after) if descending else (after, before)
    if newer is not None:
        stmt = stmt.where(Message.id > newer)
    if older is not None:
        stmt = stmt.where(Message.id < older)
    stmt = stmt.order_by(Message.id.desc() if descending else Message.id).limit(limit)
    return list(session.scalars(stmt))


def calls_of(session: Session, agent_id: str, tool_rows: Sequence[Message]) -> list[Message]:
    """The assistant messages that made these tool results' calls (same step)."""
    steps = {m.step_no for m in tool_rows if m.role == "tool" and m.step_no is not None}
    if not steps:
        return []
    stmt = select(Message).where(
        Message.agent_id == agent_id, Message.role == "assistant", Message.step_no.in_(sorted(steps)))
    return list(session.scalars(stmt))


def run_messages(session: Session, run_id: str, *, after: int | None = None, limit: int = 1000) -> list[Message]:
    """The messages a run's steps wrote (its inbound event included), oldest first."""
    stmt = select(Message).where(Message.run_id == run_id)
    if after is not None:
        stmt = stmt.where(Message.id > after)
    return list(session.scalars(stmt.order_by(Message.id).limit(limit)))


class RunState(NamedTuple):
    """What a run event announces (workers/run_events.py): "<run id> <status> <steps>"."""

    run_id: str
    status: str
    steps: int


def run_states(session: Session, run_ids: Sequence[str]) -> list[RunState]:
    """(id, status, steps) of these runs, as this session sees them (in no set order)."""
    if not run_ids:
        return []
    rows = session.execute(select(Run.id, Run.status, Run.steps).where(Run.id.in_(list(run_ids))))
    return [RunState(r[0], r[1], r[2]) for r in rows]


def run_page(
    session: Session,
    tenant_id: str,
    *,
    agent_ids: Sequence[str] = (),
    statuses: Sequence[str] = (),
    after: str | None = None,
    before: str | None = None,
    limit: int = 50,
    descending: bool = True,
) -> list[Run]:
    """The tenant's runs (optionally of some agents, in some states), ordered by
    creation; ``after``/``before`` are run ids (NotFound if not the tenant's)."""
    stmt = select(Run).join(Agent, Agent.id == Run.agent_id).where(Agent.tenant_id == tenant_id)
    if agent_ids:
        stmt = stmt.where(Run.agent_id.in_(list(agent_ids)))
    if statuses:
        stmt = stmt.where(Run.status.in_(list(statuses)))
    key = tuple_(Run.created_at, Run.id)
    for cursor, forward in ((after, True), (before, False)):
        if cursor is not None:
            c = get_run(session, cursor, tenant_id=tenant_id)
            later = forward != descending
            stmt = stmt.where(key > tuple_(c.created_at, c.id) if later else key < tuple_(c.created_at, c.id))
    order = (Run.created_at.desc(), Run.id.desc()) if descending else (Run.created_at, Run.id)
    return list(session.scalars(stmt.order_by(*order).limit(limit)))


def cancel_queued_runs(session: Session, agent_id: str, run_ids: Sequence[str] = ()) -> list[str]:
    """Cancel the agent's runs that have not started (all, or those named); returns their ids.

    A run already in its turn finishes it. The inbox rows are consumed here, and a
    step only consumes a row still pending, so a step racing the cancel commits nothing.
    """
    queued = select(Run.id).where(Run.agent_id == agent_id, Run.status == RunStatus.QUEUED.value)
    if run_ids:
        queued = queued.where(Run.id.in_(list(run_ids)))
    now = utcnow()
    consumed = list(session.execute(
        update(InboxItem)
        .where(InboxItem.agent_id == agent_id, InboxItem.run_id.in_(queued), InboxItem.consumed_at.is_(None))
        .values(consumed_at=now)
        .returning(InboxItem.run_id)
    ).scalars())
    if consumed:
        session.execute(
            update(Run)
            .where(Run.id.in_(consumed))
            .values(status=RunStatus.CANCELLED.value, error="cancelled", finished_at=now)
        )
    return consumed
