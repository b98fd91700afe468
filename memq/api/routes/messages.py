"""Letta's message routes: send (blocking, async, streamed), list, cancel.

A send commits the message and its run and rings the broker; a worker runs the
steps. A blocking send then waits on the run watcher (no thread is held while
it waits) and answers with the run's messages; a streamed send answers each
step's messages as that step commits. Concurrent sends to one agent queue in
arrival order: each gets its own run and reply.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse

from memq.api import convert, ids
from memq.api.deps import AgentId, ApiState, State, Tenant, blocking
from memq.api.models.letta import CancelRequest, MessageCreate
from memq.constants import RunStatus

router = APIRouter(prefix="/v1/agents/{agent_id}/messages", tags=["messages"])
# memq's own: a repeated key answers the first send's run instead of sending again.
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=190,
                                       description="a repeated key answers the first send's run")]


def _send_options(body: MessageCreate, header_key: str | None) -> dict[str, Any]:
    key = header_key or body.idempotency_key
    # Kept apart from the keys memq makes itself (a schedule's fires): a client cannot pre-empt one.
    return {"idempotency_key": f"http:{key}" if key else None, "callback_url": body.callback_url}


def _response(run: Any, rows: list[Any]) -> dict[str, Any]:
    return {"messages": convert.messages(rows, include_user=False), "stop_reason": convert.stop_reason(run),
            "usage": convert.usage(run)}


@router.post("", summary="Send a message and wait for the agent's turn (or stream it with streaming=true)")
async def send_message(agent_id: AgentId, body: MessageCreate, st: State, tenant: Tenant, key: IdemKey = None) -> Any:
    sent = await _send(st, tenant, agent_id, body, key)
    if body.streaming:
        return EventSourceResponse(_stream(st, tenant, sent))
    return await answer_when_finished(st, tenant, sent)


async def answer_when_finished(st: ApiState, tenant: str, sent: Sent) -> JSONResponse:
    """The run's messages, stop reason and usage once it has finished (202 + the run after wait_s)."""
    run = sent.run
    await st.watcher.wait_finished(run.id, (run.status, run.steps), st.wait_s, sent.mark)
    run, rows = await _answer(st, tenant, run.id, None, sent.floor)
    if not RunStatus(run.status).finished:
        # The turn goes on; the caller fetches the run by its id (202 + the run).
        return JSONResponse(convert.run(run), status_code=202)
    return JSONResponse(_response(run, rows))


@router.post("/async", summary="Send a message; answers the run at once")
async def send_message_async(agent_id: AgentId, body: MessageCreate, st: State, tenant: Tenant,
                             key: IdemKey = None) -> dict[str, Any]:
    return convert.run((await _send(st, tenant, agent_id, body, key)).run)


@router.post("/stream", summary="Send a message; each step's messages stream (SSE) as it commits")
async def stream_message(agent_id: AgentId, body: MessageCreate, st: State, tenant: Tenant,
                         key: IdemKey = None) -> EventSourceResponse:
    return EventSourceResponse(_stream(st, tenant, await _send(st, tenant, agent_id, body, key)))


@dataclass
class Sent:
    run: Any
    floor: int | None  # the run's messages have greater ids (None: unknown)
    mark: int | None  # the run watcher's mark from before the send (memq/api/watcher.py)


async def _send(st: ApiState, tenant: str, agent_id: str, body: MessageCreate, key: str | None) -> Sent:
    """Commit the message and its run and ring the broker: on the event loop in the common case
    (memq/api/fast.py), else through the repository on a threadpool thread."""
    text, options = body.text(), _send_options(body, key)
    if st.fast is not None and st.fast.applies(text, **options):
        return await fast_send(st, tenant, agent_id, text)
    mark = st.watcher.mark()
    return Sent(await blocking(st.ops.send, tenant, agent_id, text, **options), None, mark)


async def fast_send(st: ApiState, tenant: str, agent_id: str, text: str) -> Sent:
    """The common send on the event loop (st.fast must apply to it)."""
    mark = st.watcher.mark()
    sent = await st.fast.send(tenant, agent_id, text)
    return Sent(sent.run, sent.floor, mark)


async def _answer(st: ApiState, tenant: str, run_id: str, after: int | None, floor: int | None) -> tuple[Any, list[Any]]:
    """The run and its messages (after the message id `after`)."""
    if st.fast is not None:
        return await st.fast.run_messages(tenant, run_id, after, floor)
    return await blocking(st.ops.run_messages, tenant, run_id, after)


async def _stream(st: ApiState, tenant: str, sent: Sent) -> AsyncIterator[dict[str, str]]:
    run, after = sent.run, None
    while True:
        run, rows = await _answer(st, tenant, run.id, after, sent.floor)
        for message in convert.messages(rows, include_user=False):
            yield {"data": json.dumps(message)}
        if rows:
            after = rows[-1].id
        if RunStatus(run.status).finished:
            break
        state = (run.status, run.steps)
        if await st.watcher.wait_change(run.id, state, st.wait_s, sent.mark) == state:
            break  # nothing happened for wait_s: the run goes on; fetch it by its id
    if RunStatus(run.status).finished:
        yield {"data": json.dumps(convert.stop_reason(run))}
    yield {"data": json.dumps(convert.usage(run))}
    yield {"data": "[DONE]"}


@router.get("", summary="The agent's messages, a cursor page")
async def list_messages(
    agent_id: AgentId,
    st: State,
    tenant: Tenant,
    after: str | None = None,
    before: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    order: Literal["asc", "desc"] = "desc",
    include_return_message_types: Annotated[list[str] | None, Query()] = None,
) -> list[dict[str, Any]]:
    # Rows beyond the limit: some rows show as nothing (send_message's result), some as several.
    rows, calls = await blocking(st.ops.messages, tenant, agent_id, after=ids.message_id(after),
                                 before=ids.message_id(before), limit=min(2 * limit + 10, 5000),
                                 descending=order == "desc")
    # Converted oldest first (a tool result needs its call), then put in the asked order.
    shown = convert.messages(sorted(rows, key=lambda m: m.id), calls=calls)
    if include_return_message_types:
        shown = [m for m in shown if m["message_type"] in include_return_message_types]
    return _page(shown, limit, newest_first=order == "desc")


def _page(messages: list[dict[str, Any]], limit: int, *, newest_first: bool) -> list[dict[str, Any]]:
    """At most `limit` messages, whole memq messages only (the parts of one share its id, and
    the next page starts after that id), except a first one that alone has more parts."""
    groups: list[list[dict[str, Any]]] = []
    for m in messages:
        if groups and groups[-1][0]["id"] == m["id"]:
            groups[-1].append(m)
        else:
            groups.append([m])
    if newest_first:
        groups.reverse()
    out: list[dict[str, Any]] = []
    for group in groups:
        if out and len(out) + len(group) > limit:
            break
        out.extend(group)
    return out[:limit]


@router.post("/cancel", summary="Cancel the agent's queued runs (all, or run_ids); a turn in progress finishes")
async def cancel(agent_id: AgentId, st: State, tenant: Tenant, body: CancelRequest | None = None) -> dict[str, Any]:
    wanted = [ids.run_id(r) for r in (body.run_ids or [])] if body else []
    cancelled = await blocking(st.ops.cancel, tenant, agent_id, wanted)
    return {"cancelled": [ids.wire_run(r) for r in cancelled]}
