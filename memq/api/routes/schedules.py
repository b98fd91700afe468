"""Letta's schedule routes (scheduled messages): create (one-time or cron), list,
retrieve, delete, on memq's schedules (`memq beat` fires them)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from memq.api import ids
from memq.api.deps import AgentId, State, Tenant, blocking
from memq.api.models.memory import OneTime, ScheduleCreate
from memq.api.schedule_ops import ScheduleApi, instant, wire

router = APIRouter(prefix="/v1/agents/{agent_id}/schedule", tags=["schedule"])


@router.post("", summary="Schedule a message: once (scheduled_at, epoch ms) or recurring (cron_expression, UTC)")
@router.post("/", include_in_schema=False)
async def create_schedule(agent_id: AgentId, body: ScheduleCreate, st: State, tenant: Tenant) -> dict[str, Any]:
    one_time = isinstance(body.schedule, OneTime)
    at = instant(body.schedule.scheduled_at) if one_time else None
    cron = None if one_time else body.schedule.cron_expression
    view = await blocking(ScheduleApi(st.ops).create, tenant, agent_id, body.text(), at=at, cron=cron)
    return {"id": ids.wire_schedule(view.id), "next_scheduled_at": view.next_fire_at}


@router.get("", summary="The agent's scheduled messages")
@router.get("/", include_in_schema=False)
async def list_schedules(
    agent_id: AgentId, st: State, tenant: Tenant, after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    views, more = await blocking(ScheduleApi(st.ops).list, tenant, agent_id, after, limit)
    return {"scheduled_messages": [wire(v) for v in views], "has_next_page": more}


@router.get("/{scheduled_message_id}", summary="One scheduled message")
async def retrieve_schedule(agent_id: AgentId, scheduled_message_id: str, st: State, tenant: Tenant) -> dict[str, Any]:
    return wire(await blocking(ScheduleApi(st.ops).get, tenant, agent_id, ids.schedule_id(scheduled_message_id)))


@router.delete("/{scheduled_message_id}", summary="Delete a scheduled message (its future fires)")
async def delete_schedule(agent_id: AgentId, scheduled_message_id: str, st: State, tenant: Tenant) -> dict[str, Any]:
    await blocking(ScheduleApi(st.ops).delete, tenant, agent_id, ids.schedule_id(scheduled_message_id))
    return {"success": True}
