"""Vector index for recall and archival memory: one interface, two Qdrant backends.

- a Qdrant server through ``qdrant-client`` (``MEMQ_QDRANT_URL``): ``ServerIndex``;
- embedded, in-process ``qdrant-edge-py`` at a path (``MEMQ_QDRANT_PATH``): ``EdgeIndex``.

Backends are imported lazily, so importing this package costs nothing.
"""

from __future__ import annotations

from storage.vector.base import (
    ARCHIVAL,
    COLLECTIONS,
    NAMESPACE,
    RECALL,
    DimensionMismatch,
    Hit,
    Point,
    VectorIndex,
    VectorIndexError,
    VectorStoreLocked,
    point_id,
)

__all__ = [
    "ARCHIVAL",
    "COLLECTIONS",
    "NAMESPACE",
    "RECALL",
    "DimensionMismatch",
    "Hit",
    "Point",
    "VectorIndex",
    "VectorIndexError",
    "VectorStoreLocked",
    "open_index",
    "point_id",
]


def open_index(
    qdrant_url: str | None,
    qdrant_path: str | None,
    dim: int,
    *,
    api_key: str | None = None,
    timeout_s: float = 10.0,
) -> VectorIndex:
    """Open the index with both collections ensured at ``dim``.

    A URL wins (a Qdrant server, shared by every process); else the path is an
    embedded qdrant-edge store, which one process at a time may open.
    """
    if qdrant_url:
        from storage.vector.server import ServerIndex

        return ServerIndex(qdrant_url, api_key=api_key, timeout_s=timeout_s, dim=dim)
    if qdrant_path:
        from storage.vector.edge import EdgeIndex

        return EdgeIndex(qdrant_path, dim=dim)
    raise ValueError("no vector store configured: set MEMQ_QDRANT_URL or MEMQ_QDRANT_PATH")
