"""The benchmark runs end to end and writes its JSON (no speed thresholds here).

`python -m benchmarks.run --quick --sections overhead` starts its own Postgres
database, Redis db, scripted LLM and `memq worker`, so this test needs only the
services that the rest of the suite needs.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Quick: ~30 s on an idle 2-core machine (worker start-up included).
pytestmark = pytest.mark.timeout(100)


def _positive(doc: dict, *keys: str) -> None:
    for key in keys:
        value = doc.get(key)
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, value)


def test_benchmark_quick_overhead_writes_results(tmp_path):
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMQ_")}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--sections", "overhead", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=95,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())

    assert doc["errors"] == {}
    assert doc["machine"]["nproc"] >= 1 and doc["machine"]["cpu_model"] and doc["machine"]["python"]
    overhead = doc["sections"]["overhead"]
    assert overhead["chain"] == 40 and all(r["steps"] == 40 for r in overhead["runs"])
    assert all(r["status"] == "chain_capped" for r in overhead["runs"])
    _positive(
        overhead,
        "memq_ms_per_step",
        "bare_hop_ms",
        "ratio",
        "in_step_ms_mean",
        "llm_latency_ms_mean",
        "llm_client_ms",
        "httpx_ms",
        "httpx_keepalive_ms",
        "worker_cpu_ms_per_step",
        "prompt_messages_max",
    )
    assert overhead["prompt_messages_max"] >= 100  # the prompt grew along the chain
    assert doc["rows"] and all(
        r["value"] is not None and r["baseline_value"] is not None for r in doc["rows"]
    )
    # the table went to stdout
    assert "bare Celery hop" in proc.stdout
