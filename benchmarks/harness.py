"""The benchmark harness: services up, a memq worker started (and timed), helpers to
drive runs and read the step journal, everything torn down at the end."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.env import (
    BenchDatabase,
    LLMServer,
    WorkerProc,
    base_env,
    memq_worker,
    pick_redis_db,
    rss_mb,
)
from benchmarks.report import Row

FINISHED = ("done", "failed", "chain_capped")

WORKER_CONCURRENCY = 500


@dataclass
class RunResult:
    run_id: str
    status: str
    steps: int
    wall_s: float  # driver: before send -> finish seen (perf_counter)
    db_span_s: float | None  # runs.created_at -> runs.finished_at


@dataclass
class Bench:
    quick: bool
    keep_logs: bool = False
    worker_loglevel: str = "INFO"
    worker_queues: str | None = None  # None: every queue
    extra_worker_queues: list[str] = field(default_factory=list)  # one more worker per entry
    worker_processes: int = 1  # the main worker's --processes
    broker_url: str | None = None  # None: an empty db index of the shared Redis
    database_via: str | None = None  # HOST:PORT of a PgBouncer (transaction mode) memq reaches Postgres through
    rows: list[Row] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    worker_facts: dict[str, Any] = field(default_factory=dict)

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="memq-bench-"))
        self.db = BenchDatabase()
        self.redis_url = self.broker_url or pick_redis_db()
        self.llm = LLMServer(latency_ms=0)
        self.memq_env = base_env()
        self.memq_env.update(
            {
                "MEMQ_DATABASE_URL": self._memq_database_url(),
                "MEMQ_BROKER_URL": self.redis_url,
                "MEMQ_LLM_MODEL": "openai/scripted",
                "MEMQ_LLM_API_BASE": self.llm.url,
                "MEMQ_LLM_API_KEY": "bench-key-not-secret",
                "MEMQ_LLM_TIMEOUT_S": "60",
                "MEMQ_LLM_MAX_RETRIES": "1",
                "MEMQ_LLM_BACKOFF_S": "0.05",
                "MEMQ_MAX_CHAIN": "40",
                # Room for the whole 40-step chain (~120 messages): no eviction or
                # summary call in the overhead runs, so every step is alike.
                "MEMQ_CONTEXT_WINDOW": "131072",
                "MEMQ_LEASE_S": "30",
                "MEMQ_HOME": str(self.tmp / "memq-home"),
            }
        )
        from memq.client import Client
        from memq.settings import Settings

        self.settings = Settings(
            **{k.removeprefix("MEMQ_").lower(): v for k, v in self.memq_env.items() if k.startswith("MEMQ_")}
        )
        self.worker: WorkerProc | None = memq_worker(
            self.memq_env, self.tmp / "worker.log", WORKER_CONCURRENCY, self.worker_loglevel, self.worker_queues,
            processes=self.worker_processes,
        )
        self.extra_workers = [
            memq_worker(self.memq_env, self.tmp / f"worker-{q.replace(',', '-')}.log", WORKER_CONCURRENCY,
                        self.worker_loglevel, q)
            for q in self.extra_worker_queues
        ]
        self.worker_facts["ready_s"] = self.worker.wait_ready(readies=self.worker_processes)
        for extra in self.extra_workers:
            extra.wait_ready()
        self.worker_facts["pid"] = self.worker.pid
        time.sleep(0.5)  # let the start-up sweep and the reconciler thread settle
        self.worker_facts["rss_ready_mb"] = rss_mb(self.worker.pid)
        self.client = Client.connect(self.settings)
        self._warm_up()

    def _memq_database_url(self) -> str:
        if not self.database_via:
            return self.db.url
        server = self.db.url.split("@", 1)[1].split("/", 1)[0]
        return self.db.url.replace(f"@{server}/", f"@{self.database_via}/") + "?prepare_threshold=none"

    def _warm_up(self) -> None:
        """Time the worker's first step (one-time costs left after " ready."), then a few warm ones."""
        agent = self.new_agent("bench-warmup")
        cold = self.send_and_wait(agent.id, "first message of this worker", timeout_s=120)
        warm = [self.send_and_wait(agent.id, f"warm {i}", timeout_s=60) for i in range(3 if self.quick else 5)]
        self.worker_facts["first_step_s"] = cold.wall_s
        self.worker_facts["first_step_status"] = cold.status
        self.worker_facts["warm_step_s"] = sorted(r.wall_s for r in warm)[len(warm) // 2]
        time.sleep(0.3)
        self.worker_facts["rss_warm_mb"] = rss_mb(self.worker.pid)  # type: ignore[union-attr]

    def stop(self) -> None:
        """Tear down whatever start() got to build; every step runs even if one fails."""
        steps = []
        if getattr(self, "client", None) is not None:
            steps.append(self.client.close)
        if getattr(self, "worker", None) is not None:
            steps.append(self.worker.stop)
        steps.extend(w.stop for w in getattr(self, "extra_workers", []))
        if getattr(self, "llm", None) is not None:
            steps.append(self.llm.stop)
        if getattr(self, "redis_url", None):
            steps.append(self._flush_redis)
        if getattr(self, "db", None) is not None:
            steps.append(self.db.drop)
        for step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - teardown goes on regardless
                print(f"teardown: {type(exc).__name__}: {exc}")
        if not self.keep_logs and getattr(self, "tmp", None):
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _flush_redis(self) -> None:
        import redis

        r = redis.Redis.from_url(self.redis_url)
        r.flushdb()
        r.close()

    # -- helpers ---------------------------------------------------------------
    def add(self, *args: Any, **kwargs: Any) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row

    def new_agent(self, prefix: str):
        return self.client.create_agent(
            f"{prefix}-{secrets.token_hex(3)}", persona="A terse benchmark agent.", human="Unknown."
        )

    def run_state(self, run_id: str) -> tuple[str, int, float | None]:
        row = self.db.query(
            "SELECT status, steps, EXTRACT(EPOCH FROM finished_at - created_at) FROM runs WHERE id = %s",
            (run_id,),
        )[0]
        return row[0], row[1], (float(row[2]) if row[2] is not None else None)

    def wait_run(self, run_id: str, t0: float, timeout_s: float = 60.0, poll_s: float = 0.003) -> RunResult:
        deadline = time.monotonic() + timeout_s
        while True:
            status, steps, span = self.run_state(run_id)
            if status in FINISHED:
                return RunResult(run_id, status, steps, time.perf_counter() - t0, span)
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {status} after {timeout_s}s ({steps} steps)")
            time.sleep(poll_s)

    def send_and_wait(self, agent_id: str, text: str, timeout_s: float = 60.0, poll_s: float = 0.003) -> RunResult:
        t0 = time.perf_counter()
        run = self.client.send(agent_id, text)
        return self.wait_run(run.run_id, t0, timeout_s, poll_s)

    def journal(self, *, run_ids: list[str] | None = None, agent_id: str | None = None) -> list[dict[str, Any]]:
        """Step journal rows: in-step ms, LLM latency ms, prompt size, outcome."""
        sql = (
            "SELECT agent_id, run_id, step_no, EXTRACT(EPOCH FROM finished_at - started_at) * 1000,"
            " llm_latency_ms, prompt_messages, prompt_chars, outcome, llm_attempts,"
            " EXTRACT(EPOCH FROM started_at), EXTRACT(EPOCH FROM finished_at) FROM steps WHERE "
        )
        if run_ids is not None:
            rows = self.db.query(sql + "run_id = ANY(%s) ORDER BY id", (run_ids,))
        else:
            rows = self.db.query(sql + "agent_id = %s ORDER BY step_no", (agent_id,))
        keys = ("agent_id", "run_id", "step_no", "in_step_ms", "llm_ms", "prompt_messages",
                "prompt_chars", "outcome", "llm_attempts", "started_s", "finished_s")
        return [dict(zip(keys, (float(v) if k in ("in_step_ms", "started_s", "finished_s") else v
                                for k, v in zip(keys, r)))) for r in rows]

    def memq_cli(self) -> list[str]:
        exe = Path(sys.executable).parent / "memq"
        return [str(exe)] if exe.exists() else [sys.executable, "-m", "memq.cli.main"]

    def time_cmd(self, cmd: list[str], env: dict[str, str] | None = None, check: bool = True) -> tuple[float, str]:
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        dt = time.perf_counter() - t0
        if check and p.returncode != 0:
            raise RuntimeError(f"{cmd} exited {p.returncode}: {p.stderr[-500:]}")
        return dt, p.stdout
