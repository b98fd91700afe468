"""What a step's commit writes, assembled from what the step did: the turn's rows (its
messages, the run's new totals, the journal row) and where the agent's context now stands.
Pure: workers/step.py decides how they are committed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage import repository as repo
from workers import provider_batch
from workers.context import CompiledContext
from workers.llm import LLMReply
from workers.tools import ToolContext


@dataclass(frozen=True, slots=True)
class JournalRow:
    """A committed step's journal row (the steps table's columns but its id), for the
    step's caller (metrics, the log line): a plain record, not an ORM object."""

    agent_id: str
    run_id: str
    step_no: int
    lease_token: int
    worker: str
    started_at: datetime
    finished_at: datetime
    prompt_messages: int
    prompt_chars: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    context_tokens: int
    evicted_messages: int
    llm_latency_ms: float
    llm_attempts: int
    tool_name: str | None
    outcome: str
    error: str | None
    llm_mode: str


def context_state(context: CompiledContext | None) -> dict[str, Any] | None:
    """The agent's CONTEXT_COLUMNS after this step (None: the step compiled no context)."""
    if context is None:
        return None
    return {
        "context_start_id": context.context_start_id,
        "summary": context.summary,
        "summary_tokens": context.summary_tokens,
        "pressure_alerted": context.pressure_alerted,
        "context_tokens": context.tokens,
        "context_window": context.window,
    }


def turn_writes(worker_id: str, lease: repo.Lease, turn: Any, outcome: Any, reply: LLMReply,
                tool_ctx: ToolContext, context: CompiledContext | None, messages: list[Any], *,
                started_at: datetime, finished_at: datetime) -> repo.TurnWrites:
    """turn, outcome: the step's _Turn and _Outcome (workers/step.py)."""
    run = turn.run
    step_no = lease.step_counter + 1  # what the fence advances the counter to
    journal = {
        "agent_id": turn.agent.id,
        "run_id": run.id,
        "step_no": step_no,
        "lease_token": lease.token,
        "worker": worker_id,
        "started_at": started_at,
        "finished_at": finished_at,
        "prompt_messages": len(context.messages) if context else 0,
        "prompt_chars": context.chars if context else 0,
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "cost_usd": reply.cost_usd,
        "context_tokens": context.tokens if context else 0,
        "evicted_messages": context.evicted if context else 0,
        "llm_latency_ms": reply.latency_ms,
        "llm_attempts": reply.attempts,
        "tool_name": outcome.tool_name,
        "outcome": outcome.step_outcome.value,
        "error": outcome.error,
        "llm_mode": provider_batch.mode_of(reply),
    }
    return repo.TurnWrites(
        agent_id=turn.agent.id,
        run_id=run.id,
        step_no=step_no,
        at=finished_at,
        messages=[{"role": m.role, "content": m.content, "tool_calls": m.tool_calls,
                   "tool_call_id": m.tool_call_id, "tokens": m.tokens} for m in messages],
        inbox_id=turn.inbox_id,
        run={
            "status": outcome.status.value,
            "steps": run.steps + 1,
            "replies": [*run.replies, *tool_ctx.replies],
            "error": outcome.error,
            "prompt_tokens": run.prompt_tokens + reply.prompt_tokens,
            "completion_tokens": run.completion_tokens + reply.completion_tokens,
            "cost_usd": run.cost_usd + reply.cost_usd,
            "started_at": run.started_at or started_at,
            "finished_at": finished_at if outcome.status.finished else None,
        },
        journal=journal,
    )
