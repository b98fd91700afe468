"""Benchmark the vector index: edge (qdrant-edge-py) vs qdrant-client local mode.

    python -m storage.vector.bench --points 100000 [--baseline-points 5000]
        [--agents 100] [--dim 384] [--queries 200] [--optimize]

Both backends go through the VectorIndex interface (so the numbers include
memq's own layer), each in a child process of its own so peak RSS is per
backend. Vectors are random unit vectors; each query is a top-5 search filtered
by one agent id, as every memq search is. qdrant-client's local mode is the
baseline on fewer points: it is pure Python and scans every point per query.

``--optimize`` also times ``EdgeIndex.optimize()`` (building the HNSW graph,
which blocks and holds the GIL) and searches again afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from storage.vector.base import RECALL, Point

UPSERT_CHUNK = 1000


def _vectors(n: int, dim: int, seed: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def _percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(round(q * (len(sorted_ms) - 1))))]


def _search_latencies(index: Any, agents: int, dim: int, queries: int, seed: int) -> dict[str, float]:
    qs = _vectors(queries, dim, seed).tolist()
    lat = []
    for k, q in enumerate(qs):
        agent = f"agent-{k % agents}"
        t = time.perf_counter()
        hits = index.search(RECALL, agent, q, limit=5)
        lat.append((time.perf_counter() - t) * 1000)
        if len(hits) != 5 or any(h.payload["agent_id"] != agent for h in hits):
            raise AssertionError(f"bad result for {agent}: {hits}")
    lat.sort()
    return {"p50_ms": _percentile(lat, 0.5), "p95_ms": _percentile(lat, 0.95)}


def run_one(backend: str, points: int, agents: int, dim: int, queries: int, optimize: bool) -> dict:
    """Runs in a child process: build one index, time it, print one JSON line."""
    workdir = tempfile.mkdtemp(prefix=f"memq-bench-{backend}-")
    try:
        if backend == "edge":
            from storage.vector.edge import EdgeIndex

            index: Any = EdgeIndex(os.path.join(workdir, "store"), dim=dim)
        else:
            from storage.vector.server import ServerIndex

            index = ServerIndex(path=os.path.join(workdir, "store"), dim=dim)
        vectors = _vectors(points, dim, seed=1)
        out: dict[str, Any] = {"backend": backend, "points": points}
        t = time.perf_counter()
        for start in range(0, points, UPSERT_CHUNK):
            chunk = vectors[start : start + UPSERT_CHUNK].tolist()
            index.upsert(
                RECALL,
                [
                    Point(
                        start + j,
                        f"agent-{(start + j) % agents}",
                        v,
                        {"created_at_s": float(start + j), "kind": "user"},
                    )
                    for j, v in enumerate(chunk)
                ],
            )
        out["upsert_s"] = time.perf_counter() - t
        # Right after upsert, no optimize: what a step sees.
        out["search"] = _search_latencies(index, agents, dim, queries, seed=2)
        if optimize and backend == "edge":
            t = time.perf_counter()
            index.optimize()
            out["optimize_s"] = time.perf_counter() - t
            out["search_optimized"] = _search_latencies(index, agents, dim, queries, seed=3)
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        index.close()
        return out
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000, help="points in the edge index")
    ap.add_argument("--baseline-points", type=int, default=5_000,
                    help="points in the qdrant-client local-mode baseline (0 = skip)")
    ap.add_argument("--agents", type=int, default=100, help="agents the points are spread over")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--optimize", action="store_true",
                    help="also time EdgeIndex.optimize() (HNSW build) and search again")
    ap.add_argument("--child", choices=["edge", "local"], help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.child:
        n = a.points if a.child == "edge" else a.baseline_points
        result = run_one(a.child, n, a.agents, a.dim, a.queries, a.optimize)
        print(json.dumps(result), flush=True)
        return 0

    print(f"memq vector bench: dim={a.dim}, {a.agents} agents, {a.queries} top-5 searches "
          f"filtered by agent_id, {os.cpu_count()} CPUs", flush=True)
    rows = []
    for child in ("edge", "local"):
        if child == "local" and a.baseline_points <= 0:
            continue
        cmd = [sys.executable, "-m", "storage.vector.bench", "--child", child, *(argv or sys.argv[1:])]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{child}: failed\n{proc.stderr}", file=sys.stderr)
            return 1
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    header = f"{'backend':<28}{'points':>9}{'upsert s':>10}{'p50 ms':>10}{'p95 ms':>10}{'RSS MB':>9}"
    print(header)
    print("-" * len(header))
    names = {"edge": "qdrant-edge-py (EdgeIndex)", "local": "qdrant-client local mode"}
    for r in rows:
        s = r["search"]
        print(f"{names[r['backend']]:<28}{r['points']:>9}{r['upsert_s']:>10.2f}"
              f"{s['p50_ms']:>10.3f}{s['p95_ms']:>10.3f}{r['peak_rss_mb']:>9.0f}")
        if "optimize_s" in r:
            so = r["search_optimized"]
            print(f"{'  after optimize()':<28}{r['points']:>9}{'':>10}"
                  f"{so['p50_ms']:>10.3f}{so['p95_ms']:>10.3f}"
                  f"   (optimize took {r['optimize_s']:.1f} s, GIL held)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
