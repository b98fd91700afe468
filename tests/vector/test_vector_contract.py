"""The VectorIndex contract, run against the edge backend and the server backend.

Every test here runs twice: on qdrant-edge-py (embedded, a tmp directory) and on
qdrant-client's local mode (the server code path, on small data).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from storage.vector import (
    ARCHIVAL,
    NAMESPACE,
    RECALL,
    DimensionMismatch,
    Point,
    VectorIndex,
    VectorIndexError,
    VectorStoreLocked,
    open_index,
    point_id,
)

DIM = 8
REPO = Path(__file__).resolve().parents[2]


def unit(*head: float) -> list[float]:
    v = list(head) + [0.0] * (DIM - len(head))
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def ranked(i: int) -> list[float]:
    """Vectors whose cosine to unit(1) strictly decreases with i."""
    return unit(1.0, 0.15 * i)


# -- ids ----------------------------------------------------------------------
def test_point_ids_are_deterministic_uuid5() -> None:
    assert point_id(RECALL, 7) == uuid.uuid5(NAMESPACE, "recall:7")
    assert point_id(RECALL, 7) == point_id("recall", 7)
    assert point_id(RECALL, 7) != point_id(ARCHIVAL, 7)
    # The namespace is part of the on-disk format: changing it orphans every index.
    assert str(NAMESPACE) == "6d656d71-7665-5c74-8f72-000000000001"


# -- the contract ---------------------------------------------------------------
def test_upsert_is_idempotent(index: VectorIndex) -> None:
    index.upsert(RECALL, [Point(1, "a", unit(1), {"text": "first"})])
    index.upsert(RECALL, [Point(1, "a", unit(1), {"text": "first"})])
    assert index.count(RECALL, "a") == 1
    # The same row again with a new payload replaces the point, still one.
    index.upsert(RECALL, [Point(1, "a", unit(0, 1), {"text": "edited"})])
    assert index.count(RECALL, "a") == 1
    [hit] = index.search(RECALL, "a", unit(0, 1), limit=5)
    assert hit.row_id == 1 and hit.payload["text"] == "edited"
    assert hit.score == pytest.approx(1.0, abs=1e-5)


def test_search_right_after_upsert(index: VectorIndex) -> None:
    index.upsert(ARCHIVAL, [Point(i, "a", ranked(i), {"text": f"p{i}"}) for i in range(20)])
    hits = index.search(ARCHIVAL, "a", unit(1), limit=3)
    assert [h.row_id for h in hits] == [0, 1, 2]
    assert hits[0].score >= hits[1].score >= hits[2].score
    assert hits[0].payload == {"text": "p0", "agent_id": "a", "row_id": 0}


def test_agents_are_isolated_even_with_identical_vectors(index: VectorIndex) -> None:
    same = unit(1, 2, 3)
    index.upsert(RECALL, [Point(1, "alice", same, {"text": "alice secret"})])
    index.upsert(RECALL, [Point(2, "bob", same, {"text": "bob secret"})])
    # A payload can't smuggle a point into another agent: Point.agent_id wins.
    index.upsert(RECALL, [Point(3, "alice", same, {"agent_id": "bob", "text": "alice 2"})])

    alice = index.search(RECALL, "alice", same, limit=10)
    bob = index.search(RECALL, "bob", same, limit=10)
    assert sorted(h.row_id for h in alice) == [1, 3]
    assert [h.row_id for h in bob] == [2]
    assert all(h.payload["agent_id"] == "alice" for h in alice)
    assert index.count(RECALL, "alice") == 2 and index.count(RECALL, "bob") == 1
    assert index.search(RECALL, "carol", same, limit=10) == []
    assert index.count(RECALL, "carol") == 0
    # Agent ids are exact keywords, not prefixes or patterns.
    assert index.search(RECALL, "ali", same, limit=10) == []
    assert index.search(ARCHIVAL, "alice", same, limit=10) == []


@pytest.mark.parametrize("agent_id", ["", "   ", None])
def test_there_is_no_search_without_an_agent(index: VectorIndex, agent_id) -> None:
    index.upsert(RECALL, [Point(1, "a", unit(1))])
    with pytest.raises(ValueError, match="agent_id"):
        index.search(RECALL, agent_id, unit(1), limit=5)
    with pytest.raises(ValueError, match="agent_id"):
        index.count(RECALL, agent_id)
    with pytest.raises(ValueError, match="agent_id"):
        index.delete_agent(RECALL, agent_id)
    with pytest.raises(ValueError, match="agent_id"):
        index.upsert(RECALL, [Point(2, agent_id, unit(1))])
    assert index.count(RECALL, "a") == 1


def test_paging_with_limit_and_offset(index: VectorIndex) -> None:
    index.upsert(RECALL, [Point(i, "a", ranked(i)) for i in range(12)])
    index.upsert(RECALL, [Point(100 + i, "b", ranked(i)) for i in range(12)])
    pages = [
        [h.row_id for h in index.search(RECALL, "a", unit(1), limit=5, offset=off)]
        for off in (0, 5, 10, 15)
    ]
    assert pages == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11], []]
    assert [h.row_id for h in index.search(RECALL, "a", unit(1), limit=2, offset=3)] == [3, 4]
    with pytest.raises(ValueError):
        index.search(RECALL, "a", unit(1), limit=0)
    with pytest.raises(ValueError):
        index.search(RECALL, "a", unit(1), limit=5, offset=-1)


def test_date_range_filter_is_half_open(index: VectorIndex) -> None:
    index.upsert(
        RECALL, [Point(i, "a", ranked(i), {"created_at_s": 1000.0 * i}) for i in range(8)]
    )
    index.upsert(RECALL, [Point(50, "b", ranked(0), {"created_at_s": 3000.0})])

    def rows(**kw) -> list[int]:
        return sorted(h.row_id for h in index.search(RECALL, "a", unit(1), limit=20, **kw))

    assert rows(created_from_s=2000, created_to_s=5000) == [2, 3, 4]
    assert rows(created_from_s=6000) == [6, 7]
    assert rows(created_to_s=1000) == [0]
    assert rows(created_from_s=1500.5, created_to_s=1999) == []
    assert rows() == list(range(8))
    # Paging applies within the range, best first.
    page = index.search(RECALL, "a", unit(1), limit=2, offset=1, created_from_s=2000)
    assert [h.row_id for h in page] == [3, 4]


def test_kind_filter(index: VectorIndex) -> None:
    index.upsert(ARCHIVAL, [Point(1, "a", ranked(1), {"kind": "passage"})])
    index.upsert(ARCHIVAL, [Point(2, "a", ranked(2), {"kind": "document"})])
    index.upsert(ARCHIVAL, [Point(3, "a", ranked(3))])
    assert [h.row_id for h in index.search(ARCHIVAL, "a", unit(1), 10, kind="document")] == [2]
    both = index.search(ARCHIVAL, "a", unit(1), 10, kind=["passage", "document"])
    assert [h.row_id for h in both] == [1, 2]


def test_delete_agent_and_delete_points(index: VectorIndex) -> None:
    index.upsert(RECALL, [Point(i, "a", ranked(i)) for i in range(5)])
    index.upsert(RECALL, [Point(10 + i, "b", ranked(i)) for i in range(3)])
    index.upsert(ARCHIVAL, [Point(1, "a", ranked(1))])

    index.delete_points(RECALL, [1, 3, 999])  # a missing id is no error
    assert sorted(h.row_id for h in index.search(RECALL, "a", unit(1), 10)) == [0, 2, 4]
    index.delete_points(RECALL, [])

    index.delete_agent(RECALL, "a")
    assert index.count(RECALL, "a") == 0
    assert index.search(RECALL, "a", unit(1), 10) == []
    assert index.count(RECALL, "b") == 3  # other agents untouched
    assert index.count(ARCHIVAL, "a") == 1  # and the other collection too
    index.delete_agent(RECALL, "nobody")


def test_count_and_collections_are_separate(index: VectorIndex) -> None:
    index.upsert(RECALL, [Point(i, "a", ranked(i)) for i in range(7)])
    index.upsert(ARCHIVAL, [Point(i, "a", ranked(i)) for i in range(3)])  # same row ids
    assert index.count(RECALL, "a") == 7
    assert index.count(ARCHIVAL, "a") == 3
    index.upsert(RECALL, [])
    assert index.count(RECALL, "a") == 7


def test_bad_input_gets_clear_errors(index: VectorIndex) -> None:
    with pytest.raises(ValueError, match="unknown collection"):
        index.upsert("messages", [Point(1, "a", unit(1))])
    with pytest.raises(ValueError, match="unknown collection"):
        index.search("passages", "a", unit(1), 5)
    with pytest.raises(DimensionMismatch, match="dim=8"):
        index.upsert(RECALL, [Point(1, "a", [1.0] * (DIM + 1))])
    with pytest.raises(DimensionMismatch):
        index.search(RECALL, "a", [1.0] * 3, 5)
    with pytest.raises(ValueError, match="NaN"):
        index.upsert(RECALL, [Point(1, "a", [float("nan")] * DIM)])
    assert index.count(RECALL, "a") == 0  # nothing half-written


def test_data_survives_close_and_reopen(open_store) -> None:
    first = open_store()
    first.upsert(RECALL, [Point(i, "a", ranked(i), {"text": str(i)}) for i in range(4)])
    first.close()
    first.close()  # idempotent
    with pytest.raises(VectorIndexError):
        first.count(RECALL, "a")
    again = open_store()
    assert again.count(RECALL, "a") == 4
    assert again.search(RECALL, "a", unit(1), 1)[0].payload["text"] == "0"


def test_reopen_with_another_dimension_fails_clearly(open_store) -> None:
    open_store().close()
    with pytest.raises(DimensionMismatch, match="MEMQ_EMBEDDING_DIM"):
        open_store(dim=DIM * 2)
    assert open_store().count(RECALL, "a") == 0  # the store itself is fine


def test_ensure_collections_is_idempotent(index: VectorIndex) -> None:
    index.upsert(RECALL, [Point(1, "a", unit(1))])
    index.ensure_collections(DIM)
    assert index.count(RECALL, "a") == 1
    with pytest.raises(DimensionMismatch):
        index.ensure_collections(DIM + 1)


# -- one process at a time ----------------------------------------------------
OPEN_IN_CHILD = textwrap.dedent(
    """
    import sys
    from storage.vector import VectorStoreLocked
    backend, path = sys.argv[1], sys.argv[2]
    try:
        if backend == "edge":
            from storage.vector.edge import EdgeIndex
            index = EdgeIndex(path, dim=8)
        else:
            from storage.vector.server import ServerIndex
            index = ServerIndex(path=path, dim=8)
    except VectorStoreLocked as exc:
        print(exc, file=sys.stderr)
        sys.exit(3)
    print(index.count("recall", "a"))
    index.close()
    """
)


def _open_in_child(backend: str, path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", OPEN_IN_CHILD, backend, str(path)],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
    )


def test_second_process_cannot_open_the_store(backend: str, open_store, store_path) -> None:
    index = open_store()
    index.upsert(RECALL, [Point(1, "a", unit(1))])

    child = _open_in_child(backend, store_path)
    assert child.returncode == 3, child.stderr
    assert "already open" in child.stderr and "one process" in child.stderr
    if backend == "edge":
        assert f"process {os.getpid()}" in child.stderr  # names the holder

    index.close()  # released: now another process may open it
    child = _open_in_child(backend, store_path)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "1"


def test_edge_store_refuses_a_second_opener_in_the_same_process(store_path: Path) -> None:
    from storage.vector.edge import EdgeIndex

    with EdgeIndex(store_path, dim=DIM) as index:
        with pytest.raises(VectorStoreLocked, match="already open"):
            EdgeIndex(store_path, dim=DIM)
        index.upsert(RECALL, [Point(1, "a", unit(1))])  # the first one is unharmed
        assert index.count(RECALL, "a") == 1
    with EdgeIndex(store_path, dim=DIM) as index:
        assert index.count(RECALL, "a") == 1


def test_edge_optimize_keeps_results(store_path: Path) -> None:
    from storage.vector.edge import EdgeIndex

    with EdgeIndex(store_path, dim=DIM) as index:
        index.upsert(RECALL, [Point(i, f"a{i % 3}", ranked(i // 3)) for i in range(60)])
        before = [h.row_id for h in index.search(RECALL, "a1", unit(1), 5)]
        index.delete_points(RECALL, [1])
        index.optimize()
        after = [h.row_id for h in index.search(RECALL, "a1", unit(1), 5)]
        assert before[0] == 1 and after == before[1:] + [16]
        assert index.info()[RECALL]["points"] == 59


# -- choosing the backend -------------------------------------------------------
def test_open_index_chooses_the_backend(tmp_path: Path, monkeypatch) -> None:
    from storage.vector import edge, server

    edge_index = open_index(None, str(tmp_path / "edge"), DIM)
    try:
        assert isinstance(edge_index, edge.EdgeIndex)
        assert isinstance(edge_index, VectorIndex)
        assert (tmp_path / "edge" / "recall").is_dir()
    finally:
        edge_index.close()

    seen = {}

    class FakeServer:
        def __init__(self, url, **kw):
            seen.update(url=url, **kw)

    monkeypatch.setattr(server, "ServerIndex", FakeServer)
    chosen = open_index("http://qdrant:6333", str(tmp_path / "ignored"), DIM, timeout_s=3)
    assert isinstance(chosen, FakeServer)
    assert seen == {"url": "http://qdrant:6333", "api_key": None, "timeout_s": 3, "dim": DIM}
    assert not (tmp_path / "ignored").exists()

    with pytest.raises(ValueError, match="MEMQ_QDRANT_URL or MEMQ_QDRANT_PATH"):
        open_index(None, None, DIM)


def test_server_backend_has_explicit_timeouts() -> None:
    from storage.vector.server import ServerIndex

    index = ServerIndex("http://127.0.0.1:9", timeout_s=2.4)  # nothing listens on port 9
    try:
        assert index.timeout_s == 2
        with pytest.raises(Exception):
            index.ensure_collections(DIM)  # refused at once, not hanging
    finally:
        index.close()


def test_importing_the_package_loads_no_backend() -> None:
    code = (
        "import sys, storage.vector, storage.embeddings;"
        "print(sorted(m for m in ('qdrant_client', 'qdrant_edge', 'litellm', 'torch')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_edge_store_is_not_usable_from_a_forked_child(store_path: Path) -> None:
    from storage.vector.edge import EdgeIndex

    with EdgeIndex(store_path, dim=DIM) as index:
        index.upsert(RECALL, [Point(1, "a", unit(1))])
        pid = os.fork()
        if pid == 0:  # child: must refuse, and must not unlock the parent's store
            code = 1
            try:
                index.count(RECALL, "a")
            except VectorIndexError as exc:
                code = 0 if "forked process" in str(exc) else 2
            index.close()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert index.count(RECALL, "a") == 1
        with pytest.raises(VectorStoreLocked):
            EdgeIndex(store_path, dim=DIM)  # still locked by this process
