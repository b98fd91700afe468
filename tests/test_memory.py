"""Recall and archival memory through a real worker that owns the embedded Qdrant store."""

from __future__ import annotations

import time

from helpers import call, tool_results

WAIT_S = 30


def _wait_indexed(client, agent_id, query, expect, timeout_s=15):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        doc = client.recall_search(agent_id, query)
        if not doc["notes"] and any(expect in (r["text"] or "") for r in doc["results"]):
            return doc
        time.sleep(0.2)
    raise AssertionError(f"never indexed: {client.recall_search(agent_id, query)}")


def test_archival_insert_then_search_by_the_agent(client, agent, llm):
    # given an agent that stores a note, and later searches for it
    llm.script(agent.id, call("archival_memory_insert", content="Grace's cat is called Pixel and loves tuna"))
    assert client.send(agent.id, "remember my cat", wait=True, timeout_s=WAIT_S).status == "done"
    llm.script(agent.id, call("archival_memory_search", heartbeat=True, query="cat tuna"),
               call("send_message", message="found it"))
    run = client.send(agent.id, "what is my cat called?", wait=True, timeout_s=WAIT_S)
    # then the search result shows the passage with its time and the paging facts
    assert run.status == "done"
    result = tool_results(client, agent.id)[-2]
    assert result["status"] == "OK"
    assert "Pixel" in result["message"] and "Page 1 of 1, 1 passage" in result["message"]
    assert '"time"' in result["message"]
    # and the system prompt counts archival passages
    assert "passages in archival memory (archival_memory_search): 1" in llm.requests(agent.id)[-1]["messages"][0]["content"]


def test_conversation_search_by_meaning_and_date_and_paging(client, agent, llm):
    for i in range(12):
        client.send(agent.id, f"note {i}: the weather in Lisbon is sunny" if i == 3 else f"note {i}: bread and butter",
                    wait=True, timeout_s=WAIT_S)
    _wait_indexed(client, agent.id, "Lisbon weather", "Lisbon")
    # by meaning: the Lisbon message ranks first
    doc = client.recall_search(agent.id, "note: weather Lisbon sunny")
    assert "Lisbon" in doc["results"][0]["text"]
    assert doc["pages"] >= 2 and len(doc["results"]) == 5
    second = client.recall_search(agent.id, "note: weather Lisbon sunny", page=1)
    assert second["page"] == 1 and second["results"] != doc["results"]
    # a date range before everything finds nothing, and says so through the tool
    llm.script(agent.id, call("conversation_search", heartbeat=True, query="Lisbon", end_date="2001-01-01"),
               call("send_message", message="nothing"))
    client.send(agent.id, "search old stuff", wait=True, timeout_s=WAIT_S)
    assert tool_results(client, agent.id)[-2]["message"].startswith("No messages found")
    # bad dates are a failed tool call the agent can correct
    llm.script(agent.id, call("conversation_search", query="x", start_date="yesterday-ish"),
               call("send_message", message="ok"))
    client.send(agent.id, "bad date", wait=True, timeout_s=WAIT_S)
    failed = tool_results(client, agent.id)[-2]
    assert failed["status"] == "Failed" and "start_date" in failed["message"]


def test_a_message_is_found_right_after_it_was_said(client, agent):
    client.send(agent.id, "my locker code is 4512 zebra", wait=True, timeout_s=WAIT_S)
    doc = client.recall_search(agent.id, "locker zebra")
    # either indexed already, or matched by words with a note that the index is catching up
    assert any("4512" in (r["text"] or "") for r in doc["results"]), doc


def test_agents_never_see_each_others_memory(client, llm):
    a, b = client.create_agent("iso-a"), client.create_agent("iso-b")
    client.archival_insert(a.id, "the launch code is swordfish")
    client.send(a.id, "the vault password is swordfish", wait=True, timeout_s=WAIT_S)
    _wait_indexed(client, a.id, "swordfish", "swordfish")
    assert client.archival_search(b.id, "swordfish launch code")["results"] == []
    assert all("swordfish" not in (r["text"] or "") for r in client.recall_search(b.id, "swordfish vault")["results"])
    assert "swordfish" in client.archival_search(a.id, "swordfish launch code")["results"][0]["text"]


def test_reindex_rebuilds_from_postgres(client, agent):
    client.archival_insert(agent.id, "rebuild me: a passage about volcanoes")
    client.send(agent.id, "volcanoes are hot", wait=True, timeout_s=WAIT_S)
    _wait_indexed(client, agent.id, "volcanoes hot", "volcanoes")
    counts = client.reindex(agent.id)["reindexed"]
    assert counts["passages"] == 1 and counts["messages"] >= 2
    assert "volcanoes" in client.archival_search(agent.id, "volcanoes")["results"][0]["text"]
    assert any("volcanoes" in (r["text"] or "") for r in client.recall_search(agent.id, "volcanoes hot")["results"])
