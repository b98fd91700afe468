"""The step's side of llm_mode=provider_batch (issue 18).

A step of a provider_batch run does everything up to the LLM call as usual, then
parks: its compiled request and context are stored under the step's identity
(agent, step_no = the number its commit takes), the lease is released, and no
step of the agent runs until the reply is back (gate() stops them; the reconciler
leaves waiting agents alone). The collector in `memq beat` stores the reply and
rings; the next step of the agent finds it under the same identity and commits
it, fenced as always (a reply stored twice, or a step run twice on it, commits
once: the step counter moves on at the first commit).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from memq.llm_modes import LlmMode, ParkState
from memq.provider import resolve_route
from storage.repository import parked as parked_repo
from storage import repository as repo
from workers.context import CompiledContext
from workers.llm import LLMReply, ToolCall

CONTEXT_FIELDS = ("tokens", "window", "evicted", "context_start_id", "summary", "summary_tokens",
                  "summarized_by_llm", "alert", "pressure_alerted")


class Parked(Exception):
    """The step's request waits for the provider: the step ends here without committing."""


@dataclass(frozen=True)
class StoredReply(LLMReply):
    """A reply that came back in a provider batch (the journal records the mode)."""


@dataclass(frozen=True)
class Gate:
    """What a provider_batch step does instead of (or before) calling the model."""

    waits: bool = False  # the step's request is with the provider: stop here
    stored: tuple[CompiledContext, LLMReply, None] | None = None  # resume with the stored reply
    park: Callable[[CompiledContext], None] | None = None  # park the compiled request (raises Parked)


NORMAL = Gate()


def mode_of(reply: LLMReply) -> str:
    return (LlmMode.PROVIDER_BATCH if isinstance(reply, StoredReply) else LlmMode.NORMAL).value


def gate(rt: Any, lease: repo.Lease, turn: Any) -> Gate:
    """NORMAL for a normal run (no query); else wait, resume with the stored reply, or park."""
    run = turn.run
    if getattr(run, "llm_mode", LlmMode.NORMAL.value) != LlmMode.PROVIDER_BATCH.value:
        return NORMAL
    step_no = lease.step_counter + 1
    with rt.db.autocommit() as s:
        row = parked_repo.for_step(s, lease.agent_id, step_no)
    if row is None or row.run_id != run.id:  # (a row of a withdrawn run is replaced by park)
        return Gate(park=lambda context: _park(rt, lease, turn, step_no, context))
    state = ParkState(row.state)
    if state.waiting:
        return Gate(waits=True)
    if state is ParkState.ANSWERED:
        return Gate(stored=(_context_of(row), _reply_of(row), None))
    return NORMAL  # FALLBACK (failed in too many batches) or CANCELLED: the normal route finishes it


def release_parked(rt: Any, lease: repo.Lease) -> bool:
    """Give the lease back (the wait is no failed attempt); True when the reply is already back."""
    with rt.db.autocommit() as s:
        repo.release_lease(s, lease, now_s=time.time(), reset_attempts=True)
        row = parked_repo.for_step(s, lease.agent_id, lease.step_counter + 1)
    return row is not None and not ParkState(row.state).waiting


def request_body(rt: Any, model: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat completions body of a batch line: what the normal route sends for this step."""
    s = rt.settings
    route = resolve_route(model, s.llm_api_base)
    provider_model = route.split("/", 1)[1] if "/" in route else route
    body: dict[str, Any] = {"model": provider_model, "messages": messages, "max_tokens": s.llm_max_tokens}
    if rt.tools.schemas:
        body["tools"] = rt.tools.schemas
    return body


def _park(rt: Any, lease: repo.Lease, turn: Any, step_no: int, context: CompiledContext) -> None:
    model = turn.agent.model or rt.settings.llm_model or "gpt-4o-mini"
    state = {f: getattr(context, f) for f in CONTEXT_FIELDS}
    with rt.db.transaction() as s:
        parked_repo.park(s, agent_id=lease.agent_id, step_no=step_no, run_id=turn.run.id,
                         batch_id=turn.run.batch_id, lease_token=lease.token, model=model,
                         request=request_body(rt, model, context.messages), context=state)
    raise Parked()


def _context_of(row: Any) -> CompiledContext:
    state = dict(row.context)
    return CompiledContext(messages=list(row.request.get("messages") or []),
                           **{f: state.get(f) for f in CONTEXT_FIELDS})


def _reply_of(row: Any) -> StoredReply:
    r = row.reply or {}
    calls = [ToolCall(id=c["id"], name=c["name"], arguments=c["arguments"]) for c in r.get("tool_calls") or []]
    return StoredReply(content=r.get("content"), tool_calls=calls, prompt_tokens=int(r.get("prompt_tokens") or 0),
                       completion_tokens=int(r.get("completion_tokens") or 0),
                       cost_usd=float(r.get("cost_usd") or 0.0), latency_ms=float(r.get("latency_ms") or 0.0),
                       attempts=int(row.attempts or 1))
