"""Parked steps and provider batches (llm_mode=provider_batch, issue 18).

A step of a provider_batch run parks its compiled request here under its identity
(agent, step_no); the collector (scheduler/collector.py) uploads parked requests
per model as provider batches, stores each reply back on its row, and rings the
agent; the step then resumes with the stored reply. Every transition is a guarded
UPDATE (state and provider batch in the WHERE), so several beats, a batch read
twice or a line returned twice change nothing the second time.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.orm import Session

from memq.llm_modes import LlmMode, ParkState, ProviderBatchState
from storage.models import Agent, ParkedStep, ProviderBatch, Run, utcnow

_P = ParkedStep.__table__
_B = ProviderBatch.__table__


def for_step(session: Session, agent_id: str, step_no: int) -> Any | None:
    """The parked row of this step identity, as a read-only row (None: none)."""
    return session.connection().execute(
        select(_P).where(_P.c.agent_id == agent_id, _P.c.step_no == step_no)).first()


def park(session: Session, *, agent_id: str, step_no: int, run_id: str, batch_id: str | None, lease_token: int,
         model: str, request: Mapping[str, Any], context: Mapping[str, Any]) -> int:
    """Store a step's compiled request (a row of an earlier, withdrawn run at this identity goes)."""
    conn = session.connection()
    conn.execute(delete(_P).where(_P.c.agent_id == agent_id, _P.c.step_no == step_no, _P.c.run_id != run_id))
    return conn.execute(insert(_P).values(
        agent_id=agent_id, step_no=step_no, run_id=run_id, batch_id=batch_id, lease_token=lease_token, model=model,
        state=ParkState.PARKED.value, request=dict(request), context=dict(context), attempts=0, created_at=utcnow(),
    ).returning(_P.c.id)).scalar_one()


def set_state(session: Session, row_id: int, state: ParkState, *, error: str | None = None) -> None:
    session.connection().execute(update(_P).where(_P.c.id == row_id).values(state=state.value, error=error))


def due_models(session: Session, *, now: datetime, max_requests: int, max_wait_s: float) -> list[str]:
    """Models whose parked requests are due for upload: max_requests wait, or the oldest waited max_wait_s."""
    rows = session.execute(
        select(_P.c.model, func.count(), func.min(_P.c.created_at))
        .where(_P.c.state == ParkState.PARKED.value).group_by(_P.c.model)).all()
    due = []
    for model, count, oldest in rows:
        oldest = oldest.replace(tzinfo=timezone.utc) if oldest.tzinfo is None else oldest
        if count >= max_requests or oldest <= now - timedelta(seconds=max_wait_s):
            due.append(model)
    return due


def claim_for_upload(session: Session, model: str, limit: int) -> tuple[str, list[Any]] | None:
    """Claim up to limit parked requests of the model into a new provider batch (UPLOADING).

    Rows another beat holds are skipped (SKIP LOCKED). Returns (provider batch id, rows)."""
    rows = session.execute(
        select(_P.c.id, _P.c.agent_id, _P.c.step_no, _P.c.request)
        .where(_P.c.state == ParkState.PARKED.value, _P.c.model == model)
        .order_by(_P.c.id).limit(limit).with_for_update(skip_locked=True)).all()
    if not rows:
        return None
    pb_id = str(uuid.uuid4())
    session.execute(insert(_B).values(id=pb_id, model=model, state=ProviderBatchState.UPLOADING.value,
                                      requests=len(rows), polls=0, next_poll_s=0.0, created_at=utcnow()))
    session.execute(update(_P).where(_P.c.id.in_([r.id for r in rows]))
                    .values(state=ParkState.SUBMITTED.value, provider_batch_id=pb_id, attempts=_P.c.attempts + 1))
    return pb_id, rows


def record_submitted(session: Session, pb_id: str, *, provider_batch_id: str, input_file_id: str,
                     provider_status: str | None, next_poll_s: float) -> bool:
    """The provider has the batch; False when it was already given up as lost meanwhile."""
    return session.execute(
        update(_B).where(_B.c.id == pb_id, _B.c.state == ProviderBatchState.UPLOADING.value)
        .values(state=ProviderBatchState.SUBMITTED.value, provider_batch_id=provider_batch_id,
                input_file_id=input_file_id, provider_status=provider_status, next_poll_s=next_poll_s)
    ).rowcount == 1


def give_back(session: Session, pb_id: str, state: ProviderBatchState, error: str | None, *,
              count_attempt: bool) -> int:
    """End a provider batch whose lines never ran (upload failed, lost, failed at the provider):
    its submitted lines are parked again. count_attempt=False: the provider never saw them."""
    session.execute(update(_B).where(_B.c.id == pb_id).values(state=state.value, error=error, finished_at=utcnow()))
    values: dict[str, Any] = {"state": ParkState.PARKED.value, "provider_batch_id": None, "error": error}
    if not count_attempt:
        values["attempts"] = _P.c.attempts - 1
    return session.execute(update(_P).where(_P.c.provider_batch_id == pb_id,
                                            _P.c.state == ParkState.SUBMITTED.value).values(values)).rowcount


def stale_uploads(session: Session, *, older_than: datetime) -> list[str]:
    """Provider batches stuck in UPLOADING (their beat died between upload and record)."""
    return list(session.execute(
        select(_B.c.id).where(_B.c.state == ProviderBatchState.UPLOADING.value, _B.c.created_at < older_than)
        .with_for_update(skip_locked=True)).scalars())


def claim_polls(session: Session, *, now_s: float, poll_s: float, poll_max_s: float, limit: int = 50) -> list[Any]:
    """Open provider batches due for a poll; each is pushed to its next poll (backoff) as it is claimed."""
    rows = session.execute(
        select(_B).where(_B.c.state.in_([ProviderBatchState.SUBMITTED.value, ProviderBatchState.CANCELLING.value]),
                         _B.c.next_poll_s <= now_s)
        .order_by(_B.c.next_poll_s).limit(limit).with_for_update(skip_locked=True)).all()
    for row in rows:
        wait_s = min(poll_max_s, poll_s * (2 ** min(row.polls, 20)))
        session.execute(update(_B).where(_B.c.id == row.id).values(polls=_B.c.polls + 1, next_poll_s=now_s + wait_s))
    return rows


def set_batch(session: Session, pb_id: str, **values: Any) -> None:
    session.execute(update(_B).where(_B.c.id == pb_id).values(**values))


def apply_results(session: Session, pb_id: str, *, answers: Mapping[tuple[str, int], Mapping[str, Any]],
                  errors: Mapping[tuple[str, int], str], final: ProviderBatchState, max_attempts: int,
                  missing_error: str) -> list[tuple[str, str]]:
    """Store the batch's replies; lines that errored or are missing are parked again, or go the
    normal route once they failed in max_attempts batches. Returns (agent_id, queue) to ring.

    Only rows still SUBMITTED in this batch change: a batch read twice, a line given twice,
    or a line already answered by another batch changes nothing."""
    conn = session.connection()
    rows = conn.execute(
        select(_P.c.id, _P.c.agent_id, _P.c.step_no, _P.c.attempts, Agent.queue)
        .join(Agent, Agent.id == _P.c.agent_id)
        .where(_P.c.provider_batch_id == pb_id, _P.c.state == ParkState.SUBMITTED.value)
        .with_for_update(of=_P, skip_locked=False)).all()
    ring: list[tuple[str, str]] = []
    now = utcnow()
    for row in rows:
        key = (row.agent_id, row.step_no)
        guard = and_(_P.c.id == row.id, _P.c.state == ParkState.SUBMITTED.value, _P.c.provider_batch_id == pb_id)
        if key in answers:
            conn.execute(update(_P).where(guard).values(state=ParkState.ANSWERED.value, reply=dict(answers[key]),
                                                        answered_at=now, error=None))
            ring.append((row.agent_id, row.queue))
            continue
        error = errors.get(key, missing_error)
        if row.attempts >= max_attempts:
            conn.execute(update(_P).where(guard).values(state=ParkState.FALLBACK.value, error=error))
            ring.append((row.agent_id, row.queue))
        else:
            conn.execute(update(_P).where(guard).values(state=ParkState.PARKED.value, provider_batch_id=None,
                                                        error=error))
    conn.execute(update(_B).where(_B.c.id == pb_id).values(state=final.value, finished_at=now))
    return ring


def sweep_resumed(session: Session) -> int:
    """Rows whose step committed (the agent's step counter reached them) become RESUMED."""
    done = select(Agent.id).where(Agent.id == _P.c.agent_id, Agent.step_counter >= _P.c.step_no).exists()
    return session.execute(update(_P).where(
        _P.c.state.in_([ParkState.ANSWERED.value, ParkState.FALLBACK.value]), done,
    ).values(state=ParkState.RESUMED.value)).rowcount


def set_run_mode(session: Session, run_ids: list[str], mode: LlmMode) -> None:
    """Runs just enqueued (in the caller's transaction, before any doorbell) take the mode."""
    if run_ids and mode is not LlmMode.NORMAL:
        session.execute(update(Run).where(Run.id.in_(run_ids)).values(llm_mode=mode.value))


def cancel_for_batch(session: Session, batch_id: str, cancelled_run_ids: list[str]) -> tuple[int, list[str]]:
    """A memq batch was cancelled: the parked steps of its cancelled runs are cancelled; the
    open provider batches holding only lines of this memq batch are marked to cancel at the
    provider (its lines of other runs are parked again). Returns (steps cancelled, provider ids)."""
    cancelled = 0
    if cancelled_run_ids:
        cancelled = session.execute(update(_P).where(
            _P.c.run_id.in_(cancelled_run_ids), _P.c.state.in_([s.value for s in ParkState if s.waiting]),
        ).values(state=ParkState.CANCELLED.value, error="cancelled with its batch")).rowcount
    open_ids = list(session.execute(
        select(_P.c.provider_batch_id).where(_P.c.batch_id == batch_id, _P.c.provider_batch_id.is_not(None))
        .distinct()).scalars())
    cancelling: list[str] = []
    for pb_id in open_ids:
        others = session.execute(select(func.count()).where(
            _P.c.provider_batch_id == pb_id, _P.c.state == ParkState.SUBMITTED.value,
            or_none_batch(batch_id))).scalar_one()
        if others:
            continue  # other work rides in it: it runs to the end
        changed = session.execute(update(_B).where(
            _B.c.id == pb_id, _B.c.state == ProviderBatchState.SUBMITTED.value,
        ).values(state=ProviderBatchState.CANCELLING.value, next_poll_s=0.0)).rowcount
        if changed:
            cancelling.append(pb_id)
    return cancelled, cancelling


def or_none_batch(batch_id: str) -> Any:
    return (_P.c.batch_id != batch_id) | _P.c.batch_id.is_(None)


def batch_summary(session: Session, batch_id: str) -> dict[str, Any]:
    """A memq batch's parked steps by state, its provider batches, and the saving against the normal price."""
    by_state = {st: int(n) for st, n in session.execute(
        select(_P.c.state, func.count()).where(_P.c.batch_id == batch_id).group_by(_P.c.state)).all()}
    provider = session.execute(
        select(_B.c.id, _B.c.provider_batch_id, _B.c.state, _B.c.requests)
        .where(_B.c.id.in_(select(_P.c.provider_batch_id).where(_P.c.batch_id == batch_id)))
        .order_by(_B.c.created_at)).all()
    batch_cost, normal_cost = _costs(session, _P.c.batch_id == batch_id)
    return {"steps": by_state, "provider_batches": [
        {"id": r.id, "provider_batch_id": r.provider_batch_id, "state": r.state, "requests": r.requests}
        for r in provider], "batch_cost_usd": batch_cost, "normal_cost_usd": normal_cost}


def run_saving(session: Session, run_id: str) -> dict[str, float]:
    batch_cost, normal_cost = _costs(session, _P.c.run_id == run_id)
    return {"batch_cost_usd": batch_cost, "normal_cost_usd": normal_cost, "saved_usd": normal_cost - batch_cost}


def _costs(session: Session, where: Any) -> tuple[float, float]:
    """What the answered steps cost at the batch price, and would have at the normal one."""
    batch_cost = normal_cost = 0.0
    for (reply,) in session.execute(select(_P.c.reply).where(where, _P.c.reply.is_not(None))):
        batch_cost += float(reply.get("cost_usd") or 0.0)
        normal_cost += float(reply.get("normal_cost_usd") or 0.0)
    return batch_cost, normal_cost


def agents_waiting_for_provider(session: Session, agent_ids: list[str]) -> set[str]:
    """Which of these agents have a step whose request waits for the provider's batch API."""
    if not agent_ids:
        return set()
    waiting = [state.value for state in ParkState if state.waiting]
    return set(session.scalars(select(_P.c.agent_id).where(_P.c.agent_id.in_(agent_ids), _P.c.state.in_(waiting))
                               .distinct()))
