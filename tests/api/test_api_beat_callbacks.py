"""Run callbacks delivered by `memq beat` with no `memq serve` running: two beats share the
outbox and each callback is posted once, signed (given / when / then)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from api_server import Receiver, signed_by
from stack import WorkerProcess, own_stack, stop_process_group

SECRET = "beat-callback-secret-not-secret"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.httpd.shutdown()


@pytest.fixture
def beat_env(memq_env: dict[str, str]) -> Iterator[dict[str, str]]:
    # A database and Redis db of its own: the suite's `memq serve` (which delivers too) never sees it.
    with own_stack(memq_env, MEMQ_CALLBACK_SECRET=SECRET, MEMQ_CALLBACK_BACKOFF_S="0.2",
                   MEMQ_CALLBACK_TIMEOUT_S="5") as env:
        yield env


def _beat(env: dict[str, str], log_path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "memq.cli.main", "beat"], env=env, stdout=open(log_path, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def test_two_beats_deliver_each_callback_once_with_no_serve(beat_env, receiver: Receiver, tmp_path):
    from memq.quick.doorbell import RedisStepBell
    from storage import repository as repo
    from storage.db import Database
    from storage.repository.callbacks import add_callback, get_callback

    # given a worker and two beats on their own stack, and no `memq serve`
    worker = WorkerProcess(beat_env, tmp_path / "worker.log", "--concurrency", "20")
    beats = [_beat(beat_env, tmp_path / f"beat-{i}.log") for i in range(2)]
    db = Database(beat_env["MEMQ_DATABASE_URL"])
    bell = RedisStepBell(beat_env["MEMQ_BROKER_URL"])
    try:
        worker.wait_ready()
        # when six messages are sent with a callback (the outbox row in the run's transaction, as a send does)
        run_ids = []
        with db.transaction() as s:
            agent = repo.create_agent(s, name="beat-cb", blocks={"human": "?"}, limit_chars=500)
            for i in range(6):
                run, _ = repo.enqueue_message(s, agent.id, f"callback {i}", max_chars=5000)
                add_callback(s, run.id, receiver.url + "/beat")
                run_ids.append(run.id)
        bell.ring(agent.id, agent.queue)
        # then each finished run is posted once, signed, with its reply
        deadline = time.monotonic() + 60
        while len(receiver.to("/beat")) < 6:
            logs = "\n".join((tmp_path / f"beat-{i}.log").read_text()[-1500:] for i in range(2))
            assert time.monotonic() < deadline, f"{len(receiver.to('/beat'))} of 6 callbacks; beat logs:\n{logs}"
            time.sleep(0.1)
        time.sleep(1.5)  # time for a duplicate to show up
        posts = receiver.to("/beat")
        posted_ids = sorted(h["X-Memq-Run-Id"] for _, h, _ in posts)
        assert posted_ids == sorted(f"run-{r}" for r in run_ids)
        for _, headers, body in posts:
            assert signed_by(SECRET, headers, body)
            doc = json.loads(body)
            assert doc["status"] == "completed" and doc["id"] == headers["X-Memq-Run-Id"]
            assert any(m["message_type"] == "assistant_message" for m in doc["messages"])
        with db.transaction() as s:
            rows = [get_callback(s, r) for r in run_ids]
            assert {(c.status, c.attempts, c.last_status) for c in rows} == {("delivered", 1, 200)}
        # and both beats were up throughout (each delivering from the same outbox)
        assert all(b.poll() is None for b in beats)
    finally:
        for b in beats:
            stop_process_group(b)
        worker.stop()
        bell.close()
        db.dispose()
