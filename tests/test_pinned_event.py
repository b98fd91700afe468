"""A chain keeps knowing what it is doing: the event that started the run stays in
its context until the run ends, however many flushes the chain goes through.

A real `memq worker` with a small window (its own Postgres database and Redis
db, so no other worker of the session, with other settings, takes its steps)
and the scripted LLM, which records every prompt.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from stack import own_stack, worker_and_client  # noqa: E402
from helpers import call  # noqa: E402

WINDOW = 4096
MAX_CHAIN = 14


@pytest.fixture(scope="module")
def small_window(memq_env: dict[str, str], llm, tmp_path_factory):
    """(client, worker) on a database and broker of their own, MEMQ_CONTEXT_WINDOW=4096."""
    base = {k: v for k, v in memq_env.items() if not k.startswith("MEMQ_EMBEDDING")}
    with own_stack(base, "memq_test_pin", MEMQ_CONTEXT_WINDOW=str(WINDOW), MEMQ_MAX_CHAIN=str(MAX_CHAIN),
                   MEMQ_HOME=str(tmp_path_factory.mktemp("pin-home")),
                   MEMQ_QDRANT_PATH=str(tmp_path_factory.mktemp("pin-qdrant"))) as env:
        with worker_and_client(env, tmp_path_factory.mktemp("pin-worker") / "worker.log", "--concurrency",
                               "4") as (worker, client):
            yield client, worker


@pytest.fixture
def sheep_summary(llm):
    """The summarizer's answer for this test only (the scripted LLM is shared by the session)."""
    llm.set_default("running summary", {"content": "The agent kept counting sheep in long messages."})
    yield
    llm.set_default("running summary", None)


def test_a_never_ending_chain_keeps_its_task_in_view_until_it_is_capped(small_window, llm, sheep_summary):
    client, worker = small_window
    # given an agent whose model always asks for another step, with bulky output each time
    agent = client.create_agent(f"pin-{uuid.uuid4().hex[:8]}", persona="A tireless counter.", human="Unknown.")
    bulky = "One more sheep jumps the fence, and then another, and another. " * 25
    llm.set_default(agent.id, call("send_message", heartbeat=True, thought="Keep counting.", message=bulky))
    task = f"Count sheep and never stop ({uuid.uuid4().hex[:8]})."
    # when the user starts the run
    run = client.send(agent.id, task, wait=True, timeout_s=120)
    # then it runs until the chain cap, not until it forgets what it was doing
    assert run.status == "chain_capped", (run.status, run.error, worker.log_path.read_text()[-3000:])
    assert run.steps == MAX_CHAIN
    prompts = [r for r in llm.requests(agent.id) if r.get("tools")]
    assert len(prompts) == MAX_CHAIN
    # the window forced flushes: the summary is in view and the first steps' replies are not
    last = prompts[-1]["messages"]
    assert "Summary of older conversation" in last[0]["content"]
    in_view = [m for m in last[1:] if m["role"] == "assistant"]
    assert len(in_view) < MAX_CHAIN - 1
    # and the message that started the run is in every prompt, the last one included
    for prompt in prompts:
        events = [json.loads(m["content"]) for m in prompt["messages"] if m["role"] == "user"]
        assert [e["message"] for e in events if e["type"] == "user_message"] == [task]
