"""Letta's core-memory routes: blocks list, retrieve and modify by label."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from memq.api import convert
from memq.api.deps import AgentId, State, Tenant, blocking
from memq.api.models.letta import BlockUpdate

router = APIRouter(prefix="/v1/agents/{agent_id}/core-memory/blocks", tags=["core memory"])


@router.get("", summary="The agent's core-memory blocks")
@router.get("/", include_in_schema=False)
async def list_blocks(
    agent_id: AgentId, st: State, tenant: Tenant, after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    blocks = await blocking(st.ops.blocks, tenant, agent_id)
    if after is not None:  # the cursor of the SDK's next page: blocks in order after it
        shown = [convert.block(b)["id"] for b in blocks]
        blocks = blocks[shown.index(after) + 1:] if after in shown else []
    return [convert.block(b) for b in blocks[:limit]]


@router.get("/{block_label}", summary="One block, by its label")
async def retrieve_block(agent_id: AgentId, block_label: str, st: State, tenant: Tenant) -> dict[str, Any]:
    return convert.block(await blocking(st.ops.block, tenant, agent_id, block_label))


@router.patch("/{block_label}", summary="Change a block's value or limit (the value must fit the limit)")
async def modify_block(
    agent_id: AgentId, block_label: str, body: BlockUpdate, st: State, tenant: Tenant
) -> dict[str, Any]:
    return convert.block(await blocking(st.ops.update_block, tenant, agent_id, block_label, body.value, body.limit))
