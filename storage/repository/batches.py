"""Batches: JSONL items turned into runs, their progress, results and cancellation."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from memq.constants import RunStatus
from memq.text import stored_text
from storage.models import DEFAULT_TENANT, Batch, BatchItem, InboxItem, Run, utcnow
from storage.repository.errors import NotFound


def create_batch(session: Session, *, source: str | None, total: int, invalid: int,
                 tenant_id: str = DEFAULT_TENANT) -> Batch:
    source = None if source is None else stored_text(source, "batch source")
    batch = Batch(id=str(uuid.uuid4()), tenant_id=tenant_id, source=source, total=total, invalid=invalid,
                  cancelled=False)
    session.add(batch)
    session.flush()
    return batch


def add_item(
    session: Session,
    batch_id: str,
    *,
    line: int,
    item_id: str | None,
    agent_id: str | None,
    message: str | None,
    run_id: str | None = None,
    error: str | None = None,
) -> None:
    # Stored text is cleaned here too (memq.text): U+FFFD for what cannot be stored.
    item_id, agent_id, message, error = (
        None if v is None else stored_text(v, f"batch line {line}") for v in (item_id, agent_id, message, error))
    session.add(
        BatchItem(
            batch_id=batch_id, line=line, item_id=item_id, agent_id=agent_id,
            message=message, run_id=run_id, error=error,
        )
    )


def add_items(session: Session, batch_id: str, rows: list[dict[str, Any]]) -> None:
    """add_item for many lines in one multi-row INSERT; each row has the keyword
    arguments of add_item (line, item_id, agent_id, message, and run_id or error)."""
    if not rows:
        return
    clean = []
    for row in rows:
        line = row["line"]
        clean.append({"batch_id": batch_id, "line": line, **{
            k: None if row.get(k) is None else stored_text(row[k], f"batch line {line}")
            for k in ("item_id", "agent_id", "message", "error")}, "run_id": row.get("run_id")})
    session.execute(insert(BatchItem), clean)


def get_batch(session: Session, batch_id: str, *, tenant_id: str | None = None) -> Batch:
    """The batch; with tenant_id, another tenant's batch is as unknown as a missing one."""
    batch = session.get(Batch, batch_id)
    if batch is None or (tenant_id is not None and batch.tenant_id != tenant_id):
        raise NotFound(f"unknown batch: {batch_id}")
    return batch


def batch_counts(session: Session, batch_id: str) -> dict[str, Any]:
    """Runs by status plus token and cost totals."""
    rows = session.execute(
        select(
            Run.status,
            func.count(),
            func.coalesce(func.sum(Run.prompt_tokens), 0),
            func.coalesce(func.sum(Run.completion_tokens), 0),
            func.coalesce(func.sum(Run.cost_usd), 0.0),
        )
        .where(Run.batch_id == batch_id)
        .group_by(Run.status)
    ).all()
    by_status = {row[0]: int(row[1]) for row in rows}
    return {
        "by_status": by_status,
        "prompt_tokens": int(sum(r[2] for r in rows)),
        "completion_tokens": int(sum(r[3] for r in rows)),
        "cost_usd": float(sum(r[4] for r in rows)),
    }


def batch_rows(session: Session, batch_id: str) -> list[tuple[BatchItem, Run | None]]:
    """Every input line in order, with its run where it has one."""
    stmt = (
        select(BatchItem, Run)
        .outerjoin(Run, Run.id == BatchItem.run_id)
        .where(BatchItem.batch_id == batch_id)
        .order_by(BatchItem.line)
    )
    return [(row[0], row[1]) for row in session.execute(stmt)]


def cancel_batch(session: Session, batch_id: str) -> int:
    """Cancel every run of the batch that has not started; returns how many."""
    return len(cancel_batch_runs(session, batch_id))


def cancel_batch_runs(session: Session, batch_id: str) -> list[str]:
    """cancel_batch, returning the ids of the runs it cancelled.

    Runs already in a turn finish it. The inbox rows are consumed here, and a
    step's commit only consumes a row that is still pending, so a step racing
    the cancel commits nothing.
    """
    batch = get_batch(session, batch_id)
    batch.cancelled = True
    now = utcnow()
    queued = select(Run.id).where(Run.batch_id == batch_id, Run.status == RunStatus.QUEUED.value)
    consumed = session.execute(
        update(InboxItem)
        .where(InboxItem.run_id.in_(queued), InboxItem.consumed_at.is_(None))
        .values(consumed_at=now)
        .returning(InboxItem.run_id)
    ).scalars().all()
    if consumed:
        session.execute(
            update(Run)
            .where(Run.id.in_(consumed))
            .values(status=RunStatus.CANCELLED.value, error="cancelled with its batch", finished_at=now)
        )
    return list(consumed)
