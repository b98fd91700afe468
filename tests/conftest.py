"""Shared fixtures: a fresh Postgres database, a Redis db, the scripted LLM and a real worker.

Nothing here is mocked: the worker is a separate `memq worker` process consuming
from Redis, the step talks to Postgres and calls the scripted LLM through litellm.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

sys.path.insert(0, str(Path(__file__).parent))

from scripted_llm import ScriptedLLM  # noqa: E402

from stack import REDIS_SERVER, WorkerProcess, claim_redis_db, hold_claim, own_database  # noqa: E402

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


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A database of its own for this test session, dropped at the end."""
    with own_database() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database index of its own, emptied first and last (queues have fixed names)."""
    index = claim_redis_db()
    url = f"{REDIS_SERVER}/{index}"
    redis.Redis.from_url(url).flushdb()
    hold_claim(url)
    yield url
    redis.Redis.from_url(url).flushdb()


@pytest.fixture
def spare_redis_url() -> Iterator[str]:
    """Another Redis database index, for one test that talks RESP to it (no worker consumes it)."""
    url = f"{REDIS_SERVER}/{claim_redis_db()}"
    hold_claim(url)
    yield url
    redis.Redis.from_url(url).flushdb()


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
