"""Agent leases: one step per agent at a time, fenced by an ever-growing token."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from storage.models import Agent


class StaleLease(RuntimeError):
    """The lease was taken over (or the step already committed): nothing is written."""


@dataclass(frozen=True)
class Lease:
    agent_id: str
    token: int
    step_counter: int
    owner: str
    attempts: int = 1  # leases taken on this step so far, this one included


# Hot path: statements built once with bind parameters and run on the session's
# connection as Core (no ORM bulk-update machinery, no per-call expression building).
_ACQUIRE = (
    update(Agent)
    .where(Agent.id == bindparam("aid"), Agent.lease_until_s < bindparam("now_s"))
    .values(
        lease_token=Agent.lease_token + 1,
        lease_owner=bindparam("owner"),
        lease_until_s=bindparam("until_s"),
        step_attempts=Agent.step_attempts + 1,
    )
    .returning(Agent.lease_token, Agent.step_counter, Agent.step_attempts)
)
_ADVANCE = (
    update(Agent)
    .where(Agent.id == bindparam("aid"), Agent.lease_token == bindparam("token"),
           Agent.step_counter == bindparam("counter"))
    .values(step_counter=Agent.step_counter + 1, step_attempts=0)
)
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
_RELEASE_RESET = _RELEASE.values(step_attempts=0)


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


def advance_step_counter(session: Session, lease: Lease) -> int:
    """Fence a step's commit: succeeds once per (token, counter); raises StaleLease else.

    Run first in the commit transaction: on Postgres the row lock it takes
    serialises a stale worker's commit behind the live one, which then fails here.
    """
    result = session.connection().execute(
        _ADVANCE, {"aid": lease.agent_id, "token": lease.token, "counter": lease.step_counter}
    )
    if result.rowcount != 1:
        raise StaleLease(
            f"agent {lease.agent_id}: lease {lease.token} at step {lease.step_counter} is stale"
        )
    return lease.step_counter + 1


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


# Released leases end this far in the past, so a worker whose clock lags a
# little behind the releasing one can still take the lease at once.
RELEASE_SKEW_S = 1.0


def release_lease(
    session: Session, lease: Lease, *, now_s: float, reset_attempts: bool = False
) -> bool:
    """Give the lease back so the next doorbell can take it at once.

    The expiry is set to (about) the release time, which tells the reconciler
    how long the agent has been idle. reset_attempts: the step ended normally
    without committing (nothing to do), so it was no failed attempt.
    """
    result = session.connection().execute(
        _RELEASE_RESET if reset_attempts else _RELEASE,
        {"aid": lease.agent_id, "token": lease.token, "until_s": now_s - RELEASE_SKEW_S},
    )
    return result.rowcount == 1
