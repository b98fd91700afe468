"""`memq send --wait` in server mode stays on the quick path: it waits for the run over
psycopg without building the full client (which cost ~1.5 s of imports per send)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

MEMQ = str(Path(sys.executable).parent / "memq")
HEAVY = ("litellm", "celery", "kombu", "torch", "sentence_transformers", "sqlalchemy")


def test_send_wait_answers_the_finished_run_without_the_heavy_stack(memq_env, worker, agent):
    # given a worker consuming the broker
    # when `memq send --wait --json` sends a message and waits for its run
    proc = subprocess.run([MEMQ, "send", agent.id, "wait for me", "--wait", "--json"],
                          env=dict(memq_env, PYTHONPROFILEIMPORTTIME="1"), capture_output=True, text=True, timeout=60)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 0, [line for line in lines if not line.startswith("import time:")]
    # then the run is done with the worker's reply (the scripted LLM echoes the message)
    doc = json.loads(proc.stdout)
    assert doc["status"] == "done" and doc["agent_id"] == agent.id and "wait for me" in doc["replies"][0]
    # and no ORM, Celery or LLM stack was imported for it
    imported = {line.split("|")[-1].strip().split(".")[0] for line in lines if line.startswith("import time:")}
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
