"""Work that arrives other than by a send: schedules and their fires, batches, callbacks,
provider batches and parked steps."""

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
