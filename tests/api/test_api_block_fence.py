"""A core-memory block edit through the API is fenced against a step of the same agent that
edits the same block (given / when / then)."""

from __future__ import annotations

import time

import httpx
import psycopg

from helpers import call


def _lease_held(pg_url: str, agent_id: str) -> bool:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute("SELECT lease_owner, lease_until_s FROM agents WHERE id = %s", (agent_id,)).fetchone()
    return row[0] is not None and row[1] > time.time()


def test_an_edit_during_a_step_that_edits_the_block_is_not_overwritten(http: httpx.Client, llm, pg_url: str):
    # given an agent whose step appends to its human block while its LLM call takes 0.6 s
    r = http.post("/v1/agents/", json={"name": "fenced", "memory_blocks": [
        {"label": "human", "value": "Name: unknown.", "limit": 300}]})
    assert r.status_code == 200, r.text
    aid = r.json()["id"]
    bare = aid.removeprefix("agent-")
    llm.script(bare, {**call("core_memory_append", heartbeat=True, label="human", content="Likes tea."),
                      "sleep_s": 0.6},
               call("send_message", message="Noted."))
    run = http.post(f"/v1/agents/{aid}/messages/async", json={"messages": [{"role": "user", "content": "I like tea"}]})
    assert run.status_code == 200, run.text
    deadline = time.monotonic() + 10
    while not _lease_held(pg_url, bare):
        assert time.monotonic() < deadline, "the step never took the agent's lease"
        time.sleep(0.01)
    # when the API sets the block while that step is in its LLM call
    started = time.monotonic()
    edited = http.patch(f"/v1/agents/{aid}/core-memory/blocks/human", json={"value": "Name: Grace."})
    took_s = time.monotonic() - started
    # then the edit waited for the step's commit and answers the value it set
    assert edited.status_code == 200 and edited.json()["value"] == "Name: Grace.", edited.text
    assert took_s > 0.2, f"the edit did not wait for the step in progress ({took_s:.2f} s)"
    # and once the run has finished, the block holds the API's edit (the step did not overwrite it)
    run_id = run.json()["id"]
    deadline = time.monotonic() + 30
    while http.get(f"/v1/runs/{run_id}").json()["status"] != "completed":
        assert time.monotonic() < deadline, "the run did not complete"
        time.sleep(0.05)
    assert http.get(f"/v1/agents/{aid}/core-memory/blocks/human").json()["value"] == "Name: Grace."
    # and the agent takes its next message at once (the edit's lease was given back)
    started = time.monotonic()
    reply = http.post(f"/v1/agents/{aid}/messages", json={"messages": [{"role": "user", "content": "still there?"}]})
    assert reply.status_code == 200 and reply.json()["stop_reason"]["stop_reason"] == "end_turn", reply.text
    assert time.monotonic() - started < 5


def test_an_edit_of_an_idle_agent_is_immediate_and_another_tenants_is_404(http: httpx.Client, other_key: str,
                                                                          server):
    r = http.post("/v1/agents/", json={"name": "idle", "memory_blocks": [{"label": "human", "value": "", "limit": 20}]})
    aid = r.json()["id"]
    started = time.monotonic()
    ok = http.patch(f"/v1/agents/{aid}/core-memory/blocks/human", json={"value": "short"})
    assert ok.status_code == 200 and ok.json()["value"] == "short" and time.monotonic() - started < 2
    too_long = http.patch(f"/v1/agents/{aid}/core-memory/blocks/human", json={"value": "x" * 21})
    assert too_long.status_code == 422, too_long.text
    other = httpx.patch(f"{server.url}/v1/agents/{aid}/core-memory/blocks/human", json={"value": "theirs"},
                        headers={"Authorization": f"Bearer {other_key}"})
    assert other.status_code == 404, other.text
    assert http.get(f"/v1/agents/{aid}/core-memory/blocks/human").json()["value"] == "short"
