"""What a committed step writes after its fence (advance_and_release): its messages,
the inbox event it consumed, its run's totals and its journal row — and whether
another inbox event of the agent waits.

Postgres does it in one statement (data-modifying CTEs around the journal INSERT);
SQLite in one statement each. Either way it runs last in the commit transaction,
after the fence took the agent's row lock, so its snapshot sees every event whose
send held that lock meanwhile (record_step says why that matters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, Text, bindparam, column, exists, func, insert, select, update
from sqlalchemy.orm import Session

from storage.models import InboxItem, Message, Run, StepRecord
from storage.repository import rawpg
from storage.repository.inbox import record_step
from storage.repository.lease import StaleLease

RUN_COLUMNS = ("status", "steps", "replies", "error", "prompt_tokens", "completion_tokens", "cost_usd",
               "started_at", "finished_at")
_MESSAGE_FIELDS = ("role", "content", "tool_calls", "tool_call_id", "tokens")
# Every column of steps but its id: a journal row gives them all.
JOURNAL_COLUMNS = tuple(c.name for c in StepRecord.__table__.c if c.name != "id")


@dataclass(frozen=True)
class TurnWrites:
    """A step's writes besides the agent's row."""

    agent_id: str
    run_id: str
    step_no: int
    at: datetime  # the messages' created_at and the event's consumed_at
    messages: Sequence[Mapping[str, Any]]  # role, content, tool_calls, tool_call_id, tokens; in order
    inbox_id: int | None  # the event this step consumed; None for a heartbeat
    run: Mapping[str, Any]  # RUN_COLUMNS: the run's new values
    journal: Mapping[str, Any]  # the steps row: JOURNAL_COLUMNS


def write_turn(session: Session, w: TurnWrites) -> bool:
    """Write the step's rows; returns whether another inbox event of the agent waits.

    Raises StaleLease when the event was withdrawn meanwhile (its batch was
    cancelled): the caller's transaction must then roll back.
    """
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        return pg_turn_result(w, rawpg.execute(session, *pg_write_call(w)).one())
    conn.execute(_INSERT_MESSAGE, [
        {"agent_id": w.agent_id, "run_id": w.run_id, "step_no": w.step_no, "created_at": w.at,
         **{f: m.get(f) for f in _MESSAGE_FIELDS}}
        for m in w.messages
    ])
    if w.inbox_id is not None:
        if conn.execute(_CONSUME_INBOX, {"iid": w.inbox_id, "at": w.at}).rowcount != 1:
            raise _withdrawn(w)
    conn.execute(_UPDATE_RUN, {"rid": w.run_id, **{f"p_{c}": w.run[c] for c in RUN_COLUMNS}})
    return record_step(session, w.journal)


def pg_write_call(w: TurnWrites) -> tuple[rawpg.PgStatement, dict[str, Any]]:
    """write_turn's one Postgres statement and its parameters (turn_commit pipelines them)."""
    params = {
        "aid": w.agent_id, "rid": w.run_id, "step_no": w.step_no, "at": w.at, "iid": w.inbox_id,
        "msgs": [{"ord": i, **{f: m.get(f) for f in _MESSAGE_FIELDS}} for i, m in enumerate(w.messages)],
        **{f"p_{c}": w.run[c] for c in RUN_COLUMNS},
        **{f"j_{c}": w.journal[c] for c in JOURNAL_COLUMNS},
    }
    return (_PG_WRITE_EVENT if w.inbox_id is not None else _PG_WRITE_HEARTBEAT), params


def pg_turn_result(w: TurnWrites, row: Any) -> bool:
    """Whether another event waits, from the statement's row; StaleLease if the event was withdrawn."""
    waits, consumed = row
    if w.inbox_id is not None and consumed != 1:
        raise _withdrawn(w)
    return bool(waits)


def _withdrawn(w: TurnWrites) -> StaleLease:
    return StaleLease(f"agent {w.agent_id}: inbox event {w.inbox_id} was withdrawn")


# -- SQLite: a statement each ------------------------------------------------------

_INSERT_MESSAGE = insert(Message)
_CONSUME_INBOX = (
    update(InboxItem)
    .where(InboxItem.id == bindparam("iid"), InboxItem.consumed_at.is_(None))
    .values(consumed_at=bindparam("at"))
)
_UPDATE_RUN = update(Run).where(Run.id == bindparam("rid")).values({c: bindparam(f"p_{c}") for c in RUN_COLUMNS})


# -- Postgres: one statement ---------------------------------------------------------

def _pg_write(with_event: bool) -> Any:
    """WITH msgs AS (INSERT messages …), run AS (UPDATE runs …)[, consumed AS (UPDATE inbox …)]
    INSERT INTO steps … RETURNING (another event waits), (events consumed)."""
    rows = func.json_to_recordset(bindparam("msgs", type_=JSON)).table_valued(
        column("ord", Integer), column("role", String), column("content", Text), column("tool_calls", JSON),
        column("tool_call_id", String), column("tokens", Integer),
    ).render_derived(name="m", with_types=True)
    msgs = insert(Message).from_select(
        ["agent_id", "run_id", "step_no", *_MESSAGE_FIELDS, "created_at"],
        # Ordered, so ids follow the step's order (a history read sorts by id).
        select(bindparam("aid", type_=String), bindparam("rid", type_=String),
               bindparam("step_no", type_=BigInteger), rows.c.role, rows.c.content, rows.c.tool_calls,
               rows.c.tool_call_id, rows.c.tokens, bindparam("at")).order_by(rows.c.ord),
    ).cte("msgs")
    run = _UPDATE_RUN.cte("run")
    # The event this statement consumes is invisible to it as consumed (one snapshot):
    # it is left out of "another event waits" by id.
    waits = exists().where(
        InboxItem.agent_id == bindparam("aid"), InboxItem.consumed_at.is_(None),
        InboxItem.id.is_distinct_from(bindparam("iid", type_=BigInteger)),
    )
    ctes: list[Any] = [msgs, run]
    consumed_count: Any
    if with_event:
        consumed = _CONSUME_INBOX.returning(InboxItem.id).cte("consumed")
        ctes.append(consumed)
        consumed_count = select(func.count()).select_from(consumed).scalar_subquery()
    else:
        consumed_count = bindparam("no_event", 0, type_=Integer)
    cols = StepRecord.__table__.c
    journal = {c: bindparam(f"j_{c}", type_=cols[c].type) for c in JOURNAL_COLUMNS}
    return insert(StepRecord).values(journal).returning(waits, consumed_count).add_cte(*ctes)


_PG_WRITE_EVENT = rawpg.PgStatement(_pg_write(with_event=True))
_PG_WRITE_HEARTBEAT = rawpg.PgStatement(_pg_write(with_event=False))
