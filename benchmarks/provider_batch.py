"""Provider-batch benchmark (issue 18): N agents x 3-step chains through the provider's batch
API (the scripted server's Files + Batches endpoints), beside the same chains on the normal
route in the same run, on one `memq worker` and one `memq beat`.

    python -m benchmarks.provider_batch [--agents 200] [--max-requests 1000] [--max-wait-s 1]

Prints: requests per uploaded batch, provider rounds per chain, the worker's CPU per step in
each mode (worker process tree, /proc), the cost ledger at the batch price against the
normal route's price for the same tokens (model openai/gpt-4o-mini, litellm's prices), and
the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
import tempfile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from benchmarks.env import loadavg, tree_cpu_s  # noqa: E402

MODEL = "openai/gpt-4o-mini"


def _env(llm_url: str, args: argparse.Namespace) -> dict[str, str]:
    from pb_stack import PB_SETTINGS

    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMQ_")}
    env.update(PB_SETTINGS)
    env.update({
        "MEMQ_LLM_MODEL": MODEL, "MEMQ_LLM_API_KEY": "bench-key", "MEMQ_LLM_API_BASE": llm_url,
        "MEMQ_LLM_TIMEOUT_S": "10", "MEMQ_MAX_CHAIN": "6", "MEMQ_CONTEXT_WINDOW": "8192",
        "MEMQ_HOME": tempfile.mkdtemp(prefix="memq-pb-bench-"),
        "MEMQ_PROVIDER_BATCH_MAX_REQUESTS": str(args.max_requests),
        "MEMQ_PROVIDER_BATCH_MAX_WAIT_S": str(args.max_wait_s),
        "MEMQ_PROVIDER_BATCH_POLL_S": "0.2", "MEMQ_PROVIDER_BATCH_POLL_MAX_S": "1",
        "MEMQ_RECONCILE_RERING_S": "30",
    })
    return env


def _phase(client, worker_pid: int, llm, agents: list, mode: str, timeout_s: float) -> dict:
    from pb_stack import chain_script, wait_runs

    cpu0, t0 = tree_cpu_s(worker_pid), time.perf_counter()
    runs = []
    for i, agent in enumerate(agents):
        llm.script(agent.id, *chain_script(i))
    lines = [json.dumps({"agent_id": a.id, "message": f"task {i}"}) for i, a in enumerate(agents)]
    batch_id = client.submit_batch(lines, llm_mode=mode)["batch_id"]
    runs = [r["run_id"] for r in client.batch_results(batch_id)]
    views = wait_runs(client, runs, timeout_s)
    elapsed, cpu = time.perf_counter() - t0, tree_cpu_s(worker_pid) - cpu0
    status = client.batch_status(batch_id)
    steps = sum(v.steps for v in views)
    return {"mode": mode, "runs_done": sum(v.status == "done" for v in views), "steps": steps,
            "elapsed_s": round(elapsed, 2), "worker_cpu_ms_per_step": round(cpu * 1000 / max(steps, 1), 2),
            "prompt_tokens": status.prompt_tokens, "completion_tokens": status.completion_tokens,
            "cost_usd": status.cost_usd, "batch_id": batch_id, "status": status}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=200)
    ap.add_argument("--max-requests", type=int, default=1000)
    ap.add_argument("--max-wait-s", type=float, default=1.0)
    ap.add_argument("--timeout-s", type=float, default=600.0)
    args = ap.parse_args(argv)

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm
    from memq.client import Client
    from memq.settings import Settings
    from pb_stack import BeatProcess
    from scripted_llm import ScriptedLLM
    from stack import WorkerProcess, own_stack

    llm = ScriptedLLM().start()
    logs = Path(tempfile.mkdtemp(prefix="memq-pb-bench-logs-"))
    with own_stack(_env(llm.url, args), "memq_pb_bench") as env:
        worker = WorkerProcess(env, logs / "worker.log", "--concurrency", "100")
        beat = BeatProcess(env, logs / "beat.log", tick_s=0.2)
        worker.wait_ready()
        beat.wait_ready()
        client = Client.connect(Settings(**{k.removeprefix("MEMQ_").lower(): v for k, v in env.items()
                                            if k.startswith("MEMQ_")}))
        try:
            normal_agents = [client.create_agent(f"bench-normal-{i}") for i in range(args.agents)]
            batch_agents = [client.create_agent(f"bench-batch-{i}") for i in range(args.agents)]
            normal = _phase(client, worker.proc.pid, llm, normal_agents, "normal", args.timeout_s)
            sizes0 = len(llm.batch_stats()["sizes"])
            batched = _phase(client, worker.proc.pid, llm, batch_agents, "provider_batch", args.timeout_s)
            sizes = llm.batch_stats()["sizes"][sizes0:]
            summary = client.provider_batch_summary(batched["batch_id"])
            from storage.models import ParkedStep
            from sqlalchemy import func, select

            with client.rt.db.transaction() as s:
                sent = s.scalar(select(func.sum(ParkedStep.attempts)).where(
                    ParkedStep.batch_id == batched["batch_id"]))
        finally:
            client.close()
            beat.stop()
            worker.stop()
            llm.stop()
    list_price = sum(litellm.cost_per_token(model=MODEL, prompt_tokens=normal["prompt_tokens"],
                                            completion_tokens=normal["completion_tokens"]))
    out = {
        "agents": args.agents, "steps_per_chain": 3, "load_avg_1m": loadavg(),
        "requests_per_uploaded_batch": round(sum(sizes) / max(len(sizes), 1), 1), "uploaded_batches": len(sizes),
        "provider_rounds_per_chain": round((sent or 0) / args.agents, 2),
        "worker_cpu_ms_per_step": {"provider_batch": batched["worker_cpu_ms_per_step"],
                                   "normal": normal["worker_cpu_ms_per_step"]},
        "elapsed_s": {"provider_batch": batched["elapsed_s"], "normal": normal["elapsed_s"]},
        "runs_done": {"provider_batch": batched["runs_done"], "normal": normal["runs_done"]},
        "cost_usd": {"provider_batch_ledger": round(batched["cost_usd"], 6),
                     "same_steps_at_normal_price": round(summary["normal_cost_usd"], 6),
                     "normal_route_tokens_at_list_price": round(list_price, 6)},
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
