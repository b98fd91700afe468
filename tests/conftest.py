"""Shared fixtures: a fresh Postgres database, a Redis db, the scripted LLM and a real worker.

Nothing here is mocked: the worker is a separate `memq worker` process consuming
from Redis, the step talks to Postgres and calls the scripted LLM through litellm.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import redis

sys.path.insert(0, str(Path(__file__).parent))

from scripted_llm import ScriptedLLM  # noqa: E402

PG_SERVER = os.environ.get("MEMQ_TEST_PG_URL", "postgresql://root@127.0.0.1:5432/postgres")
REDIS_SERVER = os.environ.get("MEMQ_TEST_REDIS_URL", "redis://127.0.0.1:6379")

# Settings every worker of the suite runs with: short timeouts and backoff keep
# the fault tests quick; the chain cap is low so hitting it is cheap.
WORKER_SETTINGS = {
    "MEMQ_LLM_MODEL": "openai/scripted",
    "MEMQ_LLM_API_KEY": "test-key-not-secret",
    "MEMQ_LLM_TIMEOUT_S": "1.0",
    "MEMQ_LLM_MAX_RETRIES": "2",
    "MEMQ_LLM_BACKOFF_S": "0.05",
    "MEMQ_MAX_CHAIN": "6",
    "MEMQ_LEASE_S": "10",
    "MEMQ_MAX_MESSAGE_CHARS": "5000",
    "MEMQ_CONTEXT_WINDOW": "8192",
}


@contextmanager
def own_database(prefix: str = "memq_test") -> Iterator[str]:
    """A migrated Postgres database of its own (its URL), dropped on exit."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_SERVER.rsplit('/', 1)[0]}/{name}"
    from storage.db import Database

    db = Database(url)
    db.upgrade()
    db.dispose()
    try:
        yield url
    finally:
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def own_stack(memq_env: dict[str, str], prefix: str = "memq_test", **settings: str) -> Iterator[dict[str, str]]:
    """memq_env on a database and a Redis db of their own (so the suite's worker never sees
    its agents), with settings overridden; both are given back on exit."""
    with own_database(prefix) as db_url:
        broker = f"{REDIS_SERVER}/{_claim_redis_db()}"
        redis.Redis.from_url(broker).flushdb()
        try:
            yield {**memq_env, "MEMQ_DATABASE_URL": db_url, "MEMQ_BROKER_URL": broker, **settings}
        finally:
            redis.Redis.from_url(broker).flushdb()  # also gives the Redis db back


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A database of its own for this test session, dropped at the end."""
    with own_database() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database index of its own, emptied first and last (queues have fixed names)."""
    index = _claim_redis_db()
    url = f"{REDIS_SERVER}/{index}"
    redis.Redis.from_url(url).flushdb()
    redis.Redis.from_url(url).set(_CLAIM_KEY, str(os.getpid()), ex=6 * 3600)
    yield url
    redis.Redis.from_url(url).flushdb()


_CLAIM_KEY = "memq-test:claimed-by"


def _claim_redis_db() -> int:
    """A Redis database no other test session on this machine is using (queues have
    fixed names, so two sessions on one index would take each other's steps)."""
    order = list(range(1, 16))
    secrets.SystemRandom().shuffle(order)
    for index in order:
        if redis.Redis.from_url(f"{REDIS_SERVER}/{index}").set(_CLAIM_KEY, str(os.getpid()), nx=True, ex=6 * 3600):
            return index
    raise RuntimeError("every Redis database 1-15 is claimed by another test session")


@pytest.fixture(scope="session")
def llm() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def memq_env(pg_url: str, redis_url: str, llm: ScriptedLLM, tmp_path_factory) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMQ_")}
    env.update(WORKER_SETTINGS)
    env.update(
        {
            "MEMQ_DATABASE_URL": pg_url,
            "MEMQ_BROKER_URL": redis_url,
            "MEMQ_LLM_API_BASE": llm.url,
            "MEMQ_HOME": str(tmp_path_factory.mktemp("memq-home")),
            "MEMQ_EMBEDDING_MODEL": "openai/scripted-embed",
            "MEMQ_EMBEDDING_API_BASE": llm.url,
            "MEMQ_EMBEDDING_API_KEY": "test-key-not-secret",
            "MEMQ_EMBEDDING_DIM": "384",
            "MEMQ_QDRANT_PATH": str(tmp_path_factory.mktemp("qdrant")),
        }
    )
    return env


class WorkerProcess:
    """A `memq worker` subprocess in its own process group (so kill -9 takes it all)."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")
        cmd = [sys.executable, "-m", "memq.cli.main", "worker", "--loglevel", "INFO", "--processes", "1", *args]
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_path.read_text()[-3000:]}")
            if b" ready." in self.log_path.read_bytes():
                return
            time.sleep(0.1)
        raise TimeoutError(f"worker not ready:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self._log.close()


@pytest.fixture(scope="session")
def worker(memq_env: dict[str, str], tmp_path_factory) -> Iterator[WorkerProcess]:
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    proc = WorkerProcess(memq_env, log, "--concurrency", "50")
    proc.wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def settings(memq_env: dict[str, str]):
    from memq.settings import Settings

    return Settings(**{k.removeprefix("MEMQ_").lower(): v for k, v in memq_env.items() if k.startswith("MEMQ_")})


@pytest.fixture(scope="session")
def client(settings, worker):
    """A client that rings the real worker through Redis."""
    from memq.client import Client

    c = Client.connect(settings)
    yield c
    c.close()


@pytest.fixture
def agent(client):
    """A fresh agent; its id is the key the scripted LLM matches requests on."""
    return client.create_agent(f"test-{uuid.uuid4().hex[:8]}", persona="A terse test agent.", human="Unknown.")
