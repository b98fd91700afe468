"""Which process touches the vector store, and how the others reach it.

A Qdrant server is shared: every process opens its own client. An embedded
store (qdrant-edge at a path) may be open in one process only, so the first
long-running process to open it (a `memq worker`) becomes its owner and serves
the others' operations through the `vector_requests` table: the caller writes
a request row, the owner carries it out and writes the result. A short-lived
command that finds the store free simply opens it for itself.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select

from storage.db import Database
from storage.models import VectorRequest, utcnow
from storage.vector.base import Hit, Point, VectorIndex, VectorIndexError, VectorStoreLocked
from storage.vector.wakeup import Wakeup, notify_sql

log = logging.getLogger("memq.vector")


def open_local(settings: Any) -> VectorIndex:
    from storage.vector import open_index

    return open_index(
        settings.qdrant_url,
        settings.resolved_qdrant_path,
        settings.embedding_dim,
        api_key=settings.qdrant_api_key,
    )


def _hits_out(hits: list[Hit]) -> list[dict[str, Any]]:
    return [{"row_id": h.row_id, "score": h.score, "payload": h.payload} for h in hits]


def execute(index: VectorIndex, op: str, args: dict[str, Any]) -> Any:
    """Carry out one serialised operation on a real index (the owner's side)."""
    if op == "upsert":
        points = [Point(p["id"], p["agent_id"], p["vector"], p.get("payload") or {}) for p in args["points"]]
        index.upsert(args["collection"], points)
        return None
    if op == "search":
        return _hits_out(index.search(**args))
    if op == "count":
        return index.count(args["collection"], args["agent_id"])
    if op == "delete_agent":
        index.delete_agent(args["collection"], args["agent_id"])
        return None
    if op == "delete_points":
        index.delete_points(args["collection"], args["row_ids"])
        return None
    raise VectorIndexError(f"unknown vector operation {op!r}")


class ProxyIndex:
    """A VectorIndex whose operations the store's owner carries out."""

    def __init__(self, db: Database, timeout_s: float = 30.0) -> None:
        self.db = db
        self.timeout_s = timeout_s

    def _call(self, op: str, **args: Any) -> Any:
        with self.db.transaction() as s:
            request = VectorRequest(op=op, args=args)
            s.add(request)
            s.flush()
            request_id = request.id
            if not self.db.is_sqlite:  # wakes the owner when this commits (storage/vector/wakeup.py)
                s.execute(notify_sql())
        deadline = time.monotonic() + self.timeout_s
        delay = 0.005
        while time.monotonic() < deadline:
            with self.db.transaction() as s:
                row = s.get(VectorRequest, request_id)
                if row is not None and row.done_at is not None:
                    s.delete(row)
                    if row.error:
                        raise VectorIndexError(row.error)
                    return (row.result or {}).get("value")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.05)
        raise VectorIndexError(
            f"the embedded vector store is open in another process that did not answer within "
            f"{self.timeout_s:.0f} s (is a `memq worker` running on it?)"
        )

    def ensure_collections(self, dim: int) -> None:
        return None  # the owner ensured them when it opened the store

    def upsert(self, collection: str, points: list[Point]) -> None:
        payload = [{"id": p.id, "agent_id": p.agent_id, "vector": list(p.vector), "payload": p.payload} for p in points]
        self._call("upsert", collection=collection, points=payload)

    def search(self, collection: str, agent_id: str, vector: Any, limit: int, offset: int = 0,
               created_from_s: float | None = None, created_to_s: float | None = None,
               kind: Any = None) -> list[Hit]:
        rows = self._call("search", collection=collection, agent_id=agent_id, vector=list(vector), limit=limit,
                          offset=offset, created_from_s=created_from_s, created_to_s=created_to_s, kind=kind)
        return [Hit(r["row_id"], r["score"], r["payload"]) for r in rows or []]

    def count(self, collection: str, agent_id: str) -> int:
        return int(self._call("count", collection=collection, agent_id=agent_id) or 0)

    def delete_agent(self, collection: str, agent_id: str) -> None:
        self._call("delete_agent", collection=collection, agent_id=agent_id)

    def delete_points(self, collection: str, row_ids: Any) -> None:
        self._call("delete_points", collection=collection, row_ids=[int(r) for r in row_ids])

    def close(self) -> None:
        return None


class VectorAccess:
    """The vector index of this process: its own, or a proxy to the store's owner.

    serve=True (workers): keep trying to own an embedded store, and once owned,
    answer other processes' requests on a background thread.
    """

    def __init__(self, settings: Any, db: Database, *, serve: bool = False) -> None:
        self.settings = settings
        self.db = db
        self.serve = serve
        self._index: VectorIndex | None = None
        self._owned = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def embedded(self) -> bool:
        return not self.settings.qdrant_url

    @property
    def owner(self) -> bool:
        return self._owned

    def index(self) -> VectorIndex:
        with self._lock:
            if self._owned and self._index is not None:
                return self._index
            try:
                self._index = open_local(self.settings)
                self._owned = True
                if hasattr(self._index, "start_index_builder"):  # embedded: HNSW built in a child
                    self._index.start_index_builder()
            except VectorStoreLocked:
                if self._index is None:
                    self._index = ProxyIndex(self.db)
            if self.serve and self.embedded and self._thread is None:
                self._thread = threading.Thread(target=self._serve_loop, name="memq-vector-owner", daemon=True)
                self._thread.start()
            return self._index

    def _serve_loop(self) -> None:
        last_cleanup = 0.0
        idle_s = 0.01
        wakeup = Wakeup(self.db.url, self.db.is_sqlite)
        try:
            while wakeup.wait(idle_s, self._stop):
                if not self._owned:
                    if self._stop.wait(2.0):
                        return
                    self.index()  # try to take the store over (its holder may have exited)
                    continue
                try:
                    # Poll fast while requests come in, slowly (up to 0.25 s) when idle;
                    # on Postgres a request's NOTIFY ends the wait at once.
                    idle_s = 0.01 if self._answer_pending() else min(idle_s * 2, 0.25)
                    if time.monotonic() - last_cleanup > 60:
                        self._cleanup()
                        last_cleanup = time.monotonic()
                except Exception:  # the database restarting: the next pass retries
                    log.warning("serving vector requests failed", exc_info=True)
        finally:
            wakeup.close()

    def _answer_pending(self) -> int:
        with self.db.transaction() as s:
            stmt = (
                select(VectorRequest)
                .where(VectorRequest.done_at.is_(None))
                .order_by(VectorRequest.id)
                .limit(64)
                .with_for_update(skip_locked=True)
            )
            requests = list(s.scalars(stmt))
            for request in requests:
                try:
                    request.result = {"value": execute(self._index, request.op, request.args)}
                except Exception as exc:
                    request.error = f"{type(exc).__name__}: {exc}"
                request.done_at = utcnow()
            return len(requests)

    def _cleanup(self) -> None:
        """Answers nobody collected (their caller timed out or died)."""
        with self.db.transaction() as s:
            s.execute(delete(VectorRequest).where(VectorRequest.done_at < utcnow() - timedelta(minutes=5)))

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if self._index is not None:
                self._index.close()
            self._index = None
            self._owned = False
