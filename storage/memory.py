"""Recall and archival memory: Postgres rows, searched through the vector index.

Postgres holds every message and passage; Qdrant holds their embeddings
(derived data, rebuilt by `reindex`). Recall messages are embedded in the
background (off the step's hot path); a search also reads the not-yet-indexed
tail by text, so nothing said a moment ago is missed.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from memq.text import stored_texts
from storage.db import Database
from storage.models import Agent, IndexCursor, Message, Passage
from storage.repository.messages import iso_utc
from storage.search_text import (  # noqa: F401 - PAGE_SIZE, page_line: still importable from here
    MAX_RESULTS, NO_EMBEDDINGS_NOTE, PAGE_SIZE, TEXT_CANDIDATES, SearchPage, lag_note, make_page, page_line,
    ranked_by_words, recall_text, words,
)
from storage.vector.access import VectorAccess
from storage.vector.base import ARCHIVAL, RECALL, Point

log = logging.getLogger("memq.memory")

RECALL_CURSOR = "recall"
# The background indexer takes over a passage's indexing after this long (its
# writer failed to index it, or died); before that the writer is on it.
RETRY_AFTER_S = 30.0


def _to_s(dt: datetime) -> float:
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


# What a search shows of a passage, read as plain rows (no ORM objects to build).
_PASSAGE_SHOWN = (Passage.id, Passage.created_at, Passage.source, Passage.text)
# Built once: a search's 50 ids bind as one expanding parameter, not as 50 new bind objects
# (and a new cache key) per call.
_PASSAGES_BY_ID = select(*_PASSAGE_SHOWN).where(Passage.agent_id == bindparam("agent_id"),
                                                Passage.id.in_(bindparam("ids", expanding=True)))


class MemoryStore:
    """Archival inserts and searches, recall searches, and the background indexer."""

    def __init__(self, db: Database, vectors: VectorAccess, embedder: Any | None) -> None:
        self.db = db
        self.vectors = vectors
        self.embedder = embedder

    @property
    def semantic(self) -> bool:
        return self.embedder is not None

    # ---------- archival ----------

    def add_passages(self, session: Session, agent_id: str, texts: list[str], *, source: str = "agent",
                     document_id: str | None = None) -> list[Passage]:
        """Passage rows in the caller's transaction (index them after it commits).

        Text that cannot be stored is replaced with U+FFFD (memq.text), with a warning."""
        texts = stored_texts(texts, "passage")
        rows = [Passage(agent_id=agent_id, text=t, source=source, document_id=document_id,
                        chunk_no=i if document_id else None, indexed=False) for i, t in enumerate(texts)]
        session.add_all(rows)
        session.flush()
        session.execute(update(Agent).where(Agent.id == agent_id)
                        .values(passage_count=Agent.passage_count + len(rows)))
        return rows

    def index_passages(self, passages: list[Passage]) -> int:
        """Embed and upsert committed passages; the background indexer retries failures."""
        if not passages or not self.semantic:
            return 0
        vectors = self.embedder.embed([p.text for p in passages])
        points = [Point(p.id, p.agent_id, v, {"kind": p.source, "created_at_s": _to_s(p.created_at)})
                  for p, v in zip(passages, vectors)]
        self.vectors.index().upsert(ARCHIVAL, points)
        with self.db.transaction() as s:
            s.execute(update(Passage).where(Passage.id.in_([p.id for p in passages])).values(indexed=True))
        return len(points)

    def archival_search(self, agent_id: str, query: str, page: int = 0) -> SearchPage:
        # embedded and searched before the transaction: no connection held across the HTTP call
        hits = self.vectors.index().search(ARCHIVAL, agent_id, self.embedder.embed_one(query),
                                           MAX_RESULTS) if self.semantic else []
        with self.db.autocommit() as s:  # two reads, no common snapshot needed: no BEGIN, no COMMIT
            found: list[tuple[float | None, Any]] = []  # Passage rows or plain rows
            notes: list[str] = []
            if self.semantic:
                # plain rows, no ORM objects; one statement object whose id list binds per call
                rows = {p.id: p for p in s.execute(_PASSAGES_BY_ID, {"agent_id": agent_id,
                                                                     "ids": [h.row_id for h in hits]})}
                # a similarity of 0 or less says nothing in common
                found = [(h.score, rows[h.row_id]) for h in hits if h.row_id in rows and h.score > 0]
                pending = select(*_PASSAGE_SHOWN).where(Passage.agent_id == agent_id, Passage.indexed.is_(False))
            else:
                notes.append(NO_EMBEDDINGS_NOTE)
                pending = select(*_PASSAGE_SHOWN).where(Passage.agent_id == agent_id)
            found += self._text_matches(s, pending, Passage.text, query, lambda p: p.text)
            items = [{"time": iso_utc(p.created_at), "source": p.source, "text": p.text,
                      **({"score": round(score, 3)} if score is not None else {})}
                     for score, p in found]
        return make_page(items, page, notes)

    # ---------- recall ----------

    def recall_search(self, agent_id: str, query: str, page: int = 0,
                      start: datetime | None = None, end: datetime | None = None) -> SearchPage:
        with self.db.transaction() as s:
            cursor = self._cursor(s)
            notes: list[str] = []
            found: list[tuple[float | None, Message]] = []
            window = [Message.agent_id == agent_id]
            if start:
                window.append(Message.created_at >= start)
            if end:
                window.append(Message.created_at < end)
            if self.semantic and query.strip():
                hits = self.vectors.index().search(
                    RECALL, agent_id, self.embedder.embed_one(query), MAX_RESULTS,
                    created_from_s=start.timestamp() if start else None,
                    created_to_s=end.timestamp() if end else None)
                rows = {m.id: m for m in s.scalars(select(Message).where(
                    *window, Message.id.in_([h.row_id for h in hits])))}
                found = [(h.score, rows[h.row_id]) for h in hits if h.row_id in rows and h.score > 0]
                tail = select(Message).where(*window, Message.id > cursor)
                lag = s.scalar(select(func.count()).where(Message.agent_id == agent_id, Message.id > cursor))
                if lag:
                    notes.append(lag_note(lag))
            else:
                if not self.semantic:
                    notes.append(NO_EMBEDDINGS_NOTE)
                tail = select(Message).where(*window)
            found += self._text_matches(s, tail, Message.content, query, lambda m: recall_text(m) or "")
            items = [{"time": iso_utc(m.created_at), "role": m.role, "text": recall_text(m)}
                     for _, m in found if recall_text(m)]
        return make_page(items, page, notes)

    # ---------- background indexing ----------

    def _cursor(self, session: Session) -> int:
        row = session.get(IndexCursor, RECALL_CURSOR)
        return row.last_id if row else 0

    def index_pending(self, batch: int = 256) -> int:
        """Embed the next recall messages and any unindexed passages; returns how many rows."""
        return sum(self._index_pending_parts(batch))

    def _index_pending_parts(self, batch: int = 256, passage_min_age_s: float = RETRY_AFTER_S) -> tuple[int, int]:
        """(messages, passages) indexed in this pass.

        No transaction is held while embedding: the cursor moves by compare-and-set,
        so concurrent indexers at worst embed a batch twice (upserts are idempotent).
        """
        if not self.semantic:
            return 0, 0
        try:
            with self.db.transaction() as s:
                if s.get(IndexCursor, RECALL_CURSOR) is None:
                    s.add(IndexCursor(name=RECALL_CURSOR, last_id=0))
        except IntegrityError:
            pass  # another indexer created it first
        with self.db.transaction() as s:
            last = self._cursor(s)
            rows = list(s.scalars(select(Message).where(Message.id > last).order_by(Message.id).limit(batch)))
        messages = 0
        if rows:
            self._upsert_messages(rows)
            with self.db.transaction() as s:
                moved = s.execute(update(IndexCursor).where(
                    IndexCursor.name == RECALL_CURSOR, IndexCursor.last_id == last).values(last_id=rows[-1].id))
            messages = len(rows) if moved.rowcount == 1 else 0
        return messages, self.index_passages(self._unindexed_passages(batch, passage_min_age_s))

    def _upsert_messages(self, rows: list[Message]) -> int:
        texts = [(m, t) for m, t in ((m, recall_text(m)) for m in rows) if t]
        if texts:
            vectors = self.embedder.embed([t for _, t in texts])
            self.vectors.index().upsert(RECALL, [
                Point(m.id, m.agent_id, v, {"kind": m.role, "created_at_s": _to_s(m.created_at)})
                for (m, _), v in zip(texts, vectors)])
        return len(texts)

    def _unindexed_passages(self, limit: int, min_age_s: float = 0.0, agent_id: str | None = None) -> list[Passage]:
        """Passages still to index; min_age_s leaves fresh ones to whoever wrote them
        (a step or an ingest indexes its own right after its commit)."""
        cutoff = datetime.now(timezone.utc) - timedelta(seconds=min_age_s)
        stmt = select(Passage).where(Passage.indexed.is_(False), Passage.created_at <= cutoff)
        if agent_id is not None:
            stmt = stmt.where(Passage.agent_id == agent_id)
        with self.db.transaction() as s:
            return list(s.scalars(stmt.order_by(Passage.id).limit(limit)))

    def reindex(self, agent_id: str | None = None) -> dict[str, int]:
        """Rebuild the index from Postgres (all agents, or one)."""
        with self.db.transaction() as s:
            agents = [agent_id] if agent_id else list(s.scalars(select(Agent.id)))
            if agent_id is None:
                cursor = s.get(IndexCursor, RECALL_CURSOR)
                if cursor is not None:
                    cursor.last_id = 0
        index = self.vectors.index()
        counts = {"messages": 0, "passages": 0}
        for aid in agents:
            for collection in (RECALL, ARCHIVAL):
                index.delete_agent(collection, aid)
            with self.db.transaction() as s:
                s.execute(update(Passage).where(Passage.agent_id == aid).values(indexed=False))
        if agent_id is None:
            while True:
                messages, passages = self._index_pending_parts(passage_min_age_s=0.0)
                if not messages and not passages:
                    break
                counts["messages"] += messages
                counts["passages"] += passages
        else:
            counts["messages"] = self._reindex_messages(agent_id)
            while True:
                pending = self._unindexed_passages(256, agent_id=agent_id)
                if not pending:
                    break
                counts["passages"] += self.index_passages(pending)
        return counts

    def _reindex_messages(self, agent_id: str) -> int:
        last, total = 0, 0
        while True:
            with self.db.transaction() as s:
                rows = list(s.scalars(select(Message).where(Message.agent_id == agent_id, Message.id > last)
                                      .order_by(Message.id).limit(256)))
            if not rows:
                return total
            last = rows[-1].id
            total += self._upsert_messages(rows)

    # ---------- helpers ----------

    @staticmethod
    def _text_matches(session: Session, stmt: Any, column: Any, query: str, text_of: Any) -> list[tuple[None, Any]]:
        """Rows whose text holds the query's words (most words first; newest first without words)."""
        query_words = words(query)
        # ORM entities (one selected entity) come as objects, column selects as plain rows
        entity = len(stmt.column_descriptions) == 1 and isinstance(stmt.column_descriptions[0]["expr"], type)
        read = session.scalars if entity else (lambda q: session.execute(q).all())
        if not query_words:
            return [(None, row) for row in read(stmt.order_by(column.desc()).limit(MAX_RESULTS))]
        like = [func.lower(column).contains(w) for w in query_words]
        return ranked_by_words(list(read(stmt.where(or_(*like)).limit(TEXT_CANDIDATES))), query_words, text_of)
