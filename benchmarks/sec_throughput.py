"""Section 2, in-flight throughput: many agents, one step each, a slow LLM."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from benchmarks.env import cpu_s, mean, rss_mb
from benchmarks.harness import FINISHED, WORKER_CONCURRENCY, Bench
from benchmarks.sec_common import profiled

THROUGHPUT_LATENCY_MS = 1000


def throughput(b: Bench) -> dict[str, Any]:
    from storage import repository as repo

    sizes = [10, 100] if b.quick else [10, 100, 500]
    b.llm.set_latency(THROUGHPUT_LATENCY_MS)
    out: dict[str, Any] = {"llm_latency_ms": THROUGHPUT_LATENCY_MS, "worker_concurrency": WORKER_CONCURRENCY}
    S = "2 throughput"
    try:
        for n in sizes:
            agents = [b.new_agent(f"bench-tp{n}") for _ in range(n)]
            run_ids = []
            # The messages are committed first, then all doorbells ring in a burst, so the
            # figure is the worker's, not the driver's send loop.
            with b.client.rt.db.transaction() as s:
                for a in agents:
                    run, _ = repo.enqueue_message(s, a.id, f"hello {a.name}",
                                                  max_chars=b.settings.max_message_chars)
                    run_ids.append(run.id)
            cpu0 = cpu_s(b.worker.pid) if b.worker else float("nan")
            with profiled(b, f"throughput{n}"):
                t0 = time.perf_counter()
                for a in agents:
                    b.client.doorbell.ring(a.id, "interactive")
                ring_s = time.perf_counter() - t0
                deadline = time.monotonic() + 180
                while True:
                    done = b.db.query(
                        "SELECT count(*) FROM runs WHERE id = ANY(%s) AND status = ANY(%s)",
                        (run_ids, list(FINISHED)),
                    )[0][0]
                    if done == n:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{n} agents: only {done} runs finished in 180 s")
                    time.sleep(0.01)
                elapsed = time.perf_counter() - t0
            worker_cpu_ms = (cpu_s(b.worker.pid) - cpu0) * 1000 if b.worker else float("nan")
            statuses = Counter(
                row[0] for row in b.db.query("SELECT status FROM runs WHERE id = ANY(%s)", (run_ids,))
            )
            j = b.journal(run_ids=run_ids)
            steps = len(j)
            first_start = min(x["started_s"] for x in j)
            last_start = max(x["started_s"] for x in j)
            res = {
                "agents": n,
                "steps": steps,
                "elapsed_s": elapsed,
                "steps_per_s": steps / elapsed,
                "ideal_steps_per_s": n / (THROUGHPUT_LATENCY_MS / 1000),
                "ring_s": ring_s,
                "statuses": dict(statuses),
                "llm_latency_ms_mean": mean(x["llm_ms"] for x in j),
                "llm_latency_ms_max": max(x["llm_ms"] for x in j),
                "in_step_ms_mean": mean(x["in_step_ms"] for x in j),
                "step_start_spread_s": last_start - first_start,
                "llm_attempts_total": sum(x["llm_attempts"] for x in j),
                "worker_cpu_ms_per_step": worker_cpu_ms / max(1, steps),
                "worker_cpu_utilisation": worker_cpu_ms / 1000 / elapsed,
            }
            out[str(n)] = res
            note = (f"rings {ring_s * 1000:.0f} ms; LLM mean {res['llm_latency_ms_mean']:.0f} / max "
                    f"{res['llm_latency_ms_max']:.0f} ms; starts spread {res['step_start_spread_s']:.2f} s; "
                    f"worker CPU {res['worker_cpu_ms_per_step']:.1f} ms/step "
                    f"({100 * res['worker_cpu_utilisation']:.0f} % of a core)")
            if statuses.get("done", 0) != n:
                note += f"; statuses {dict(statuses)}"
            b.add(S, f"{n} agents × 1 step, {THROUGHPUT_LATENCY_MS}-ms LLM: steps/s", res["steps_per_s"],
                  "steps/s", f"ideal ({n} agents / 1 s)", res["ideal_steps_per_s"], note)
            b.add(S, f"{n} agents: elapsed (first ring → last run done)", elapsed, "s",
                  "ideal (one LLM latency)", THROUGHPUT_LATENCY_MS / 1000)
            if n == max(sizes) and b.worker is not None:
                time.sleep(0.3)
                b.worker_facts[f"rss_after_{n}_mb"] = rss_mb(b.worker.pid)
                b.worker_facts["rss_after_load_agents"] = n
    finally:
        b.llm.set_latency(0)
    return out
