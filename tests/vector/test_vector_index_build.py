"""The embedded store builds its HNSW index in a child process while its owner keeps working.

Given an EdgeIndex holding enough points to index, when its IndexBuilder builds the
index (export, child process, adopt) while another thread writes, then the index is
built, no write made meanwhile is lost, the owner's other threads kept running (the
GIL was free), the store stayed locked to its one owner, and a reopen finds the built
shard. No Postgres or worker: the store is a tmp directory.
"""

from __future__ import annotations

import math
import random
import threading
import time
from pathlib import Path

import pytest

from storage.vector import ARCHIVAL, Point, VectorStoreLocked

DIM = 64
N = 8000  # enough that building in-process would stall the owner for over a second
AGENTS = ("agent-a", "agent-b")


def unit(rng: random.Random) -> list[float]:
    v = [rng.gauss(0, 1) for _ in range(DIM)]
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


@pytest.fixture
def filled(tmp_path: Path):
    from storage.vector.edge import EdgeIndex

    rng = random.Random(5)
    vectors = {i: unit(rng) for i in range(N)}
    index = EdgeIndex(tmp_path / "qdrant", dim=DIM)
    index.upsert(ARCHIVAL, [Point(i, AGENTS[i % 2], v, {"kind": "agent"}) for i, v in vectors.items()])
    yield index, vectors, tmp_path / "qdrant"
    index.close()


def top1(index, agent: str, vector: list[float]) -> int:
    return index.search(ARCHIVAL, agent, vector, 5)[0].row_id


def test_build_in_a_child_keeps_writes_and_the_gil(filled) -> None:
    from storage.vector.edge_build import IndexBuilder

    index, vectors, path = filled
    assert index.collection_info(ARCHIVAL)["indexed_vectors"] == 0
    builder = IndexBuilder(index, min_unindexed=1000, indexing_threshold_kb=100)
    assert builder.due(ARCHIVAL)

    # while the build runs: a ticker (GIL check) and a writer (new points, deletions)
    rng = random.Random(9)
    ticks: list[float] = []
    written: dict[int, list[float]] = {}
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.005)

    def write() -> None:
        k = 0
        while not stop.is_set():
            row = N + k
            written[row] = unit(rng)
            index.upsert(ARCHIVAL, [Point(row, AGENTS[row % 2], written[row], {"kind": "agent"})])
            index.delete_points(ARCHIVAL, [k])  # rows 0, 1, 2, ... go away meanwhile
            k += 1
            time.sleep(0.002)

    threads = [threading.Thread(target=tick), threading.Thread(target=write)]
    for t in threads:
        t.start()
    try:
        with pytest.raises(VectorStoreLocked):
            from storage.vector.edge import EdgeIndex

            EdgeIndex(path, dim=DIM)  # the owner still holds the store while it builds
        record = builder.build(ARCHIVAL)
    finally:
        stop.set()
        for t in threads:
            t.join()

    deleted = len(written)
    assert record["indexed_vectors"] > 0, record
    assert record["replayed_writes"] > 0, record
    info = index.collection_info(ARCHIVAL)
    assert info["indexed_vectors"] > 0
    assert info["points"] == N + len(written) - deleted
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert max(gaps) < 0.5, f"the owner's threads stalled for {max(gaps):.2f} s during the build"

    # every point written during the build is found; every deleted one is gone
    for row, v in list(written.items())[:: max(1, len(written) // 20)]:
        assert top1(index, AGENTS[row % 2], v) == row
    for row in range(deleted):
        assert index.search(ARCHIVAL, AGENTS[row % 2], vectors[row], 1)[0].row_id != row
    for row in range(deleted, N, 97):
        assert top1(index, AGENTS[row % 2], vectors[row]) == row
    assert index.count(ARCHIVAL, "agent-a") + index.count(ARCHIVAL, "agent-b") == info["points"]
    assert not builder.due(ARCHIVAL)  # nothing changed since: no second build

    # a reopen finds the built shard; nothing of the build is left behind
    index.close()
    from storage.vector.edge import EdgeIndex

    reopened = EdgeIndex(path, dim=DIM)
    try:
        assert reopened.collection_info(ARCHIVAL) == info
        assert not (path / ".build").exists()
        assert sorted(p.name for p in path.iterdir() if p.is_dir()) == sorted(
            ["recall", (path / "archival.current").read_text().strip()])
    finally:
        reopened.close()


def test_a_build_cut_short_leaves_the_store_as_it_was(filled) -> None:
    from storage.vector.edge import EdgeIndex
    from storage.vector.edge_build import IndexBuilder

    index, vectors, path = filled
    builder = IndexBuilder(index, min_unindexed=1000, indexing_threshold_kb=100)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            builder.build(ARCHIVAL)
        except BaseException as exc:  # noqa: BLE001 - the kill below
            failure.append(exc)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 30
    while builder._child is None and time.monotonic() < deadline:
        time.sleep(0.01)
    builder.stop()  # kills the child, as closing the store does
    t.join(30)
    assert failure and "exited" in str(failure[0])
    index.upsert(ARCHIVAL, [Point(N, "agent-a", vectors[1], {"kind": "agent"})])  # writes still go through
    assert index.collection_info(ARCHIVAL) == {"points": N + 1, "segments": 1, "indexed_vectors": 0}
    index.close()
    with EdgeIndex(path, dim=DIM) as again:
        assert again.count(ARCHIVAL, "agent-a") == N // 2 + 1
        assert not (path / ".build").exists()
        assert not (path / "archival.current").exists()


def test_the_owner_builds_on_its_own_once_enough_points_are_unindexed(filled) -> None:
    index, vectors, path = filled
    builder = index.start_index_builder(min_unindexed=1000, check_every_s=0.2, indexing_threshold_kb=100)
    assert index.start_index_builder() is builder  # one builder per open store
    deadline = time.monotonic() + 120
    while not builder.builds and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [b["collection"] for b in builder.builds] == [ARCHIVAL]  # recall is empty: not due
    assert index.collection_info(ARCHIVAL)["indexed_vectors"] > 0
    assert top1(index, "agent-b", vectors[7]) == 7
