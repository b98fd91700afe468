"""memq's own routes, for what Letta's API lacks: batches (submit JSONL or a JSON
array, status, results as a JSONL stream, cancel), a run's step journal, and the
tenant's usage per agent and day. Idempotent sends are the `Idempotency-Key`
header (or `idempotency_key` field) of the message routes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from memq.api import ids
from memq.api.archival_ops import utc
from memq.api.deps import State, Tenant, blocking
from memq.api.errors import ApiError
from memq.api.native_ops import NativeOps, jsonl

router = APIRouter(prefix="/v1/memq", tags=["memq"])

_BATCH_BODY = {"requestBody": {"required": True, "content": {
    "application/x-ndjson": {"schema": {"type": "string"},
                             "example": '{"id": "q1", "agent_id": "agent-…", "message": "hi"}\n'},
    "application/json": {"schema": {"type": "array", "items": {"type": "object", "properties": {
        "id": {"type": "string"}, "agent_id": {"type": "string"}, "message": {"type": "string"},
        "agent": {"type": "object", "description": "with create_agents=true: {name, persona, human, model}"}}}}},
}}}


def batch_lines(body: bytes, content_type: str) -> list[str]:
    """The batch's lines: a JSON array's items, or the lines of a JSONL body."""
    text = body.decode("utf-8", errors="replace")
    if "json" in content_type and "ndjson" not in content_type and "jsonl" not in content_type:
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ApiError(400, f"malformed JSON: {exc.msg} (line {exc.lineno})", "malformed_json") from None
        if not isinstance(items, list):
            raise ApiError(422, "body: a JSON array of items (or JSONL with Content-Type: application/x-ndjson)",
                           "invalid_request")
        return [json.dumps(item) for item in items]
    return text.splitlines()


@router.post("/batches", summary="Submit a batch: JSONL (application/x-ndjson) or a JSON array of items",
             openapi_extra=_BATCH_BODY)
async def submit_batch(request: Request, st: State, tenant: Tenant, create_agents: bool = False,
                       skip_invalid: bool = False, llm_mode: str = "normal") -> dict[str, Any]:
    """llm_mode=provider_batch: every step of the batch's runs goes through the provider's batch API."""
    lines = batch_lines(await request.body(), request.headers.get("content-type", ""))
    return await blocking(NativeOps(st.ops).submit_batch, tenant, lines, create_agents=create_agents,
                          skip_invalid=skip_invalid, llm_mode=llm_mode)


@router.get("/batches/{batch_id}", summary="A batch's progress: runs by status, tokens, cost")
async def batch_status(batch_id: str, st: State, tenant: Tenant) -> dict[str, Any]:
    return await blocking(NativeOps(st.ops).batch_status, tenant, ids.batch_id(batch_id))


@router.get("/batches/{batch_id}/results", summary="One JSON line per input line, in order (JSONL stream)",
            response_class=StreamingResponse)
async def batch_results(batch_id: str, st: State, tenant: Tenant) -> StreamingResponse:
    rows = await blocking(NativeOps(st.ops).batch_results, tenant, ids.batch_id(batch_id))
    return StreamingResponse(jsonl(rows), media_type="application/x-ndjson")


@router.post("/batches/{batch_id}/cancel", summary="Cancel the batch's runs that have not started")
async def cancel_batch(batch_id: str, st: State, tenant: Tenant) -> dict[str, Any]:
    return await blocking(NativeOps(st.ops).cancel_batch, tenant, ids.batch_id(batch_id))


@router.get("/runs/{run_id}/steps", summary="A run's step journal: tokens, LLM latency, tool, outcome, cost")
async def run_steps(run_id: str, st: State, tenant: Tenant) -> dict[str, Any]:
    return await blocking(NativeOps(st.ops).run_steps, tenant, ids.run_id(run_id))


@router.get("/usage", summary="The tenant's tokens and cost per agent and per UTC day (start <= finish < end)")
async def usage(st: State, tenant: Tenant, start: datetime | None = None, end: datetime | None = None,
                agent_id: str | None = None) -> dict[str, Any]:
    return await blocking(NativeOps(st.ops).usage, tenant, start=utc(start), end=utc(end),
                          agent_id=ids.agent_id(agent_id) if agent_id else None)
