"""The callback outbox: a row per run whose finish is to be POSTed somewhere.

The row is written in the run's own transaction (so a run never loses its
callback); a deliverer (in any `memq serve` or `memq beat`) claims rows of
finished runs with SKIP LOCKED, pushes their next attempt past its own timeout
while it posts (a deliverer that dies mid-post is retried by another), then
records the outcome of that attempt (fenced by the attempt number).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from memq.constants import CallbackStatus, RunStatus
from storage.models import Callback, Run, utcnow

_FINISHED = [s.value for s in RunStatus if s.finished]


@dataclass(frozen=True)
class Claimed:
    run_id: str
    url: str
    attempt: int  # 1 for the first


def add_callback(session: Session, run_id: str, url: str) -> None:
    """The run's callback (a repeated send with the same idempotency key keeps the first)."""
    if session.get(Callback, run_id) is None:
        session.add(Callback(run_id=run_id, url=url, status=CallbackStatus.PENDING.value, attempts=0,
                             next_attempt_at=utcnow()))
        session.flush()


def claim_due(session: Session, *, limit: int, hold_s: float, now: datetime | None = None) -> list[Claimed]:
    """Pending callbacks of finished runs that are due; each is held for hold_s (the post's timeout
    and some) so no other deliverer takes it meanwhile. Rows another deliverer locks are skipped."""
    now = now or utcnow()
    stmt = (
        select(Callback)
        .join(Run, Run.id == Callback.run_id)
        .where(Callback.status == CallbackStatus.PENDING.value, Callback.next_attempt_at <= now,
               Run.status.in_(_FINISHED))
        .order_by(Callback.next_attempt_at)
        .limit(limit)
        .with_for_update(of=Callback, skip_locked=True)
    )
    out = []
    for row in session.scalars(stmt):
        row.attempts += 1
        row.next_attempt_at = now + timedelta(seconds=hold_s)
        out.append(Claimed(row.run_id, row.url, row.attempts))
    session.flush()
    return out


def record_attempt(session: Session, run_id: str, attempt: int, *, ok: bool, http_status: int | None,
                   error: str | None, retry_in_s: float | None) -> bool:
    """The outcome of attempt number `attempt`: delivered, retried in retry_in_s, or failed for good
    (retry_in_s None). Recorded only while that attempt's claim is the row's latest (a deliverer
    slower than its hold may have been overtaken by another's claim); False when not recorded."""
    row = session.get(Callback, run_id, with_for_update=True)
    if row is None or row.attempts != attempt or row.status != CallbackStatus.PENDING.value:
        return False  # its run was deleted, or a later claim owns the row now
    row.last_status, row.last_error = http_status, error
    if ok:
        row.status, row.delivered_at = CallbackStatus.DELIVERED.value, utcnow()
    elif retry_in_s is None:
        row.status = CallbackStatus.FAILED.value
    else:
        row.next_attempt_at = utcnow() + timedelta(seconds=retry_in_s)
    return True


def get_callback(session: Session, run_id: str) -> Callback | None:
    return session.get(Callback, run_id)
