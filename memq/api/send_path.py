"""The common send in two Core statements: the agent's row lock (scoped by tenant), then
the run and its inbox event in one INSERT with a data-modifying CTE. No ORM session is
built, so a send costs the API process a fraction of repository.enqueue_message's CPU.

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
from storage.models import Agent, InboxItem, Run
from storage.repository.agents import AgentNotFound

_LOCK = (select(Agent.queue)
         .where(Agent.id == bindparam("agent_id"), Agent.tenant_id == bindparam("tenant"))
         .with_for_update())
_RUNS, _INBOX = Run.__table__, InboxItem.__table__
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
