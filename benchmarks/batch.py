"""Batch benchmark: a 3 000-message JSONL batch over 300 agents at 200 ms LLM latency,
on one `memq worker` process (or, with --dedicated, a batch worker plus an
interactive one), with an interactive send timed in the middle.

    python -m benchmarks.batch [--agents 300] [--per-agent 10] [--latency-ms 200] [--dedicated] [--out FILE]

Printed beside its baselines from the same run: the ideal elapsed time (each
agent's messages one after another at the LLM's latency, all agents at once),
and the worker's own CPU per step times the steps (what one process can do).
"""

from __future__ import annotations

import argparse
import json
import time

from benchmarks.env import cpu_s, loadavg, machine
from benchmarks.harness import Bench


def run(agents: int, per_agent: int, latency_ms: int, dedicated: bool = False) -> dict:
    """dedicated: the main worker serves batch,schedule,ingest and a second one interactive."""
    bench = Bench(quick=True, worker_queues="batch,schedule,ingest" if dedicated else None,
                  extra_worker_queues=["interactive"] if dedicated else [])
    bench.start()
    try:
        bench.llm.set_latency(latency_ms)
        ids = [bench.new_agent("batch").id for _ in range(agents)]
        lines = [json.dumps({"id": f"{a}:{j}", "agent_id": a, "message": f"item {j}"})
                 for j in range(per_agent) for a in ids]
        interactive = bench.new_agent("interactive")
        cpu0 = cpu_s(bench.worker.pid)
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
        cpu = cpu_s(bench.worker.pid) - cpu0
        rows = bench.client.batch_results(batch_id)
        in_order = all(
            [r["message"] for r in rows if r["agent_id"] == a] == [f"item {j}" for j in range(per_agent)]
            for a in ids[:20]
        )
        return {
            "machine": machine(), "load_avg": loadavg(),
            "messages": len(lines), "agents": agents, "llm_latency_ms": latency_ms,
            "workers": "batch worker + interactive worker" if dedicated else "one worker, every queue",
            "statuses": status.counts, "per_agent_order_ok": in_order,
            "submit_s": submit_s, "elapsed_s": elapsed,
            "ideal_s": per_agent * latency_ms / 1000,
            "steps_per_s": len(lines) / elapsed,
            "worker_cpu_ms_per_step": cpu * 1000 / len(lines),
            "cpu_bound_s": cpu,
            "interactive_send_s": inter,
        }
    finally:
        bench.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=300)
    ap.add_argument("--per-agent", type=int, default=10)
    ap.add_argument("--latency-ms", type=int, default=200)
    ap.add_argument("--dedicated", action="store_true",
                    help="a second worker process for the interactive queue (README: dedicated workers)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    r = run(args.agents, args.per_agent, args.latency_ms, args.dedicated)
    print(f"batch: {r['messages']} messages over {r['agents']} agents, LLM {r['llm_latency_ms']} ms; {r['workers']}")
    print(f"  statuses {r['statuses']}; per-agent line order kept: {r['per_agent_order_ok']}")
    print(f"  submit (validate + enqueue): {r['submit_s']:.2f} s")
    print(f"  elapsed {r['elapsed_s']:.1f} s   vs ideal {r['ideal_s']:.1f} s "
          f"({r['elapsed_s'] / r['ideal_s']:.1f}x)   vs worker CPU used {r['cpu_bound_s']:.1f} s")
    print(f"  {r['steps_per_s']:.1f} steps/s; worker CPU {r['worker_cpu_ms_per_step']:.1f} ms/step")
    print(f"  an interactive send during the batch: {r['interactive_send_s'] * 1000:.0f} ms")
    print(f"  load average {r['load_avg']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(r, f, indent=2, default=str)


if __name__ == "__main__":
    main()
