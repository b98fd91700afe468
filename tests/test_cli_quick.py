"""The CLI in server mode answers from Postgres without the heavy stack (issue 15 §4).

Structural, not timed: each command runs as a user runs it (the `memq` console
script in a subprocess, Postgres + Redis + a real `memq worker`, an embedding model
configured) with ``-X importtime``, and the modules it loaded are checked. The
quick path's documents are compared with the full client's, and a quick send is
run by the real worker.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

MEMQ = str(Path(sys.executable).parent / "memq")
HEAVY = ("litellm", "celery", "kombu", "torch", "sentence_transformers", "sqlalchemy")


def run(env: dict[str, str], *args: str) -> tuple[dict, set[str]]:
    """The command's JSON document and the top-level packages it imported."""
    proc = subprocess.run([MEMQ, *args, "--json"], env=dict(env, PYTHONPROFILEIMPORTTIME="1"),
                          capture_output=True, text=True, timeout=60)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 0, [line for line in lines if not line.startswith("import time:")]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in lines if line.startswith("import time:")}
    return json.loads(proc.stdout), imported


def wait_done(client, run_id: str, timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run_view = client.get_run(run_id)
        if run_view.status not in ("queued", "running"):
            return run_view
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} still {run_view.status}")


@pytest.fixture
def talked_to(client, agent):
    """An agent with a finished run, a passage and a schedule."""
    run_view = client.send(agent.id, "The capital of Portugal is Lisbon.", wait=True, timeout_s=20)
    assert run_view.status == "done"
    client.archival_insert(agent.id, "Lisbon has seven hills and yellow trams.")
    client.add_schedule(agent.id, "check in", every="1h")
    batch = client.submit_batch([json.dumps({"agent_id": agent.id, "message": "a batch line"})])
    return SimpleNamespace(id=agent.id, batch_id=batch["batch_id"])


READS = [
    ("agent", "list"),
    ("agent", "show", "{id}"),
    ("messages", "{id}", "--limit", "5"),
    ("memory", "show", "{id}"),
    ("schedule", "list"),
    ("schedule", "list", "{id}"),
    ("batch", "status", "{batch}"),
]


@pytest.mark.parametrize("command", READS, ids=lambda c: " ".join(c))
def test_read_commands_load_no_orm_celery_or_llm_stack(memq_env, worker, talked_to, command):
    # given an agent with messages, memory and a schedule, a worker running
    args = [part.format(id=talked_to.id, batch=talked_to.batch_id) for part in command]
    # when a read command runs
    _, imported = run(memq_env, *args)
    # then it imported none of the heavy stack
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_quick_documents_equal_the_full_clients(memq_env, client, talked_to):
    # given an agent at rest (its run finished)
    aid = talked_to.id
    # when the CLI reads it / then each document is what the full client gives
    assert run(memq_env, "agent", "show", aid)[0] == {
        **client.get_agent(aid).model_dump(), "memory": [b.model_dump() for b in client.memory(aid)]}
    assert run(memq_env, "messages", aid, "--limit", "4")[0] == {
        "messages": [m.model_dump() for m in client.messages(aid, limit=4)]}
    assert run(memq_env, "memory", "show", aid)[0] == {"blocks": [b.model_dump() for b in client.memory(aid)]}
    assert run(memq_env, "schedule", "list", aid)[0] == {
        "schedules": [s.model_dump() for s in client.list_schedules(aid)]}
    batch_doc = run(memq_env, "batch", "status", talked_to.batch_id)[0]
    assert batch_doc == client.batch_status(talked_to.batch_id).model_dump()
    listed = {a["id"]: a for a in run(memq_env, "agent", "list")[0]["agents"]}
    assert listed[aid] == client.list_agents()[[a.id for a in client.list_agents()].index(aid)].model_dump()


def test_quick_send_is_run_by_the_real_worker(memq_env, client, agent):
    # given a worker consuming the broker
    # when `memq send` queues a message (no --wait) on the quick path
    doc, imported = run(memq_env, "send", agent.id, "ring the bell")
    # then it loaded no ORM, Celery or LLM stack, and the worker ran the step it rang for
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
    assert doc["status"] == "queued" and doc["agent_id"] == agent.id
    done = wait_done(client, doc["run_id"])
    assert (done.status, done.replies) == ("done", ["echo: ring the bell"])


def test_send_by_name_and_with_a_key_still_take_the_full_path(memq_env, client, agent):
    # given an agent named by its name, and a send with an idempotency key
    # when / then both are answered as before (the full client resolves names and keys)
    by_name, _ = run(memq_env, "send", agent.name, "by name", "--wait", "--timeout", "20")
    assert (by_name["status"], by_name["replies"]) == ("done", ["echo: by name"])
    first, _ = run(memq_env, "send", agent.id, "once", "--idempotency-key", "k-1")
    again, _ = run(memq_env, "send", agent.id, "once", "--idempotency-key", "k-1")
    assert again["run_id"] == first["run_id"]
    assert wait_done(client, first["run_id"]).replies == ["echo: once"]


def test_archival_search_embeds_the_query_over_http_without_the_heavy_stack(memq_env, worker, llm, talked_to):
    # given a passage indexed by meaning (the worker owns the embedded vector store)
    # when the CLI searches archival memory
    deadline = time.monotonic() + 15
    while True:
        doc, imported = run(memq_env, "archival", "search", talked_to.id, "trams in Lisbon")
        if doc["results"] and "score" in doc["results"][0] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # then the passage is found by meaning; the query was embedded over HTTP, the vector step
    # handed to the worker, and no ORM, Celery or LLM stack was loaded
    assert doc["results"][0]["text"] == "Lisbon has seven hills and yellow trams." and "score" in doc["results"][0]
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
    assert any(r.get("input") == ["trams in Lisbon"] for r in llm.embedding_requests())


@pytest.mark.parametrize("query", ["Lisbon trams", "", "nothing like it"])
def test_quick_search_documents_equal_the_full_clients(memq_env, client, talked_to, query):
    # given an agent whose messages and passage are stored and indexed (so nothing changes between the calls)
    aid = talked_to.id
    deadline = time.monotonic() + 15
    while client.recall_search(aid, "Lisbon")["notes"]:  # "(N newest message(s) are not indexed yet ...)"
        assert time.monotonic() < deadline, "recall indexing did not catch up"
        time.sleep(0.2)
    # when the CLI searches archival and recall memory / then the documents are the full client's
    assert run(memq_env, "archival", "search", aid, query)[0] == client.archival_search(aid, query)
    from datetime import datetime, timezone

    since = datetime(2020, 1, 1, tzinfo=timezone.utc)
    doc, imported = run(memq_env, "recall", "search", aid, query, "--start", "2020-01-01")
    assert doc == client.recall_search(aid, query, 0, since, None)
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
