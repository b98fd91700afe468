"""SQLAlchemy models. Postgres (or SQLite, embedded) holds every fact about an agent."""

from __future__ import annotations

from datetime import datetime, timezone
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
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


# The tenant of rows made before tenants existed, and of the CLI and Python client.
DEFAULT_TENANT = "default"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


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


class Schedule(Base):
    """A recurring or one-shot wake-up of an agent."""

    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_due", "paused", "next_fire_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))  # cron | every | at
    expr: Mapped[str] = mapped_column(String(200))  # cron expression, seconds, or ISO instant
    tz: Mapped[str] = mapped_column(String(64), default="UTC")
    message: Mapped[str] = mapped_column(Text)
    missed: Mapped[str] = mapped_column(String(16), default="coalesce")
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    next_fire_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_fire_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_run_id: Mapped[str | None] = mapped_column(String(36))
    fires: Mapped[int] = mapped_column(BigInteger, default=0)
    # normal | provider_batch: how the runs of its fires call the model (memq/llm_modes.py)
    llm_mode: Mapped[str] = mapped_column(String(16), default="normal", server_default="normal")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ScheduleFire(Base):
    """One fire of a schedule. The unique (schedule, instant) pair makes each fire
    happen once however many beats run."""

    __tablename__ = "schedule_fires"
    __table_args__ = (UniqueConstraint("schedule_id", "scheduled_for"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    schedule_id: Mapped[str] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    scheduled_for: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    fired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    run_id: Mapped[str | None] = mapped_column(String(36))
    beat: Mapped[str | None] = mapped_column(String(200))


class Batch(Base):
    """A submitted JSONL file: its items become runs on the batch queue."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True, default=DEFAULT_TENANT,
                                           server_default=DEFAULT_TENANT)
    source: Mapped[str | None] = mapped_column(String(500))
    total: Mapped[int] = mapped_column(Integer, default=0)
    invalid: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BatchItem(Base):
    """One input line of a batch, valid (with its run) or not (with its error)."""

    __tablename__ = "batch_items"
    __table_args__ = (UniqueConstraint("batch_id", "line"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    line: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[str | None] = mapped_column(String(200))
    agent_id: Mapped[str | None] = mapped_column(String(36))
    message: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(36), index=True)
    error: Mapped[str | None] = mapped_column(Text)


class Document(Base):
    """A file given to an agent; its text lives on as archival passages."""

    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("agent_id", "content_sha256", name="uq_documents_agent_id_content_sha256"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(500))
    kind: Mapped[str] = mapped_column(String(16))  # pdf | markdown | text | code
    # Of the extracted chunks: the same content given twice is stored once.
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Passage(Base):
    """Archival memory: what the agent chose to store, and chunks of documents."""

    __tablename__ = "passages"
    __table_args__ = (Index("ix_passages_agent_id_id", "agent_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16), default="agent")  # agent | document
    document_id: Mapped[str | None] = mapped_column(String(36))
    chunk_no: Mapped[int | None] = mapped_column(Integer)
    tags: Mapped[list[Any] | None] = mapped_column(JSON)
    indexed: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Callback(Base):
    """The outbox of a run's callback: POSTed once the run has finished, retried with backoff."""

    __tablename__ = "callbacks"
    __table_args__ = (
        Index("ix_callbacks_pending", "next_attempt_at", postgresql_where=text("status = 'pending'"),
              sqlite_where=text("status = 'pending'")),
    )

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # CallbackStatus
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer)  # the receiver's HTTP status
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IndexCursor(Base):
    """How far the background indexer has embedded a table (rows with id <= last_id)."""

    __tablename__ = "index_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger, default=0)


class VectorRequest(Base):
    """A vector-store operation handed to the process that holds the embedded store."""

    __tablename__ = "vector_requests"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    op: Mapped[str] = mapped_column(String(32))
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)


class Tenant(Base):
    """A customer of the HTTP API: its keys reach only its own agents and batches."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # its name
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiKey(Base):
    """An API key: only the sha256 of its text is stored, plus a prefix to tell keys apart."""

    __tablename__ = "api_keys"
    __table_args__ = (UniqueConstraint("key_sha256", name="uq_api_keys_key_sha256"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    key_sha256: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ProviderBatch(Base):
    """One batch uploaded to a provider's batch API: parked steps' requests of one model."""

    __tablename__ = "provider_batches"
    __table_args__ = (Index("ix_provider_batches_state_poll", "state", "next_poll_s"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # memq's own id (the file's metadata)
    model: Mapped[str] = mapped_column(String(200))  # the litellm route the requests were compiled for
    state: Mapped[str] = mapped_column(String(16))  # ProviderBatchState
    requests: Mapped[int] = mapped_column(Integer, default=0)
    provider_batch_id: Mapped[str | None] = mapped_column(String(200))
    input_file_id: Mapped[str | None] = mapped_column(String(200))
    output_file_id: Mapped[str | None] = mapped_column(String(200))
    error_file_id: Mapped[str | None] = mapped_column(String(200))
    provider_status: Mapped[str | None] = mapped_column(String(32))  # as the provider last reported it
    polls: Mapped[int] = mapped_column(Integer, default=0)
    next_poll_s: Mapped[float] = mapped_column(Float, default=0.0)  # epoch seconds
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ParkedStep(Base):
    """A provider_batch step's compiled request, waiting for (or holding) the provider's reply.

    Keyed by the step's identity (agent, step_no: the number its commit takes); the
    custom id of its batch line is "<agent_id>:<step_no>".
    """

    __tablename__ = "parked_steps"
    __table_args__ = (
        UniqueConstraint("agent_id", "step_no"),
        Index("ix_parked_steps_state_model", "state", "model", "id"),
        Index("ix_parked_steps_provider_batch", "provider_batch_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    step_no: Mapped[int] = mapped_column(BigInteger)
    run_id: Mapped[str] = mapped_column(String(36), index=True)
    batch_id: Mapped[str | None] = mapped_column(String(36), index=True)  # the memq batch of the run
    lease_token: Mapped[int] = mapped_column(BigInteger)  # the fencing token of the step that parked
    model: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))  # ParkState
    request: Mapped[dict[str, Any]] = mapped_column(JSON)  # the chat completions body
    context: Mapped[dict[str, Any]] = mapped_column(JSON)  # the compiled context's state, for the commit
    reply: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # content, tool calls, usage, costs
    provider_batch_id: Mapped[str | None] = mapped_column(String(36))  # provider_batches.id
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # provider batches it was sent in
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
