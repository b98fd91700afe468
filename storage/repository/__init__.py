"""The repository: every read and write of memq state, each taking an explicit session.

Callers own the transaction (``with db.transaction() as s: ...``), so a step's
writes land together or not at all.
"""

from storage.repository.agents import (
    AgentNotFound,
    BlockLimitExceeded,
    agent_row,
    create_agent,
    delete_agent,
    get_agent,
    list_agents,
    load_blocks,
    save_block_values,
)
from storage.repository.inbox import (
    MessageTooLong,
    agents_with_pending_work,
    claim_agents_to_ring,
    enqueue_message,
    get_run,
    has_pending_work,
    next_inbox_item,
    record_step,
    run_row,
)
from storage.repository.turn import TurnRows, active_turn, next_event_turn
from storage.repository.turn_writes import TurnWrites, write_turn
from storage.repository.lease import (
    CONTEXT_COLUMNS,
    Lease,
    LeasedAgent,
    StaleLease,
    acquire_lease,
    acquire_lease_with_agent,
    advance_and_release,
    advance_step_counter,
    release_lease,
    renew_leases,
)
from storage.repository.messages import context_messages, count_from, last_messages
from storage.repository.errors import NotFound

__all__ = [
    "AgentNotFound",
    "BlockLimitExceeded",
    "CONTEXT_COLUMNS",
    "Lease",
    "LeasedAgent",
    "MessageTooLong",
    "NotFound",
    "StaleLease",
    "acquire_lease",
    "acquire_lease_with_agent",
    "advance_and_release",
    "agent_row",
    "advance_step_counter",
    "agents_with_pending_work",
    "claim_agents_to_ring",
    "context_messages",
    "count_from",
    "create_agent",
    "delete_agent",
    "enqueue_message",
    "get_agent",
    "get_run",
    "has_pending_work",
    "last_messages",
    "list_agents",
    "load_blocks",
    "next_inbox_item",
    "record_step",
    "release_lease",
    "renew_leases",
    "run_row",
    "TurnRows",
    "active_turn",
    "next_event_turn",
    "TurnWrites",
    "write_turn",
    "save_block_values",
]
