"""Letta's agent routes: create, list, retrieve, modify, delete (`/v1/agents`)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from memq.api import convert, ids
from memq.api.deps import AgentId, State, Tenant, blocking
from memq.api.models.letta import AgentCreate, AgentUpdate
from memq.api.ops import BlockSpec

router = APIRouter(prefix="/v1/agents", tags=["agents"])


def _shown(st: State, pair: tuple[Any, list[Any]]) -> dict[str, Any]:
    agent, blocks = pair
    return convert.agent_state(agent, blocks, st.ops.settings, st.default_system)


@router.post("/", summary="Create an agent")
@router.post("", include_in_schema=False)
async def create_agent(body: AgentCreate, st: State, tenant: Tenant) -> dict[str, Any]:
    blocks = None
    if body.memory_blocks is not None:
        blocks = [BlockSpec(b.label, b.value, b.limit) for b in body.memory_blocks]
    pair = await blocking(
        st.ops.create_agent, tenant, name=body.name or f"agent-{uuid.uuid4().hex[:8]}", blocks=blocks,
        model=body.model, system=body.system, tags=body.tags,
    )
    return _shown(st, pair)


@router.get("/", summary="List the tenant's agents")
@router.get("", include_in_schema=False)
async def list_agents(
    st: State,
    tenant: Tenant,
    name: str | None = None,
    tags: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies defaults
    match_all_tags: bool = False,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    order: Literal["asc", "desc"] = "desc",
) -> list[dict[str, Any]]:
    cursor = ids.agent_id(after) if after else None
    rows = await blocking(st.ops.agents, tenant, name=name, tags=tags, match_all_tags=match_all_tags,
                          after=cursor, limit=limit, descending=order == "desc")
    return [_shown(st, pair) for pair in rows]


@router.get("/{agent_id}", summary="Retrieve an agent")
async def retrieve_agent(agent_id: AgentId, st: State, tenant: Tenant) -> dict[str, Any]:
    return _shown(st, await blocking(st.ops.agent, tenant, agent_id))


@router.patch("/{agent_id}", summary="Modify an agent's name, model, system prompt or tags")
async def modify_agent(agent_id: AgentId, body: AgentUpdate, st: State, tenant: Tenant) -> dict[str, Any]:
    return _shown(st, await blocking(st.ops.update_agent, tenant, agent_id, body.fields()))


@router.delete("/{agent_id}", summary="Delete an agent and everything it holds")
async def delete_agent(agent_id: AgentId, st: State, tenant: Tenant) -> dict[str, Any]:
    await blocking(st.ops.delete_agent, tenant, agent_id)
    return {"id": ids.wire_agent(agent_id), "deleted": True}
