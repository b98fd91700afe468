"""Runs refused before they reach the inbox: an inbound event that can never be
processed (a schedule's message too big for its agent's window) gets a failed
run with the reason, instead of an event that would fail or jam its agent."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from memq.constants import RunStatus
from storage.models import Run, utcnow


def record_refused_run(session: Session, agent_id: str, error: str, *, idempotency_key: str | None = None) -> Run:
    """A finished, failed run with no inbox event (the agent never sees it)."""
    now = utcnow()
    run = Run(
        id=str(uuid.uuid4()), agent_id=agent_id, status=RunStatus.FAILED.value, steps=0, replies=[],
        error=error, idempotency_key=idempotency_key, prompt_tokens=0, completion_tokens=0, cost_usd=0.0,
        created_at=now, finished_at=now,
    )
    session.add(run)
    session.flush()
    return run
