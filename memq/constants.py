"""Names shared by every part of memq: queues, task names, Redis keys and states."""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    """Celery queues; bulk work never shares a queue with interactive agents."""

    INTERACTIVE = "interactive"
    BATCH = "batch"
    SCHEDULE = "schedule"
    INGEST = "ingest"


ALL_QUEUES = tuple(q.value for q in Queue)

STEP_TASK = "memq.step"
RATE_KEY_PREFIX = "memq:rate:"  # + model + ":requests" / ":tokens" (Redis hashes)
RECONCILE_TASK = "memq.reconcile"


class RunStatus(StrEnum):
    """Life of one inbound message (or batch item / scheduled fire)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CHAIN_CAPPED = "chain_capped"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.DONE, RunStatus.FAILED, RunStatus.CHAIN_CAPPED, RunStatus.CANCELLED)


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class EventType(StrEnum):
    """The `type` field of the JSON events packed into user-role messages."""

    USER_MESSAGE = "user_message"
    HEARTBEAT = "heartbeat"
    SYSTEM_ALERT = "system_alert"
    SCHEDULED_WAKEUP = "scheduled_wakeup"


class StepOutcome(StrEnum):
    """What a step's journal row records about how the step ended."""

    TOOL_OK = "tool_ok"
    TOOL_FAILED = "tool_failed"
    NO_TOOL = "no_tool"
    LLM_FAILED = "llm_failed"
    GAVE_UP = "gave_up"
    COMMIT_FAILED = "commit_failed"  # the step's content could not be stored: a placeholder was


class AgentState(StrEnum):
    """How an agent stands, as `memq agent list|show` show it."""

    IDLE = "idle"
    WORKING = "working"  # a worker holds its lease
    FAILING = "failing"  # its last step raised and was not committed (last_error says why)
    WAITING_PROVIDER = "waiting_provider"  # its step waits for the provider's batch API (llm_mode)


class ToolStatus(StrEnum):
    OK = "OK"
    FAILED = "Failed"

# Postgres NOTIFY channel: a vector request was queued for the embedded store's owner.
VECTOR_REQUESTS_CHANNEL = "memq_vector_requests"


class CallbackStatus(StrEnum):
    """Delivery of a run's callback (the `callbacks` outbox)."""

    PENDING = "pending"  # waiting for its run to finish, or for its next attempt
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # every attempt failed; last_status / last_error say why


# The header of a callback's signature: "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>".
CALLBACK_SIGNATURE_HEADER = "X-Memq-Signature"

# Redis pub/sub channel: a step committed for a run ("<run id> <status> <steps>"). Best effort,
# published after the commit; `memq serve` wakes its waiters on it and polls as a fallback.
RUN_EVENTS_CHANNEL = "memq:run-events"
