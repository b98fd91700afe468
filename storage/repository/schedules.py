"""Schedules and their fires."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from memq.text import stored_text
from storage.models import Run, Schedule, ScheduleFire
from storage.repository.agents import get_agent
from storage.repository.errors import NotFound


def create_schedule(
    session: Session,
    *,
    agent_id: str,
    kind: str,
    expr: str,
    tz: str,
    message: str,
    missed: str,
    next_fire_at: datetime | None,
    llm_mode: str = "normal",
) -> Schedule:
    get_agent(session, agent_id)
    message = stored_text(message, "schedule message")  # U+FFFD for what cannot be stored (memq.text)
    schedule = Schedule(
        id=str(uuid.uuid4()),
        agent_id=agent_id,
        kind=kind,
        expr=expr,
        tz=tz,
        message=message,
        missed=missed,
        paused=False,
        next_fire_at=next_fire_at,
        fires=0,
        llm_mode=llm_mode,
    )
    session.add(schedule)
    session.flush()
    return schedule


def get_schedule(session: Session, schedule_id: str) -> Schedule:
    schedule = session.get(Schedule, schedule_id)
    if schedule is None:
        raise NotFound(f"unknown schedule: {schedule_id}")
    return schedule


def list_schedules(session: Session, agent_id: str | None = None) -> list[tuple[Schedule, str | None]]:
    """Schedules (of one agent, or all) with the status of each one's last run."""
    stmt = select(Schedule, Run.status).outerjoin(Run, Run.id == Schedule.last_run_id)
    if agent_id is not None:
        get_agent(session, agent_id)
        stmt = stmt.where(Schedule.agent_id == agent_id)
    stmt = stmt.order_by(Schedule.created_at, Schedule.id)
    return [(row[0], row[1]) for row in session.execute(stmt)]


def delete_schedule(session: Session, schedule_id: str) -> None:
    get_schedule(session, schedule_id)
    session.execute(delete(ScheduleFire).where(ScheduleFire.schedule_id == schedule_id))
    session.execute(delete(Schedule).where(Schedule.id == schedule_id))


def due_schedules(session: Session, now: datetime, limit: int = 100) -> list[Schedule]:
    """Unpaused schedules due at `now`, locked; rows another beat holds are skipped."""
    stmt = (
        select(Schedule)
        .where(Schedule.paused.is_(False), Schedule.next_fire_at.is_not(None), Schedule.next_fire_at <= now)
        .order_by(Schedule.next_fire_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(stmt))


def claim_fire(
    session: Session, schedule: Schedule, scheduled_for: datetime, fired_at: datetime, beat: str
) -> ScheduleFire | None:
    """Record one fire; None when this (schedule, instant) has fired already."""
    fire = ScheduleFire(
        schedule_id=schedule.id,
        agent_id=schedule.agent_id,
        scheduled_for=scheduled_for,
        fired_at=fired_at,
        beat=beat,
    )
    try:
        with session.begin_nested():
            session.add(fire)
            session.flush()
    except IntegrityError:
        return None
    return fire


def schedule_fires(session: Session, schedule_id: str) -> list[ScheduleFire]:
    stmt = select(ScheduleFire).where(ScheduleFire.schedule_id == schedule_id).order_by(ScheduleFire.scheduled_for)
    return list(session.scalars(stmt))


def next_due_at(session: Session) -> datetime | None:
    """The earliest upcoming fire of any unpaused schedule."""
    from sqlalchemy import func

    return session.scalar(
        select(func.min(Schedule.next_fire_at)).where(Schedule.paused.is_(False), Schedule.next_fire_at.is_not(None))
    )
