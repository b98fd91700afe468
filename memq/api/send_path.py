"""The common send in two Core statements: the agent's row lock (scoped by tenant), then
the run and its inbox event in one INSERT with a data-modifying CTE; and a run with its
messages in two Core reads. No ORM session is built, so each costs the API process a
fraction of the repository path's CPU.

It answers only what it can answer exactly as the repository would: Postgres, no
idempotency key or callback, text that is clean, not blank and short enough to fit any
window (memq/quick's rule). Everything else returns None and takes the full path.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import bindparam, select

from memq.constants import EventType, RunStatus
from memq.isotime import iso_utc
from memq.quick.client import QUICK_MAX_CHARS
from memq.text import clean_text
from storage.models import Agent, InboxItem, Message, Run
from storage.repository.agents import AgentNotFound
from storage.repository.errors import NotFound

_LOCK = (select(Agent.queue)
         .where(Agent.id == bindparam("agent_id"), Agent.tenant_id == bindparam("tenant"))
         .with_for_update())
_RUNS, _INBOX, _MESSAGES = Run.__table__, InboxItem.__table__, Message.__table__
_RUN_OF_TENANT = (select(_RUNS).join(Agent.__table__, Agent.__table__.c.id == _RUNS.c.agent_id)
                  .where(_RUNS.c.id == bindparam("run_id"), Agent.__table__.c.tenant_id == bindparam("tenant")))
RUN_MESSAGES_LIMIT = 1000  # as storage.repository.pages.run_messages
_INSERT_RUN = _RUNS.insert().values(
    id=bindparam("run_id"), agent_id=bindparam("agent_id"), status=RunStatus.QUEUED.value, steps=0,
    replies=[], prompt_tokens=0, completion_tokens=0, cost_usd=0.0, created_at=bindparam("now"),
).returning(*_RUNS.c).cte("new_run")
_INSERT_EVENT = _INBOX.insert().from_select(
    ["agent_id", "run_id", "event", "created_at"],
    select(_INSERT_RUN.c.agent_id, _INSERT_RUN.c.id, bindparam("event", type_=_INBOX.c.event.type),
           _INSERT_RUN.c.created_at),
).cte("new_event")
_ENQUEUE = select(_INSERT_RUN).add_cte(_INSERT_EVENT)


def quick_send_applies(db: Any, text: str, idempotency_key: str | None, callback_url: str | None) -> bool:
    return (not db.is_sqlite and idempotency_key is None and callback_url is None and bool(text.strip())
            and len(text) <= QUICK_MAX_CHARS and clean_text(text)[1] is None)


def enqueue(db: Any, tenant: str, agent_id: str, text: str) -> tuple[Run, str]:
    """(the new run, the agent's queue), committed; AgentNotFound for an unknown or another tenant's agent."""
    with db.engine.begin() as conn:
        queue = conn.execute(_LOCK, {"agent_id": agent_id, "tenant": tenant}).scalar_one_or_none()
        if queue is None:
            raise AgentNotFound(agent_id)
        now = datetime.now(timezone.utc)  # under the lock: creation times follow arrival order
        event = {"type": EventType.USER_MESSAGE.value, "message": text, "time": iso_utc(now)}
        row = conn.execute(_ENQUEUE, {"run_id": str(uuid.uuid4()), "agent_id": agent_id, "now": now,
                                      "event": event}).one()
    return Run(**row._asdict()), queue


def run_messages(db: Any, tenant: str, run_id: str, after: int | None) -> tuple[Run, list[Message]]:
    """The run (NotFound for an unknown or another tenant's run) and the messages its steps
    wrote, oldest first, after the message id `after`; read in that order, so the messages
    hold at least what the run's status says was committed (as repository.pages.run_messages)."""
    stmt = select(_MESSAGES).where(_MESSAGES.c.run_id == run_id)
    if after is not None:
        stmt = stmt.where(_MESSAGES.c.id > after)
    with db.autocommit_engine.connect() as conn:
        row = conn.execute(_RUN_OF_TENANT, {"run_id": run_id, "tenant": tenant}).one_or_none()
        if row is None:
            raise NotFound(f"unknown run: {run_id}")
        rows = conn.execute(stmt.order_by(_MESSAGES.c.id).limit(RUN_MESSAGES_LIMIT)).all()
    return Run(**row._asdict()), [Message(**m._asdict()) for m in rows]
