"""Messages: the raw record of what the agent saw and said."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, case, select
from sqlalchemy.orm import Session

from memq.isotime import iso_utc  # noqa: F401 - where callers import it from
from storage.models import Message
from storage.repository import rawpg


def _unless_known(column: Any) -> Any:
    return case((Message.id > bindparam("known"), column), else_=None).label(column.key)


_CONTEXT = (
    select(Message.id, Message.role, _unless_known(Message.content), _unless_known(Message.tool_calls),
           _unless_known(Message.tool_call_id), Message.tokens)
    .where(Message.agent_id == bindparam("aid"), Message.id >= bindparam("start"))
    .order_by(Message.id)
)
_CONTEXT_SQL = rawpg.PgStatement(_CONTEXT)


def context_messages(session: Session, agent_id: str, start_id: int, *, known_through: int = 0) -> list[Any]:
    """The in-context FIFO queue: messages from the agent's context cursor on.

    Plain rows (attribute access like a Message) rather than ORM objects: a step
    reads a whole window of them and needs no identity map for that. Rows with
    id <= known_through come without content, tool_calls and tool_call_id: the
    caller has them already (messages never change once written).
    """
    params = {"aid": agent_id, "start": start_id, "known": known_through}
    return list(rawpg.execute(session, _CONTEXT_SQL, params))


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
