"""Exactly once, in order, through crashes: the chaos run, as tests.

test_chaos_short is the CI variant (about a minute): 6 agents x 8 messages, 2 worker
SIGKILLs, a restart of a non-persistent Redis (every queued doorbell is lost),
duplicate doorbells and a misbehaving LLM. test_chaos_quiet_faults_short (about 80 s)
runs issue 19's faults, each for 4 s: frozen Redis and Postgres, a full disk, a worker
cut off from its broker, a slow LLM tail, 2 processes per worker. The full variants (20 x 30, Postgres
restart, RabbitMQ, Redis with AOF) run only with MEMQ_CHAOS_FULL=1; each is also
one command line, see tests/chaos/README.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
full = pytest.mark.skipif(os.environ.get("MEMQ_CHAOS_FULL") != "1", reason="set MEMQ_CHAOS_FULL=1")


def chaos(tmp_path: Path, *args: str, timeout_s: float) -> dict:
    """Run `python -m tests.chaos.run ARGS --json-out F`; return its report."""
    out = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMQ_")}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.chaos.run", *args, "--json-out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s,
    )
    assert out.exists(), f"no report (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    report = json.loads(out.read_text())
    print(proc.stdout)
    return report


def assert_exactly_once(report: dict) -> None:
    summary = {k: report[k] for k in ("lost", "duplicated", "reordered", "overlapping", "wrong_replies")}
    assert summary == dict.fromkeys(summary, 0), (summary, report["notes"])
    assert report["unsent"] == 0
    assert report["drained"], "the work did not drain before the deadline"
    assert report["ok"], report["failures"]


@needs_redis
@pytest.mark.timeout(240)
def test_chaos_short(tmp_path):
    report = chaos(
        tmp_path, "--broker", "redis", "--agents", "6", "--messages", "8", "--kills", "2",
        "--kill-every", "4", "--broker-restart", "--dup-doorbells", "--llm-faults",
        "--timeout", "90", timeout_s=230,
    )
    assert_exactly_once(report)
    assert report["messages"] == 48
    assert report["kills"] == 2 and report["broker_restarts"] == 1
    assert report["dup_doorbells"] > 0 and report["repeated_sends"] > 0
    assert sum(report["llm_faults"].values()) > 0
    # every agent a killed worker held made progress again
    assert all(k["recovered"] == k["in_flight"] for k in report["kill_details"])


@full
@pytest.mark.chaos_full
@pytest.mark.timeout(900)
@pytest.mark.parametrize("broker", ["redis", "redis-aof", "rabbitmq"])
def test_chaos_full(tmp_path, broker):
    report = chaos(
        tmp_path, "--broker", broker, "--agents", "20", "--messages", "30", "--kills", "5",
        "--broker-restart", "--pg-restart", "--dup-doorbells", "--llm-faults", timeout_s=880,
    )
    assert_exactly_once(report)
    assert report["messages"] == 600
    assert report["kills"] == 5 and report["broker_restarts"] == 1 and report["pg_restarts"] == 1
    assert all(k["recovered"] == k["in_flight"] for k in report["kill_details"])



@needs_redis
@pytest.mark.timeout(200)
def test_chaos_quiet_faults_short(tmp_path):
    """Issue 19's faults, short: Redis and Postgres frozen, the disk full, worker 0 cut off
    from its broker, a slow LLM tail, on the run's own Postgres with 2 processes per worker."""
    report = chaos(
        tmp_path, "--broker", "redis", "--agents", "6", "--messages", "12", "--kills", "1",
        "--send-s", "40", "--freeze-redis", "--freeze-pg", "--freeze-fault-s", "4",
        "--full-disk", "--full-disk-s", "4", "--disk-mb", "32", "--cut-broker", "--cut-s", "4",
        "--slow-tail", "--slow-s", "3", "--slow-rate", "0.05", "--processes", "2",
        "--timeout", "90", timeout_s=190,
    )
    summary = {k: report[k] for k in ("lost", "duplicated", "reordered", "overlapping", "wrong_replies")}
    assert summary == dict.fromkeys(summary, 0), (summary, report["notes"])
    assert report["unsent"] == 0 and report["drained"], report["errors"]
    assert report["messages"] == 72 and report["own_pg"] and report["processes"] == 2
    assert not report["unexpected_worker_exits"]
    events = {e["event"]: e for e in report["faults"]}
    assert {"redis_freeze", "pg_freeze", "disk_full", "broker_cut", "slow_tail_on"} <= set(events)
    # a send on a frozen broker gives up on its doorbell (2 tries x 3 s socket timeout), not the freeze
    assert events["redis_freeze"]["sends"]["longest_attempt_s"] < 10, events["redis_freeze"]
    # a full disk refuses sends at once, in words
    disk = events["disk_full"]["sends"]
    assert disk["longest_attempt_s"] < 3, disk
    assert all("No space left on device" in m for m in disk["error_samples"].values()), disk
    assert report["broker_cut"]["cut_worker_steps_after_heal"] > 0  # the cut-off worker works again
    assert report["failed"] == 0, report["notes"]  # a full disk delays steps; it never gives runs up
