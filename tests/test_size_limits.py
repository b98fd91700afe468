"""Size limits that agree: what can never fit an agent's window is refused at the
door, with the numbers, on every path that enqueues; what the door lets in fits.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from memq.limits import EVENT_PACKING_TOKENS, message_room
from memq.settings import Settings
from storage.models import Run
from storage.repository import MessageTooLong

PROSE = "The quick brown fox jumps over the lazy dog while the band plays on. "


def _client(settings, **update):
    from memq.client import Client

    return Client.connect(settings.model_copy(update=update), in_process_worker=False)


def _runs(client, agent_id: str) -> int:
    with client.rt.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(Run).where(Run.agent_id == agent_id))


@pytest.fixture
def small(settings, worker):
    """A client whose agents (before their first step) have a 4 096-token window."""
    client = _client(settings, context_window=4096, max_message_chars=50_000)
    yield client
    client.close()


def test_a_message_that_can_never_fit_is_refused_with_the_numbers(small):
    # given a fresh agent with a 4 096-token window
    agent = small.create_agent("tiny-window")
    # when a message far beyond what the window leaves is sent
    with pytest.raises(MessageTooLong) as refused:
        small.send(agent.id, PROSE * 200)
    # then it is refused with its size, the window and the room left, and nothing is queued
    text = str(refused.value)
    assert "tokens; agent tiny-window's window is 4 096 tokens, of which ~" in text
    assert "left for a message after the system prompt, core memory and reserve" in text
    assert _runs(small, agent.id) == 0
    # and a message that fits is still taken
    assert small.send(agent.id, "hello").status == "queued"


def test_the_cli_refuses_it_in_one_line_and_exits_1(memq_env, tmp_path):
    import subprocess
    import sys

    # given an agent and a window of 4 096 tokens
    env = dict(memq_env, MEMQ_CONTEXT_WINDOW="4096", MEMQ_MAX_MESSAGE_CHARS="50000")
    run = lambda *a: subprocess.run([sys.executable, "-m", "memq.cli.main", *a], env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    agent = json.loads(run("agent", "create", "--name", "cli-tiny", "--json").stdout)["id"]
    # when a message too big for it is sent
    result = run("send", agent, PROSE * 200)
    # then one line names the numbers and the exit code is 1
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "agent cli-tiny's window is 4 096 tokens" in lines[0], result.stderr


def test_a_batch_line_that_can_never_fit_is_an_invalid_line(small):
    from memq.batches import BatchInvalid

    # given a batch with one line that fits and one that cannot
    agent = small.create_agent("tiny-batch")
    lines = [json.dumps({"agent_id": agent.id, "message": "fits"}),
             json.dumps({"agent_id": agent.id, "message": PROSE * 200}),
             json.dumps({"agent": {"name": "new-tiny"}, "message": PROSE * 200})]
    # when it is submitted
    with pytest.raises(BatchInvalid) as invalid:
        small.submit_batch(lines, create_agents=True)
    # then lines 2 and 3 are named with the numbers, and nothing is queued
    assert [n for n, _ in invalid.value.errors] == [2, 3]
    assert "window is 4 096 tokens" in invalid.value.errors[0][1]
    assert _runs(small, agent.id) == 0


def test_a_schedule_fire_that_can_never_fit_fails_its_run_and_others_still_fire(settings, worker):
    from scheduler.beat import fire_due

    # given two wake-ups added while the window was large, one with a huge message
    roomy = _client(settings, context_window=100_000, max_message_chars=50_000)
    tight = _client(settings, context_window=4096, max_message_chars=50_000)
    try:
        agent = roomy.create_agent("tiny-schedule")
        at = (datetime.now(timezone.utc) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")
        huge = roomy.add_schedule(agent.id, PROSE * 200, at=at + "Z")
        small_one = roomy.add_schedule(agent.id, "stand up", at=at + "Z")
        # and the door of a 4 096-token window refuses such a wake-up outright
        with pytest.raises(MessageTooLong):
            tight.add_schedule(agent.id, PROSE * 200, at=at + "Z")
        # when the beat fires them under the small window
        fired = fire_due(tight.rt, datetime.now(timezone.utc) + timedelta(minutes=6), "test-beat")
        # then the huge one's run failed with the numbers, and the other was queued
        runs = {s.id: s.last_run_id for s in tight.list_schedules(agent.id)}
        assert tight.get_run(runs[huge.id]).status == "failed"
        assert "window is 4 096 tokens" in tight.get_run(runs[huge.id]).error
        assert (agent.id, runs[small_one.id]) in fired
    finally:
        roomy.close()
        tight.close()


@pytest.mark.parametrize("window", [4096, 8192, 32_000])
def test_what_the_door_lets_in_fits_the_step_exactly_counted(llm, window):
    """The door's estimate never refuses what the step could hold: a message of
    exactly the room it computes compiles within the window, first step and later."""
    import os

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from types import SimpleNamespace

    from storage.models import Agent
    from workers.base_tools import base_toolset
    from workers.context import ContextBuilder
    from workers.llm import LLMClient
    from workers.summarizer import Summarizer
    from workers.tokens import TokenCounter
    from workers.tools import Block

    s = Settings(llm_model="openai/scripted", llm_api_base=llm.url, llm_api_key="k", context_window=window)
    counter = TokenCounter(window)
    builder = ContextBuilder(s, counter, Summarizer(LLMClient(s), counter), base_toolset().schemas)
    blocks = {"persona": Block("A patient tutor. " * 100, 2000), "human": Block("Grace. " * 250, 2000)}
    row = SimpleNamespace(name="ada", model=None, system_prompt=None, context_window=0)
    room = message_room(s, row, [b.value for b in blocks.values()])
    text = (PROSE * 1000)[: (room.room_tokens - EVENT_PACKING_TOKENS) * 4]
    room.check(text)  # the door lets it in
    agent = Agent(id="a" * 36, name="ada", model=None, system_prompt=None, message_count=0,
                  context_start_id=1, summary="", summary_tokens=0, pressure_alerted=False, passage_count=0)
    event = json.dumps({"type": "user_message", "message": text, "time": "2026-01-01T00:00:00Z"})
    first = builder.build(agent, blocks, [], event)
    later = builder.build(agent, blocks, [], json.dumps({"type": "heartbeat", "reason": "go", "time": "t"}),
                          pinned=event)
    limit = builder.budget("openai/scripted").limit
    assert first.tokens <= limit and later.tokens <= limit
    assert any(m["content"] == event for m in later.messages)  # kept in view, not dropped


def test_the_default_message_limit_fits_the_default_window():
    # given the defaults (8 192-token window, MEMQ_MAX_MESSAGE_CHARS) and full core memory
    s = Settings(home="/tmp/unused")
    from types import SimpleNamespace

    row = SimpleNamespace(name="ada", model=None, system_prompt=None, context_window=0)
    room = message_room(s, row, ["p" * s.core_block_limit_chars, "h" * s.core_block_limit_chars])
    # then a message of the largest size allowed passes the window check too
    room.check(PROSE * (s.max_message_chars // len(PROSE)))
