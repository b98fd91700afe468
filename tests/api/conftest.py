"""Fixtures of the API suite: a real `memq serve` subprocess against the suite's
Postgres, Redis and `memq worker` (tests/conftest.py), keys made with `memq key create`."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from api_server import ServeProcess, new_key

CALLBACK_SECRET = "test-callback-secret-not-secret"


@pytest.fixture(scope="session")
def serve_env(memq_env: dict[str, str]) -> dict[str, str]:
    return {**memq_env, "MEMQ_API_MAX_BODY_BYTES": "65536", "MEMQ_LOG_LEVEL": "INFO",
            # callbacks: signed with this secret; a failed post is retried after 0.2 s, 0.4 s, ...
            "MEMQ_CALLBACK_SECRET": CALLBACK_SECRET, "MEMQ_CALLBACK_BACKOFF_S": "0.2", "MEMQ_CALLBACK_TIMEOUT_S": "5"}


@pytest.fixture(scope="session")
def server(serve_env: dict[str, str], worker, tmp_path_factory) -> Iterator[ServeProcess]:
    proc = ServeProcess(serve_env, tmp_path_factory.mktemp("serve") / "serve.log").wait_up()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def key(serve_env: dict[str, str]) -> str:
    return new_key(serve_env, "acme")["key"]


@pytest.fixture(scope="session")
def other_key(serve_env: dict[str, str]) -> str:
    return new_key(serve_env, "globex")["key"]


@pytest.fixture
def http(server: ServeProcess, key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        yield c


@pytest.fixture
def letta(server: ServeProcess, key: str):
    from letta_client import Letta

    return Letta(base_url=server.url, api_key=key, timeout=60)
