"""Archival and recall search on the quick path: psycopg, the query embedded over HTTP,
the vector step handed to the worker that owns the embedded store.

The same queries as storage/memory.py's MemoryStore (which the full client runs),
with the word match, paging and notes shared through storage/search_text.py.
Only the common server-mode case is served here: an embedded vector store held
by a running worker. A Qdrant server (MEMQ_QDRANT_URL) or a store no process
holds goes to the full client (``Fallback``).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from memq.constants import VECTOR_REQUESTS_CHANNEL
from memq.isotime import iso_utc
from memq.quick.pg import Row
from storage.search_text import (
    MAX_RESULTS, NO_EMBEDDINGS_NOTE, TEXT_CANDIDATES, SearchPage, lag_note, make_page, ranked_by_words,
    recall_text, words,
)

VECTOR_TIMEOUT_S = 30.0


class Fallback(Exception):
    """This search is the full client's."""


class QuickSearch:
    def __init__(self, settings: Any, conn: Any) -> None:
        self.settings = settings
        self.conn = conn
        self.semantic = bool(settings.embedding_model)
        if self.semantic and (settings.qdrant_url or not _store_held(settings.resolved_qdrant_path)):
            raise Fallback("a Qdrant server, or an embedded store no worker holds")

    # -- archival ------------------------------------------------------------------
    def archival(self, agent_id: str, query: str, page: int = 0) -> SearchPage:
        found: list[tuple[float | None, Row]] = []
        notes: list[str] = []
        pending = "SELECT * FROM passages WHERE agent_id = %s"
        if self.semantic:
            hits = self._vector_search("archival", agent_id, query)
            found = self._hit_rows("passages", agent_id, hits, "", ())
            pending += " AND NOT indexed"
        else:
            notes.append(NO_EMBEDDINGS_NOTE)
        found += self._text_matches(pending, (agent_id,), "text", query, lambda p: p.text)
        items = [{"time": iso_utc(p.created_at), "source": p.source, "text": p.text,
                  **({"score": round(score, 3)} if score is not None else {})} for score, p in found]
        return make_page(items, page, notes)

    # -- recall ----------------------------------------------------------------------
    def recall(self, agent_id: str, query: str, page: int = 0, start: datetime | None = None,
               end: datetime | None = None) -> SearchPage:
        window, params = "", ()  # type: tuple[str, tuple[Any, ...]]
        if start:
            window, params = window + " AND created_at >= %s", params + (start,)
        if end:
            window, params = window + " AND created_at < %s", params + (end,)
        notes: list[str] = []
        found: list[tuple[float | None, Row]] = []
        tail, tail_params = "SELECT * FROM messages WHERE agent_id = %s" + window, (agent_id, *params)
        if self.semantic and query.strip():
            hits = self._vector_search("recall", agent_id, query, start, end)
            found = self._hit_rows("messages", agent_id, hits, window, params)
            cursor = self._value("SELECT last_id FROM index_cursors WHERE name = 'recall'", ()) or 0
            tail, tail_params = tail + " AND id > %s", (*tail_params, cursor)
            lag = self._value("SELECT count(*) FROM messages WHERE agent_id = %s AND id > %s", (agent_id, cursor))
            if lag:
                notes.append(lag_note(lag))
        elif not self.semantic:
            notes.append(NO_EMBEDDINGS_NOTE)
        found += self._text_matches(tail, tail_params, "content", query, lambda m: recall_text(m) or "")
        items = [{"time": iso_utc(m.created_at), "role": m.role, "text": recall_text(m)}
                 for _, m in found if recall_text(m)]
        return make_page(items, page, notes)

    # -- queries ---------------------------------------------------------------------
    def _value(self, sql: str, params: tuple[Any, ...]) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else next(iter(row.__dict__.values()))

    def _hit_rows(self, table: str, agent_id: str, hits: list[dict[str, Any]], window: str,
                  params: tuple[Any, ...]) -> list[tuple[float | None, Row]]:
        ids = [h["row_id"] for h in hits]
        rows = {r.id: r for r in self.conn.execute(
            f"SELECT * FROM {table} WHERE agent_id = %s{window} AND id = ANY(%s)", (agent_id, *params, ids))}
        # a similarity of 0 or less says nothing in common
        return [(h["score"], rows[h["row_id"]]) for h in hits if h["row_id"] in rows and h["score"] > 0]

    def _text_matches(self, sql: str, params: tuple[Any, ...], column: str, query: str,
                      text_of: Any) -> list[tuple[None, Row]]:
        query_words = words(query)
        if not query_words:
            rows = self.conn.execute(f"{sql} ORDER BY {column} DESC LIMIT %s", (*params, MAX_RESULTS)).fetchall()
            return [(None, r) for r in rows]
        like = " OR ".join(f"lower({column}) LIKE '%%' || %s || '%%'" for _ in query_words)
        rows = self.conn.execute(f"{sql} AND ({like}) LIMIT %s", (*params, *query_words, TEXT_CANDIDATES)).fetchall()
        return ranked_by_words(rows, query_words, text_of)

    # -- vectors ---------------------------------------------------------------------
    def _vector_search(self, collection: str, agent_id: str, query: str, start: datetime | None = None,
                       end: datetime | None = None) -> list[dict[str, Any]]:
        from storage.embeddings import Embedder

        vector = Embedder.from_settings(self.settings).embed_one(query)
        args = {"collection": collection, "agent_id": agent_id, "vector": vector, "limit": MAX_RESULTS,
                "offset": 0, "created_from_s": start.timestamp() if start else None,
                "created_to_s": end.timestamp() if end else None, "kind": None}
        return self._owner_call("search", args) or []

    def _owner_call(self, op: str, args: dict[str, Any]) -> Any:
        """storage.vector.access.ProxyIndex's hand-over, over psycopg: a request row, a NOTIFY, the answer."""
        from psycopg.types.json import Json

        from storage.vector.base import VectorIndexError

        with self.conn.transaction():
            request_id = self._value("INSERT INTO vector_requests (op, args, created_at) VALUES (%s, %s, now())"
                                     " RETURNING id", (op, Json(args)))
            self.conn.execute(f"NOTIFY {VECTOR_REQUESTS_CHANNEL}")
        deadline, delay = time.monotonic() + VECTOR_TIMEOUT_S, 0.005
        while time.monotonic() < deadline:
            row = self.conn.execute("SELECT done_at, result, error FROM vector_requests WHERE id = %s",
                                    (request_id,)).fetchone()
            if row is not None and row.done_at is not None:
                self.conn.execute("DELETE FROM vector_requests WHERE id = %s", (request_id,))
                if row.error:
                    raise VectorIndexError(row.error)
                result = row.result if isinstance(row.result, dict) else json.loads(row.result or "{}")
                return result.get("value")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.05)
        raise Fallback("the vector store's owner did not answer")


def _store_held(path: str) -> bool:
    """True when another process (a worker) holds the embedded store's lock."""
    from pathlib import Path

    from storage.vector.base import VectorStoreLocked
    from storage.vector.edge_layout import StoreLock

    try:
        StoreLock(Path(path)).release()
    except VectorStoreLocked:
        return True
    except OSError:  # no store there yet
        return False
    return False
