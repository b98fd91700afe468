"""Section 1, step overhead: a 40-step heartbeat chain with a 0-ms LLM, against its baselines."""

from __future__ import annotations

from typing import Any

from benchmarks.env import cpu_s, mean, median, percentile
from benchmarks.harness import Bench
from benchmarks.sec_baselines import bare_baseline, llm_client_baseline, postgres_baseline
from benchmarks.sec_common import CHAIN, HEARTBEAT_FOREVER, profiled
from benchmarks.sec_inprocess import inprocess_chain


def overhead(b: Bench) -> dict[str, Any]:
    b.llm.set_latency(0)
    runs, rows = [], []
    last_agent = None
    cpu0 = cpu_s(b.worker.pid)
    with profiled(b, "overhead"):
        for _ in range(3):
            agent = b.new_agent("bench-overhead")
            b.llm.set_default(agent.id, HEARTBEAT_FOREVER)
            # Timed by the run's own timestamps (created → finished), so the driver can
            # poll slowly and leave both cores to the worker and Postgres.
            r = b.send_and_wait(agent.id, "go", timeout_s=180, poll_s=0.05)
            if r.status != "chain_capped" or r.steps != CHAIN:
                raise RuntimeError(f"overhead run ended {r.status} after {r.steps} steps "
                                   f"(expected chain_capped after {CHAIN}); worker log:\n{b.worker.tail()}")
            runs.append(r)
            rows.extend(b.journal(run_ids=[r.run_id]))
            last_agent = agent
    worker_cpu_ms = (cpu_s(b.worker.pid) - cpu0) * 1000 / sum(r.steps for r in runs)
    ms_per_step_runs = [r.db_span_s * 1000 / r.steps for r in runs]
    ms_per_step = median(ms_per_step_runs)
    wall_ms_per_step = median(r.wall_s * 1000 / r.steps for r in runs)
    in_step = mean(x["in_step_ms"] for x in rows)
    llm_ms = mean(x["llm_ms"] for x in rows)
    # Gap between one step's finished_at and the next step's started_at within a run:
    # commit + release + re-check + ring + broker hop + lease + load.
    gaps = []
    for r in runs:
        js = sorted((x for x in rows if x["run_id"] == r.run_id), key=lambda x: x["step_no"])
        gaps.extend((b2["started_s"] - a["finished_s"]) * 1000 for a, b2 in zip(js, js[1:]))
    # The longest step prompt of the chain (the last step's, ~120 messages).
    body = max((r for r in b.llm.requests(last_agent.id) if r.get("tools")), key=lambda r: len(r["messages"]))
    repeats = 2 if b.quick else 3
    # The headline baseline runs with memq's worker configuration (task events off);
    # a full run adds the events-on hop (what a worker watched by Flower pays) as contrast.
    bare = bare_baseline(b, events=False, repeats=repeats)
    nan = float("nan")
    bare_ev = ({"ms_per_hop": nan, "cpu_ms_per_hop": nan} if b.quick
               else bare_baseline(b, events=True, repeats=repeats))
    llmb = llm_client_baseline(b, body, reps=20 if b.quick else 50, sdk=not b.quick)
    pg = postgres_baseline(b, reps=100 if b.quick else 200)
    inproc = inprocess_chain(b)
    per = inproc["per_step"]
    # One commit per step waits for its WAL flush: the step's (the lease's commits asynchronously).
    db_floor = per["round_trips"] * pg["rtt_ms"] + max(0.0, pg["write_txn_ms"] - 3 * pg["rtt_ms"])

    S = "1 step overhead"
    b.add(S, f"ms/step, {CHAIN}-step heartbeat chain, 0-ms LLM (run created → finished; median of 3)",
          ms_per_step, "ms",
          "bare Celery hop (memq's conf: task events off)", bare["ms_per_hop"],
          f"runs: {', '.join(f'{x:.1f}' for x in ms_per_step_runs)} ms")
    if not b.quick:
        b.add(S, "ms/step (same runs)", ms_per_step, "ms", "bare Celery hop, task events on (contrast)",
              bare_ev["ms_per_hop"])
    b.add(S, "worker CPU per step (/proc utime+stime, all threads)", worker_cpu_ms, "ms",
          "bare Celery worker CPU per hop", bare["cpu_ms_per_hop"],
          "DESIGN I8: single-digit ms, LLM client included")
    b.add(S, "worker CPU per step (above)", worker_cpu_ms, "ms",
          "run_step in-process, CPU per step (no Celery)", inproc["cpu_ms_per_step"],
          "the difference is Celery's share: receive, ack, events, ring, logging; in-process CPU by phase: "
          + ", ".join(f"{k[2:]} {v:.2f}" for k, v in inproc["phases_cpu_ms"].items()) + " ms")
    b.add(S, "in-step time (journal finished_at − started_at), mean", in_step, "ms",
          "LLM latency in the step, mean", llm_ms,
          "in-step = compile + LLM call + tool; lease/load/commit/ring are outside")
    b.add(S, "LLM latency in the step (journal llm_latency_ms), mean", llm_ms, "ms",
          "LLMClient.complete in-process, median", llmb["llm_client_ms"],
          f"prompt grew to {max(x['prompt_messages'] for x in rows)} messages")
    b.add(S, "outside the step: ms/step − in-step", ms_per_step - in_step, "ms",
          "bare Celery hop", bare["ms_per_hop"],
          f"step→next-step gap p50 {percentile(gaps, 50):.1f} / p95 {percentile(gaps, 95):.1f} ms")
    b.add(S, "run_step called in-process (no Celery, no broker), ms/step", inproc["ms_per_step"], "ms",
          "memq worker ms/step (above)", ms_per_step,
          "phases: " + ", ".join(f"{k[2:]} {v:.1f}" for k, v in inproc["phases_ms"].items()) + " ms")
    pinged = f", {per.get('checkouts', 0):.0f} pre-pinged checkouts" if inproc["pool_pre_ping"] else ""
    b.add(S, "Postgres floor per step: round trips × RTT + 1 synchronous commit", db_floor, "ms",
          "run_step in-process ms/step", inproc["ms_per_step"],
          f"{per['round_trips']:.0f} round trips/step ({per.get('statements', 0):.0f} statements, "
          f"{per.get('transactions', 0) + per.get('pipelined_transactions', 0):.0f} transaction{pinged}); "
          f"RTT {pg['rtt_ms']:.2f} ms, "
          f"write txn {pg['write_txn_ms']:.2f} ms")
    b.add(S, f"LLMClient.complete, {llmb['prompt_messages']}-msg prompt, wall (median of {llmb['reps']})",
          llmb["llm_client_ms"], "ms", "httpx.Client.post (keep-alive), same body", llmb["httpx_client_ms"],
          f"route {llmb['route']}; {llmb['prompt_bytes'] / 1024:.0f} KiB body; one-shot httpx.post "
          f"{llmb['httpx_post_ms']:.1f} ms (new client + SSL context per call)")
    b.add(S, "LLMClient.complete, CPU of the calling process", llmb["llm_client_cpu_ms"], "ms",
          "httpx.Client.post (keep-alive), CPU", llmb["httpx_client_cpu_ms"])
    if llmb["litellm_openai_sdk_ms"] == llmb["litellm_openai_sdk_ms"]:  # not NaN: measured
        b.add(S, "litellm `openai/` route (OpenAI SDK), wall — contrast", llmb["litellm_openai_sdk_ms"], "ms",
              "memq's LLMClient route", llmb["llm_client_ms"], "what a step would pay on the SDK route")
    return {
        "chain": CHAIN,
        "runs": [r.__dict__ for r in runs],
        "memq_ms_per_step": ms_per_step,
        "memq_ms_per_step_runs": ms_per_step_runs,
        "memq_ms_per_step_driver_wall": wall_ms_per_step,
        "in_step_ms_mean": in_step,
        "llm_latency_ms_mean": llm_ms,
        "worker_cpu_ms_per_step": worker_cpu_ms,
        "bare_cpu_ms_per_hop": bare["cpu_ms_per_hop"],
        "outside_step_ms": ms_per_step - in_step,
        "gap_ms_p50": percentile(gaps, 50),
        "gap_ms_p95": percentile(gaps, 95),
        "prompt_messages_max": max(x["prompt_messages"] for x in rows),
        "bare_hop_ms": bare["ms_per_hop"],
        "bare_hop_ms_events_on": bare_ev["ms_per_hop"],
        "ratio": ms_per_step / bare["ms_per_hop"],
        "ratio_events_on": ms_per_step / bare_ev["ms_per_hop"],
        "bare": {"events_off": bare, "events_on": bare_ev},
        "llm_client": llmb,
        "postgres": pg,
        "inprocess": inproc,
        "db_floor_ms": db_floor,
        "llm_client_ms": llmb["llm_client_ms"],
        "httpx_ms": llmb["httpx_post_ms"],
        "httpx_keepalive_ms": llmb["httpx_client_ms"],
    }
