"""An agent and what its steps read and write: memory blocks, messages, runs, the inbox, the step journal."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import DEFAULT_TENANT, Base, BigId, utcnow


class Agent(Base):
    """An agent, its lease (fencing token + expiry) and where its turn stands."""

    __tablename__ = "agents"
    __table_args__ = (Index("ix_agents_lease_until_s", "lease_until_s"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # The tenant owning the agent (and so its runs, messages, passages, schedules).
    tenant_id: Mapped[str] = mapped_column(String(64), index=True, default=DEFAULT_TENANT,
                                           server_default=DEFAULT_TENANT)
    name: Mapped[str] = mapped_column(String(200))
    tags: Mapped[list[Any] | None] = mapped_column(JSON)
    model: Mapped[str | None] = mapped_column(String(200))
    system_prompt: Mapped[str | None] = mapped_column(Text)
    queue: Mapped[str] = mapped_column(String(32), default="interactive")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Lease: lease_token only ever grows (fencing); the holder is valid while
    # lease_until_s (epoch seconds) is in the future.
    lease_token: Mapped[int] = mapped_column(BigInteger, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until_s: Mapped[float] = mapped_column(Float, default=0.0)
    step_counter: Mapped[int] = mapped_column(BigInteger, default=0)
    # Leases taken since the last committed step: a step that keeps dying on the
    # same event (a poison message) is recognised by this count.
    step_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the reconciler last rang this agent: it rings an agent at most once
    # per re-ring interval, however long the broker's backlog is.
    rung_at_s: Mapped[float] = mapped_column(Float, default=0.0)
    # The run whose turn is in progress and the heartbeat it is waiting for.
    active_run_id: Mapped[str | None] = mapped_column(String(36))
    heartbeat_reason: Mapped[str | None] = mapped_column(Text)
    # Messages with id >= context_start_id form the in-context FIFO queue.
    context_start_id: Mapped[int] = mapped_column(BigInteger, default=0)
    summary: Mapped[str] = mapped_column(Text, default="")
    summary_tokens: Mapped[int] = mapped_column(Integer, default=0)
    # Set when the memory-pressure alert was given; cleared once usage drops
    # (after an eviction), so the agent is warned once per crossing.
    pressure_alerted: Mapped[bool] = mapped_column(Boolean, default=False)
    context_tokens: Mapped[int] = mapped_column(Integer, default=0)
    context_window: Mapped[int] = mapped_column(Integer, default=0)
    message_count: Mapped[int] = mapped_column(BigInteger, default=0)
    passage_count: Mapped[int] = mapped_column(BigInteger, default=0)
    # The error of the last step that raised instead of committing; a committed step clears it.
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class MemoryBlock(Base):
    """A labelled core-memory block, always in the prompt, bounded by limit_chars."""

    __tablename__ = "memory_blocks"
    __table_args__ = (UniqueConstraint("agent_id", "label"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(100))
    value: Mapped[str] = mapped_column(Text, default="")
    limit_chars: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer, default=0)


class Message(Base):
    """Every message the agent ever saw or produced, as given to the LLM."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_agent_id_id", "agent_id", "id"),
        Index("ix_messages_run_id_id", "run_id", "id"),  # a run's messages (GET /v1/runs/{id}/messages)
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    run_id: Mapped[str | None] = mapped_column(String(36))
    step_no: Mapped[int | None] = mapped_column(BigInteger)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str | None] = mapped_column(Text)
    tool_calls: Mapped[list[Any] | None] = mapped_column(JSON)
    tool_call_id: Mapped[str | None] = mapped_column(String(200))
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Run(Base):
    """One inbound message's turn: its status, step count, replies and error."""

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("agent_id", "idempotency_key"),
        Index("ix_runs_agent_id_created_at", "agent_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    steps: Mapped[int] = mapped_column(Integer, default=0)
    replies: Mapped[list[Any]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    batch_id: Mapped[str | None] = mapped_column(String(36), index=True)
    # LlmMode: "normal" calls the model in the step; "provider_batch" parks each step's
    # request for the provider's batch API (parked_steps).
    llm_mode: Mapped[str] = mapped_column(String(16), default="normal", server_default="normal")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class InboxItem(Base):
    """An inbound event waiting for its agent; the id gives arrival order."""

    __tablename__ = "inbox"
    __table_args__ = (
        Index(
            "ix_inbox_pending",
            "agent_id",
            "id",
            postgresql_where=text("consumed_at IS NULL"),
            sqlite_where=text("consumed_at IS NULL"),
        ),
        Index("ix_inbox_run_id", "run_id"),  # a turn in progress reads the event that started it
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    event: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    consumed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StepRecord(Base):
    """The step journal: one row per committed step."""

    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("agent_id", "step_no"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    run_id: Mapped[str | None] = mapped_column(String(36))
    step_no: Mapped[int] = mapped_column(BigInteger)
    lease_token: Mapped[int] = mapped_column(BigInteger)
    worker: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    prompt_messages: Mapped[int] = mapped_column(Integer, default=0)
    prompt_chars: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    llm_latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    llm_attempts: Mapped[int] = mapped_column(Integer, default=1)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    context_tokens: Mapped[int] = mapped_column(Integer, default=0)
    evicted_messages: Mapped[int] = mapped_column(Integer, default=0)
    tool_name: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    # LlmMode of the step's LLM call: "provider_batch" when its reply came from a provider batch.
    llm_mode: Mapped[str] = mapped_column(String(16), default="normal", server_default="normal")
