"""The embedded `memq worker` picks up every queued send within about a second.

A real embedded worker subprocess (SQLite under a temporary MEMQ_HOME, no
broker) and separate `memq send` processes without --wait, against the 0-ms
scripted LLM.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from scripted_llm import ScriptedLLM  # noqa: E402
from test_cli import embedded_env, run_memq  # noqa: E402

READY = b"embedded worker ready"


@pytest.fixture
def embedded_worker(tmp_path: Path, llm: ScriptedLLM):
    env = embedded_env(tmp_path / "home", llm)
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "memq.cli.main", "worker"], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while READY not in log_path.read_bytes():
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.1)
        yield env, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_finished(env: dict[str, str], run_id: str, timeout_s: float) -> tuple[str, float]:
    """Poll the run in the embedded database; (status, seconds from queued to finished)."""
    from memq.settings import Settings
    from storage import repository as repo
    from storage.db import Database

    settings = Settings(home=env["MEMQ_HOME"], database_url=None, broker_url=None)
    db = Database(settings.resolved_database_url, pool_size=1)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            with db.transaction() as s:
                run = repo.get_run(s, run_id)
                if run.finished_at is not None or time.monotonic() > deadline:
                    took = (run.finished_at - run.created_at).total_seconds() if run.finished_at else float("inf")
                    return run.status, took
            time.sleep(0.05)
    finally:
        db.dispose()


def test_three_queued_sends_in_a_row_are_each_answered_within_two_seconds(embedded_worker):
    # given an embedded worker and an agent
    env, log_path = embedded_worker
    agent = run_memq(env, "agent", "create", "--name", "latency", "--json").doc["id"]
    # when three messages are queued one after the other by separate `memq send` processes
    took = []
    for i in range(3):
        sent = run_memq(env, "send", agent, f"message {i}", "--json")
        assert sent.code == 0 and sent.doc["status"] == "queued", sent
        status, seconds = _wait_finished(env, sent.doc["run_id"], timeout_s=10)
        took.append(seconds)
        # then each is answered within 2 s of being queued
        assert status == "done", (status, log_path.read_text()[-2000:])
    print("queued -> done, seconds:", took)
    assert max(took) <= 2.0, took
