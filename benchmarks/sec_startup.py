"""Section 4, start-up: the CLI's wall time and imports, the worker's readiness and memory."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from benchmarks.env import median
from benchmarks.harness import Bench
from benchmarks.sec_cli import cli_commands
from benchmarks.sec_baselines import bare_baseline

# Issue 17: a worker imports what a step needs, no more.
RSS_IDLE_TARGET_MB = 200
RSS_LOADED_TARGET_MB = 250


def heaviest_imports(b: Bench, cmd: list[str], top: int = 8,
                     env: dict[str, str] | None = None) -> list[tuple[str, float]]:
    """Packages a command imports, by the sum of their modules' own import time (-X importtime)."""
    env = dict(env or b.memq_env, PYTHONPROFILEIMPORTTIME="1")
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    totals: Counter[str] = Counter()
    for line in p.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        try:
            self_us = int(parts[0].split(":")[1].strip())
        except (ValueError, IndexError):
            continue
        totals[parts[2].strip().split(".")[0]] += self_us / 1000
    return totals.most_common(top)


def startup(b: Bench) -> dict[str, Any]:
    memq = b.memq_cli()
    py = [b.time_cmd([sys.executable, "-c", "pass"])[0] * 1000 for _ in range(5)]
    helps = [b.time_cmd(memq + ["--help"])[0] * 1000 for _ in range(5)]
    agent = b.new_agent("bench-cli")
    sends = []
    for i in range(5):
        dt, stdout = b.time_cmd(memq + ["send", agent.id, f"cli message {i}", "--json"], env=b.memq_env)
        doc = json.loads(stdout)
        if doc.get("status") not in ("queued", "running", "done"):
            raise RuntimeError(f"memq send answered {doc}")
        sends.append(dt * 1000)
    imports = heaviest_imports(b, memq + ["send", agent.id, "import-time probe", "--json"])
    inproc = []
    for i in range(20):
        t = time.perf_counter()
        b.client.send(agent.id, f"in-process message {i}")
        inproc.append((time.perf_counter() - t) * 1000)
    cli = cli_commands(b, runs=5 if b.quick else 7)
    bare = bare_baseline(b, events=True)
    wf = b.worker_facts
    S = "4 start-up"
    b.add(S, "`memq --help` wall (median of 5)", median(helps), "ms", "`python -c pass`", median(py))
    b.add(S, "`memq send ID TEXT --json` (no wait), median of 5", median(sends), "ms",
          "Client.send in-process, median of 20", median(inproc),
          "imports: " + ", ".join(f"{name} {ms:.0f} ms" for name, ms in imports[:5]))
    b.add(S, "worker ready (spawn → \" ready.\")", wf["ready_s"], "s", "bare Celery worker, same pool",
          bare["ready_s"])
    b.add(S, "worker's first step after \" ready.\"", wf["first_step_s"] * 1000, "ms",
          "warm single step (median)", wf["warm_step_s"] * 1000)
    b.add(S, "worker RSS idle, before the first step", wf["rss_ready_mb"], "MiB", "bare Celery worker idle",
          bare["rss_ready_mb"], f"target ≤ {RSS_IDLE_TARGET_MB} MiB")
    b.add(S, "worker RSS idle, after warm-up (LLM route and tokenizer loaded)", wf["rss_warm_mb"], "MiB",
          "bare Celery worker after 600 hops", bare["rss_after_mb"], f"target ≤ {RSS_IDLE_TARGET_MB} MiB")
    load_key = next((k for k in wf if k.startswith("rss_after_") and k.endswith("_mb")), None)
    if load_key:
        b.add(S, f"worker RSS after the {wf['rss_after_load_agents']}-agent load", wf[load_key], "MiB",
              "same worker idle, after warm-up", wf["rss_warm_mb"],
              f"bare Celery worker {bare['rss_after_mb']:.0f} MiB; target ≤ {RSS_LOADED_TARGET_MB} MiB "
              "after 500 agents (the full run's throughput section)")
    return {
        "python_c_pass_ms": median(py),
        "memq_help_ms": median(helps),
        "memq_help_ms_runs": helps,
        "memq_send_ms": median(sends),
        "memq_send_ms_runs": sends,
        "client_send_inprocess_ms": median(inproc),
        "memq_send_imports_ms": dict(imports),
        "cli_commands": cli,
        "worker": dict(wf),
        "bare_worker": {k: bare[k] for k in ("ready_s", "rss_ready_mb", "rss_after_mb")},
    }
