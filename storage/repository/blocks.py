"""Edits from outside the agent (the API): its name, model, system prompt and tags,
and one core-memory block at a time."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.models import Agent, MemoryBlock
from storage.repository.agents import BlockLimitExceeded
from storage.repository.errors import BadInput, NotFound


def get_block(session: Session, agent_id: str, label: str) -> MemoryBlock:
    block = session.scalars(
        select(MemoryBlock).where(MemoryBlock.agent_id == agent_id, MemoryBlock.label == label)
    ).one_or_none()
    if block is None:
        raise NotFound(f"agent has no core memory block '{label}'")
    return block


def update_block(
    session: Session, agent_id: str, label: str, *, value: str | None = None, limit: int | None = None
) -> MemoryBlock:
    """Change a block's value and/or limit; the value must fit the (new) limit,
    exactly as for the agent's own edits."""
    block = get_block(session, agent_id, label)
    new_limit = block.limit_chars if limit is None else limit
    new_value = block.value if value is None else value
    if new_limit < 1:
        raise BadInput(f"limit of block '{label}' must be at least 1")
    if len(new_value) > new_limit:
        raise BlockLimitExceeded(label, len(new_value), new_limit)
    changes: dict[str, Any] = {"value": new_value, "limit_chars": new_limit}
    session.execute(
        update(MemoryBlock).where(MemoryBlock.id == block.id).values(**changes)
    )
    session.refresh(block)
    return block


_EDITABLE = ("name", "model", "system_prompt", "tags")


def update_agent(session: Session, agent: Agent, **fields: Any) -> Agent:
    """Set the given settings of an agent (looked up, tenant-scoped, by the caller)."""
    unknown = set(fields) - set(_EDITABLE)
    if unknown:
        raise BadInput(f"cannot change {', '.join(sorted(unknown))} of an agent")
    if "name" in fields and not (fields["name"] or "").strip():
        raise BadInput("agent name must not be empty")
    for key, value in fields.items():
        setattr(agent, key, value)
    session.flush()
    return agent
