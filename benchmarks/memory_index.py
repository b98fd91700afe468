"""Archival search before and after the embedded store's HNSW build, and the step
latency of other agents while that build runs (part of ``python -m benchmarks.memory``).

The build is the one the owner runs on its own (storage/vector/edge_build.py): export
of the shard, a niced child process that builds the graph, adoption with the writes
made meanwhile replayed. Steps of other agents run through the same process (the
embedded Client owns the store) against the 0-ms scripted LLM: one stream before the
build (baseline), the same stream during it, and again after it.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from typing import Any, Callable


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))] if s else float("nan")


def step_stream(c: Any, agents: list[str], until: Callable[[], bool], max_steps: int) -> list[float]:
    """Send one message at a time round-robin to ``agents`` and wait for each run; ms per run."""
    out: list[float] = []
    k = 0
    while not until() and len(out) < max_steps:
        t0 = time.perf_counter()
        view = c.send(agents[k % len(agents)], f"ping {k}", wait=True, timeout_s=60)
        out.append((time.perf_counter() - t0) * 1000)
        if view.status != "done":
            raise RuntimeError(f"a stream step ended {view.status}")
        k += 1
    return out


def summary(ms: list[float]) -> dict[str, float]:
    return {"n": len(ms), "p50_ms": round(pct(ms, 0.5), 2), "p95_ms": round(pct(ms, 0.95), 2),
            "mean_ms": round(statistics.mean(ms), 2) if ms else float("nan")}


def timed_searches(fn: Callable[[Any], Any], items: list[Any]) -> list[float]:
    out = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def build_during_steps(c: Any, index: Any, collection: str, stream_agents: list[str], baseline_steps: int) -> dict:
    """Baseline step stream, then the same stream while the index builds; figures of both."""
    from storage.vector.edge_build import IndexBuilder

    before = step_stream(c, stream_agents, lambda: False, baseline_steps)
    cpu0 = os.times()
    done = threading.Event()
    result: dict[str, Any] = {}

    def build() -> None:
        try:
            result["build"] = IndexBuilder(index).build(collection)
        except Exception as exc:  # reported, not raised: the figures say what happened
            result["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            done.set()

    ticks: list[float] = []

    def tick() -> None:
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.01)

    threads = [threading.Thread(target=build, name="bench-build"), threading.Thread(target=tick, name="bench-tick")]
    for t in threads:
        t.start()
    during = step_stream(c, stream_agents, done.is_set, 1_000_000)
    for t in threads:
        t.join()
    cpu1 = os.times()
    after = step_stream(c, stream_agents, lambda: False, baseline_steps)
    gaps = [b - a for a, b in zip(ticks, ticks[1:])] or [0.0]
    return {
        "steps_before_build": summary(before), "steps_during_build": summary(during),
        "steps_after_build": summary(after), "build": result.get("build"), "build_error": result.get("error"),
        "owner_cpu_during_build_s": round((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system), 2),
        "child_cpu_s": round((cpu1.children_user + cpu1.children_system)
                             - (cpu0.children_user + cpu0.children_system), 2),
        "owner_thread_max_stall_ms": round(max(gaps) * 1000, 1),
    }
