"""Embedded backend: ``qdrant-edge-py``, the Qdrant engine in-process.

Layout under the store path (``MEMQ_QDRANT_PATH``)::

    <path>/memq-vector.lock   flock held while a process has the store open
    <path>/recall/            one EdgeShard per collection
    <path>/archival/

One process at a time: the store is locked with ``fcntl.flock`` when opened and
a second opener (another process, or a second EdgeIndex in this one) gets
``VectorStoreLocked`` naming the holder's pid, instead of qdrant-edge's
``Can't init WAL: Kind(WouldBlock)``.

Indexing policy (measured with ``python -m storage.vector.bench`` on this
2-core machine, under load from other work): an edge shard has no background
optimizer. New points land in an appendable, unindexed segment and are
searchable as soon as ``upsert`` returns. A search filtered by ``agent_id`` goes
through the keyword payload index and scores only that agent's points exactly:
100k points over 100 agents, top 5: 0.4-0.5 ms p50, 0.7-0.9 ms p95 without any
HNSW graph; an agent with 20k points of its own: ~4.5 ms p50.
``optimize()`` (build HNSW, merge, vacuum) blocks, holds the GIL for its whole
run (every other thread of the process stalls: a ticker thread ticked twice in
35 s) and took 25 s at 20k points and 700 s at 100k points here. Afterwards
small agents were not faster (0.66 ms p50 at 100k/100 agents) and only big
agents gained (20k points: 4.4 -> 1.7 ms p50). So this backend never calls
``optimize()`` in the owner: ``start_index_builder()`` (storage/vector/edge_build.py)
builds a collection's index in a child process once enough of its points are
unindexed, and ``adopt()`` swaps the built shard in; ``<path>/<collection>.current``
then names the live shard's directory (``<collection>-<hex>``).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from storage.vector.base import (
    AGENT_ID,
    COLLECTIONS,
    CREATED_AT_S,
    KIND,
    ROW_ID,
    DimensionMismatch,
    Hit,
    Point,
    VectorIndexError,
    check_agent_id,
    check_collection,
    check_dim,
    check_page,
    check_vector,
    point_id,
    point_payload,
    row_ids,
)
from storage.vector.edge_layout import (
    StoreLock,
    current_dir,
    ensure_field_indexes,
    remove_leftovers,
    set_current,
)

UPSERT_BATCH = 512
SEARCH_EF = 64  # HNSW candidates per search (at least limit + offset)
RETIRED_CLOSE_AFTER_S = 5.0  # a replaced shard stays open this long for searches still on it


def _qe() -> Any:
    try:
        import qdrant_edge
    except ImportError as exc:  # pragma: no cover - a dependency of memq
        raise VectorIndexError(
            "the embedded vector store needs qdrant-edge-py (pip install qdrant-edge-py), "
            "or set MEMQ_QDRANT_URL to use a Qdrant server"
        ) from exc
    return qdrant_edge


class EdgeIndex:
    """VectorIndex over two qdrant-edge shards in one directory."""

    def __init__(self, path: str | os.PathLike[str], dim: int | None = None) -> None:
        self.path = Path(path).expanduser().resolve()
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = StoreLock(self.path)
        self._pid = os.getpid()
        self._shards: dict[str, Any] = {}
        self._mutex = threading.Lock()  # guards open/close, not the (thread-safe) shards
        self._write_lock = threading.Lock()  # orders writes against the write log and shard swaps
        self._logs: dict[str, list[Any]] = {}  # collection -> writes made while its index builds
        self._retired: list[tuple[float, Any, Path]] = []  # replaced shards: (closable at, shard, dir)
        self._dirs: dict[str, Path] = {}  # collection -> its live shard's directory
        self._builder: Any = None
        self._closed = False
        self.dim = 0
        remove_leftovers(self.path)
        if dim is not None:
            try:
                self.ensure_collections(dim)
            except BaseException:
                self.close()
                raise

    # -- lifecycle ---------------------------------------------------------
    def _config(self, dim: int) -> Any:
        qe = _qe()
        return qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine))

    def ensure_collections(self, dim: int) -> None:
        check_dim(dim)
        qe = _qe()
        with self._mutex:
            self._check_open()
            if self._shards:
                if dim != self.dim:
                    raise DimensionMismatch(
                        f"the vector store at {self.path} is open with dim={self.dim}, not {dim}"
                    )
                return
            shards: dict[str, Any] = {}
            try:
                for name in COLLECTIONS:
                    shards[name] = self._open_shard(qe, name, dim)
            except BaseException:
                for shard in shards.values():
                    shard.close()
                raise
            self._shards = shards
            self.dim = dim

    def _open_shard(self, qe: Any, name: str, dim: int) -> Any:
        shard_path = self.path / current_dir(self.path, name)
        config = self._config(dim)
        segments = shard_path / "segments"
        if segments.is_dir() and any(segments.iterdir()):
            try:
                shard = qe.EdgeShard.load(str(shard_path), config)
            except Exception as exc:
                if "incompatible" in str(exc).lower():
                    raise DimensionMismatch(
                        f"the {name!r} collection at {shard_path} holds vectors of another "
                        f"dimension than dim={dim} (MEMQ_EMBEDDING_DIM): {exc}. Use the "
                        "embedding model it was built with, or delete the directory and "
                        "rebuild it from Postgres (memq reindex)"
                    ) from exc
                raise VectorIndexError(f"cannot open the {name!r} shard at {shard_path}: {exc}") from exc
        else:
            shard = qe.EdgeShard.create(str(shard_path), config)
        try:
            ensure_field_indexes(qe, shard)
        except BaseException:
            shard.close()
            raise
        self._dirs[name] = shard_path
        return shard

    def _check_open(self) -> None:
        if self._closed:
            raise VectorIndexError(f"the vector store at {self.path} is closed")
        if os.getpid() != self._pid:
            # A forked child shares the parent's lock and files: two writers, one store.
            raise VectorIndexError(
                f"the vector store at {self.path} was opened by process {self._pid} and "
                f"cannot be used from forked process {os.getpid()}; open it after forking"
            )

    def _shard(self, collection: str) -> Any:
        check_collection(collection)
        self._check_open()
        shard = self._shards.get(collection)
        if shard is None:
            raise VectorIndexError("call ensure_collections(dim) before using the index")
        return shard

    def close(self) -> None:
        if self._builder is not None and os.getpid() == self._pid:
            self._builder.stop()  # kills a build child; its work directory goes at the next open
        with self._mutex:
            if self._closed or os.getpid() != self._pid:
                return  # a forked child must not flush or unlock its parent's store
            self._closed = True
            shards, self._shards = self._shards, {}
            retired, self._retired = self._retired, []
            try:
                for _, shard, old_dir in retired:
                    shard.close()
                    shutil.rmtree(old_dir, ignore_errors=True)
                for shard in shards.values():
                    try:
                        shard.flush()
                    finally:
                        shard.close()
            finally:
                self._lock.release()

    def __enter__(self) -> "EdgeIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes ------------------------------------------------------------
    def upsert(self, collection: str, points: list[Point]) -> None:
        self._shard(collection)  # checks the collection and that the store is open
        if not points:
            return
        qe = _qe()
        built = [
            qe.Point(
                point_id(collection, p.id),
                check_vector(p.vector, self.dim, f"row {p.id}"),
                point_payload(collection, p),
            )
            for p in points
        ]
        for start in range(0, len(built), UPSERT_BATCH):
            self._write(collection, qe.UpdateOperation.upsert_points(built[start : start + UPSERT_BATCH]))

    def _write(self, collection: str, operation: Any) -> None:
        """Apply a write to the live shard, and log it while the collection's index builds."""
        with self._write_lock:
            self._shard(collection).update(operation)
            log = self._logs.get(collection)
            if log is not None:
                log.append(operation)

    def delete_agent(self, collection: str, agent_id: str) -> None:
        self._shard(collection)
        qe = _qe()
        self._write(collection, qe.UpdateOperation.delete_points_by_filter(self._filter(agent_id)))

    def delete_points(self, collection: str, row_ids_: Iterable[int]) -> None:
        self._shard(collection)
        ids = [point_id(collection, r) for r in row_ids(row_ids_)]
        if ids:
            self._write(collection, _qe().UpdateOperation.delete_points(ids))

    # -- reads -------------------------------------------------------------
    def _filter(
        self,
        agent_id: str,
        created_from_s: float | None = None,
        created_to_s: float | None = None,
        kind: str | Sequence[str] | None = None,
    ) -> Any:
        qe = _qe()
        must = [qe.FieldCondition(key=AGENT_ID, match=qe.MatchValue(check_agent_id(agent_id)))]
        if created_from_s is not None or created_to_s is not None:
            must.append(
                qe.FieldCondition(
                    key=CREATED_AT_S,
                    range=qe.RangeFloat(
                        gte=None if created_from_s is None else float(created_from_s),
                        lt=None if created_to_s is None else float(created_to_s),
                    ),
                )
            )
        if kind is not None:
            kinds = [kind] if isinstance(kind, str) else [str(k) for k in kind]
            must.append(qe.FieldCondition(key=KIND, match=qe.MatchAny(kinds)))
        return qe.Filter(must=must)

    def search(
        self,
        collection: str,
        agent_id: str,
        vector: Sequence[float],
        limit: int,
        offset: int = 0,
        created_from_s: float | None = None,
        created_to_s: float | None = None,
        kind: str | Sequence[str] | None = None,
    ) -> list[Hit]:
        shard = self._shard(collection)
        check_page(limit, offset)
        qe = _qe()
        request = qe.QueryRequest(
            query=qe.Query.Nearest(check_vector(vector, self.dim, "query")),
            filter=self._filter(agent_id, created_from_s, created_to_s, kind),
            limit=limit,
            offset=offset,
            with_payload=True,
            # 64 candidates: at 100k points 1.5 ms p50 against 2.1-2.3 ms at the default
            # (ef_construct), recall@50 against an exact scan 0.940 vs 0.942
            params=qe.SearchParams(hnsw_ef=max(SEARCH_EF, limit + offset)),
        )
        hits = []
        for sp in shard.query(request):
            payload = dict(sp.payload or {})
            hits.append(Hit(row_id=int(payload[ROW_ID]), score=float(sp.score), payload=payload))
        return hits

    def count(self, collection: str, agent_id: str) -> int:
        shard = self._shard(collection)
        return int(shard.count(_qe().CountRequest(exact=True, filter=self._filter(agent_id))))

    # -- maintenance -------------------------------------------------------
    def optimize(self) -> bool:
        """Build HNSW indexes, merge and vacuum segments in this process. Blocking, holds the GIL.

        Not part of VectorIndex and never called implicitly: a process with steps
        in flight builds through ``start_index_builder`` (a child process) instead.
        """
        changed = False
        for name in COLLECTIONS:
            changed = bool(self._shard(name).optimize()) or changed
        return changed

    def flush(self) -> None:
        for name in COLLECTIONS:
            self._shard(name).flush()

    def info(self) -> dict[str, dict[str, int]]:
        """Per collection: points, segments and HNSW-indexed vectors."""
        return {name: self.collection_info(name) for name in COLLECTIONS}

    def collection_info(self, collection: str) -> dict[str, int]:
        i = self._shard(collection).info()
        return {"points": i.points_count, "segments": i.segments_count,
                "indexed_vectors": i.indexed_vectors_count}

    # -- index builds in a child process (storage/vector/edge_build.py) ------
    def start_index_builder(self, **kwargs: Any) -> Any:
        """Keep the HNSW indexes current from a background thread; returns the builder."""
        from storage.vector.edge_build import IndexBuilder

        with self._mutex:
            self._check_open()
            if self._builder is None:
                self._builder = IndexBuilder(self, **kwargs).start()
            return self._builder

    def live_shard(self, collection: str) -> Any:
        return self._shard(collection)

    def begin_log(self, collection: str) -> None:
        """From now on, record the collection's writes for a build to replay."""
        with self._write_lock:
            self._logs[collection] = []

    def end_log(self, collection: str) -> None:
        with self._write_lock:
            self._logs.pop(collection, None)

    def adopt(self, collection: str, built: Path) -> int:
        """Make the shard built at ``built`` the collection's live shard; returns writes replayed.

        Writes logged since ``begin_log`` are replayed onto it in order, the last
        of them with writes held, so nothing written meanwhile is lost.
        """
        qe = _qe()
        self._shard(collection)
        target = self.path / f"{collection}-{uuid.uuid4().hex[:8]}"
        os.replace(built, target)
        shard = qe.EdgeShard.load(str(target), self._config(self.dim))
        try:
            done = 0
            while True:  # catch up without holding writes back
                with self._write_lock:
                    pending = self._logs[collection][done:]
                if len(pending) < 16:
                    break
                for operation in pending:
                    shard.update(operation)
                done += len(pending)
            with self._write_lock:
                for operation in self._logs[collection][done:]:
                    shard.update(operation)
                done = len(self._logs[collection])
                shard.flush()
                with self._mutex:
                    self._check_open()
                    set_current(self.path, collection, target.name)
                    self._logs.pop(collection)
                    old, old_dir = self._shards[collection], self._dirs[collection]
                    self._shards[collection], self._dirs[collection] = shard, target
        except BaseException:
            shard.close()
            shutil.rmtree(target, ignore_errors=True)
            raise
        with self._mutex:
            self._retired.append((time.monotonic() + RETIRED_CLOSE_AFTER_S, old, old_dir))
        self.close_retired()
        return done

    def close_retired(self, force: bool = False) -> None:
        """Close replaced shards (and delete their directories) once searches on them have ended."""
        now = time.monotonic()
        with self._mutex:
            due = [r for r in self._retired if force or r[0] <= now]
            self._retired = [r for r in self._retired if not (force or r[0] <= now)]
        for _, old, old_dir in due:
            try:
                old.close()
            finally:
                shutil.rmtree(old_dir, ignore_errors=True)
