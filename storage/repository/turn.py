"""What a step reads under its lease besides the agent's row and history: the
run it works on (with its inbox event, when it consumes one) and the agent's
core-memory blocks, in one statement (the blocks come as a join, one result row
per block)."""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from storage.models import InboxItem, MemoryBlock, Run
from storage.repository import rawpg
from storage.repository.errors import NotFound


class TurnRows(NamedTuple):
    """A step's run and its agent's blocks, as read-only rows."""

    run: Any  # the run's columns as run_row gives them; with inbox_id and inbox_event for an event,
    # with trigger_event (the event that started it; None for a run without one) for a turn in progress
    blocks: list[tuple[str, str, int]]  # (label, value, limit_chars) in the agent's order


_BLOCKS = MemoryBlock.__table__
_BLOCK_COLUMNS = (
    _BLOCKS.c.label.label("block_label"),
    _BLOCKS.c.value.label("block_value"),
    _BLOCKS.c.limit_chars.label("block_limit_chars"),
)
_RUNS = Run.__table__
_INBOX = InboxItem.__table__
# The turn in progress comes with the event that started it (trigger_event), which
# stays in the context until the run ends (ix_inbox_run_id finds it).
_RUN_TURN = (
    select(_RUNS, _INBOX.c.event.label("trigger_event"), *_BLOCK_COLUMNS)
    .select_from(
        _RUNS.outerjoin(_INBOX, _INBOX.c.run_id == _RUNS.c.id)
        .outerjoin(_BLOCKS, _BLOCKS.c.agent_id == _RUNS.c.agent_id)
    )
    .where(_RUNS.c.id == bindparam("rid"))
    .order_by(_BLOCKS.c.position, _BLOCKS.c.id)
)
_OLDEST_EVENT = (
    select(InboxItem.id, InboxItem.event, InboxItem.run_id)
    .where(InboxItem.agent_id == bindparam("aid"), InboxItem.consumed_at.is_(None))
    .order_by(InboxItem.id)
    .limit(1)
    .subquery()
)
_NEXT_EVENT_TURN = (
    select(_OLDEST_EVENT.c.id.label("inbox_id"), _OLDEST_EVENT.c.event.label("inbox_event"), _RUNS,
           *_BLOCK_COLUMNS)
    .select_from(
        _OLDEST_EVENT.join(_RUNS, _RUNS.c.id == _OLDEST_EVENT.c.run_id)
        .outerjoin(_BLOCKS, _BLOCKS.c.agent_id == _RUNS.c.agent_id)
    )
    .order_by(_BLOCKS.c.position, _BLOCKS.c.id)
)


_RUN_TURN_SQL = rawpg.PgStatement(_RUN_TURN)
_NEXT_EVENT_TURN_SQL = rawpg.PgStatement(_NEXT_EVENT_TURN)


def _turn(rows: list[Any]) -> TurnRows:
    blocks = [(r.block_label, r.block_value, r.block_limit_chars) for r in rows if r.block_label is not None]
    return TurnRows(rows[0], blocks)


def active_turn(session: Session, run_id: str) -> TurnRows:
    """The run of a turn in progress and its agent's blocks; NotFound if there is no run."""
    rows = rawpg.execute(session, _RUN_TURN_SQL, {"rid": run_id}).all()
    if not rows:
        raise NotFound(f"unknown run: {run_id}")
    return _turn(rows)


def next_event_turn(session: Session, agent_id: str) -> TurnRows | None:
    """The run of the agent's oldest unconsumed inbox event (the row carries the
    event as inbox_id and inbox_event) and the agent's blocks; None if no event waits."""
    rows = rawpg.execute(session, _NEXT_EVENT_TURN_SQL, {"aid": agent_id}).all()
    return _turn(rows) if rows else None
