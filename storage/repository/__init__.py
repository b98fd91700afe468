"""The repository: every read and write of memq state, each taking an explicit session.

Callers own the transaction (``with db.transaction() as s: ...``), so a step's
writes land together or not at all.

Importing the package is cheap: each name below is loaded from its module on
first use (PEP 562), so ``storage.repository.errors`` can be imported without
the SQLAlchemy models behind the rest (the CLI's quick path, memq/quick, needs
that).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOME = {
    # storage.repository.agents
    "AgentNotFound": "agents",
    "BlockLimitExceeded": "agents",
    "agent_row": "agents",
    "create_agent": "agents",
    "delete_agent": "agents",
    "get_agent": "agents",
    "list_agents": "agents",
    "load_blocks": "agents",
    "save_block_values": "agents",
    # storage.repository.inbox
    "MessageTooLong": "inbox",
    "agents_with_pending_work": "inbox",
    "claim_agents_to_ring": "inbox",
    "enqueue_message": "inbox",
    "enqueue_many": "inbox",
    "get_run": "inbox",
    "has_pending_work": "inbox",
    "next_inbox_item": "inbox",
    "record_step": "inbox",
    "run_row": "inbox",
    # storage.repository.turn
    "TurnRows": "turn",
    "active_turn": "turn",
    "next_event_turn": "turn",
    # storage.repository.turn_writes
    "TurnWrites": "turn_writes",
    "write_turn": "turn_writes",
    # storage.repository.turn_commit
    "commit_turn": "turn_commit",
    # storage.repository.lease
    "CONTEXT_COLUMNS": "lease",
    "Lease": "lease",
    "LeasedAgent": "lease",
    "StaleLease": "lease",
    "acquire_lease": "lease",
    "acquire_lease_with_agent": "lease",
    "advance_and_release": "lease",
    "advance_step_counter": "lease",
    "release_lease": "lease",
    "renew_leases": "lease",
    # storage.repository.messages
    "context_messages": "messages",
    "count_from": "messages",
    "last_messages": "messages",
    # storage.repository.errors
    "NotFound": "errors",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'storage.repository' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"storage.repository.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))


if TYPE_CHECKING:  # what type checkers and IDEs see
    from storage.repository.agents import (  # noqa: F401
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
    from storage.repository.inbox import (  # noqa: F401
        MessageTooLong,
        agents_with_pending_work,
        claim_agents_to_ring,
        enqueue_many,
        enqueue_message,
        get_run,
        has_pending_work,
        next_inbox_item,
        record_step,
        run_row,
    )
    from storage.repository.turn import TurnRows, active_turn, next_event_turn  # noqa: F401
    from storage.repository.turn_writes import TurnWrites, write_turn  # noqa: F401
    from storage.repository.turn_commit import commit_turn  # noqa: F401
    from storage.repository.lease import (  # noqa: F401
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
    from storage.repository.messages import context_messages, count_from, last_messages  # noqa: F401
    from storage.repository.errors import NotFound  # noqa: F401
