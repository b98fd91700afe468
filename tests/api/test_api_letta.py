"""`memq serve` driven by Letta's own SDK (`letta-client`), unchanged, against a real
worker and the scripted LLM (given / when / then)."""

from __future__ import annotations

import time

import pytest

from helpers import call


def _bare(agent_id: str) -> str:
    return agent_id.removeprefix("agent-")


@pytest.fixture
def ada(letta):
    agent = letta.agents.create(
        name="ada",
        memory_blocks=[{"label": "persona", "value": "A terse helper.", "limit": 500},
                       {"label": "human", "value": "Nothing known yet.", "limit": 300}],
        model="openai/scripted",
        embedding="openai/scripted-embed",
        tags=["test", "sdk"],
    )
    yield agent
    letta.agents.delete(agent.id)


def test_an_agent_created_with_blocks_reads_back_through_the_sdk(letta, ada):
    # then the agent comes back with Letta's id form, its blocks, limits and tags
    assert ada.id.startswith("agent-") and ada.name == "ada" and ada.tags == ["test", "sdk"]
    got = letta.agents.retrieve(ada.id)
    assert {b.label: (b.value, b.limit) for b in got.memory.blocks} == {
        "persona": ("A terse helper.", 500), "human": ("Nothing known yet.", 300)}
    # and the bare id works too, and the agent is listed
    assert letta.agents.retrieve(_bare(ada.id)).id == ada.id
    assert ada.id in [a.id for a in letta.agents.list()]
    # when it is modified
    changed = letta.agents.update(ada.id, name="ada-2", system="You are terse.")
    assert (changed.name, changed.system) == ("ada-2", "You are terse.")


def test_my_name_is_grace_gets_a_reply_and_changes_the_human_block(letta, ada, llm):
    # given an LLM that stores the name, then replies
    key = _bare(ada.id)
    llm.script(key,
               call("core_memory_append", heartbeat=True, thought="Remember her name.",
                    label="human", content="Name: Grace."),
               call("send_message", message="Nice to meet you, Grace."))
    # when the user says her name (blocking send)
    response = letta.agents.messages.create(ada.id, messages=[{"role": "user", "content": "my name is Grace"}])
    # then the reply is an assistant_message, after the reasoning and the memory tool call and its return
    kinds = [m.message_type for m in response.messages]
    assert kinds == ["reasoning_message", "tool_call_message", "tool_return_message", "assistant_message"]
    assert response.messages[-1].content == "Nice to meet you, Grace."
    assert response.messages[1].tool_call.name == "core_memory_append"
    assert response.stop_reason.stop_reason == "end_turn"
    assert response.usage.step_count == 2
    # and the human block holds the name
    human = letta.agents.blocks.retrieve("human", agent_id=ada.id)
    assert "Name: Grace." in human.value


def test_create_async_returns_a_run_at_once_that_completes(letta, ada, llm):
    llm.script(_bare(ada.id), call("send_message", message="done async"))
    run = letta.agents.messages.create_async(ada.id, messages=[{"role": "user", "content": "hello"}])
    assert run.id.startswith("run-") and run.status in ("created", "running", "completed")
    deadline = time.monotonic() + 30
    while (run := letta.runs.retrieve(run.id)).status != "completed":
        assert time.monotonic() < deadline, run
        time.sleep(0.05)
    assert run.stop_reason == "end_turn"
    shown = [m for m in letta.runs.messages.list(run.id) if m.message_type == "assistant_message"]
    assert [m.content for m in shown] == ["done async"]
    assert run.id in [r.id for r in letta.runs.list(agent_id=ada.id, statuses=["completed"])]


def test_stream_shows_each_step_in_order_then_the_stop_reason(letta, ada, llm):
    llm.script(_bare(ada.id),
               call("core_memory_append", heartbeat=True, label="human", content="Likes tea."),
               call("send_message", message="Tea it is."))
    chunks = list(letta.agents.messages.stream(ada.id, messages=[{"role": "user", "content": "I like tea"}]))
    kinds = [c.message_type for c in chunks]
    assert kinds == ["tool_call_message", "tool_return_message", "assistant_message", "stop_reason",
                     "usage_statistics"]
    steps = [c.step_id for c in chunks[:3]]
    assert steps[0] == steps[1] != steps[2]


def test_messages_list_pages_with_cursors(letta, ada, llm):
    # given three exchanges
    for i in range(3):
        letta.agents.messages.create(ada.id, messages=[{"role": "user", "content": f"note {i}"}])
    # when the messages are read oldest first, two at a time
    first = letta.agents.messages.list(ada.id, order="asc", limit=2)
    second = letta.agents.messages.list(ada.id, order="asc", limit=2, after=first.items[-1].id)
    # then the pages follow each other without overlap, and the newest-first page ends with the latest
    ids = [m.id for m in first.items] + [m.id for m in second.items]
    assert ids == sorted(set(ids), key=lambda i: int(i.split("-")[1]))
    users = [m.content for m in letta.agents.messages.list(ada.id, order="asc", limit=100).items
             if m.message_type == "user_message"]
    assert users == ["note 0", "note 1", "note 2"]
    newest = letta.agents.messages.list(ada.id, limit=1).items
    assert newest[0].message_type == "assistant_message" and newest[0].content == "echo: note 2"
    # and auto-pagination walks every message once
    walked = [m.id for m in letta.agents.messages.list(ada.id, order="asc", limit=2)]
    assert len(walked) == len(letta.agents.messages.list(ada.id, order="asc", limit=1000).items)


def test_a_block_update_over_its_limit_is_refused_and_within_it_is_kept(letta, ada):
    from letta_client import UnprocessableEntityError

    with pytest.raises(UnprocessableEntityError, match="limit is 300"):
        letta.agents.blocks.update("human", agent_id=ada.id, value="x" * 301)
    updated = letta.agents.blocks.update("human", agent_id=ada.id, value="Grace, 36.", limit=400)
    assert (updated.value, updated.limit) == ("Grace, 36.", 400)
    assert [b.label for b in letta.agents.blocks.list(ada.id)] == ["persona", "human"]
