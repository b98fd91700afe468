"""Letta's archival-memory routes: insert (text, tags), list, delete, search (query,
top_k, dates, tags). A passage reaches its tenant through its agent."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from memq.api import ids
from memq.api.archival_ops import ArchivalOps, SearchQuery
from memq.api.deps import AgentId, State, Tenant, blocking
from memq.api.models.memory import PassageCreate
from storage.repository.messages import iso_utc

router = APIRouter(prefix="/v1/agents/{agent_id}/archival-memory", tags=["archival memory"])
DEFAULT_TOP_K = 10


def passage(p: Any) -> dict[str, Any]:
    return {
        "id": ids.wire_passage(p.id), "agent_id": ids.wire_agent(p.agent_id), "text": p.text,
        "tags": list(p.tags or []), "created_at": iso_utc(p.created_at), "archive_id": None,
        "file_id": p.document_id, "file_name": None, "embedding": None, "embedding_config": None,
        "is_deleted": False, "metadata": {"source": p.source, "chunk_no": p.chunk_no, "indexed": p.indexed},
    }


@router.post("", summary="Store a passage (text, tags) in the agent's archival memory")
@router.post("/", include_in_schema=False)
async def create_passage(agent_id: AgentId, body: PassageCreate, st: State, tenant: Tenant) -> list[dict[str, Any]]:
    rows = await blocking(ArchivalOps(st.ops).insert, tenant, agent_id, body.text, body.tags)
    return [passage(p) for p in rows]


@router.get("", summary="The agent's passages, oldest first unless ascending=false")
@router.get("/", include_in_schema=False)
async def list_passages(
    agent_id: AgentId, st: State, tenant: Tenant,
    after: str | None = None, before: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ascending: bool = True, search: str | None = None,
) -> list[dict[str, Any]]:
    rows = await blocking(
        ArchivalOps(st.ops).list, tenant, agent_id, after=ids.passage_id(after) if after else None,
        before=ids.passage_id(before) if before else None, limit=limit, ascending=ascending, search=search)
    return [passage(p) for p in rows]


@router.get("/search", summary="Search passages by meaning and words, within dates and tags")
async def search_passages(
    agent_id: AgentId, st: State, tenant: Tenant,
    query: Annotated[str, Query(max_length=10_000)],
    top_k: Annotated[int | None, Query(ge=1, le=100)] = None,
    start_datetime: datetime | None = None, end_datetime: datetime | None = None,
    tags: Annotated[list[str], Query()] = [],  # noqa: B006
    tag_match_mode: Literal["any", "all"] = "any",
) -> dict[str, Any]:
    q = SearchQuery(query=query, top_k=top_k or DEFAULT_TOP_K, start=start_datetime, end=end_datetime,
                    tags=tuple(tags), match_all=tag_match_mode == "all")
    found = await blocking(ArchivalOps(st.ops).search, tenant, agent_id, q)
    results = [{"id": ids.wire_passage(p.id), "content": p.text, "timestamp": iso_utc(p.created_at),
                "tags": list(p.tags or []), **({"score": round(score, 4)} if score is not None else {})}
               for score, p in found]
    return {"count": len(results), "results": results}


@router.delete("/{memory_id}", summary="Delete one passage")
async def delete_passage(agent_id: AgentId, memory_id: str, st: State, tenant: Tenant) -> dict[str, Any]:
    await blocking(ArchivalOps(st.ops).delete, tenant, agent_id, ids.passage_id(memory_id))
    return {"deleted": ids.wire_passage(ids.passage_id(memory_id))}
