"""What memq shows of its state: JSON-ready pydantic models (the --json contract)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from memq.constants import AgentState
from memq.isotime import iso_utc

if TYPE_CHECKING:  # the CLI's quick path builds views from plain rows, without the ORM
    from storage.models import Agent, Message, Run


def agent_state(a: Any, now_s: float, waiting_provider: bool = False) -> AgentState:
    """failing while its last step's error stands (a committed step clears it), else
    waiting_provider while its step's request waits for the provider's batch API, else
    working while a worker holds its lease, else idle."""
    if a.last_error is not None:
        return AgentState.FAILING
    if waiting_provider:
        return AgentState.WAITING_PROVIDER
    return AgentState.WORKING if a.lease_until_s > now_s else AgentState.IDLE


class BlockView(BaseModel):
    label: str
    value: str
    limit: int

    @classmethod
    def of(cls, b: Any) -> "BlockView":  # a memory_blocks row
        return cls(label=b.label, value=b.value, limit=b.limit_chars)


class ContextUsage(BaseModel):
    """How full the agent's context window is (as of its last step)."""

    tokens: int
    window: int
    percent: float
    messages_in_context: int
    messages_in_recall: int
    summary_chars: int


class AgentView(BaseModel):
    id: str
    name: str
    model: str | None
    created_at: str
    queue: str
    messages: int
    busy: bool
    active_run_id: str | None
    context: ContextUsage | None = None
    state: AgentState = AgentState.IDLE  # failing: its last step raised (last_error), not committed
    attempts: int = 0  # step attempts since the last committed step
    last_error: str | None = None
    last_error_at: str | None = None

    @classmethod
    def of(cls, a: Agent, now_s: float, in_context: int | None = None,
           waiting_provider: bool | None = None) -> "AgentView":
        """waiting_provider: None takes the row's own column of that name (the quick path's SQL)."""
        if waiting_provider is None:
            waiting_provider = bool(getattr(a, "waiting_provider", False))
        context = None
        if in_context is not None:
            context = ContextUsage(
                tokens=a.context_tokens,
                window=a.context_window,
                percent=round(100 * a.context_tokens / a.context_window, 1) if a.context_window else 0.0,
                messages_in_context=in_context,
                messages_in_recall=a.message_count,
                summary_chars=len(a.summary),
            )
        return cls(
            id=a.id,
            name=a.name,
            model=a.model,
            created_at=iso_utc(a.created_at),
            queue=a.queue,
            messages=a.message_count,
            busy=a.lease_until_s > now_s,
            active_run_id=a.active_run_id,
            context=context,
            state=agent_state(a, now_s, waiting_provider),
            attempts=a.step_attempts or 0,
            last_error=a.last_error,
            last_error_at=iso_utc(a.last_error_at) if a.last_error_at else None,
        )


class RunView(BaseModel):
    run_id: str
    agent_id: str
    status: str
    replies: list[str]
    steps: int
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    created_at: str
    finished_at: str | None = None

    @classmethod
    def of(cls, r: Run) -> "RunView":
        return cls(
            run_id=r.id,
            agent_id=r.agent_id,
            status=r.status,
            replies=list(r.replies or []),
            steps=r.steps,
            error=r.error,
            prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens,
            created_at=iso_utc(r.created_at),
            finished_at=iso_utc(r.finished_at) if r.finished_at else None,
        )


class MessageView(BaseModel):
    id: int
    role: str
    content: str | None
    tool_calls: list[dict[str, Any]] | None
    tool_call_id: str | None = None
    run_id: str | None = None
    created_at: str

    @classmethod
    def of(cls, m: Message) -> "MessageView":
        return cls(
            id=m.id,
            role=m.role,
            content=m.content,
            tool_calls=m.tool_calls,
            tool_call_id=m.tool_call_id,
            run_id=m.run_id,
            created_at=iso_utc(m.created_at),
        )


class ScheduleView(BaseModel):
    id: str
    agent_id: str
    kind: str
    expr: str
    tz: str
    message: str
    missed: str
    paused: bool
    next_fire_at: str | None
    last_fire_at: str | None
    last_run_id: str | None
    last_run_status: str | None
    fires: int
    llm_mode: str = "normal"

    @classmethod
    def of(cls, s: Any, last_run_status: str | None) -> "ScheduleView":
        return cls(
            id=s.id,
            agent_id=s.agent_id,
            kind=s.kind,
            expr=s.expr,
            tz=s.tz,
            message=s.message,
            missed=s.missed,
            paused=s.paused,
            next_fire_at=iso_utc(s.next_fire_at) if s.next_fire_at else None,
            last_fire_at=iso_utc(s.last_fire_at) if s.last_fire_at else None,
            last_run_id=s.last_run_id,
            last_run_status=last_run_status,
            fires=s.fires,
            llm_mode=getattr(s, "llm_mode", None) or "normal",
        )
