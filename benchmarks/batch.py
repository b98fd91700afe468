"""Batch benchmark: a 3 000-message JSONL batch over 300 agents at 200 ms LLM latency,
on one `memq worker` (or, with --dedicated, a batch worker plus an interactive one),
with an interactive send timed in the middle.

    python -m benchmarks.batch [--agents 300] [--per-agent 10] [--latency-ms 200] [--dedicated]
                               [--processes 1,2] [--out FILE]

--processes 1,2 runs the batch once per entry, each on `memq worker --processes N`
(one supervised worker process per entry), in the same run, and prints the scaling
ratio of steps/s against the first entry.

Printed beside its baselines from the same run: the ideal elapsed time (each
agent's messages one after another at the LLM's latency, all agents at once),
and the worker's own CPU per step times the steps (what one process can do).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from benchmarks.env import box_cpu_s, loadavg, machine, tree_cpu_s
from benchmarks.harness import Bench


def run(agents: int, per_agent: int, latency_ms: int, dedicated: bool = False, processes: int = 1,
        broker_url: str | None = None, probes: tuple = (), database_via: str | None = None) -> dict:
    """dedicated: the main worker serves batch,schedule,ingest and a second one interactive.
    probes: objects with start(bench) and stop(bench, steps) -> dict, read around the batch."""
    bench = Bench(quick=True, worker_queues="batch,schedule,ingest" if dedicated else None,
                  extra_worker_queues=["interactive"] if dedicated else [], worker_processes=processes,
                  broker_url=broker_url, database_via=database_via)
    bench.start()
    try:
        bench.llm.set_latency(latency_ms)
        ids = [bench.new_agent("batch").id for _ in range(agents)]
        lines = [json.dumps({"id": f"{a}:{j}", "agent_id": a, "message": f"item {j}"})
                 for j in range(per_agent) for a in ids]
        interactive = bench.new_agent("interactive")
        for probe in probes:
            probe.start(bench)
        load0 = loadavg()
        cpu0, box0 = tree_cpu_s(bench.worker.pid), box_cpu_s()
        t0 = time.perf_counter()
        submitted = bench.client.submit_batch(lines)
        submit_s = time.perf_counter() - t0
        batch_id = submitted["batch_id"]
        inter = None
        while True:
            status = bench.client.batch_status(batch_id)
            done = sum(n for s, n in status.counts.items() if s != "queued" and s != "running")
            if inter is None and done >= len(lines) // 3:
                inter = bench.send_and_wait(interactive.id, "urgent", timeout_s=120).wall_s
            if status.finished:
                break
            time.sleep(0.1)
        elapsed = time.perf_counter() - t0
        cpu, box = tree_cpu_s(bench.worker.pid) - cpu0, box_cpu_s() - box0
        probed = {k: v for probe in probes for k, v in probe.stop(bench, len(lines) + 1).items()}
        # The workers' own span: first step started to last step finished (the submit excluded).
        span = bench.db.query("SELECT EXTRACT(EPOCH FROM max(s.finished_at) - min(s.started_at)) FROM steps s "
                              "JOIN runs r ON r.id = s.run_id WHERE r.batch_id = %s", (batch_id,))[0][0]
        rows = bench.client.batch_results(batch_id)
        in_order = all(
            [r["message"] for r in rows if r["agent_id"] == a] == [f"item {j}" for j in range(per_agent)]
            for a in ids[:20]
        )
        return {
            "machine": machine(), "load_avg": loadavg(), "load_avg_before": load0, "processes": processes,
            "messages": len(lines), "agents": agents, "llm_latency_ms": latency_ms,
            "workers": "batch worker + interactive worker" if dedicated else "one worker, every queue",
            "statuses": status.counts, "per_agent_order_ok": in_order,
            "submit_s": submit_s, "elapsed_s": elapsed,
            "ideal_s": per_agent * latency_ms / 1000,
            "steps_per_s": len(lines) / elapsed,
            "stepping_s": float(span), "stepping_steps_per_s": len(lines) / float(span),
            "worker_cpu_ms_per_step": cpu * 1000 / len(lines),
            "cpu_bound_s": cpu,
            # Everything the machine ran meanwhile (Postgres, Redis, the scripted LLM, this client):
            # against the cores × elapsed it had, the share left for more worker processes.
            "box_cpu_ms_per_step": box * 1000 / len(lines),
            "box_busy_share": box / (elapsed * (os.cpu_count() or 1)),
            "interactive_send_s": inter,
            **probed,
        }
    finally:
        bench.stop()


def report(r: dict) -> None:
    print(f"batch: {r['messages']} messages over {r['agents']} agents, LLM {r['llm_latency_ms']} ms; "
          f"{r['workers']}, {r['processes']} worker process(es)")
    print(f"  statuses {r['statuses']}; per-agent line order kept: {r['per_agent_order_ok']}")
    print(f"  submit (validate + enqueue): {r['submit_s']:.2f} s")
    print(f"  elapsed {r['elapsed_s']:.1f} s   vs ideal {r['ideal_s']:.1f} s "
          f"({r['elapsed_s'] / r['ideal_s']:.1f}x)   vs worker CPU used {r['cpu_bound_s']:.1f} s")
    print(f"  {r['steps_per_s']:.1f} steps/s; worker CPU {r['worker_cpu_ms_per_step']:.1f} ms/step; the whole "
          f"machine {r['box_cpu_ms_per_step']:.1f} ms/step, busy {r['box_busy_share'] * 100:.0f} % of its "
          f"{os.cpu_count()} cores (so at most {1000 * (os.cpu_count() or 1) / r['box_cpu_ms_per_step']:.0f} "
          "steps/s here at this cost)")
    print(f"  the workers' own span (first step started to last finished): {r['stepping_s']:.1f} s, "
          f"{r['stepping_steps_per_s']:.1f} steps/s")
    print(f"  an interactive send during the batch: {r['interactive_send_s'] * 1000:.0f} ms")
    print(f"  load average {r['load_avg_before']} before, {r['load_avg']} after")


def parse_processes(raw: str) -> list[int]:
    try:
        counts = [int(p) for p in raw.split(",") if p.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise SystemExit(f"--processes takes worker process counts like 1,2 (got {raw!r})")
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=300)
    ap.add_argument("--per-agent", type=int, default=10)
    ap.add_argument("--latency-ms", type=int, default=200)
    ap.add_argument("--dedicated", action="store_true",
                    help="a second worker process for the interactive queue (README: dedicated workers)")
    ap.add_argument("--processes", default="1", help="comma-separated --processes values, one batch each")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    results = []
    for n in parse_processes(args.processes):
        results.append(run(args.agents, args.per_agent, args.latency_ms, args.dedicated, processes=n))
        report(results[-1])
    first = results[0]
    for r in results[1:]:
        print(f"{r['processes']} processes vs {first['processes']}: {r['steps_per_s'] / first['steps_per_s']:.2f}x "
              f"the steps/s in all ({r['steps_per_s']:.1f} vs {first['steps_per_s']:.1f}), "
              f"{r['stepping_steps_per_s'] / first['stepping_steps_per_s']:.2f}x over the workers' own span "
              f"({r['stepping_steps_per_s']:.1f} vs {first['stepping_steps_per_s']:.1f})")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results if len(results) > 1 else results[0], f, indent=2, default=str)


if __name__ == "__main__":
    main()
