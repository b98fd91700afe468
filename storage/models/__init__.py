"""SQLAlchemy models. Postgres (or SQLite, embedded) holds every fact about an agent.

One module per area: agents (an agent, its memory, messages, runs, inbox and step journal), work
(schedules, batches, callbacks, provider batches), archive (documents, passages, the vector index's
bookkeeping) and tenants (tenants and API keys); base holds what they share."""

from storage.models.agents import Agent, InboxItem, MemoryBlock, Message, Run, StepRecord
from storage.models.archive import Document, IndexCursor, Passage, VectorRequest
from storage.models.base import DEFAULT_TENANT, Base, BigId, utcnow
from storage.models.tenants import ApiKey, Tenant
from storage.models.work import Batch, BatchItem, Callback, ParkedStep, ProviderBatch, Schedule, ScheduleFire

__all__ = [
    "Agent",
    "ApiKey",
    "Base",
    "Batch",
    "BatchItem",
    "BigId",
    "Callback",
    "DEFAULT_TENANT",
    "Document",
    "InboxItem",
    "IndexCursor",
    "MemoryBlock",
    "Message",
    "ParkedStep",
    "Passage",
    "ProviderBatch",
    "Run",
    "Schedule",
    "ScheduleFire",
    "StepRecord",
    "Tenant",
    "VectorRequest",
    "utcnow",
]
