"""The step journal of a run, and a tenant's usage (tokens and cost) per agent and day.
Callers check the run's tenant first; usage queries are limited to one tenant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.models import Agent, StepRecord


def run_steps(session: Session, run_id: str) -> list[StepRecord]:
    stmt = select(StepRecord).where(StepRecord.run_id == run_id).order_by(StepRecord.step_no)
    return list(session.scalars(stmt))


def _day(session: Session) -> Any:
    """The UTC calendar day of a step's finish, as text YYYY-MM-DD."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", StepRecord.finished_at), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", StepRecord.finished_at)


def usage_by_agent_day(session: Session, tenant_id: str, *, start: datetime | None, end: datetime | None,
                       agent_id: str | None) -> list[dict[str, Any]]:
    """Rows {date, agent_id, agent_name, steps, prompt_tokens, completion_tokens, cost_usd}, by day then agent."""
    day = _day(session).label("day")
    stmt = (
        select(day, StepRecord.agent_id, Agent.name, func.count(), func.coalesce(func.sum(StepRecord.prompt_tokens), 0),
               func.coalesce(func.sum(StepRecord.completion_tokens), 0), func.coalesce(func.sum(StepRecord.cost_usd), 0.0))
        .join(Agent, Agent.id == StepRecord.agent_id)
        .where(Agent.tenant_id == tenant_id)
        .group_by(day, StepRecord.agent_id, Agent.name)
        .order_by(day, StepRecord.agent_id)
    )
    if start is not None:
        stmt = stmt.where(StepRecord.finished_at >= start)
    if end is not None:
        stmt = stmt.where(StepRecord.finished_at < end)
    if agent_id is not None:
        stmt = stmt.where(StepRecord.agent_id == agent_id)
    return [
        {"date": r[0], "agent_id": r[1], "agent_name": r[2], "steps": int(r[3]), "prompt_tokens": int(r[4]),
         "completion_tokens": int(r[5]), "cost_usd": float(r[6])}
        for r in session.execute(stmt)
    ]
