"""The vector index interface shared by both Qdrant backends.

Qdrant holds derived data (DESIGN §2, I4): every point is a copy of a Postgres
row (a message for ``recall``, a passage for ``archival``), keyed by a point id
derived from the row id, so writes are idempotent and the index can be rebuilt
from Postgres at any time. Every read is scoped by agent id (I7): no method
searches, counts or deletes across agents.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

RECALL = "recall"
ARCHIVAL = "archival"
COLLECTIONS: tuple[str, ...] = (RECALL, ARCHIVAL)

# Fixed forever: point ids are uuid5(NAMESPACE, "<collection>:<row id>").
# Changing it would orphan every point of every existing index.
NAMESPACE = uuid.UUID("6d656d71-7665-5c74-8f72-000000000001")

# Payload keys memq filters on (each has a payload index).
AGENT_ID = "agent_id"  # keyword, the tenant key: every query filters on it
KIND = "kind"  # keyword: e.g. message role, or "passage" / "document"
CREATED_AT_S = "created_at_s"  # float, unix seconds: the date-range filter
ROW_ID = "row_id"  # integer: the Postgres row id, returned with every hit


class VectorIndexError(RuntimeError):
    """A vector-index operation could not be carried out."""


class VectorStoreLocked(VectorIndexError):
    """An embedded store is already open in another process (or another index)."""


class DimensionMismatch(VectorIndexError):
    """Vectors do not have the dimension the collection was created with."""


@dataclass(frozen=True)
class Point:
    """One row to index: ``id`` is the Postgres row id (not the Qdrant point id)."""

    id: int
    agent_id: str
    vector: Sequence[float]
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    row_id: int
    score: float
    payload: dict[str, Any]


def point_id(collection: str, row_id: int) -> uuid.UUID:
    """The deterministic Qdrant point id of a row: upserting it twice is one point."""
    return uuid.uuid5(NAMESPACE, f"{collection}:{int(row_id)}")


def check_collection(collection: str) -> str:
    if collection not in COLLECTIONS:
        raise ValueError(f"unknown collection {collection!r}; expected one of {COLLECTIONS}")
    return collection


def check_agent_id(agent_id: str) -> str:
    if not isinstance(agent_id, str) or not agent_id.strip():
        raise ValueError("agent_id is required: every vector query is scoped to one agent")
    return agent_id


def check_dim(dim: int) -> int:
    if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    return dim


def check_page(limit: int, offset: int) -> None:
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    if not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be a non-negative integer, got {offset!r}")


def check_vector(vector: Sequence[float], dim: int, what: str) -> list[float]:
    """A plain list of finite floats of length ``dim`` (clear error otherwise)."""
    try:
        # Fast path for what embedders return (a list of floats): no per-item copy.
        values = vector if type(vector) is list else [float(x) for x in vector]
        total = sum(values)  # NaN or inf anywhere makes the sum non-finite
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: the vector must be a sequence of numbers") from exc
    if len(values) != dim:
        raise DimensionMismatch(
            f"{what}: vector has {len(values)} dimensions but the index was opened with "
            f"dim={dim} (MEMQ_EMBEDDING_DIM); re-embed with the configured model or "
            "rebuild the index with the new dimension (memq reindex)"
        )
    if not math.isfinite(total):
        raise ValueError(f"{what}: the vector contains NaN or infinity")
    return values


def point_payload(collection: str, point: Point) -> dict[str, Any]:
    """The stored payload: the caller's fields plus the authoritative agent and row ids."""
    check_agent_id(point.agent_id)
    payload = dict(point.payload or {})
    payload[AGENT_ID] = point.agent_id  # never the caller's payload: isolation depends on it
    payload[ROW_ID] = int(point.id)
    created = payload.get(CREATED_AT_S)
    if created is not None:
        payload[CREATED_AT_S] = float(created)
    return payload


def row_ids(ids: Iterable[int]) -> list[int]:
    return [int(i) for i in ids]


@runtime_checkable
class VectorIndex(Protocol):
    """Collections ``recall`` and ``archival`` (cosine), always queried per agent."""

    dim: int

    def ensure_collections(self, dim: int) -> None:
        """Create both collections and their payload indexes if missing (idempotent).

        Raises DimensionMismatch when a collection exists with another dimension.
        """

    def upsert(self, collection: str, points: list[Point]) -> None:
        """Insert or replace points; ids are derived from row ids, so retries are harmless."""

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
        """Nearest points of one agent, best first.

        The date range is half-open: ``created_from_s <= created_at_s < created_to_s``
        (either bound may be None). ``kind`` keeps points whose ``kind`` is that value
        (or one of those values).
        """

    def count(self, collection: str, agent_id: str) -> int:
        """Exact number of points of one agent."""

    def delete_agent(self, collection: str, agent_id: str) -> None:
        """Delete every point of one agent."""

    def delete_points(self, collection: str, row_ids: Iterable[int]) -> None:
        """Delete points by Postgres row id (missing ids are ignored)."""

    def close(self) -> None:
        """Flush and release the store (idempotent)."""
