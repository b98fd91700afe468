"""Agents and their core-memory blocks."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from memq.text import stored_text
from storage.models import DEFAULT_TENANT, Agent, MemoryBlock
from storage.repository.errors import BadInput, NotFound


class AgentNotFound(NotFound):
    def __init__(self, agent_id: str) -> None:
        super().__init__(f"unknown agent: {agent_id}")
        self.agent_id = agent_id


class BlockLimitExceeded(BadInput):
    def __init__(self, label: str, size: int, limit: int) -> None:
        super().__init__(
            f"core memory block '{label}' would hold {size} characters; its limit is {limit}"
        )


def create_agent(
    session: Session,
    *,
    name: str,
    blocks: Mapping[str, str],
    limit_chars: int,
    model: str | None = None,
    system_prompt: str | None = None,
    queue: str = "interactive",
    tenant_id: str = DEFAULT_TENANT,
) -> Agent:
    """Create an agent with its core-memory blocks (label -> initial text).

    Text that cannot be stored is replaced with U+FFFD (memq.text), with a warning.
    """
    name = stored_text(name, "name")
    system_prompt = None if system_prompt is None else stored_text(system_prompt, "system prompt")
    blocks = {stored_text(label, "block label"): stored_text(value, label) for label, value in blocks.items()}
    if not name.strip():
        raise BadInput("agent name must not be empty")
    for label, value in blocks.items():
        if len(value) > limit_chars:
            raise BlockLimitExceeded(label, len(value), limit_chars)
    agent = Agent(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        name=name,
        model=model,
        system_prompt=system_prompt,
        queue=queue,
        lease_token=0,
        lease_until_s=0.0,
        step_counter=0,
        context_start_id=0,
        summary="",
        message_count=0,
        passage_count=0,
    )
    session.add(agent)
    session.flush()
    for position, (label, value) in enumerate(blocks.items()):
        session.add(
            MemoryBlock(
                agent_id=agent.id, label=label, value=value, limit_chars=limit_chars, position=position
            )
        )
    session.flush()
    return agent


def get_agent(
    session: Session, agent_id: str, *, for_update: bool = False, tenant_id: str | None = None
) -> Agent:
    """The agent; with tenant_id, another tenant's agent is as unknown as a missing one."""
    stmt = select(Agent).where(Agent.id == agent_id)
    if tenant_id is not None:
        stmt = stmt.where(Agent.tenant_id == tenant_id)
    if for_update:
        stmt = stmt.with_for_update()
    agent = session.scalars(stmt).one_or_none()
    if agent is None:
        raise AgentNotFound(agent_id)
    return agent


def list_agents(session: Session, tenant_id: str | None = None) -> list[Agent]:
    stmt = select(Agent).order_by(Agent.created_at, Agent.id)
    if tenant_id is not None:
        stmt = stmt.where(Agent.tenant_id == tenant_id)
    return list(session.scalars(stmt))


def delete_agent(session: Session, agent_id: str) -> None:
    get_agent(session, agent_id)
    # Explicit deletes keep SQLite correct even where foreign keys are off.
    from storage.models import (
        Document, InboxItem, Message, Passage, Run, Schedule, ScheduleFire, StepRecord,
    )

    for model in (ScheduleFire, Schedule, InboxItem, StepRecord, Message, Passage, Document, Run, MemoryBlock):
        session.execute(delete(model).where(model.agent_id == agent_id))
    session.execute(delete(Agent).where(Agent.id == agent_id))


_AGENT_ROW = select(Agent.__table__).where(Agent.id == bindparam("aid"))
_BLOCKS = (
    select(MemoryBlock.__table__)
    .where(MemoryBlock.agent_id == bindparam("aid"))
    .order_by(MemoryBlock.position, MemoryBlock.id)
)


def agent_row(session: Session, agent_id: str) -> Any | None:
    """The agent as a read-only row (attribute access, no ORM identity map): the
    step's hot path reads it once per step and never changes it through the ORM."""
    return session.connection().execute(_AGENT_ROW, {"aid": agent_id}).first()


def load_blocks(session: Session, agent_id: str) -> list[Any]:
    """The agent's core-memory blocks in order, as read-only rows."""
    return list(session.connection().execute(_BLOCKS, {"aid": agent_id}))


def save_block_values(session: Session, agent_id: str, values: Mapping[str, str]) -> None:
    """Write new block values; the limit is checked here too, whoever calls."""
    if not values:
        return
    limits = {b.label: b.limit_chars for b in load_blocks(session, agent_id)}
    for label, value in values.items():
        value = stored_text(value, label)
        if label not in limits:
            raise NotFound(f"agent {agent_id} has no core memory block '{label}'")
        if len(value) > limits[label]:
            raise BlockLimitExceeded(label, len(value), limits[label])
        session.execute(
            update(MemoryBlock)
            .where(MemoryBlock.agent_id == agent_id, MemoryBlock.label == label)
            .values(value=value)
        )
