"""A step whose commit fails still lets its agent go on, visibly.

Postgres triggers installed in the test database make the commit itself fail:
- for the content of one message (the step commits a placeholder at once);
- on every attempt of one event's step (a failure of the database, not of the
  content: the step raises, the agent shows as failing, and the step is retried,
  past MEMQ_STEP_MAX_ATTEMPTS, until the database is well).
An event whose step kills its worker every time is given up after
MEMQ_STEP_MAX_ATTEMPTS (the poison give-up). These run their own workers and
database, with a fast reconciler.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psycopg
import pytest

from stack import WorkerProcess, client_for, own_stack, worker_and_client
from helpers import user_events

WAIT_S = 30
MAX_ATTEMPTS = 3

# Messages whose content carries this marker cannot be inserted (the error names no content).
REFUSE_MESSAGES = """
CREATE OR REPLACE FUNCTION refuse_marked_messages() RETURNS trigger AS $$
BEGIN
  IF NEW.content LIKE '%POISON-MARKER%' THEN
    RAISE EXCEPTION 'messages refused by the test trigger';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS refuse_marked_messages ON messages;
CREATE TRIGGER refuse_marked_messages BEFORE INSERT ON messages
  FOR EACH ROW EXECUTE FUNCTION refuse_marked_messages();
"""

# Every step of a run whose event carries the marker fails like a full disk (an
# OperationalError: not the content's fault), except the give-up's own commit.
FAIL_MARKED_STEPS = """
CREATE OR REPLACE FUNCTION fail_marked_steps() RETURNS trigger AS $$
BEGIN
  IF NEW.outcome <> 'gave_up' AND EXISTS (
      SELECT 1 FROM inbox WHERE run_id = NEW.run_id AND event::text LIKE '%DISK-MARKER%') THEN
    RAISE EXCEPTION 'could not extend file (test trigger)' USING ERRCODE = '53100';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS fail_marked_steps ON steps;
CREATE TRIGGER fail_marked_steps BEFORE INSERT ON steps
  FOR EACH ROW EXECUTE FUNCTION fail_marked_steps();
"""


def test_a_commit_that_fails_for_its_content_fails_the_run_and_the_agent_goes_on(client, agent, pg_url):
    # given a database that refuses to store one message's text
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(REFUSE_MESSAGES)
    # when that message is sent
    run = client.send(agent.id, "POISON-MARKER please", wait=True, timeout_s=WAIT_S)
    # then its run failed at once, visibly, with the database's error
    assert run.status == "failed", run
    assert "could not be stored" in run.error and "refused by the test trigger" in run.error
    # and the record holds a placeholder (never the text) and a system_alert
    events = user_events(client, agent.id)
    assert [e["type"] for e in events] == ["user_message", "system_alert"]
    assert events[0]["message"].startswith("[message could not be stored: ")
    assert "POISON-MARKER" not in json.dumps(events)
    assert "could not be stored" in events[1]["message"]
    # and the agent answers its next message, and does not show as failing
    nxt = client.send(agent.id, "hello again", wait=True, timeout_s=10)
    assert nxt.status == "done" and nxt.replies == ["echo: hello again"]
    shown = client.get_agent(agent.id)
    assert shown.state == "idle" and shown.last_error is None


@pytest.fixture(scope="module")
def fast_env(memq_env) -> Iterator[dict[str, str]]:
    """A database, a Redis db and settings of its own: few attempts, a fast reconciler."""
    with own_stack(memq_env, MEMQ_STEP_MAX_ATTEMPTS=str(MAX_ATTEMPTS), MEMQ_RECONCILE_EVERY_S="0.5",
                   MEMQ_RECONCILE_IDLE_S="0.5", MEMQ_RECONCILE_RERING_S="3") as env:
        yield env


def _memq_json(env: dict[str, str], *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "memq.cli.main", *args, "--json"], env=env,
                          capture_output=True, text=True, timeout=60)
    return json.loads(proc.stdout)


def test_a_database_failure_shows_failing_is_retried_past_the_attempt_limit_and_heals(fast_env, tmp_path):
    with worker_and_client(fast_env, tmp_path / "worker.log", "--concurrency", "4") as (worker, client):
        # given an agent whose event's step cannot commit while the database fails (as a full disk)
        agent = client.create_agent("doomed")
        with psycopg.connect(fast_env["MEMQ_DATABASE_URL"], autocommit=True) as conn:
            conn.execute(FAIL_MARKED_STEPS)
        # when it is sent that event
        run = client.send(agent.id, "DISK-MARKER hello")
        # then, while it is retried, `memq agent show` and `memq status` show it failing
        deadline = time.monotonic() + WAIT_S
        while client.get_agent(agent.id).state != "failing" and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = _memq_json(fast_env, "agent", "show", agent.id)
        assert seen["state"] == "failing", seen
        assert seen["attempts"] >= 0 and "could not extend file" in seen["last_error"] and seen["last_error_at"]
        status = _memq_json(fast_env, "status")
        assert status["pending"]["agents_failing"] == 1
        assert status["pending"]["failing"][0]["agent_id"] == agent.id
        # and it is retried past MEMQ_STEP_MAX_ATTEMPTS without being given up (the database is at fault)
        while worker.log_path.read_text().count("could not extend file") < 2 * MAX_ATTEMPTS + 1:
            assert time.monotonic() < deadline, worker.log_path.read_text()[-3000:]
            time.sleep(0.1)
        assert client.get_run(run.run_id).status == "queued"
        # when the database is well again / then the run is answered and the agent is idle
        with psycopg.connect(fast_env["MEMQ_DATABASE_URL"], autocommit=True) as conn:
            conn.execute("DROP TRIGGER fail_marked_steps ON steps")
        done = client.wait(run.run_id, WAIT_S)
        assert done.status == "done" and done.replies == ["echo: DISK-MARKER hello"], done
        after = client.get_agent(agent.id)
        assert after.state == "idle" and after.last_error is None and after.attempts == 0
        assert _memq_json(fast_env, "status")["pending"]["agents_failing"] == 0


def test_an_event_whose_step_kills_its_worker_every_time_is_given_up(fast_env, llm, tmp_path):
    env = {**fast_env, "MEMQ_LEASE_S": "2", "MEMQ_LLM_TIMEOUT_S": "60"}
    client = client_for(env)
    try:
        # given an agent whose step never ends (its model call hangs) and a worker that is killed in it
        agent = client.create_agent("poison")
        llm.set_default(agent.id, {"tool": "send_message", "args": {"message": "never"}, "sleep_s": 300})
        run = client.send(agent.id, "this one kills")
        for attempt in range(1, MAX_ATTEMPTS + 1):
            worker = WorkerProcess(env, tmp_path / f"worker{attempt}.log", "--concurrency", "4")
            try:
                worker.wait_ready()
                deadline = time.monotonic() + WAIT_S
                while len(llm.requests(agent.id)) < attempt:  # the step is in its model call
                    assert time.monotonic() < deadline, worker.log_path.read_text()[-3000:]
                    time.sleep(0.05)
            finally:
                os.killpg(worker.proc.pid, signal.SIGKILL)  # as an out-of-memory kill would
                worker.proc.wait()
        # when a worker takes the event once more than MEMQ_STEP_MAX_ATTEMPTS
        llm.set_default(agent.id, None)
        with worker_and_client(env, tmp_path / "worker-last.log", "--concurrency", "4") as (_, _client):
            done = client.wait(run.run_id, WAIT_S)
            # then its run is given up without another model call, and the agent goes on
            assert done.status == "failed" and "gave up" in done.error, done
            assert len(llm.requests(agent.id)) == MAX_ATTEMPTS
            nxt = client.send(agent.id, "next one", wait=True, timeout_s=WAIT_S)
            assert nxt.status == "done" and nxt.replies == ["echo: next one"]
    finally:
        client.close()
