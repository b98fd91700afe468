"""A step's commit: the fenced UPDATE of the agent, then its messages, event, run and journal.

On Postgres the two statements go out in one explicit transaction on an autocommit
connection (rawpg.execute_transaction): BEGIN, both statements and a sync in one
round trip, then COMMIT, or ROLLBACK when the fence (StaleLease) or a withdrawn event
says the step is stale. That is two round trips where psycopg's own transaction takes
four (BEGIN, each statement, COMMIT), with the same statements in the same order: the
second still runs after the first has taken the agent's row lock, with a snapshot of
its own, so it sees every send that held that lock meanwhile (turn_writes says why).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from storage.repository import rawpg
from storage.repository.lease import Lease, advance_and_release, advance_call, stale
from storage.repository.turn_writes import TurnWrites, pg_turn_result, pg_write_call, write_turn


def commit_turn(
    session: Session,
    lease: Lease,
    writes: TurnWrites,
    *,
    now_s: float,
    active_run_id: str | None,
    heartbeat_reason: str | None,
    new_messages: int,
    context: Mapping[str, object] | None = None,
) -> bool:
    """advance_and_release, then write_turn, as one transaction; returns whether another event waits.

    Postgres: give it an autocommit session (Database.autocommit()); it runs its own
    transaction. Elsewhere: a session in a transaction (Database.transaction()).
    """
    if session.connection().dialect.name != "postgresql":
        advance_and_release(session, lease, now_s=now_s, active_run_id=active_run_id,
                            heartbeat_reason=heartbeat_reason, new_messages=new_messages, context=context)
        return write_turn(session, writes)
    advance = advance_call(lease, now_s=now_s, active_run_id=active_run_id, heartbeat_reason=heartbeat_reason,
                           new_messages=new_messages, context=context)

    def decide(results: list[Any]) -> bool:
        if results[0].rowcount != 1:
            raise stale(lease)
        return pg_turn_result(writes, results[1].one())

    return rawpg.execute_transaction(session, [advance, pg_write_call(writes)], decide)
