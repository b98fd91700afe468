"""Fixtures of the vector-layer suite: one contract, run against both backends.

Nothing here needs Postgres, Redis or a worker: the edge backend runs on a tmp
directory, the server backend through qdrant-client's local mode (``path=``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from storage.vector import VectorIndex

DIM = 8
BACKENDS = ("edge", "server")


def make_index(backend: str, path: Path, dim: int = DIM) -> VectorIndex:
    if backend == "edge":
        from storage.vector.edge import EdgeIndex

        return EdgeIndex(path, dim=dim)
    from storage.vector.server import ServerIndex

    return ServerIndex(path=path, dim=dim)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "qdrant"


@pytest.fixture
def open_store(backend: str, store_path: Path) -> Iterator[Callable[..., VectorIndex]]:
    """Opens the backend at store_path (closing whatever it opened at teardown)."""
    opened: list[VectorIndex] = []

    def _open(dim: int = DIM) -> VectorIndex:
        index = make_index(backend, store_path, dim)
        opened.append(index)
        return index

    yield _open
    for index in opened:
        index.close()


@pytest.fixture
def index(open_store: Callable[..., VectorIndex]) -> VectorIndex:
    return open_store()
