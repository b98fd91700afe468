"""`memq worker --processes 2`: a supervising parent and two real Celery worker processes.

Both children take steps, a SIGKILLed child is restarted with nothing lost (the chaos
checker reads Postgres), the parent's one /metrics endpoint sums both children's
counters, and SIGTERM stops it all cleanly (exit 0).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from stack import WorkerProcess, own_stack
from scripted_llm import ScriptedLLM
from tests.chaos.checker import check

AGENTS = 6
MESSAGES = 6
WAIT_S = 90.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _wait(pred, what: str, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _steps_metric(port: int) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(v) for v in re.findall(r"^memq_steps_total\{[^}]*\} (\S+)$", body, re.M))


def _query(env: dict[str, str], sql: str) -> list[tuple]:
    with psycopg.connect(env["MEMQ_DATABASE_URL"], autocommit=True) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture()
def slow_llm():
    """Steps that last long enough (80 ms of LLM) for a kill to find some in flight."""
    server = ScriptedLLM(latency_ms=80).start()
    yield server
    server.stop()


@pytest.mark.timeout(240)
def test_two_processes_share_steps_survive_a_child_kill_and_sum_metrics(memq_env, slow_llm, tmp_path):
    from memq.client import Client
    from memq.settings import Settings

    with own_stack(memq_env, MEMQ_LLM_API_BASE=slow_llm.url, MEMQ_LEASE_S="3", MEMQ_RECONCILE_EVERY_S="0.5",
                   MEMQ_RECONCILE_IDLE_S="1", MEMQ_RECONCILE_RERING_S="2") as env:
        # given `memq worker --processes 2` with one metrics endpoint
        port = _free_port()
        log_path = tmp_path / "worker.log"
        worker = WorkerProcess(env, log_path, "--processes", "2", "--concurrency", "20",
                               "--metrics-port", str(port))
        settings = Settings(**{k.removeprefix("MEMQ_").lower(): v for k, v in env.items()
                               if k.startswith("MEMQ_") and k != "MEMQ_HOME"}, home=env["MEMQ_HOME"])
        client = Client.connect(settings)
        try:
            _wait(lambda: log_path.read_bytes().count(b" ready.") >= 2, "two children ready")
            first = _children(worker.proc.pid)
            assert len(first) == 2
            agents = [client.create_agent(f"sup-{i}").id for i in range(AGENTS)]
            sent: dict[str, list[str]] = {a: [] for a in agents}
            keys: dict[str, dict[str, str]] = {a: {} for a in agents}

            def send_round(j: int) -> None:
                for i, a in enumerate(agents):
                    text = f"agent-{i} msg-{j}"
                    key = f"{a}:{j}"
                    client.send(a, text, idempotency_key=key)
                    sent[a].append(text)
                    keys[a][text] = key

            def all_done() -> bool:
                return _query(env, "SELECT count(*) FROM runs WHERE status IN ('queued','running')")[0][0] == 0

            # when a first round is served
            send_round(0)
            send_round(1)
            _wait(all_done, "the first rounds")
            # then both children took steps (two worker ids in the journal) ...
            workers = {w for (w,) in _query(env, "SELECT DISTINCT worker FROM steps")}
            assert workers == {f"{socket.gethostname()}:{pid}" for pid in first}
            # ... and the parent's endpoint sums both children's step counters
            journal = _query(env, "SELECT count(*) FROM steps")[0][0]
            assert _wait(lambda: _steps_metric(port) == journal or None, "metrics to match the journal",
                         timeout_s=10)

            # when one child is SIGKILLed with steps in flight while messages keep coming
            send_round(2)
            send_round(3)
            time.sleep(0.15)
            victim = first[0]
            os.kill(victim, signal.SIGKILL)
            for j in range(4, MESSAGES):
                send_round(j)
            # then the parent starts a new child in its place ...
            _wait(lambda: [p for p in _children(worker.proc.pid) if p not in first],
                              "a replacement child")
            assert first[1] in _children(worker.proc.pid)
            # ... every message is processed exactly once, in order, one step at a time
            _wait(all_done, "every run to finish")
            report = check(env["MEMQ_DATABASE_URL"], sent, keys)
            summary = {k: report[k] for k in ("lost", "duplicated", "reordered", "overlapping", "wrong_replies")}
            assert summary == dict.fromkeys(summary, 0), (summary, report["notes"])
            assert report["sent"] == AGENTS * MESSAGES
            _wait(lambda: b" ready." in log_path.read_bytes().split(b"restarting it", 1)[-1], "the new child ready")
            send_round(MESSAGES)  # the replacement serves too
            _wait(all_done, "the last round")
            # ... and the endpoint still counts the killed child's steps beside the live ones'
            assert _steps_metric(port) >= journal + AGENTS * 2
        finally:
            client.close()
            # when the parent gets SIGTERM, every child stops and it exits 0
            worker.proc.terminate()
            code = worker.proc.wait(timeout=30)
            worker.stop()
        assert code == 0, log_path.read_text()[-3000:]
        assert "worker process 1 exited (signal 9)" in log_path.read_text()
