"""Agent leases: one step per agent at a time, fenced by an ever-growing token."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import bindparam, case, func, update
from sqlalchemy.orm import Session

from storage.models import Agent
from storage.repository import rawpg


class StaleLease(RuntimeError):
    """The lease was taken over (or the step already committed): nothing is written."""


@dataclass(frozen=True)
class Lease:
    agent_id: str
    token: int
    step_counter: int
    owner: str
    attempts: int = 1  # leases taken on this step so far, this one included


class LeasedAgent(NamedTuple):
    """A lease just taken and the agent's row as it stands under it."""

    lease: Lease
    agent: Any  # a read-only row of agents (the columns agent_row gives)


# Released leases end this far in the past, so a worker whose clock lags a
# little behind the releasing one can still take the lease at once.
RELEASE_SKEW_S = 1.0


# Hot path: statements built once with bind parameters and run on the session's
# connection as Core (no ORM bulk-update machinery, no per-call expression building).
_TAKE = (
    update(Agent)
    .where(Agent.id == bindparam("aid"), Agent.lease_until_s < bindparam("now_s"))
    .values(
        lease_token=Agent.lease_token + 1,
        lease_owner=bindparam("owner"),
        lease_until_s=bindparam("until_s"),
        step_attempts=Agent.step_attempts + 1,
    )
)
_ACQUIRE = _TAKE.returning(Agent.lease_token, Agent.step_counter, Agent.step_attempts)
_ACQUIRE_ROW = _TAKE.returning(Agent.__table__)
# Postgres: the transaction that takes a lease commits without waiting for its WAL
# flush (~0.4 ms a step). Losing it in a database crash only loses the lease; the
# step's own commit (synchronous) is fenced by token *and* step counter, so a
# token handed out twice still commits each step once.
_ACQUIRE_ROW_ASYNC = _TAKE.where(func.set_config("synchronous_commit", "off", True).is_not(None)).returning(
    Agent.__table__)
_ADVANCE = (
    update(Agent)
    .where(Agent.id == bindparam("aid"), Agent.lease_token == bindparam("token"),
           Agent.step_counter == bindparam("counter"))
    .values(step_counter=Agent.step_counter + 1, step_attempts=0)
)
# Where a committed step leaves the agent's turn. The context columns are
# written only by steps that compiled a context (a step that gave up did not).
CONTEXT_COLUMNS = (
    "context_start_id", "summary", "summary_tokens", "pressure_alerted", "context_tokens", "context_window",
)
_ADVANCE_AND_RELEASE = _ADVANCE.values(
    last_error=None,  # a committed step clears the error of the attempts before it
    last_error_at=None,
    active_run_id=bindparam("p_active_run_id"),
    heartbeat_reason=bindparam("p_heartbeat_reason"),
    message_count=Agent.message_count + bindparam("p_new_messages"),
    lease_owner=None,
    lease_until_s=bindparam("until_s"),
)
_ADVANCE_AND_RELEASE_CONTEXT = _ADVANCE_AND_RELEASE.values({c: bindparam(f"p_{c}") for c in CONTEXT_COLUMNS})
# lease_owner IS NOT NULL: a renewal racing the step's own release must not
# revive a released lease (every doorbell would bounce until it expired).
_RENEW = (
    update(Agent)
    .where(Agent.id == bindparam("aid"), Agent.lease_token == bindparam("token"), Agent.lease_owner.is_not(None))
    .values(lease_until_s=bindparam("until_s"))
)
_RELEASE = (
    update(Agent)
    .where(Agent.id == bindparam("aid"), Agent.lease_token == bindparam("token"))
    .values(lease_owner=None, lease_until_s=bindparam("until_s"))
)
_RELEASE_RESET = _RELEASE.values(step_attempts=0, last_error=None, last_error_at=None)
_RELEASE_FAILED = _RELEASE.values(last_error=bindparam("error"), last_error_at=bindparam("error_at"))
# The attempt failed on the database, not on its event: it is not counted.
_RELEASE_UNCOUNTED = _RELEASE_FAILED.values(
    step_attempts=case((Agent.step_attempts > 0, Agent.step_attempts - 1), else_=0))
# The step's own statements run through rawpg on Postgres (rawpg says why).
_PG_ACQUIRE_ROW = rawpg.PgStatement(_ACQUIRE_ROW_ASYNC)
_PG_ADVANCE_AND_RELEASE = rawpg.PgStatement(_ADVANCE_AND_RELEASE)
_PG_ADVANCE_AND_RELEASE_CONTEXT = rawpg.PgStatement(_ADVANCE_AND_RELEASE_CONTEXT)


def acquire_lease(
    session: Session, agent_id: str, *, owner: str, lease_s: float, now_s: float
) -> Lease | None:
    """Take the agent's lease if nobody holds a live one; None otherwise (or no agent)."""
    row = session.connection().execute(
        _ACQUIRE, {"aid": agent_id, "now_s": now_s, "owner": owner, "until_s": now_s + lease_s}
    ).one_or_none()
    if row is None:
        return None
    return Lease(agent_id, token=row[0], step_counter=row[1], owner=owner, attempts=row[2])


def acquire_lease_with_agent(
    session: Session, agent_id: str, *, owner: str, lease_s: float, now_s: float
) -> LeasedAgent | None:
    """acquire_lease that also returns the agent's row, read by the same UPDATE.

    The row shows the agent as it stands under the new lease (token, counter and
    attempts included), as agent_row would read it next: a step needs no SELECT.
    """
    params = {"aid": agent_id, "now_s": now_s, "owner": owner, "until_s": now_s + lease_s}
    if session.connection().dialect.name == "postgresql":
        row = rawpg.execute(session, _PG_ACQUIRE_ROW, params).one_or_none()
    else:
        row = session.connection().execute(_ACQUIRE_ROW, params).one_or_none()
    if row is None:
        return None
    lease = Lease(agent_id, token=row.lease_token, step_counter=row.step_counter, owner=owner,
                  attempts=row.step_attempts)
    return LeasedAgent(lease, row)


def stale(lease: Lease) -> StaleLease:
    return StaleLease(f"agent {lease.agent_id}: lease {lease.token} at step {lease.step_counter} is stale")


def advance_step_counter(session: Session, lease: Lease) -> int:
    """Fence a step's commit: succeeds once per (token, counter); raises StaleLease else.

    Run first in the commit transaction: on Postgres the row lock it takes
    serialises a stale worker's commit behind the live one, which then fails here.
    """
    result = session.connection().execute(
        _ADVANCE, {"aid": lease.agent_id, "token": lease.token, "counter": lease.step_counter}
    )
    if result.rowcount != 1:
        raise stale(lease)
    return lease.step_counter + 1


def advance_and_release(
    session: Session,
    lease: Lease,
    *,
    now_s: float,
    active_run_id: str | None,
    heartbeat_reason: str | None,
    new_messages: int,
    context: Mapping[str, object] | None = None,
) -> int:
    """A step's commit in one UPDATE of the agent: fence, turn state, release.

    advance_step_counter (same fence, same StaleLease, same step number), then
    where the turn stands: active_run_id and heartbeat_reason, message_count
    grown by new_messages, and the CONTEXT_COLUMNS when context is given (all of
    them); then release_lease. Run it first in the commit transaction, as
    advance_step_counter: its row lock queues a stale commit behind this one.
    The release shows once the transaction commits; a renewal waiting on the
    row lock then finds no owner and extends nothing. Whether more work waits
    is asked later in the transaction (write_turn): on Postgres this UPDATE's
    snapshot can predate a send whose row lock it waited for.
    """
    stmt, params = advance_call(lease, now_s=now_s, active_run_id=active_run_id,
                                heartbeat_reason=heartbeat_reason, new_messages=new_messages, context=context)
    if rawpg.execute(session, stmt, params).rowcount != 1:
        raise stale(lease)
    return lease.step_counter + 1


def advance_call(
    lease: Lease,
    *,
    now_s: float,
    active_run_id: str | None,
    heartbeat_reason: str | None,
    new_messages: int,
    context: Mapping[str, object] | None = None,
) -> tuple[rawpg.PgStatement, dict[str, object]]:
    """advance_and_release's statement and parameters (turn_commit pipelines them)."""
    params: dict[str, object] = {
        "aid": lease.agent_id,
        "token": lease.token,
        "counter": lease.step_counter,
        "until_s": now_s - RELEASE_SKEW_S,
        "p_active_run_id": active_run_id,
        "p_heartbeat_reason": heartbeat_reason,
        "p_new_messages": new_messages,
    }
    stmt = _PG_ADVANCE_AND_RELEASE
    if context is not None:
        params.update({f"p_{c}": context[c] for c in CONTEXT_COLUMNS})
        stmt = _PG_ADVANCE_AND_RELEASE_CONTEXT
    return stmt, params


def renew_leases(
    session: Session, tokens: Mapping[str, int], *, lease_s: float, now_s: float
) -> set[str]:
    """Extend the leases still held under these tokens; returns the agent ids renewed."""
    renewed: set[str] = set()
    conn = session.connection()
    for agent_id, token in tokens.items():
        result = conn.execute(_RENEW, {"aid": agent_id, "token": token, "until_s": now_s + lease_s})
        if result.rowcount == 1:
            renewed.add(agent_id)
    return renewed


def release_lease(
    session: Session, lease: Lease, *, now_s: float, reset_attempts: bool = False, error: str | None = None,
    uncounted: bool = False,
) -> bool:
    """Give the lease back so the next doorbell can take it at once.

    The expiry is set to (about) the release time, which tells the reconciler
    how long the agent has been idle. reset_attempts: the step ended normally
    without committing (nothing to do), so it was no failed attempt (and any
    recorded error is cleared). error: the step raised; it is recorded as the
    agent's last_error (with last_error_at), which shows the agent as failing.
    uncounted (with error): it raised because of the database (connection lost,
    disk full), not because of its event, so the attempt the take counted is taken
    back: MEMQ_STEP_MAX_ATTEMPTS gives up on events that kill their worker, and a
    sick database must not use them up (the step is retried until it is well).
    """
    params: dict[str, object] = {"aid": lease.agent_id, "token": lease.token, "until_s": now_s - RELEASE_SKEW_S}
    stmt = _RELEASE_RESET if reset_attempts else _RELEASE
    if error is not None and not reset_attempts:
        stmt = _RELEASE_UNCOUNTED if uncounted else _RELEASE_FAILED
        params.update(error=error, error_at=datetime.fromtimestamp(now_s, timezone.utc))
    return session.connection().execute(stmt, params).rowcount == 1
