"""Archival memory for the HTTP API: insert with tags, list, delete, search with
dates and tags. Each call first finds the agent within the caller's tenant."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select

from storage import repository as repo
from storage.memory import MemoryStore
from storage.models import Passage
from storage.repository import passages as prepo
from storage.repository.errors import BadInput
from storage.search_text import MAX_RESULTS
from storage.vector.base import ARCHIVAL

log = logging.getLogger("memq.api")
MAX_TAGS = 50


@dataclass
class SearchQuery:
    query: str
    top_k: int
    start: datetime | None = None
    end: datetime | None = None
    tags: tuple[str, ...] = ()
    match_all: bool = False


def utc(dt: datetime | None) -> datetime | None:
    """A naive datetime from the wire is UTC."""
    if dt is None:
        return None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


class ArchivalOps:
    def __init__(self, ops: Any) -> None:
        self.db = ops.db
        self.settings = ops.settings
        self.memory: MemoryStore = ops.client.rt.memory

    def insert(self, tenant: str, agent_id: str, text: str, tags: list[str] | None) -> list[Passage]:
        if not text.strip():
            raise BadInput("text: must not be empty")
        if len(text) > self.settings.max_message_chars:
            raise BadInput(f"text: has {len(text)} characters; the limit is {self.settings.max_message_chars}")
        if tags is not None and len(tags) > MAX_TAGS:
            raise BadInput(f"tags: at most {MAX_TAGS}")
        with self.db.transaction() as s:
            repo.get_agent(s, agent_id, tenant_id=tenant)
            rows = self.memory.add_passages(s, agent_id, [text])
            for row in rows:
                row.tags = sorted(set(tags or []))
            s.flush()
        if self.memory.semantic:
            try:
                self.memory.index_passages(rows)
            except Exception as exc:  # noqa: BLE001 - the background indexer retries; words find it meanwhile
                log.warning("passage of agent %s not indexed yet (%s)", agent_id, str(exc).splitlines()[0][:200])
        return rows

    def list(self, tenant: str, agent_id: str, **query: Any) -> list[Passage]:
        with self.db.transaction() as s:
            repo.get_agent(s, agent_id, tenant_id=tenant)
            return prepo.list_passages(s, agent_id, **query)

    def delete(self, tenant: str, agent_id: str, passage_id: int) -> None:
        with self.db.transaction() as s:
            repo.get_agent(s, agent_id, tenant_id=tenant, for_update=True)
            prepo.delete_passage(s, agent_id, passage_id)
        if self.memory.semantic:
            try:
                self.memory.vectors.index().delete_points(ARCHIVAL, [passage_id])
            except Exception as exc:  # noqa: BLE001 - a stale point finds no row, so it is never shown
                log.warning("passage %s: vector not deleted (%s)", passage_id, str(exc).splitlines()[0][:200])

    def search(self, tenant: str, agent_id: str, q: SearchQuery) -> list[tuple[float | None, Passage]]:
        """The best top_k passages: by meaning (when an embedding model is set), then by words
        among passages not yet indexed (all of them without embeddings, or when tags filter)."""
        start, end = utc(q.start), utc(q.end)
        with self.db.transaction() as s:
            repo.get_agent(s, agent_id, tenant_id=tenant)
            where = prepo.filters(s, agent_id, start=start, end=end, tags=q.tags, match_all=q.match_all)
            found: list[tuple[float | None, Passage]] = []
            if self.memory.semantic and q.query.strip():
                hits = self.memory.vectors.index().search(
                    ARCHIVAL, agent_id, self.memory.embedder.embed_one(q.query), MAX_RESULTS,
                    created_from_s=start.timestamp() if start else None,
                    created_to_s=end.timestamp() if end else None)
                rows = prepo.rows_by_id(s, [h.row_id for h in hits], where)
                found = [(h.score, rows[h.row_id]) for h in hits if h.row_id in rows and h.score > 0]
                rest = where if q.tags else [*where, Passage.indexed.is_(False)]
            else:
                rest = where
            seen = {p.id for _, p in found}
            for score, p in MemoryStore._text_matches(s, select(Passage).where(*rest), Passage.text, q.query,
                                                      lambda p: p.text):
                if p.id not in seen:
                    found.append((score, p))
                    seen.add(p.id)
            return found[:q.top_k]
