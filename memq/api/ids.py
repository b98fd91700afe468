"""Ids on the wire. memq's ids are bare uuid4 text (agents, runs) or integers
(messages, blocks); the API answers with Letta's prefixed forms (`agent-<uuid>`,
`run-<uuid>`, `message-<n>`, `block-<n>`) so code written against Letta keeps
working, and accepts both forms."""

from __future__ import annotations

import uuid

from storage.repository.errors import NotFound


def _bare(kind: str, ref: str) -> str:
    ref = ref.strip()
    return ref[len(kind) + 1:] if ref.startswith(kind + "-") else ref


def _uuid(kind: str, ref: str) -> str:
    bare = _bare(kind, ref)
    try:
        uuid.UUID(bare)
    except ValueError:
        raise NotFound(f"unknown {kind}: {ref}") from None
    return bare


def agent_id(ref: str) -> str:
    """The stored id of `agent-<uuid>` or `<uuid>`; anything else names no agent."""
    return _uuid("agent", ref)


def run_id(ref: str) -> str:
    return _uuid("run", ref)


def message_id(ref: str | None) -> int | None:
    """A message cursor (`message-<n>` or `<n>`); None stays None."""
    if ref is None or ref == "":
        return None
    return _int("message", ref)


def _int(kind: str, ref: str) -> int:
    bare = _bare(kind, ref)
    if not bare.isdigit():
        raise NotFound(f"unknown {kind}: {ref}")
    return int(bare)


def wire_agent(stored: str) -> str:
    return f"agent-{stored}"


def wire_run(stored: str) -> str:
    return f"run-{stored}"


def wire_message(stored: int) -> str:
    return f"message-{stored}"


def wire_block(stored: int) -> str:
    return f"block-{stored}"


def schedule_id(ref: str) -> str:
    return _uuid("schedule", ref)


def batch_id(ref: str) -> str:
    return _uuid("batch", ref)


def passage_id(ref: str) -> int:
    """A passage id (`passage-<n>` or `<n>`)."""
    return _int("passage", ref)


def wire_schedule(stored: str) -> str:
    return f"schedule-{stored}"


def wire_batch(stored: str) -> str:
    return f"batch-{stored}"


def wire_passage(stored: int) -> str:
    return f"passage-{stored}"
