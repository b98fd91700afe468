"""Server backend: ``qdrant-client`` against a Qdrant server (``MEMQ_QDRANT_URL``).

Also constructible with ``path=`` for qdrant-client's local mode, a pure-Python
imitation of the server used by the tests on small data (it is unusable at
scale: see DESIGN §5 and ``storage/vector/bench.py``).

Collections follow Qdrant's multitenancy recipe: ``agent_id`` is a keyword
index with ``is_tenant=True`` and the HNSW graph is built per tenant
(``payload_m=16``, ``m=0``, no global graph), which is right because no memq
query ever runs without an agent filter.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterable, Sequence
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
    VectorStoreLocked,
    check_agent_id,
    check_collection,
    check_dim,
    check_page,
    check_vector,
    point_id,
    point_payload,
    row_ids,
)

UPSERT_BATCH = 256
DEFAULT_TIMEOUT_S = 10


class ServerIndex:
    """VectorIndex over a Qdrant server (``url=``) or qdrant-client local mode (``path=``)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        dim: int | None = None,
    ) -> None:
        if (url is None) == (path is None):
            raise ValueError("ServerIndex needs exactly one of url= (a Qdrant server) or path=")
        from qdrant_client import QdrantClient
        from qdrant_client.http import models

        self._m = models
        # qdrant-client takes whole seconds; never 0 (which would mean no timeout at all).
        self.timeout_s = max(1, int(round(timeout_s)))
        self.url, self.path = url, None if path is None else os.fspath(path)
        if url is not None:
            self.client = QdrantClient(
                url=url,
                api_key=api_key,
                timeout=self.timeout_s,  # the HTTP timeout of every request
                # Checked by `memq status`; here it would cost a round trip (and a
                # warning when the server is down) in every process that opens the index.
                check_compatibility=False,
            )
        else:
            try:
                self.client = QdrantClient(path=self.path, force_disable_check_same_thread=True)
            except RuntimeError as exc:
                if "already accessed" in str(exc):
                    raise VectorStoreLocked(
                        f"the local Qdrant store at {self.path} is already open by another "
                        "process; only one process may open it at a time"
                    ) from exc
                raise
        # Local mode is not thread-safe (one in-memory collection + sqlite); a server
        # client is, but serializing ensure_collections is cheap and avoids races.
        self._local_lock = threading.Lock() if url is None else None
        self._ensure_lock = threading.Lock()
        self._closed = False
        self.dim = 0
        if dim is not None:
            try:
                self.ensure_collections(dim)
            except BaseException:
                self.close()
                raise

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise VectorIndexError("the vector index is closed")
        if self._local_lock is None:
            return fn(*args, **kwargs)
        with self._local_lock:
            return fn(*args, **kwargs)

    # -- lifecycle ---------------------------------------------------------
    def ensure_collections(self, dim: int) -> None:
        check_dim(dim)
        m = self._m
        with self._ensure_lock:
            for name in COLLECTIONS:
                if self._call(self.client.collection_exists, name):
                    self._check_existing_dim(name, dim)
                else:
                    try:
                        self._call(
                            self.client.create_collection,
                            name,
                            vectors_config=m.VectorParams(size=dim, distance=m.Distance.COSINE),
                            hnsw_config=m.HnswConfigDiff(payload_m=16, m=0),
                        )
                    except Exception as exc:
                        # Another process created it meanwhile (HTTP 409): check it instead.
                        if not self._call(self.client.collection_exists, name):
                            raise VectorIndexError(f"cannot create collection {name!r}: {exc}") from exc
                        self._check_existing_dim(name, dim)
                for field_name, schema in (
                    (AGENT_ID, m.KeywordIndexParams(type=m.KeywordIndexType.KEYWORD, is_tenant=True)),
                    (KIND, m.PayloadSchemaType.KEYWORD),
                    (CREATED_AT_S, m.PayloadSchemaType.FLOAT),
                    (ROW_ID, m.PayloadSchemaType.INTEGER),
                ):
                    # Idempotent on the server and in local mode (where it is only
                    # recorded, with a warning that payload indexes have no effect).
                    with warnings.catch_warnings():
                        warnings.filterwarnings("ignore", message="Payload indexes have no effect")
                        self._call(
                            self.client.create_payload_index, name, field_name, field_schema=schema
                        )
            self.dim = dim

    def _check_existing_dim(self, name: str, dim: int) -> None:
        info = self._call(self.client.get_collection, name)
        vectors = info.config.params.vectors
        size = getattr(vectors, "size", None)
        if size is None and isinstance(vectors, dict):
            size = getattr(vectors.get(""), "size", None)
        if size is not None and int(size) != dim:
            where = self.url or self.path
            raise DimensionMismatch(
                f"collection {name!r} at {where} holds {size}-dimensional vectors, but "
                f"dim={dim} (MEMQ_EMBEDDING_DIM); use the embedding model it was built with, "
                "or drop the collection and rebuild it from Postgres (memq reindex)"
            )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.client.close()

    def __enter__(self) -> "ServerIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ready(self, collection: str) -> None:
        check_collection(collection)
        if self._closed:
            raise VectorIndexError("the vector index is closed")
        if not self.dim:
            raise VectorIndexError("call ensure_collections(dim) before using the index")

    # -- writes ------------------------------------------------------------
    def upsert(self, collection: str, points: list[Point]) -> None:
        self._ready(collection)
        if not points:
            return
        m = self._m
        structs = [
            m.PointStruct(
                id=str(point_id(collection, p.id)),
                vector=check_vector(p.vector, self.dim, f"row {p.id}"),
                payload=point_payload(collection, p),
            )
            for p in points
        ]
        for start in range(0, len(structs), UPSERT_BATCH):
            self._call(
                self.client.upsert, collection, points=structs[start : start + UPSERT_BATCH], wait=True
            )

    def delete_agent(self, collection: str, agent_id: str) -> None:
        self._ready(collection)
        selector = self._m.FilterSelector(filter=self._filter(agent_id))
        self._call(self.client.delete, collection, points_selector=selector, wait=True)

    def delete_points(self, collection: str, row_ids_: Iterable[int]) -> None:
        self._ready(collection)
        ids = [str(point_id(collection, r)) for r in row_ids(row_ids_)]
        if ids:
            selector = self._m.PointIdsList(points=ids)
            self._call(self.client.delete, collection, points_selector=selector, wait=True)

    # -- reads -------------------------------------------------------------
    def _filter(
        self,
        agent_id: str,
        created_from_s: float | None = None,
        created_to_s: float | None = None,
        kind: str | Sequence[str] | None = None,
    ) -> Any:
        m = self._m
        must: list[Any] = [
            m.FieldCondition(key=AGENT_ID, match=m.MatchValue(value=check_agent_id(agent_id)))
        ]
        if created_from_s is not None or created_to_s is not None:
            must.append(
                m.FieldCondition(
                    key=CREATED_AT_S,
                    range=m.Range(
                        gte=None if created_from_s is None else float(created_from_s),
                        lt=None if created_to_s is None else float(created_to_s),
                    ),
                )
            )
        if kind is not None:
            kinds = [kind] if isinstance(kind, str) else [str(k) for k in kind]
            must.append(m.FieldCondition(key=KIND, match=m.MatchAny(any=kinds)))
        return m.Filter(must=must)

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
        self._ready(collection)
        check_page(limit, offset)
        response = self._call(
            self.client.query_points,
            collection,
            query=check_vector(vector, self.dim, "query"),
            query_filter=self._filter(agent_id, created_from_s, created_to_s, kind),
            limit=limit,
            offset=offset,
            with_payload=True,
        )
        hits = []
        for sp in response.points:
            payload = dict(sp.payload or {})
            hits.append(Hit(row_id=int(payload[ROW_ID]), score=float(sp.score), payload=payload))
        return hits

    def count(self, collection: str, agent_id: str) -> int:
        self._ready(collection)
        result = self._call(
            self.client.count, collection, count_filter=self._filter(agent_id), exact=True
        )
        return int(result.count)
