"""Section 4, start-up: each CLI command's wall time as a user runs it, beside `python -c pass`.

Server mode as in production: Postgres, Redis, the bench's `memq worker`, and an
embedding model (the scripted LLM's embeddings endpoint). The embedded vector
store is owned by a second worker started with the embedding settings (on the
`ingest` queue only, so the bench worker's figures are unchanged); CLI searches
hand their vector operation to it, as `memq archival search` does next to a
running worker. Runs are interleaved (every command once per round, the
baseline first) so a burst of load on the shared machine hits all of them alike.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from benchmarks.env import median, memq_worker
from benchmarks.harness import Bench

# targets from issue 15 §4
READ_TARGET_MS, SEND_TARGET_MS, SEARCH_TARGET_MS = 400, 500, 1000


def cli_env(b: Bench) -> dict[str, str]:
    return dict(b.memq_env, **{
        "MEMQ_EMBEDDING_MODEL": "openai/scripted-embed",
        "MEMQ_EMBEDDING_API_BASE": b.llm.url,
        "MEMQ_EMBEDDING_API_KEY": "bench-key-not-secret",
        "MEMQ_EMBEDDING_DIM": "384",
        "MEMQ_QDRANT_PATH": str(b.tmp / "qdrant-cli"),
    })


def commands(agent_id: str, batch_id: str) -> list[tuple[str, list[str], int]]:
    """(label, arguments after `memq`, target ms) of every timed command."""
    return [
        ("agent list", ["agent", "list"], READ_TARGET_MS),
        ("agent show", ["agent", "show", agent_id], READ_TARGET_MS),
        ("messages", ["messages", agent_id, "--limit", "20"], READ_TARGET_MS),
        ("memory show", ["memory", "show", agent_id], READ_TARGET_MS),
        ("schedule list", ["schedule", "list"], READ_TARGET_MS),
        ("batch status", ["batch", "status", batch_id], READ_TARGET_MS),
        ("send (queue only)", ["send", agent_id, "cli timing"], SEND_TARGET_MS),
        ("archival search", ["archival", "search", agent_id, "yellow trams"], SEARCH_TARGET_MS),
        ("recall search", ["recall", "search", agent_id, "capital city"], SEARCH_TARGET_MS),
    ]


def _prepare(b: Bench, env: dict[str, str]) -> tuple[str, str]:
    memq = b.memq_cli()
    agent = b.new_agent("bench-cli")
    for text in ("The capital of Portugal is Lisbon.", "Lisbon has yellow trams.", "Porto makes port wine."):
        b.send_and_wait(agent.id, text, timeout_s=60)
        b.time_cmd(memq + ["archival", "insert", agent.id, text], env=env)
    b.client.add_schedule(agent.id, "check in", every="1h")
    batch = b.client.submit_batch([json.dumps({"agent_id": agent.id, "message": "batch line"})])
    return agent.id, batch["batch_id"]


def cli_commands(b: Bench, runs: int) -> dict[str, Any]:
    """Median wall ms of each command over `runs` interleaved rounds, and what it imported."""
    from benchmarks.sec_startup import heaviest_imports

    env = cli_env(b)
    vectors = memq_worker(env, b.tmp / "worker-vectors.log", 20, "INFO", "ingest")
    try:
        vectors.wait_ready()
        agent_id, batch_id = _prepare(b, env)
        memq = b.memq_cli()
        table = commands(agent_id, batch_id)
        times: dict[str, list[float]] = {"python -c pass": []} | {label: [] for label, _, _ in table}
        for _, args, _ in table:  # one untimed run each: the OS page cache, not memq, is warmed
            b.time_cmd(memq + args + ["--json"], env=env)
        for _ in range(runs):
            times["python -c pass"].append(b.time_cmd([sys.executable, "-c", "pass"])[0] * 1000)
            for label, args, _ in table:
                times[label].append(b.time_cmd(memq + args + ["--json"], env=env)[0] * 1000)
        imports = {label: heaviest_imports(b, memq + args + ["--json"], env=env) for label, args, _ in table}
    finally:
        vectors.stop()
    base = median(times["python -c pass"])
    S = "4 start-up"
    for label, args, target in table:
        top = ", ".join(f"{name} {ms:.0f}" for name, ms in imports[label][:4])
        b.add(S, f"`memq {label}` --json, median of {runs}", median(times[label]), "ms", "`python -c pass`", base,
              f"target ≤ {target} ms; top imports (self ms): {top}")
    return {"runs_ms": times, "imports_ms": {k: dict(v) for k, v in imports.items()},
            "targets_ms": {label: target for label, _, target in table}}
