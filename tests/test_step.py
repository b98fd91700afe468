"""The heartbeat step end to end: real worker process, Postgres, Redis, litellm, scripted LLM."""

from __future__ import annotations

import json
import threading

import pytest

from helpers import call, journal, system_prompt, tool_results, user_events

WAIT_S = 30


def test_core_memory_edit_reaches_the_next_prompt(client, agent, llm):
    # given an agent that stores a fact, then answers
    llm.script(
        agent.id,
        call("core_memory_append", heartbeat=True, thought="Remember the name.", label="human",
             content="Name: Grace"),
        call("send_message", message="Nice to meet you, Grace."),
    )
    # when the user tells it the fact
    run = client.send(agent.id, "Hi, I am Grace", wait=True, timeout_s=WAIT_S)
    # then the run chained two steps and replied once
    assert run.status == "done"
    assert run.steps == 2
    assert run.replies == ["Nice to meet you, Grace."]
    assert "Name: Grace" in next(b.value for b in client.memory(agent.id) if b.label == "human")
    # and the heartbeat step's prompt already showed the new text in core memory
    prompts = [system_prompt(r) for r in llm.requests(agent.id)]
    assert "Name: Grace" not in prompts[0]
    assert "Name: Grace" in prompts[1]
    # and the next message's prompt contains it, with used/limit shown
    client.send(agent.id, "What is my name?", wait=True, timeout_s=WAIT_S)
    last = system_prompt(llm.requests(agent.id)[-1])
    assert "Name: Grace" in last
    human = next(b for b in client.memory(agent.id) if b.label == "human")
    assert f'used="{len(human.value)}" limit="{human.limit}"' in last


def test_inner_monologue_is_stored_and_events_are_json(client, agent, llm):
    llm.script(agent.id, call("send_message", thought="They greeted me.", message="Hello!"))
    run = client.send(agent.id, "hello", wait=True, timeout_s=WAIT_S)
    assert run.replies == ["Hello!"]
    msgs = client.messages(agent.id)
    assert [m.role for m in msgs] == ["user", "assistant", "tool"]
    event = json.loads(msgs[0].content)
    assert event["type"] == "user_message" and event["message"] == "hello" and event["time"]
    assert msgs[1].content == "They greeted me."
    assert msgs[1].tool_calls[0]["type"] == "function"
    assert msgs[1].tool_calls[0]["function"]["name"] == "send_message"
    assert json.loads(msgs[2].content)["status"] == "OK"
    assert msgs[2].tool_call_id == msgs[1].tool_calls[0]["id"]
    # the LLM received the event packed as JSON, as the last message
    sent = llm.requests(agent.id)[-1]["messages"]
    assert json.loads(sent[-1]["content"])["message"] == "hello"
    assert {t["function"]["name"] for t in llm.requests(agent.id)[-1]["tools"]} == {
        "send_message", "core_memory_append", "core_memory_replace",
        "conversation_search", "archival_memory_insert", "archival_memory_search",
    }


def test_reply_without_tool_call_ends_the_turn_as_inner_monologue(client, agent, llm):
    llm.script(agent.id, {"content": "I will just think about this."})
    run = client.send(agent.id, "ping", wait=True, timeout_s=WAIT_S)
    assert run.status == "done" and run.replies == [] and run.steps == 1
    assert client.messages(agent.id)[-1].content == "I will just think about this."
    # and the agent is free for the next message
    assert client.send(agent.id, "again", wait=True, timeout_s=WAIT_S).replies == ["echo: again"]


BAD_CALLS = {
    "malformed_json": {"tool": "send_message", "raw_args": '{"message": "hi", '},
    "unknown_tool": call("launch_rockets", target="moon"),
    "missing_argument": call("core_memory_append", label="human"),
    "extra_argument": call("send_message", message="hi", mood="happy"),
    "wrong_type": call("send_message", message=42),
    "over_block_limit": call("core_memory_append", label="human", content="x" * 5000),
    "unknown_block": call("core_memory_replace", label="diary", old_content="a", new_content="b"),
    "replace_missing_text": call("core_memory_replace", label="human", old_content="zebra", new_content="b"),
    "two_tool_calls": {"tool_calls": [
        {"name": "send_message", "args": {"message": "one", "request_heartbeat": False}},
        {"name": "send_message", "args": {"message": "two", "request_heartbeat": False}},
    ]},
}


@pytest.mark.parametrize("kind", sorted(BAD_CALLS))
def test_failed_tool_call_forces_a_heartbeat_and_the_agent_recovers(client, agent, llm, kind):
    # given a model whose first call is bad and whose second is fine
    llm.script(agent.id, BAD_CALLS[kind], call("send_message", message="fixed it"))
    # when a message arrives
    run = client.send(agent.id, "do something", wait=True, timeout_s=WAIT_S)
    # then the bad call got a Failed result, a heartbeat followed, and the run ended well
    assert run.status == "done", run
    assert run.steps == 2
    assert run.replies[-1] == "fixed it"
    results = tool_results(client, agent.id)
    first_step, second_step = results[:-1], results[-1]
    failed = [r for r in first_step if r["status"] == "Failed"]
    assert len(failed) == 1 and failed[0]["message"]
    assert second_step["status"] == "OK"
    assert [e["type"] for e in user_events(client, agent.id)] == ["user_message", "heartbeat"]
    # and the second prompt showed the model its failure
    second = llm.requests(agent.id)[1]["messages"]
    assert any(m["role"] == "tool" and '"Failed"' in m["content"] for m in second)
    if kind == "two_tool_calls":
        assert run.replies == ["one", "fixed it"]  # only the first call of the reply ran
    if kind == "over_block_limit":
        assert "limit" in failed[0]["message"]
        assert "x" * 100 not in next(b.value for b in client.memory(agent.id) if b.label == "human")


def test_chain_is_capped_visibly(client, agent, llm, settings):
    llm.set_default(agent.id, call("core_memory_append", heartbeat=True, label="human", content="more"))
    try:
        run = client.send(agent.id, "loop forever", wait=True, timeout_s=WAIT_S)
    finally:
        llm.set_default(agent.id, None)
    assert run.status == "chain_capped"
    assert run.steps == settings.max_chain
    assert "chained steps" in run.error
    assert len(llm.requests(agent.id)) == settings.max_chain
    # the agent takes the next message normally
    assert client.send(agent.id, "next", wait=True, timeout_s=WAIT_S).status == "done"


def test_llm_timeout_then_success_is_retried(client, agent, llm):
    llm.script(agent.id, {"sleep_s": 2.5, "tool": "send_message", "args": {"message": "late"}})
    run = client.send(agent.id, "slow", wait=True, timeout_s=WAIT_S)
    assert run.status == "done" and run.replies == ["echo: slow"]
    assert journal(client, agent.id)[0].llm_attempts == 2


@pytest.mark.parametrize("fault", [{"status": 500}, {"status": 503}, {"empty_choices": True}, {"garbage": True}])
def test_provider_faults_then_success_are_retried(client, agent, llm, fault):
    llm.script(agent.id, fault)
    run = client.send(agent.id, "flaky", wait=True, timeout_s=WAIT_S)
    assert run.status == "done" and run.replies == ["echo: flaky"]
    assert journal(client, agent.id)[0].llm_attempts == 2


def test_rate_limit_honours_retry_after(client, agent, llm):
    llm.script(agent.id, {"status": 429, "retry_after": 1})
    run = client.send(agent.id, "busy?", wait=True, timeout_s=WAIT_S)
    assert run.status == "done"
    step = journal(client, agent.id)[0]
    assert step.llm_attempts == 2
    assert step.llm_latency_ms >= 1000  # waited as the provider asked, not the 50 ms backoff


def test_exhausted_retries_fail_the_run_visibly_and_the_agent_goes_on(client, agent, llm):
    llm.script(agent.id, {"status": 500, "repeat": 3})
    run = client.send(agent.id, "doomed", wait=True, timeout_s=WAIT_S)
    assert run.status == "failed"
    assert "HTTP 500" in run.error
    alert = user_events(client, agent.id)[-1]
    assert alert["type"] == "system_alert" and "unanswered" in alert["message"]
    nxt = client.send(agent.id, "hello again", wait=True, timeout_s=WAIT_S)
    assert nxt.status == "done" and nxt.replies == ["echo: hello again"]


def test_concurrent_sends_to_one_agent_are_processed_in_order_exactly_once(client, agent, llm):
    # given 20 senders racing on one agent
    runs: dict[int, str] = {}
    lock = threading.Lock()

    def send(i: int) -> None:
        r = client.send(agent.id, f"message {i}")
        with lock:
            runs[i] = r.run_id

    threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # when all have finished
    finished = [client.wait(rid, WAIT_S) for rid in runs.values()]
    assert all(r.status == "done" for r in finished), finished
    # then each message was answered exactly once, in arrival (inbox) order
    events = [e["message"] for e in user_events(client, agent.id)]
    assert sorted(events) == sorted(f"message {i}" for i in range(20))
    assert len(set(events)) == 20
    replies = [json.loads(c["function"]["arguments"])["message"]
               for m in client.messages(agent.id, 1000) if m.role == "assistant" for c in m.tool_calls]
    assert replies == [f"echo: {e}" for e in events]
    by_creation = sorted(finished, key=lambda r: r.created_at)
    assert [r.replies[0] for r in by_creation] == [f"echo: {e}" for e in events]
    # and no two steps of the agent overlapped
    steps = journal(client, agent.id)
    for a, b in zip(steps, steps[1:]):
        assert a.finished_at <= b.started_at


def test_different_agents_run_in_parallel(client, llm):
    agents = [client.create_agent(f"par-{i}") for i in range(8)]
    for a in agents:
        llm.script(a.id, {"sleep_s": 0.6, "tool": "send_message", "args": {"message": "x"}})
    runs = [client.send(a.id, "go") for a in agents]
    assert all(client.wait(r.run_id, WAIT_S).status == "done" for r in runs)
    spans = [journal(client, a.id)[0] for a in agents]
    latest_start = max(s.started_at for s in spans)
    earliest_end = min(s.finished_at for s in spans)
    # every step was in flight at one common instant
    assert latest_start < earliest_end


def test_bad_input_is_refused_before_anything_is_queued(client, agent):
    from storage.repository.errors import BadInput, NotFound

    with pytest.raises(NotFound, match="unknown agent"):
        client.send("no-such-agent", "hi")
    with pytest.raises(BadInput, match="empty"):
        client.send(agent.id, "   ")
    with pytest.raises(BadInput, match="limit"):
        client.send(agent.id, "x" * 5001)
    assert client.messages(agent.id) == []


def test_long_conversation_stays_within_the_window_and_keeps_everything_in_recall(client, agent, llm, settings):
    import litellm

    # given messages big enough that ten of them overflow an 8k window several times
    texts = [f"message {i}: " + " ".join(f"word{i}x{j}" for j in range(450)) for i in range(10)]
    # when they are sent one after another
    for text in texts:
        assert client.send(agent.id, text, wait=True, timeout_s=WAIT_S).status == "done"
    # then no prompt the model received was over the window (by litellm's count)
    requests = llm.requests(agent.id)
    tools = requests[0]["tools"]
    for body in requests:
        used = litellm.token_counter(model="openai/scripted", messages=body["messages"], tools=tools)
        assert used + settings.llm_max_tokens <= settings.context_window, used
    # and history was evicted into a summary, with the pressure alert given first
    steps = journal(client, agent.id)
    evictions = [s.step_no for s in steps if s.evicted_messages]
    assert evictions, "the window never flushed"
    events = user_events(client, agent.id)
    alerts = [e for e in events if e["type"] == "system_alert" and "filling up" in e["message"]]
    assert 1 <= len(alerts) <= len(evictions) + 1
    shown = client.get_agent(agent.id).context
    assert shown.summary_chars > 0 and shown.window == settings.context_window
    assert 0 < shown.tokens <= settings.context_window
    assert "Summary of older conversation" in system_prompt(requests[-1])
    # and every message is still in recall memory, in order
    assert [e["message"] for e in events if e["type"] == "user_message"] == texts
    assert shown.messages_in_recall == len(client.messages(agent.id, 1000))
    assert shown.messages_in_context < shown.messages_in_recall


def test_pressure_alert_once_per_crossing_and_evicted_facts_stay_searchable(client, agent, llm):
    from sqlalchemy import select

    from storage.models import Message

    # given a summarizer that fails (its calls get HTTP 500) and a conversation that creeps up
    llm.script("running summary", {"status": 500, "repeat": 9})
    texts = [f"fact {i}: " + ("the secret word is zebrafish " if i == 0 else "") + " ".join(
        f"filler{i}w{j}" for j in range(90)) for i in range(45)]
    # when every message is sent
    for text in texts:
        run = client.send(agent.id, text, wait=True, timeout_s=WAIT_S)
        assert run.status == "done", run  # a failing summarizer never stops the agent
    # then the window flushed more than once, and between two pressure alerts there
    # was always a flush: one alert per crossing of the warning line
    evictions = [s.step_no for s in journal(client, agent.id) if s.evicted_messages]
    with client.rt.db.transaction() as s:
        alerts = list(s.scalars(select(Message.step_no).where(
            Message.agent_id == agent.id, Message.content.contains("filling up")).order_by(Message.id)))
    assert len(evictions) >= 2 and alerts
    for a1, a2 in zip(alerts, alerts[1:]):
        assert any(a1 < e <= a2 for e in evictions), (alerts, evictions)
    # and the summary fell back to a digest that says where older messages went
    assert "moved to recall memory" in system_prompt(llm.requests(agent.id)[-1])
    # and the first fact, long out of the context, is still found by conversation_search
    llm.script(agent.id, call("conversation_search", heartbeat=True, query="secret word zebrafish"),
               call("send_message", message="found"))
    client.send(agent.id, "what was the secret word?", wait=True, timeout_s=WAIT_S)
    found = tool_results(client, agent.id)[-2]
    assert found["status"] == "OK" and "zebrafish" in found["message"]
    assert "zebrafish" not in json.dumps(llm.requests(agent.id)[-2]["messages"][1:-1])  # not in the context
