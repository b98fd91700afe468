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

STEP_EVERY_S = 0.05  # the stream's pace: 20 runs/s, well below what one process sustains


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))] if s else float("nan")


def step_stream(c: Any, agents: list[str], until: Callable[[], bool], max_steps: int,
                every_s: float = STEP_EVERY_S) -> list[tuple[float, float]]:
    """A steady stream: one message every ``every_s`` round-robin to ``agents``, each run waited
    for; (start, end) perf_counter seconds per run."""
    out: list[tuple[float, float]] = []
    k = 0
    next_at = time.perf_counter()
    while not until() and len(out) < max_steps:
        time.sleep(max(0.0, next_at - time.perf_counter()))
        next_at += every_s
        t0 = time.perf_counter()
        view = c.send(agents[k % len(agents)], f"ping {k}", wait=True, timeout_s=60)
        out.append((t0, time.perf_counter()))
        if view.status != "done":
            raise RuntimeError(f"a stream step ended {view.status}")
        k += 1
    return out


def ms(runs: list[tuple[float, float]]) -> list[float]:
    return [(b - a) * 1000 for a, b in runs]


def within(runs: list[tuple[float, float]], windows: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [r for r in runs if any(w0 <= r[0] and r[1] <= w1 for w0, w1 in windows)]


def alternate_child(builder: Any, done: threading.Event, window_s: float,
                    windows: dict[str, list[tuple[float, float]]]) -> None:
    """While the build's child runs, let it run ``window_s``, then hold it (SIGSTOP) ``window_s``,
    and so on: steps in 'held' windows are the same-time baseline of steps in 'building' ones."""
    import signal

    running = True
    while not done.is_set():
        child = builder._child
        if child is None or child.poll() is not None:
            time.sleep(0.05)
            continue
        t0 = time.perf_counter()
        done.wait(window_s)
        windows["building" if running else "held"].append((t0, time.perf_counter()))
        running = not running
        try:
            os.kill(child.pid, signal.SIGCONT if running else signal.SIGSTOP)
        except ProcessLookupError:
            pass
    child = builder._child
    if child is not None:
        try:
            os.kill(child.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def summary(values_ms: list[float]) -> dict[str, float]:
    return {"n": len(values_ms), "p50_ms": round(pct(values_ms, 0.5), 2), "p95_ms": round(pct(values_ms, 0.95), 2),
            "mean_ms": round(statistics.mean(values_ms), 2) if values_ms else float("nan")}


def timed_searches(fn: Callable[[Any], Any], items: list[Any]) -> list[float]:
    out = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def build_during_steps(c: Any, index: Any, collection: str, stream_agents: list[str], baseline_steps: int,
                       window_s: float = 10.0) -> dict:
    """A steady step stream before, during and after the index build; during it the child
    alternates between building and held, so both halves see the same background load."""
    from storage.vector.edge_build import IndexBuilder

    before = step_stream(c, stream_agents, lambda: False, baseline_steps)
    cpu0 = os.times()
    done = threading.Event()
    result: dict[str, Any] = {}
    builder = IndexBuilder(index)
    windows: dict[str, list[tuple[float, float]]] = {"building": [], "held": []}

    def build() -> None:
        try:
            result["build"] = builder.build(collection)
        except Exception as exc:  # reported, not raised: the figures say what happened
            result["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            done.set()

    ticks: list[float] = []

    def tick() -> None:
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.01)

    threads = [threading.Thread(target=build, name="bench-build"), threading.Thread(target=tick, name="bench-tick"),
               threading.Thread(target=alternate_child, args=(builder, done, window_s, windows), name="bench-alt")]
    t_build = time.perf_counter()
    for t in threads:
        t.start()
    during = step_stream(c, stream_agents, done.is_set, 1_000_000)
    for t in threads:
        t.join()
    cpu1 = os.times()
    after = step_stream(c, stream_agents, lambda: False, baseline_steps)
    gaps = [(b - a, a - t_build) for a, b in zip(ticks, ticks[1:])] or [(0.0, 0.0)]
    worst = max(gaps)
    return {
        "steps_before_build": summary(ms(before)), "steps_during_build": summary(ms(during)),
        "steps_child_building": summary(ms(within(during, windows["building"]))),
        "steps_child_held": summary(ms(within(during, windows["held"]))),
        "steps_after_build": summary(ms(after)), "build": result.get("build"), "build_error": result.get("error"),
        "window_s": window_s,
        "owner_cpu_during_build_s": round((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system), 2),
        "child_cpu_s": round((cpu1.children_user + cpu1.children_system)
                             - (cpu0.children_user + cpu0.children_system), 2),
        "owner_thread_max_stall_ms": round(worst[0] * 1000, 1),
        "owner_thread_max_stall_at_s": round(worst[1], 2),  # after the build began (export, child, adopt)
    }
