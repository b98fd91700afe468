"""Messages: the raw record of what the agent saw and said."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Message


def iso_utc(dt: datetime) -> str:
    """ISO 8601 in UTC; SQLite hands back naive datetimes that were stored as UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def context_messages(session: Session, agent_id: str, start_id: int) -> list[Any]:
    """The in-context FIFO queue: messages from the agent's context cursor on.

    Plain rows (attribute access like a Message) rather than ORM objects: a step
    reads a whole window of them and needs no identity map for that.
    """
    stmt = (
        select(Message.id, Message.role, Message.content, Message.tool_calls, Message.tool_call_id,
               Message.tokens)
        .where(Message.agent_id == agent_id, Message.id >= start_id)
        .order_by(Message.id)
    )
    return list(session.execute(stmt))


def last_messages(session: Session, agent_id: str, limit: int) -> list[Message]:
    """The last `limit` messages, oldest first."""
    stmt = (
        select(Message)
        .where(Message.agent_id == agent_id)
        .order_by(Message.id.desc())
        .limit(limit)
    )
    return list(reversed(list(session.scalars(stmt))))


def count_from(session: Session, agent_id: str, start_id: int) -> int:
    """How many messages are in the agent's context (ids from the cursor on)."""
    from sqlalchemy import func

    stmt = select(func.count()).where(Message.agent_id == agent_id, Message.id >= start_id)
    return int(session.scalar(stmt) or 0)
