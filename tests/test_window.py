"""The context window: never exceeded, tool calls kept paired, the event always present.

Property tests drive the real ContextBuilder (litellm's token counter, the real
summarizer calling the scripted LLM through litellm) over random histories and
windows, and check every compiled prompt with litellm's own counter.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from memq.settings import Settings
from storage.models import Agent, Message
from workers.base_tools import base_toolset
from workers.context import ContextBuilder
from workers.events import pack_tool_result
from workers.llm import LLMClient
from workers.summarizer import Summarizer
from workers.tokens import TokenCounter
from workers.tools import Block
from workers.window import Budget, ContextTooSmall, cut_points, plan_window

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
MODEL = "openai/scripted"
WORDS = ["alpha", "beta", "memory", "agent", "window", "token", "Grace", "lunch", "42", "ok"]


# ---------- the planner alone: many cases, pure arithmetic ----------

@st.composite
def histories(draw):
    """(roles, tokens) of a history made of whole steps: user event, assistant, tool results."""
    roles, tokens = [], []
    for _ in range(draw(st.integers(0, 40))):
        roles.append("user")
        tokens.append(draw(st.integers(5, 3000)))
        roles.append("assistant")
        tokens.append(draw(st.integers(5, 800)))
        for _ in range(draw(st.integers(0, 3))):
            roles.append("tool")
            tokens.append(draw(st.integers(5, 500)))
    return roles, tokens


@given(
    h=histories(),
    window=st.integers(4_000, 200_000),
    base=st.integers(200, 2_000),
    event=st.integers(5, 1_500),
    summary=st.integers(0, 60),
    alerted=st.booleans(),
    force=st.integers(0, 2),
)
@hsettings(max_examples=400, deadline=None)
def test_plan_never_exceeds_the_limit_and_cuts_only_between_steps(h, window, base, event, summary, alerted, force):
    roles, tokens = h
    budget = Budget(window=window, reply_tokens=min(1024, window // 4), margin_tokens=max(32, window // 20))
    try:
        plan = plan_window(
            budget=budget, base_tokens=base, summary_tokens=summary, history_tokens=tokens,
            history_roles=roles, event_tokens=event, alert_tokens=40, alerted=alerted, force_evict=force,
        )
    except ContextTooSmall:
        assert base + budget.summary_reserve + event > budget.limit
        return
    kept = sum(tokens[plan.evict:])
    summary_after = budget.summary_reserve if plan.evict else summary
    assert base + summary_after + kept + event + (40 if plan.alert else 0) <= budget.limit
    assert plan.evict in cut_points(roles) or plan.evict == 0
    assert plan.evict == len(roles) or roles[plan.evict] == "user" or plan.evict == 0
    if force and roles:
        assert plan.evict > 0
    assert not (plan.alert and alerted)


# ---------- the real builder: litellm counting, real summarizer over HTTP ----------

def _agent(summary: str = "") -> Agent:
    return Agent(
        id=str(uuid.uuid4()), name="prop", model=None, system_prompt=None, message_count=0,
        context_start_id=1, summary=summary, summary_tokens=0, pressure_alerted=False,
    )


def _history(steps: list[tuple[int, list[int], bool]]) -> list[Message]:
    """Messages as the step stores them; tool call arguments may be malformed."""
    out, next_id = [], 1
    rnd_text = lambda n: " ".join(WORDS[(i * 7 + n) % len(WORDS)] for i in range(n))  # noqa: E731
    now = datetime.now(timezone.utc).isoformat()
    for user_words, tool_sizes, malformed in steps:
        out.append(Message(id=next_id, role="user", content=pack_event_user(rnd_text(user_words), now)))
        calls = [
            {"id": f"call_{next_id}_{k}", "type": "function",
             "function": {"name": "send_message",
                          "arguments": '{"message": "' + rnd_text(n) + ('"' if not malformed else "")}}
            for k, n in enumerate(tool_sizes)
        ]
        out.append(Message(id=next_id + 1, role="assistant", content=rnd_text(3), tool_calls=calls or None))
        next_id += 2
        for call in calls:
            out.append(Message(id=next_id, role="tool", tool_call_id=call["id"],
                               content=pack_tool_result_ok()))
            next_id += 1
    return out


def pack_event_user(text: str, now: str) -> str:
    return json.dumps({"type": "user_message", "message": text, "time": now})


def pack_tool_result_ok() -> str:
    from memq.constants import ToolStatus

    return pack_tool_result(ToolStatus.OK, "Message delivered to the user.")


@pytest.fixture(scope="module")
def builder_for(llm):
    llm.set_default("running summary", {"content": "The user talked about lunch and the number 42."})

    def make(window: int) -> ContextBuilder:
        s = Settings(llm_model=MODEL, llm_api_base=llm.url, llm_api_key="k", context_window=window,
                     llm_max_tokens=512, llm_max_retries=0, llm_timeout_s=5)
        counter = TokenCounter(window)
        client = LLMClient(s)
        tools = base_toolset().schemas
        return ContextBuilder(s, counter, Summarizer(client, counter), tools)

    yield make
    llm.set_default("running summary", None)  # the scripted LLM is shared by the whole session


def _assert_paired(messages):
    open_ids: set[str] = set()
    for m in messages:
        if m["role"] == "assistant":
            assert not open_ids, "a tool call lost its result"
            open_ids = {c["id"] for c in m.get("tool_calls") or []}
        elif m["role"] == "tool":
            assert m["tool_call_id"] in open_ids, "a tool result lost its call"
            open_ids.discard(m["tool_call_id"])
        else:
            assert not open_ids, "a tool call lost its result"


@given(
    steps=st.lists(
        st.tuples(st.integers(1, 600), st.lists(st.integers(1, 200), max_size=3), st.booleans()),
        max_size=30,
    ),
    window=st.sampled_from([4_096, 6_000, 8_192, 16_000]),
    event_words=st.integers(1, 800),
    summary_words=st.integers(0, 100),
)
@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_compiled_prompt_fits_the_window_by_litellms_count(builder_for, steps, window, event_words, summary_words):
    import litellm

    builder = builder_for(window)
    history = _history(steps)
    counter = builder.counter
    for m in history:
        from workers.context import message_to_llm

        m.tokens = counter.message(MODEL, message_to_llm(m))
    agent = _agent(" ".join(["lunch"] * summary_words))
    agent.summary_tokens = counter.text(MODEL, agent.summary)
    blocks = {"persona": Block("A test persona. " * 20, 2000), "human": Block("Grace, likes lunch. " * 30, 2000)}
    event = pack_event_user(" ".join(WORDS[i % len(WORDS)] for i in range(event_words)), "2026-01-01T00:00:00Z")
    ctx = builder.build(agent, blocks, history, event)
    budget = builder.budget(MODEL)
    # the provider's view: every message and the tool schemas, plus the reply budget
    counted = litellm.token_counter(model=MODEL, messages=ctx.messages, tools=builder.tools)
    assert counted + budget.reply_tokens <= window, (counted, ctx.tokens, window)
    assert ctx.messages[-1] == {"role": "user", "content": event}  # the event is always there, last
    _assert_paired(ctx.messages[1:])
    if ctx.evicted:
        assert ctx.summary and "Summary of older conversation" in ctx.messages[0]["content"]
        kept_ids = [m.id for m in history[ctx.evicted:]]
        assert ctx.context_start_id == (kept_ids[0] if kept_ids else history[-1].id + 1)


def test_summary_failure_falls_back_to_a_bounded_digest(builder_for, llm):
    # given a summarizer whose model call fails
    builder = builder_for(4_096)
    llm.script("running summary", {"status": 500})
    history = _history([(500, [50], False) for _ in range(12)])
    for m in history:
        from workers.context import message_to_llm

        m.tokens = builder.counter.message(MODEL, message_to_llm(m))
    # when the history overflows the window
    ctx = builder.build(_agent(), {"human": Block("x", 100)}, history, pack_event_user("hi", "t"))
    # then eviction still happened, with a digest that fits the reserve
    assert ctx.evicted > 0 and not ctx.summarized_by_llm
    assert "moved to recall memory" in ctx.summary
    assert builder.counter.text(MODEL, ctx.summary) <= builder.budget(MODEL).summary_reserve


def test_pressure_alert_is_given_once_per_crossing(builder_for):
    builder = builder_for(8_192)
    limit = builder.budget(MODEL).limit
    # a history at ~80% of the limit: over the warning line, under the flush line
    history, tokens = [], 0
    i = 1
    while tokens < 0.8 * limit - 600:
        m = Message(id=i, role="user", content=pack_event_user("lunch " * 60, "t"))
        m.tokens = builder.counter.message(MODEL, {"content": m.content})
        history.append(m)
        tokens += m.tokens
        i += 1
    agent = _agent()
    first = builder.build(agent, {}, history, pack_event_user("hi", "t"))
    assert first.alert and first.pressure_alerted and not first.evicted
    agent.pressure_alerted = True
    second = builder.build(agent, {}, history, pack_event_user("hi", "t"))
    assert second.alert is None and second.pressure_alerted


def test_statistics_are_counted_exactly_from_cached_parts():
    """The system prompt's statistics are counted as a fixed text plus their numbers."""
    from types import SimpleNamespace

    from workers.context import _stat_values, _stats_text
    from workers.tokens import TokenCounter

    counter = TokenCounter()
    agent = SimpleNamespace(name="stats-agent", id="0f9e7c1a-22b4-4c55-8d0e-5a6b7c8d9e0f", passage_count=12345)
    for model in ("gpt-4o-mini", "openai/scripted"):
        for in_view, recall in [(1, 0), (119, 1234567), (5000, 99), (7, 100000000)]:
            values = _stat_values(agent, in_view, recall)
            estimate = counter.text(model, _stats_text(agent, ("0", "0", "0"))) + sum(
                counter.text(model, n) - 1 for n in values)
            assert estimate == counter.text(model, _stats_text(agent, values))


# ---------- the pinned event: the one that started the active run stays in view ----------

@given(
    h=histories(),
    window=st.integers(4_000, 200_000),
    base=st.integers(200, 2_000),
    event=st.integers(5, 1_500),
    pinned=st.integers(5, 6_000),
    summary=st.integers(0, 60),
    alerted=st.booleans(),
    force=st.integers(0, 2),
)
@hsettings(max_examples=400, deadline=None)
def test_plan_keeps_the_pinned_event_unless_it_cannot_fit_at_all(h, window, base, event, pinned, summary, alerted,
                                                                 force):
    roles, tokens = h
    budget = Budget(window=window, reply_tokens=min(1024, window // 4), margin_tokens=max(32, window // 20))
    try:
        plan = plan_window(
            budget=budget, base_tokens=base, summary_tokens=summary, history_tokens=tokens,
            history_roles=roles, event_tokens=event, alert_tokens=40, alerted=alerted, force_evict=force,
            pinned_tokens=pinned,
        )
    except ContextTooSmall:
        assert base + budget.summary_reserve + event + 40 > budget.limit
        return
    fixed_with_pin = base + budget.summary_reserve + event + pinned + 40
    # then it is dropped only when even an empty history leaves no room for it, and the alert says so
    assert plan.pin_dropped == (fixed_with_pin > budget.limit)
    if plan.pin_dropped:
        assert plan.alert
    kept = sum(tokens[plan.evict:])
    summary_after = budget.summary_reserve if plan.evict else summary
    in_view_pin = 0 if plan.pin_dropped else pinned
    assert base + summary_after + kept + event + in_view_pin + (40 if plan.alert else 0) <= budget.limit
    assert plan.evict in cut_points(roles) or plan.evict == 0


@given(
    steps=st.lists(
        st.tuples(st.integers(1, 600), st.lists(st.integers(1, 200), max_size=3), st.booleans()),
        min_size=1, max_size=30,
    ),
    window=st.sampled_from([4_096, 8_192]),
    pin_at=st.integers(0, 29),
    evicted_before=st.booleans(),
)
@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_compiled_prompt_keeps_the_event_that_started_the_run(builder_for, steps, window, pin_at, evicted_before):
    import litellm

    from workers.context import message_to_llm

    # given a history in which one user event started the active run (or one already behind the cursor)
    builder = builder_for(window)
    history = _history(steps)
    users = [m for m in history if m.role == "user"]
    for i, m in enumerate(users):  # each event's JSON is unique (its time), as stored ones are
        m.content = m.content.replace('"message": "', f'"message": "#{i} ', 1)
    for m in history:
        m.tokens = builder.counter.message(MODEL, message_to_llm(m))
    if evicted_before:
        pinned = pack_event_user("the task that started this run " * 20, "2026-01-01T00:00:00Z")
    else:
        pinned = users[pin_at % len(users)].content
    agent = _agent()
    heartbeat = json.dumps({"type": "heartbeat", "reason": "continue", "time": "t"})
    # when the context is compiled for a heartbeat of that run
    ctx = builder.build(agent, {"human": Block("Grace. " * 40, 2000)}, history, heartbeat, pinned=pinned)
    # then the pinned event is in view (exactly once) and everything still fits and pairs
    contents = [m.get("content") for m in ctx.messages]
    assert contents.count(pinned) == 1
    counted = litellm.token_counter(model=MODEL, messages=ctx.messages, tools=builder.tools)
    assert counted + builder.budget(MODEL).reply_tokens <= window
    assert ctx.messages[-1]["content"] == heartbeat
    _assert_paired(ctx.messages[1:])


def test_a_pinned_event_that_cannot_fit_is_named_in_the_summary_and_an_alert(builder_for):
    # given a window too small for the run's event beside the system prompt and core memory
    from workers.prompts import PINNED_EVENT_DROPPED

    builder = builder_for(4_096)
    pinned = pack_event_user("enormous " * 2_500, "2026-01-01T00:00:00Z")
    heartbeat = json.dumps({"type": "heartbeat", "reason": "continue", "time": "t"})
    # when a heartbeat of its run is compiled
    ctx = builder.build(_agent(), {"human": Block("x", 100)}, [], heartbeat, pinned=pinned)
    # then the event is left out, and both the summary and a system alert say so
    assert all(m.get("content") != pinned for m in ctx.messages)
    assert PINNED_EVENT_DROPPED in ctx.summary and ctx.alert and "recall memory" in ctx.alert
    assert ctx.tokens <= builder.budget(MODEL).limit


def test_the_prompt_cache_holds_only_what_prompts_show(builder_for):
    # given an agent whose history is evicted as it grows (a small window), built step after step
    builder = builder_for(4_096)
    agent = _agent()
    history = _history([(300, [40], False) for _ in range(40)])
    for m in history:
        from workers.context import message_to_llm

        m.tokens = builder.counter.message(MODEL, message_to_llm(m))
    start = 0
    for end in range(4, len(history) + 1, 4):
        view = [m for m in history[:end] if m.id >= start]
        ctx = builder.build(agent, {}, view, pack_event_user("hi", "t"))
        start = ctx.context_start_id
        agent.context_start_id, agent.summary = start, ctx.summary
        agent.summary_tokens = builder.counter.text(MODEL, ctx.summary or "")
        # then the encoded messages kept are exactly those the last prompt showed: evicted ones are let go
        cached = builder._shown[agent.id]
        assert set(cached) == {m.id for m in view if m.id >= start}
    assert start > history[0].id  # eviction did happen
    # and only the most recent history_cache_agents agents keep theirs
    for k in range(builder.settings.history_cache_agents + 3):
        other = _agent()
        other.id = f"other-{k}"
        builder.build(other, {}, history[-4:], pack_event_user("hi", "t"))
    assert len(builder._shown) == builder.settings.history_cache_agents and agent.id not in builder._shown
