"""Postgres that stops answering (frozen, wedged) with its TCP connections still up: the client
paths give up after MEMQ_DB_DEADLINE_S with a clear error instead of hanging, and a send repeated
with its idempotency key afterwards gives exactly one run (given / when / then).

The shared Postgres is never frozen: the client reaches it through a TCP proxy that can go
silent (tests/chaos/proxy.py: bytes are read and dropped, nothing is closed), which is what a
SIGSTOPped server looks like from the client."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from tests.chaos.proxy import Proxy

DEADLINE_S = 2.0
MEMQ = str(Path(sys.executable).parent / "memq")
SLACK_S = 1.0  # what the deadline may be overshot by: the error's own work, a loaded box


@pytest.fixture
def proxy(pg_url: str) -> Iterator[Proxy]:
    url = urlsplit(pg_url)
    p = Proxy(url.hostname or "127.0.0.1", url.port or 5432).start()
    yield p
    p.stop()


def _through(pg_url: str, proxy: Proxy) -> str:
    url = urlsplit(pg_url)
    return url._replace(netloc=url.netloc.replace(f"{url.hostname}:{url.port}", f"127.0.0.1:{proxy.port}")).geturl()


def _runs_with_key(pg_url: str, key: str) -> int:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM runs WHERE idempotency_key = %s", (key,)).fetchone()[0]


@pytest.fixture
def proxied_client(settings, pg_url: str, proxy: Proxy):
    from memq.client import Client

    c = Client.connect(settings.model_copy(update={"database_url": _through(pg_url, proxy),
                                                   "db_deadline_s": DEADLINE_S}))
    yield c
    c.close()


def _timed_send(client, agent_id: str, key: str | None) -> tuple[float, BaseException | None]:
    t = time.monotonic()
    try:
        client.send(agent_id, "are you there?", idempotency_key=key)
    except Exception as exc:  # noqa: BLE001 - the test looks at what was raised
        return time.monotonic() - t, exc
    return time.monotonic() - t, None


def test_a_send_to_a_silent_postgres_fails_within_the_deadline_and_its_repeat_gives_one_run(
        proxied_client, proxy: Proxy, pg_url: str):
    from storage.deadline import DatabaseUnavailable

    # given a client whose pooled connections reach Postgres through the proxy
    agent = proxied_client.create_agent(f"deadline-{uuid.uuid4().hex[:8]}", persona="p", human="h")
    proxied_client.send(agent.id, "warm the pool", idempotency_key=f"warm-{agent.id}")
    key = f"silent-{agent.id}"
    # when Postgres goes silent (connections open, nothing answers)
    proxy.cut()
    # then a send on a pooled connection fails within the deadline, saying what is safe
    took_s, exc = _timed_send(proxied_client, agent.id, key)
    assert isinstance(exc, DatabaseUnavailable), repr(exc)
    assert took_s < DEADLINE_S + SLACK_S, took_s
    text = str(exc)
    assert f"did not answer within {DEADLINE_S:g} s" in text and key in text and "safe" in text, text
    # and so does the next one, which needs a new connection (the pool dropped the dead ones)
    took_s, exc = _timed_send(proxied_client, agent.id, key)
    assert isinstance(exc, DatabaseUnavailable), repr(exc)
    assert took_s < DEADLINE_S + SLACK_S, took_s
    assert "a new connection" in str(exc), str(exc)
    # and reads fail alike
    t = time.monotonic()
    with pytest.raises(DatabaseUnavailable):
        proxied_client.get_agent(agent.id)
    assert time.monotonic() - t < DEADLINE_S + SLACK_S
    # when the proxy heals, the same send goes through, and the key has exactly one run
    proxy.heal()
    run = proxied_client.send(agent.id, "are you there?", idempotency_key=key)
    again = proxied_client.send(agent.id, "are you there?", idempotency_key=key)
    assert again.run_id == run.run_id
    assert _runs_with_key(pg_url, key) == 1


def test_without_a_deadline_connections_are_psycopgs_own(pg_url: str):
    # given a Database built as the worker builds its own (no deadline)
    from storage.db import Database

    db = Database(pg_url, pool_size=2)
    try:
        # when it runs a statement
        with db.autocommit() as s:
            conn = s.connection().connection.dbapi_connection
            # then its connection is psycopg's plain one: nothing wraps a round trip
            assert type(conn) is psycopg.Connection
    finally:
        db.dispose()


def test_a_client_that_runs_steps_in_process_puts_no_deadline_on_them(settings, pg_url: str):
    from memq.client import Client

    # given an embedded client on Postgres, whose steps run on its own threads
    c = Client.connect(settings.model_copy(update={"broker_url": None}), in_process_worker=True)
    try:
        # then its database (the steps') has no deadline, while a remote client's has
        assert c.rt.db.deadline_s is None
    finally:
        c.close()
    remote = Client.connect(settings)
    try:
        assert remote.rt.db.deadline_s == settings.db_deadline_s
    finally:
        remote.close()


# ---------------------------------------------------------------------------------- memq serve
@pytest.fixture
def proxied_server(memq_env: dict[str, str], worker, pg_url: str, proxy: Proxy, tmp_path):
    from api.api_server import ServeProcess, new_key

    env = {**memq_env, "MEMQ_DATABASE_URL": _through(pg_url, proxy), "MEMQ_API_KEY_CACHE_S": "600",
           "MEMQ_DB_DEADLINE_S": str(DEADLINE_S)}
    proc = ServeProcess(env, tmp_path / "serve.log").wait_up()
    key = new_key({**memq_env, "MEMQ_DATABASE_URL": pg_url}, "deadline")["key"]
    yield proc, key
    proc.stop()


def test_a_blocking_send_through_memq_serve_answers_503_within_the_deadline(proxied_server, proxy: Proxy,
                                                                            pg_url: str):
    server, key = proxied_server
    deadline_s = DEADLINE_S  # MEMQ_DB_DEADLINE_S of the server: both its pools keep it
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        # given a serving process that has answered a blocking send (its pools hold connections)
        aid = http.post("/v1/agents/", json={"name": f"deadline-{uuid.uuid4().hex[:8]}"}).json()["id"]
        body = {"messages": [{"role": "user", "content": "hello"}]}
        assert http.post(f"/v1/agents/{aid}/messages", json=body).status_code == 200
        assert http.post(f"/v1/agents/{aid}/messages", json=body,
                         headers={"Idempotency-Key": "warm"}).status_code == 200
        # when Postgres goes silent
        proxy.cut()
        # then a blocking send (the event loop's pool) answers 503 with Retry-After within the deadline
        for headers in ({}, {"Idempotency-Key": "during"}):  # and one with a key (the repository's pool)
            t = time.monotonic()
            r = http.post(f"/v1/agents/{aid}/messages", json=body, headers=headers)
            took_s = time.monotonic() - t
            assert r.status_code == 503 and r.headers.get("retry-after"), (headers, r.text)
            assert took_s < deadline_s + SLACK_S, (headers, took_s)
            assert r.json()["error"] == "unavailable"
            assert "did not answer" in r.json()["detail"] and "Idempotency-Key" in r.json()["detail"], r.text
        # and so does a routed request (the router and its handlers, beside the send lane)
        t = time.monotonic()
        r = http.get("/v1/agents/")
        assert r.status_code == 503 and r.headers.get("retry-after"), r.text
        assert r.json()["error"] == "unavailable" and "did not answer" in r.json()["detail"], r.text
        assert time.monotonic() - t < deadline_s + SLACK_S
        # and once it heals, the keyed send repeated gives one run
        proxy.heal()
        give_up = time.monotonic() + 30
        while (r := http.post(f"/v1/agents/{aid}/messages", json=body,
                              headers={"Idempotency-Key": "during"})).status_code != 200:
            assert r.status_code == 503 and time.monotonic() < give_up, r.text
            time.sleep(0.2)
    assert _runs_with_key(pg_url, "http:during") == 1
    assert "unexpected error" not in server.log()


# ------------------------------------------------------------------------ the CLI's quick path
@pytest.fixture
def agent_id(settings) -> str:
    from memq.client import Client

    with Client.connect(settings) as c:
        return c.create_agent(f"deadline-{uuid.uuid4().hex[:8]}", persona="p", human="h").id


def test_the_quick_path_gives_up_on_a_silent_postgres_within_the_deadline(settings, pg_url: str, proxy: Proxy,
                                                                         agent_id: str):
    from memq.quick.client import QuickClient
    from storage.deadline import DatabaseUnavailable

    quick = QuickClient(settings.model_copy(update={"database_url": _through(pg_url, proxy),
                                                    "db_deadline_s": DEADLINE_S}))
    try:
        # given the CLI's quick client, whose connection has read the agent through the proxy
        assert quick.get_agent(agent_id).id == agent_id
        # when Postgres goes silent
        proxy.cut()
        # then a send fails within the deadline (not handed to the full client, which would wait
        # again), saying what a repeat risks
        took_s, exc = _timed_send(quick, agent_id, key=None)
        assert isinstance(exc, DatabaseUnavailable), repr(exc)
        assert took_s < DEADLINE_S + SLACK_S, took_s
        assert f"did not answer within {DEADLINE_S:g} s" in str(exc) and "idempotency key" in str(exc), str(exc)
        # and a read, which needs a new connection, fails alike
        t = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="a new connection"):
            quick.get_agent(agent_id)
        assert time.monotonic() - t < DEADLINE_S + SLACK_S
        # and once it heals, the quick client reads again (it connects afresh)
        proxy.heal()
        assert quick.get_agent(agent_id).id == agent_id
    finally:
        quick.close()


def _memq(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, float]:
    t = time.monotonic()
    proc = subprocess.run([MEMQ, *args, "--json"], env=env, capture_output=True, text=True, timeout=60)
    return proc, time.monotonic() - t


def test_the_cli_against_a_silent_postgres_says_unavailable_within_the_deadline(memq_env: dict[str, str],
                                                                                pg_url: str, proxy: Proxy,
                                                                                agent_id: str):
    # given the CLI in server mode reaching Postgres through the proxy (a read takes took_ok_s)
    env = {**memq_env, "MEMQ_DATABASE_URL": _through(pg_url, proxy), "MEMQ_DB_DEADLINE_S": str(DEADLINE_S)}
    ok, took_ok_s = _memq(env, "messages", agent_id)
    assert ok.returncode == 0, ok.stderr
    # when Postgres goes silent
    proxy.cut()
    for args in (("send", agent_id, "are you there?"), ("send", agent_id, "are you there?", "--wait"),
                 ("messages", agent_id)):
        proc, took_s = _memq(env, *args)
        # then each command fails within the deadline (beyond the CLI's own start), exit code 1,
        # its error of type `unavailable` saying Postgres did not answer
        assert proc.returncode == 1, (args, proc.returncode, proc.stderr)
        error = json.loads(proc.stdout)["error"]
        assert error["type"] == "unavailable", (args, error)
        assert f"Postgres did not answer a new connection within {DEADLINE_S:g} s" in error["message"], error
        assert error["message"] in proc.stderr
        assert took_s < took_ok_s + DEADLINE_S + 2 * SLACK_S, (args, took_s, took_ok_s)
