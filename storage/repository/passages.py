"""Archival passages as the HTTP API reaches them: listed, filtered by tags and dates,
deleted one by one. Callers check the agent's tenant first (a passage reaches its
tenant through its agent); every query here is limited to one agent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, and_, cast, func, or_, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from storage.models import Agent, Passage
from storage.repository.errors import NotFound


def tag_clause(session: Session, tags: Sequence[str], match_all: bool) -> Any:
    """Passages carrying all (or any) of `tags`."""
    if session.get_bind().dialect.name == "postgresql":
        parts = [cast(Passage.tags, JSONB).contains([t]) for t in tags]
    else:  # SQLite (embedded): the JSON text holds the quoted tag
        parts = [cast(Passage.tags, String).contains(f'"{t}"') for t in tags]
    return and_(*parts) if match_all else or_(*parts)


def filters(session: Session, agent_id: str, *, start: datetime | None = None, end: datetime | None = None,
            tags: Sequence[str] = (), match_all: bool = False) -> list[Any]:
    out: list[Any] = [Passage.agent_id == agent_id]
    if start is not None:
        out.append(Passage.created_at >= start)
    if end is not None:
        out.append(Passage.created_at < end)
    if tags:
        out.append(tag_clause(session, tags, match_all))
    return out


def list_passages(session: Session, agent_id: str, *, after: int | None, before: int | None, limit: int,
                  ascending: bool, search: str | None) -> list[Passage]:
    stmt = select(Passage).where(Passage.agent_id == agent_id)
    if after is not None:
        stmt = stmt.where(Passage.id > after)
    if before is not None:
        stmt = stmt.where(Passage.id < before)
    if search:
        stmt = stmt.where(func.lower(Passage.text).contains(search.lower()))
    stmt = stmt.order_by(Passage.id if ascending else Passage.id.desc()).limit(limit)
    return list(session.scalars(stmt))


def rows_by_id(session: Session, ids: Sequence[int], where: list[Any]) -> dict[int, Passage]:
    if not ids:
        return {}
    return {p.id: p for p in session.scalars(select(Passage).where(*where, Passage.id.in_(list(ids))))}


def delete_passage(session: Session, agent_id: str, passage_id: int) -> None:
    """Delete one of the agent's passages (NotFound for anyone else's)."""
    row = session.scalars(select(Passage).where(Passage.id == passage_id, Passage.agent_id == agent_id)).one_or_none()
    if row is None:
        raise NotFound(f"unknown passage: passage-{passage_id}")
    session.delete(row)
    session.execute(update(Agent).where(Agent.id == agent_id, Agent.passage_count > 0)
                    .values(passage_count=Agent.passage_count - 1))
