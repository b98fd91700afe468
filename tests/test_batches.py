"""Batches through a real worker: validation by line, order per agent, cancel, fairness."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from memq.batches import BatchInvalid
from storage.models import Batch, Run
from sqlalchemy import func, select

WAIT_S = 60


def _wait_batch(client, batch_id, timeout_s=WAIT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.batch_status(batch_id)
        if status.finished:
            return status
        time.sleep(0.1)
    raise AssertionError(f"batch not finished: {client.batch_status(batch_id)}")


def _count(client, model):
    with client.rt.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_invalid_lines_are_reported_by_number_and_nothing_is_enqueued(client, agent):
    lines = [
        json.dumps({"agent_id": agent.id, "message": "fine"}),
        "{not json",
        json.dumps({"agent_id": agent.id, "message": ""}),
        json.dumps({"agent_id": "no-such-agent", "message": "hi"}),
        json.dumps({"agent": {"name": "x"}, "message": "needs --create-agents"}),
        json.dumps({"agent_id": agent.id, "message": "ok", "colour": "blue"}),
    ]
    batches, runs = _count(client, Batch), _count(client, Run)
    with pytest.raises(BatchInvalid) as err:
        client.submit_batch(lines)
    assert [n for n, _ in err.value.errors] == [2, 3, 4, 5, 6]
    assert "not valid JSON" in dict(err.value.errors)[2]
    assert "unknown agent" in dict(err.value.errors)[4]
    assert "--create-agents" in dict(err.value.errors)[5]
    assert (_count(client, Batch), _count(client, Run)) == (batches, runs)


def test_batch_runs_in_line_order_per_agent_and_reports_every_line(client):
    a, b = client.create_agent("batch-a"), client.create_agent("batch-b")
    lines = []
    for i in range(6):
        lines.append(json.dumps({"id": f"a{i}", "agent_id": a.id, "message": f"a-{i}"}))
        lines.append(json.dumps({"id": f"b{i}", "agent_id": b.id, "message": f"b-{i}"}))
    lines.insert(3, "[1, 2]")
    submitted = client.submit_batch(lines, skip_invalid=True)
    assert submitted["enqueued"] == 12 and submitted["invalid"] == 1
    status = _wait_batch(client, submitted["batch_id"])
    assert status.counts == {"done": 12} and status.invalid == 1
    assert status.prompt_tokens > 0 and status.completion_tokens > 0
    rows = client.batch_results(submitted["batch_id"])
    assert [r["line"] for r in rows] == list(range(1, 14))
    assert rows[3]["status"] == "invalid" and "JSON object" in rows[3]["error"]
    for row in rows:
        if row["status"] == "done":
            assert row["replies"] == [f"echo: {row['message']}"]
    for agent_id, prefix in ((a.id, "a"), (b.id, "b")):
        seen = [json.loads(m.content)["message"] for m in client.messages(agent_id) if m.role == "user"]
        assert seen == [f"{prefix}-{i}" for i in range(6)]


def test_create_agents_makes_one_agent_per_name(client):
    tag = uuid.uuid4().hex[:6]
    lines = [json.dumps({"agent": {"name": f"{tag}-{n}", "persona": "Batch bot."}, "message": f"m{i}"})
             for i, n in enumerate(["x", "y", "x"])]
    submitted = client.submit_batch(lines, create_agents=True)
    assert submitted["agents_created"] == 2
    _wait_batch(client, submitted["batch_id"])
    rows = client.batch_results(submitted["batch_id"])
    assert rows[0]["agent_id"] == rows[2]["agent_id"] != rows[1]["agent_id"]
    assert all(r["status"] == "done" for r in rows)


def test_cancel_stops_the_rest(client, llm):
    slow = client.create_agent("slow")
    llm.set_default(slow.id, {"sleep_s": 0.4, "tool": "send_message", "echo": True})
    try:
        lines = [json.dumps({"agent_id": slow.id, "message": f"n{i}"}) for i in range(15)]
        batch_id = client.submit_batch(lines)["batch_id"]
        deadline = time.monotonic() + WAIT_S
        while client.batch_status(batch_id).counts.get("done", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        cancelled = client.cancel_batch(batch_id)["cancelled_runs"]
        status = _wait_batch(client, batch_id)
    finally:
        llm.set_default(slow.id, None)
    assert cancelled >= 10
    assert status.counts.get("cancelled") == cancelled
    assert status.counts.get("done", 0) + cancelled == 15
    rows = client.batch_results(batch_id)
    done_lines = [r["line"] for r in rows if r["status"] == "done"]
    assert done_lines == list(range(1, len(done_lines) + 1))  # a prefix ran, the rest did not
    time.sleep(1.0)
    assert client.batch_status(batch_id).counts.get("done", 0) == len(done_lines)


def test_interactive_send_is_not_stuck_behind_a_batch(client, llm, agent):
    agents = [client.create_agent(f"bulk-{i}") for i in range(40)]
    for a in agents:
        llm.set_default(a.id, {"sleep_s": 0.2, "tool": "send_message", "echo": True})
    try:
        lines = [json.dumps({"agent_id": a.id, "message": f"bulk {j}"}) for j in range(10) for a in agents]
        batch_id = client.submit_batch(lines)["batch_id"]
        time.sleep(0.5)
        started = time.monotonic()
        run = client.send(agent.id, "urgent", wait=True, timeout_s=WAIT_S)
        interactive_s = time.monotonic() - started
        remaining = client.batch_status(batch_id)
        status = _wait_batch(client, batch_id, timeout_s=120)
    finally:
        for a in agents:
            llm.set_default(a.id, None)
    assert run.status == "done" and run.replies == ["echo: urgent"]
    # the interactive run finished while most of the batch was still waiting
    assert not remaining.finished
    assert status.counts == {"done": 400}
    print(f"\ninteractive send during a 400-message batch: {interactive_s * 1000:.0f} ms")
