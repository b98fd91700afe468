"""Building the embedded store's HNSW index without stalling its owner.

``EdgeShard.optimize()`` holds the GIL for its whole run (measured: a ticker
thread of the same process did not tick once in a 45-s build of 20 000 points),
so the process that owns the store cannot build its own index while it runs
steps. The build therefore happens in a child process, on a copy:

1. the owner exports the collection's points (scroll with vectors, a page of
   ``EXPORT_PAGE`` points at a time, yielding the GIL between pages) into a file
   in ``<store>/.build/``, and from then on logs every write to the collection;
2. a child (``python -m storage.vector.edge_build``, niced, one indexing thread)
   creates a fresh shard from that file and optimizes it: the HNSW graph is built
   in the child's own process and GIL;
3. the owner adopts the built shard (``EdgeIndex.adopt``): it replays the logged
   writes onto it, points ``<store>/<collection>.current`` at it and swaps it in.

Only the owner ever opens the live store (it holds the store lock throughout);
the child only opens its own new shard under ``.build/``, which nobody else
uses until it is adopted. A crash at any point leaves the previous shard current
and a leftover ``.build/`` directory that the next owner removes.
"""

from __future__ import annotations

import argparse
import array
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from storage.vector.base import COLLECTIONS
from storage.vector.edge_layout import BUILD_DIR, ensure_field_indexes

log = logging.getLogger("memq.vector")

EXPORT_PAGE = 256  # points per scroll page: one page holds the GIL for a few ms at most
MIN_UNINDEXED = 20_000  # unindexed points in a collection that make a build worth it
CHECK_EVERY_S = 30.0
HNSW_M = 16
HNSW_EF_CONSTRUCT = 100
FULL_SCAN_THRESHOLD_KB = 10_000


# -- export (the owner's side) -------------------------------------------------------


def _vector_of(record: Any) -> list[float]:
    vec = record.vector
    if isinstance(vec, dict):
        vec = vec.get("")
    return list(vec or [])


def export_points(shard: Any, out: Path, page: int = EXPORT_PAGE, stop: threading.Event | None = None) -> int:
    """Write every point of ``shard`` to ``out``; returns how many.

    Format: per page one JSON line ``{"ids": [...], "payloads": [...], "n": k}``
    followed by ``k * dim`` little float32 values.
    """
    import qdrant_edge as qe

    count = 0
    offset = None
    with open(out, "wb") as f:
        while True:
            records, offset = shard.scroll(
                qe.ScrollRequest(offset=offset, limit=page, with_payload=True, with_vector=True)
            )
            if records:
                vectors = array.array("f")
                for r in records:
                    vectors.extend(_vector_of(r))
                head = {"ids": [str(r.id) for r in records], "payloads": [r.payload or {} for r in records],
                        "n": len(records)}
                f.write(json.dumps(head).encode() + b"\n")
                f.write(vectors.tobytes())
                count += len(records)
            if offset is None:
                return count
            if stop is not None and stop.is_set():
                raise RuntimeError("the index build was stopped")
            time.sleep(0)  # let the step threads have the GIL between pages


def read_export(path: Path, dim: int) -> Any:
    """Yield (ids, vectors, payloads) per exported page."""
    with open(path, "rb") as f:
        while True:
            line = f.readline()
            if not line:
                return
            head = json.loads(line)
            n = head["n"]
            flat = array.array("f")
            flat.frombytes(f.read(n * dim * 4))
            values = flat.tolist()
            yield head["ids"], [values[i * dim : (i + 1) * dim] for i in range(n)], head["payloads"]


# -- build (the child's side) --------------------------------------------------------


def build_config(qe: Any, dim: int, indexing_threshold_kb: int | None) -> Any:
    optimizers = None
    if indexing_threshold_kb is not None:
        optimizers = qe.EdgeOptimizersConfig(indexing_threshold=indexing_threshold_kb)
    return qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
        hnsw_config=qe.HnswIndexConfig(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT,
                                       full_scan_threshold=FULL_SCAN_THRESHOLD_KB, max_indexing_threads=1),
        optimizers=optimizers,
    )


def build_shard(export: Path, dest: Path, dim: int, indexing_threshold_kb: int | None = None) -> dict[str, int]:
    """Create a shard at ``dest`` from an export and build its index (blocking)."""
    import qdrant_edge as qe

    shard = qe.EdgeShard.create(str(dest), build_config(qe, dim, indexing_threshold_kb))
    try:
        ensure_field_indexes(qe, shard)
        for ids, vectors, payloads in read_export(export, dim):
            shard.update(qe.UpdateOperation.upsert_points(
                [qe.Point(uuid.UUID(i), v, p) for i, v, p in zip(ids, vectors, payloads)]))
        shard.optimize()
        shard.flush()
        info = shard.info()
        return {"points": info.points_count, "indexed_vectors": info.indexed_vectors_count,
                "segments": info.segments_count}
    finally:
        shard.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="build an HNSW-indexed qdrant-edge shard from an export")
    ap.add_argument("export", type=Path)
    ap.add_argument("dest", type=Path)
    ap.add_argument("--dim", type=int, required=True)
    ap.add_argument("--indexing-threshold-kb", type=int, default=None)
    ap.add_argument("--nice", type=int, default=10)
    args = ap.parse_args(argv)
    if args.nice:
        os.nice(args.nice)  # the owner's steps come first on a busy box
    info = build_shard(args.export, args.dest, args.dim, args.indexing_threshold_kb)
    print(json.dumps(info), flush=True)
    return 0


# -- the owner's builder thread ------------------------------------------------------


class IndexBuilder:
    """Watches the owner's collections and rebuilds an index in a child when it lags.

    A collection is rebuilt when at least ``min_unindexed`` of its points are
    outside an HNSW graph and its point count changed since its last build.
    ``build(name)`` runs one build synchronously (tests, benchmarks, reindex).
    """

    def __init__(self, index: Any, *, min_unindexed: int = MIN_UNINDEXED, check_every_s: float = CHECK_EVERY_S,
                 indexing_threshold_kb: int | None = None) -> None:
        self.index = index
        self.min_unindexed = min_unindexed
        self.check_every_s = check_every_s
        self.indexing_threshold_kb = indexing_threshold_kb
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._built_points: dict[str, int] = {}
        self.builds: list[dict[str, Any]] = []  # one record per finished build, newest last

    def start(self) -> "IndexBuilder":
        self._thread = threading.Thread(target=self._loop, name="memq-vector-index", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.kill()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stop.wait(self.check_every_s):
            self.index.close_retired()
            for name in COLLECTIONS:
                if self._stop.is_set():
                    return
                try:
                    if self.due(name):
                        self.build(name)
                except Exception:  # a failed build leaves the current shard as it was
                    log.warning("building the %s index failed; will retry", name, exc_info=True)

    def due(self, name: str) -> bool:
        stats = self.index.collection_info(name)
        unindexed = stats["points"] - stats["indexed_vectors"]
        return unindexed >= self.min_unindexed and stats["points"] != self._built_points.get(name)

    def build(self, name: str) -> dict[str, Any]:
        """Export, build in a child, adopt. Raises on failure (the live shard is untouched)."""
        work = self.index.path / BUILD_DIR / f"{name}-{uuid.uuid4().hex[:8]}"
        work.mkdir(parents=True)
        export, dest = work / "points.bin", work / "shard"
        t0 = time.perf_counter()
        try:
            self.index.begin_log(name)
            exported = export_points(self.index.live_shard(name), export, stop=self._stop)
            t_export = time.perf_counter() - t0
            cmd = [sys.executable, "-m", "storage.vector.edge_build", str(export), str(dest),
                   "--dim", str(self.index.dim)]
            if self.indexing_threshold_kb is not None:
                cmd += ["--indexing-threshold-kb", str(self.indexing_threshold_kb)]
            repo = str(Path(__file__).resolve().parents[2])
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
            if self._stop.is_set():
                raise RuntimeError("the index build was stopped")
            self._child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            out, err = self._child.communicate()
            if self._child.returncode != 0:
                tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise RuntimeError(f"index build child exited {self._child.returncode}: {tail[0]}")
            built = json.loads(out.decode().strip().splitlines()[-1])
            t_child = time.perf_counter() - t0 - t_export
            export.unlink()
            t_adopt = time.perf_counter()
            replayed = self.index.adopt(name, dest)
            t_adopt = time.perf_counter() - t_adopt
        except BaseException:
            self.index.end_log(name)
            shutil.rmtree(work, ignore_errors=True)
            raise
        finally:
            self._child = None
        shutil.rmtree(work, ignore_errors=True)
        self._built_points[name] = self.index.collection_info(name)["points"]
        record = {"collection": name, "exported": exported, **built, "replayed_writes": replayed,
                  "export_s": round(t_export, 2), "child_s": round(t_child, 2), "adopt_s": round(t_adopt, 3),
                  "total_s": round(time.perf_counter() - t0, 2)}
        self.builds.append(record)
        log.info("built the %s index: %s", name, record)
        return record


if __name__ == "__main__":
    sys.exit(main())
