"""Section 6, as a client sees it: the 40-step heartbeat chain sent by a client, with an
embedding model configured so the worker's recall indexer embeds every message as it
goes (issue 17: ≤ 4× the bare hop, the gaps between steps included).

A worker of its own runs with the embedding settings (the scripted LLM's embeddings
endpoint; its own Redis db, so the bench worker takes none of its steps) on the bench's
database. Timed two ways: the Python client (send, then poll the run every 3 ms) from
the send to the finished run; and `memq send --wait --json` from start to exit, less the
same command's queue-only time (`memq send --json`), so the CLI's start-up is not counted
as steps.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.env import median, memq_worker, pick_redis_db
from benchmarks.harness import WORKER_CONCURRENCY, Bench
from benchmarks.sec_baselines import bare_baseline
from benchmarks.sec_cli import cli_env
from benchmarks.sec_common import CHAIN, HEARTBEAT_FOREVER

RUNS = 3


def client_chain(b: Bench) -> dict[str, Any]:
    from memq.client import Client
    from memq.settings import Settings

    b.llm.set_latency(0)
    env = dict(cli_env(b), MEMQ_BROKER_URL=pick_redis_db(), MEMQ_QDRANT_PATH=str(b.tmp / "qdrant-client"))
    worker = memq_worker(env, b.tmp / "worker-client.log", WORKER_CONCURRENCY)
    client = None
    try:
        worker.wait_ready()
        settings = Settings(**{k.removeprefix("MEMQ_").lower(): v for k, v in env.items() if k.startswith("MEMQ_")})
        client = Client.connect(settings)
        emb0 = b.llm.embedding_requests()
        py_ms = []
        for i in range(RUNS):
            agent = client.create_agent(f"bench-client-{i}-{time.time_ns()}", persona="p", human="h")
            b.llm.set_default(agent.id, HEARTBEAT_FOREVER)
            t0 = time.perf_counter()
            run = client.send(agent.id, "go")
            r = b.wait_run(run.run_id, t0, timeout_s=180, poll_s=0.003)
            if r.status != "chain_capped" or r.steps != CHAIN:
                raise RuntimeError(f"client chain ended {r.status} after {r.steps} steps:\n{worker.tail()}")
            py_ms.append(r.wall_s * 1000 / r.steps)
        cli_ms, queue_only_s, chain_s = _cli_chains(b, env, client)
        time.sleep(1.0)  # the indexer's last batch
        embedded = b.llm.embedding_requests() - emb0
    finally:
        if client is not None:
            client.close()
        worker.stop()
    bare = b.results.get("overhead", {}).get("bare") or {}
    bare_hop = (bare.get("events_off") or bare_baseline(b, events=False, repeats=2))["ms_per_hop"]
    S = "6 as a client sees it"
    b.add(S, f"ms/step, {CHAIN}-step chain, Python client send → finished (recall indexing on; median of "
          f"{RUNS})", median(py_ms), "ms", "bare Celery hop", bare_hop,
          f"runs: {', '.join(f'{x:.1f}' for x in py_ms)} ms; {embedded} embedding requests during the chains")
    b.add(S, f"ms/step, {CHAIN}-step chain, `memq send --wait --json` less its queue-only time", median(cli_ms),
          "ms", "bare Celery hop", bare_hop,
          f"CLI wall {median(chain_s):.2f} s − `memq send --json` {median(queue_only_s):.2f} s")
    return {"python_client_ms_per_step": py_ms, "cli_ms_per_step": cli_ms, "bare_hop_ms": bare_hop,
            "embedding_requests": embedded, "cli_chain_s": chain_s, "cli_queue_only_s": queue_only_s}


def _cli_chains(b: Bench, env: dict[str, str], client: Any) -> tuple[list[float], list[float], list[float]]:
    """Interleaved: the queue-only send (baseline) then the waited chain, RUNS times."""
    cli_ms, queue_only_s, chain_s = [], [], []
    for i in range(RUNS):
        idle = client.create_agent(f"bench-cli-idle-{i}-{time.time_ns()}", persona="p", human="h")
        b.llm.set_default(idle.id, {"tool": "send_message", "args": {"message": "ok"}})
        q_s, _ = b.time_cmd([*b.memq_cli(), "send", idle.id, "queued", "--json"], env=env)
        agent = client.create_agent(f"bench-cli-{i}-{time.time_ns()}", persona="p", human="h")
        b.llm.set_default(agent.id, HEARTBEAT_FOREVER)
        c_s, out = b.time_cmd([*b.memq_cli(), "send", agent.id, "go", "--wait", "--json", "--timeout", "50"],
                              env=env)
        if '"chain_capped"' not in out:
            raise RuntimeError(f"CLI chain did not finish as chain_capped: {out[-500:]}")
        queue_only_s.append(q_s)
        chain_s.append(c_s)
        cli_ms.append(max(0.0, c_s - q_s) * 1000 / CHAIN)
    return cli_ms, queue_only_s, chain_s
