"""Turning what a user typed into a full id: the id itself, a unique prefix of it, or a name.

Git style: a prefix of at least ``MIN_PREFIX`` characters names a row when it is the
prefix of exactly one id; an ambiguous one is an error that lists the candidates.
An agent may also be named by its name (when no other agent has it).
Unknown refs raise ``NotFound`` with the same text as before, so callers and
users see one kind of error whichever way an id was given.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Agent, Batch, Run, Schedule
from storage.repository.errors import BadInput, NotFound

MIN_PREFIX = 4
SHOWN_CANDIDATES = 5  # an ambiguous ref lists at most this many ids
FULL_ID_LEN = 36  # uuid4 text
_ID_CHARS = re.compile(r"^[0-9a-f-]+$")


class AmbiguousRef(BadInput):
    """A prefix or name that matches several rows."""

    def __init__(self, kind: str, ref: str, candidates: list[str], more: bool) -> None:
        listed = ", ".join(candidates) + (", …" if more else "")
        super().__init__(f"{kind} '{ref}' is ambiguous: it matches {listed} (give the full id or a longer prefix)")
        self.candidates = candidates


def _prefix_matches(session: Session, column: Any, ref: str) -> list[str]:
    """Ids starting with ``ref`` (at most SHOWN_CANDIDATES + 1; enough to call it ambiguous)."""
    if len(ref) < MIN_PREFIX or not _ID_CHARS.match(ref):
        return []
    # Ids are lowercase hex and '-': no LIKE wildcard can occur in ref.
    stmt = select(column).where(column.like(ref + "%")).order_by(column).limit(SHOWN_CANDIDATES + 1)
    return list(session.scalars(stmt))


def _resolve(session: Session, kind: str, column: Any, ref: str, extra: list[str] | None = None) -> str:
    ref = (ref or "").strip()
    if not ref:
        raise BadInput(f"{kind} id must not be empty")
    if len(ref) == FULL_ID_LEN and session.scalars(select(column).where(column == ref)).first() is not None:
        return ref
    found = list(dict.fromkeys([*(extra or []), *_prefix_matches(session, column, ref.lower())]))
    if len(found) == 1:
        return found[0]
    if not found:
        hint = f" (an id prefix needs at least {MIN_PREFIX} characters)" if len(ref) < MIN_PREFIX else ""
        raise NotFound(f"unknown {kind}: {ref}{hint}")
    raise AmbiguousRef(kind, ref, found[:SHOWN_CANDIDATES], len(found) > SHOWN_CANDIDATES)


def resolve_agent(session: Session, ref: str) -> str:
    """The agent's id from its id, a unique id prefix or its unique name."""
    from storage.repository.agents import AgentNotFound

    named = list(session.scalars(
        select(Agent.id).where(Agent.name == (ref or "").strip()).order_by(Agent.id).limit(SHOWN_CANDIDATES + 1)))
    try:
        return _resolve(session, "agent", Agent.id, ref, named)
    except AmbiguousRef:
        raise
    except NotFound:
        raise AgentNotFound(ref) from None


def resolve_run(session: Session, ref: str) -> str:
    return _resolve(session, "run", Run.id, ref)


def resolve_schedule(session: Session, ref: str) -> str:
    return _resolve(session, "schedule", Schedule.id, ref)


def resolve_batch(session: Session, ref: str) -> str:
    return _resolve(session, "batch", Batch.id, ref)
