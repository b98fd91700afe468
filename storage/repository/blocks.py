"""Edits from outside the agent (the API): its name, model, system prompt and tags,
and one core-memory block at a time.

A block edit is fenced against the agent's own steps by the agent's lease: it is
taken for the edit (only when no step holds it: a step reads the blocks after it
takes the lease and writes its edits in its commit, so an edit made meanwhile would
be overwritten, or land under a step that compiled the old value), and given back
at once. Taking it grows the fencing token like a step's take, but is no step
attempt (step_attempts is left alone)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select, update
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


class AgentBusy(RuntimeError):
    """The edit's lease on the agent is no longer its own (it outlived its hold and a step took it)."""


EDIT_OWNER_PREFIX = "edit:"  # lease_owner of an edit's lease, e.g. "edit:host:1234"
RELEASE_SKEW_S = 1.0  # as storage.repository.lease: a released lease ends a little in the past
_TAKE_FOR_EDIT = (
    update(Agent)
    .where(Agent.id == bindparam("aid"), Agent.tenant_id == bindparam("tenant"), Agent.lease_until_s < bindparam("now_s"))
    .values(lease_token=Agent.lease_token + 1, lease_owner=bindparam("owner"), lease_until_s=bindparam("until_s"))
    .returning(Agent.lease_token, Agent.queue)
)
_RELEASE_EDIT = (
    update(Agent)
    .where(Agent.id == bindparam("aid"), Agent.lease_token == bindparam("token"))
    .values(lease_owner=None, lease_until_s=bindparam("until_s"))
)


def take_edit_lease(session: Session, agent_id: str, tenant_id: str, *, owner: str, hold_s: float,
                    now_s: float) -> tuple[int, str] | None:
    """(token, queue) of the agent's lease, taken for an edit if no step holds it; None when it is
    held (or there is no such agent of the tenant)."""
    row = session.connection().execute(_TAKE_FOR_EDIT, {
        "aid": agent_id, "tenant": tenant_id, "now_s": now_s, "owner": EDIT_OWNER_PREFIX + owner,
        "until_s": now_s + hold_s}).one_or_none()
    return None if row is None else (int(row[0]), str(row[1]))


def check_edit_lease(session: Session, agent_id: str, token: int) -> None:
    """Lock the agent's row and check the edit's lease is still its own (AgentBusy if not)."""
    held = session.scalars(select(Agent.lease_token).where(Agent.id == agent_id).with_for_update()).one_or_none()
    if held != token:
        raise AgentBusy(f"agent {agent_id}: a step took its lease during the edit; nothing was changed")


def release_edit_lease(session: Session, agent_id: str, token: int, *, now_s: float) -> bool:
    """Give the edit's lease back (a no-op if it is no longer the edit's)."""
    return session.connection().execute(
        _RELEASE_EDIT, {"aid": agent_id, "token": token, "until_s": now_s - RELEASE_SKEW_S}).rowcount == 1


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
