"""A provider-batch stack for tests and the benchmark: its own scripted LLM (with the batch
API), database, Redis db, a `memq worker` and a `memq beat` subprocess, and transcript helpers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from stack import stop_process_group

# Fast rounds: requests go up when 20 wait or after 0.3 s, polls from 0.1 s, a lost upload is
# given up after 2 s, the reconciler re-rings after 2 s.
PB_SETTINGS = {
    "MEMQ_PROVIDER_BATCH_MAX_REQUESTS": "20",
    "MEMQ_PROVIDER_BATCH_MAX_WAIT_S": "0.3",
    "MEMQ_PROVIDER_BATCH_POLL_S": "0.1",
    "MEMQ_PROVIDER_BATCH_POLL_MAX_S": "0.4",
    "MEMQ_PROVIDER_BATCH_LINE_ATTEMPTS": "2",
    "MEMQ_PROVIDER_BATCH_UPLOAD_STALE_S": "2",
    "MEMQ_PROVIDER_BATCH_TIMEOUT_S": "10",
    "MEMQ_RECONCILE_EVERY_S": "0.5",
    "MEMQ_RECONCILE_IDLE_S": "0.5",
    "MEMQ_RECONCILE_RERING_S": "2",
    "MEMQ_LEASE_S": "4",
}


class BeatProcess:
    """A `memq beat` subprocess in its own process group."""

    def __init__(self, env: dict[str, str], log_path: Path, tick_s: float = 0.1) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "memq.cli.main", "beat", "--tick", str(tick_s)],
                                     env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout_s: float = 60.0) -> "BeatProcess":
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"beat exited early:\n{self.log_path.read_text()[-3000:]}")
            if b" ready" in self.log_path.read_bytes():
                return self
            time.sleep(0.1)
        raise TimeoutError(f"beat not ready:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        import os

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()

    def stop(self) -> None:
        stop_process_group(self.proc)
        self._log.close()


def chain_script(i: int) -> list[dict[str, Any]]:
    """Three steps: remember, think aloud, answer (each of the first two asks for a heartbeat)."""
    return [
        {"tool": "core_memory_append", "args": {"label": "human", "content": f"fact-{i}", "request_heartbeat": True}},
        {"tool": "send_message", "args": {"message": f"working on {i}", "request_heartbeat": True}},
        {"tool": "send_message", "args": {"message": f"done {i}", "request_heartbeat": False}},
    ]


def _strip_time(text: str | None) -> Any:
    try:
        obj = json.loads(text or "")
    except ValueError:
        return text
    if isinstance(obj, dict):
        obj.pop("time", None)
    return obj


def transcript(client: Any, agent_id: str) -> list[tuple]:
    """The agent's messages in order, without times and call ids (they differ run to run)."""
    from storage.models import Message

    with client.rt.db.transaction() as s:
        rows = s.execute(select(Message).where(Message.agent_id == agent_id).order_by(Message.id)).scalars().all()
        return [(m.role, _strip_time(m.content),
                 [(c["function"]["name"], c["function"]["arguments"]) for c in m.tool_calls or []]) for m in rows]


def journal(client: Any, agent_id: str) -> list[tuple[int, str, str]]:
    """(step_no, llm_mode, outcome) of the agent's committed steps."""
    from storage.models import StepRecord

    with client.rt.db.transaction() as s:
        return [(r.step_no, r.llm_mode, r.outcome) for r in s.execute(
            select(StepRecord).where(StepRecord.agent_id == agent_id).order_by(StepRecord.step_no)).scalars()]


def wait_runs(client: Any, run_ids: list[str], timeout_s: float) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        views = [client.get_run(r) for r in run_ids]
        if all(v.status not in ("queued", "running") for v in views) or time.monotonic() > deadline:
            return views
        time.sleep(0.2)
