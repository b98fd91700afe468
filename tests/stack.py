"""Parts of a real memq stack for tests: a Postgres database and a Redis db of a test's own,
and a `memq worker` subprocess. Imported by tests/conftest.py and by tests that start a stack
of their own (a module, not a conftest: the sub-folders have conftest modules of their own).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from contextlib import contextmanager
from pathlib import Path

import psycopg
import redis

PG_SERVER = os.environ.get("MEMQ_TEST_PG_URL", "postgresql://root@127.0.0.1:5432/postgres")
REDIS_SERVER = os.environ.get("MEMQ_TEST_REDIS_URL", "redis://127.0.0.1:6379")


CLAIM_KEY = "memq-test:claimed-by"
ACTIVE_IDLE_S = 30  # a client on a database that did something within this long is using it


def claim_redis_db() -> int:
    """A Redis database no other test session on this machine is using (queues have
    fixed names, so two sessions on one index would take each other's steps).

    Claimed with a key (SET NX), and only when no client on it has been active lately: a
    worker left behind by a test run that was killed still consumes from its database after
    the claim key is gone (a consumer's BRPOP comes back every second), and would take this
    session's steps. A connection idle for ACTIVE_IDLE_S is left over (a doorbell or a health
    check of a finished test whose client was not closed) and takes nothing."""
    order = list(range(1, 16))
    secrets.SystemRandom().shuffle(order)
    server = redis.Redis.from_url(f"{REDIS_SERVER}/0")
    for index in order:
        if any(int(c.get("db", -1)) == index and int(c.get("idle", 0)) < ACTIVE_IDLE_S for c in server.client_list()):
            continue
        if redis.Redis.from_url(f"{REDIS_SERVER}/{index}").set(CLAIM_KEY, str(os.getpid()), nx=True, ex=6 * 3600):
            return index
    raise RuntimeError("every Redis database 1-15 is claimed or in use by another test session")


def hold_claim(url: str) -> None:
    """Claim (again) a database just emptied with FLUSHDB, which removes the claim key too."""
    redis.Redis.from_url(url).set(CLAIM_KEY, str(os.getpid()), ex=6 * 3600)


def stop_process_group(proc: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL to the whole process group (start_new_session=True) if it is
    still up after timeout_s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


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
        broker = f"{REDIS_SERVER}/{claim_redis_db()}"
        redis.Redis.from_url(broker).flushdb()
        hold_claim(broker)
        try:
            yield {**memq_env, "MEMQ_DATABASE_URL": db_url, "MEMQ_BROKER_URL": broker, **settings}
        finally:
            redis.Redis.from_url(broker).flushdb()  # also gives the Redis db back


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
        stop_process_group(self.proc)
        self._log.close()


def client_for(env: dict[str, str]) -> Any:
    """A Python client on the MEMQ_ settings of env (the caller closes it)."""
    from memq.client import Client
    from memq.settings import Settings

    return Client.connect(Settings(**{k.removeprefix("MEMQ_").lower(): v for k, v in env.items()
                                      if k.startswith("MEMQ_") and not k.startswith("MEMQ_TEST_")}))


@contextmanager
def worker_and_client(env: dict[str, str], log_path: Path, *worker_args: str) -> Iterator[tuple[WorkerProcess, Any]]:
    """A `memq worker` on env, ready, and a Python client on the same settings; both stopped on exit."""
    worker = WorkerProcess(env, log_path, *worker_args)
    client = None
    try:
        worker.wait_ready()
        client = client_for(env)
        yield worker, client
    finally:
        if client is not None:
            client.close()
        worker.stop()
