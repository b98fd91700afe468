"""Letta's run routes: retrieve, list (by agent, by status), a run's messages."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from memq.api import convert, ids
from memq.api.deps import State, Tenant, blocking
from storage.repository.errors import BadInput

router = APIRouter(prefix="/v1/runs", tags=["runs"])
_MEMQ_STATES = {"queued", "running", "done", "failed", "chain_capped", "cancelled"}


def _states(statuses: list[str]) -> list[str]:
    out: list[str] = []
    for s in statuses:
        if s in convert.STATUS_FILTER:
            out += convert.STATUS_FILTER[s]
        elif s in _MEMQ_STATES:
            out.append(s)
        else:
            raise BadInput(f"statuses: unknown status '{s}' (created, running, completed, failed, cancelled)")
    return out


@router.get("/", summary="The tenant's runs, newest first unless order=asc")
@router.get("", include_in_schema=False)
async def list_runs(
    st: State,
    tenant: Tenant,
    agent_id: str | None = None,
    agent_ids: Annotated[list[str], Query()] = [],  # noqa: B006
    statuses: Annotated[list[str], Query()] = [],  # noqa: B006
    after: str | None = None,
    before: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    order: Literal["asc", "desc"] | None = None,
    ascending: bool | None = None,
) -> list[dict[str, Any]]:
    agents = [ids.agent_id(a) for a in ([agent_id] if agent_id else []) + agent_ids]
    descending = order != "asc" if order is not None else not ascending
    rows = await blocking(
        st.ops.runs, tenant, agent_ids=agents, statuses=_states(statuses),
        after=ids.run_id(after) if after else None, before=ids.run_id(before) if before else None,
        limit=limit, descending=descending,
    )
    return [convert.run(r) for r in rows]


@router.get("/{run_id}", summary="A run: status, stop reason, timings")
async def retrieve_run(run_id: str, st: State, tenant: Tenant) -> dict[str, Any]:
    return convert.run(await blocking(st.ops.run, tenant, ids.run_id(run_id)))


@router.get("/{run_id}/messages", summary="The messages of a run, oldest first unless order=desc")
async def run_messages(
    run_id: str,
    st: State,
    tenant: Tenant,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    order: Literal["asc", "desc"] = "asc",
) -> list[dict[str, Any]]:
    _, rows = await blocking(st.ops.run_messages, tenant, ids.run_id(run_id), ids.message_id(after))
    shown = convert.messages(rows)[:limit] if order == "asc" else list(reversed(convert.messages(rows)))[:limit]
    return shown
