"""Archival memory and scheduled messages through Letta's own SDK (`letta-client`),
unchanged, against `memq serve`, a real worker and the scripted LLM (given / when / then)."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest


@pytest.fixture
def bob(letta):
    agent = letta.agents.create(name="bob", memory_blocks=[{"label": "human", "value": "", "limit": 200}])
    yield agent
    letta.agents.delete(agent.id)


def test_archival_create_list_search_and_delete(letta, bob):
    # given three passages, two tagged
    made = letta.agents.passages.create(bob.id, text="The launch code is 7421, kept in the blue safe.",
                                        tags=["secrets", "ops"])
    assert made[0].id.startswith("passage-") and made[0].tags == ["ops", "secrets"]
    letta.agents.passages.create(bob.id, text="Grace likes green tea in the morning.", tags=["people"])
    letta.agents.passages.create(bob.id, text="The blue safe is behind the painting.")
    # when they are listed, oldest first, and a page after the first
    listed = letta.agents.passages.list(bob.id)
    assert [p.text[:9] for p in listed] == ["The launc", "Grace lik", "The blue "]
    assert [p.id for p in letta.agents.passages.list(bob.id, after=listed[0].id, limit=1)] == [listed[1].id]
    # then a search finds by words and ranks the better match first
    found = letta.agents.passages.search(bob.id, query="blue safe launch code", top_k=2)
    assert found.count == 2 and found.results[0].content.startswith("The launch code")
    # and a tag filter keeps only the tagged passages; tag_match_mode=all needs every tag
    tagged = letta.agents.passages.search(bob.id, query="blue safe", tags=["secrets"])
    assert [r.content[:9] for r in tagged.results] == ["The launc"] and tagged.results[0].tags == ["ops", "secrets"]
    assert letta.agents.passages.search(bob.id, query="safe", tags=["secrets", "people"],
                                        tag_match_mode="all").count == 0
    # and a date window after now finds nothing
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    assert letta.agents.passages.search(bob.id, query="safe", start_datetime=later).count == 0
    # when a passage is deleted, it is gone from the list and the search
    letta.agents.passages.delete(listed[0].id, agent_id=bob.id)
    assert [p.id for p in letta.agents.passages.list(bob.id)] == [listed[1].id, listed[2].id]
    assert all(not r.content.startswith("The launch") for r in
               letta.agents.passages.search(bob.id, query="launch code").results)


def test_schedule_create_list_retrieve_and_delete(letta, bob):
    # given a one-time message in an hour (epoch ms, as Letta sends it) and a recurring one
    at_ms = int((time.time() + 3600) * 1000)
    once = letta.agents.schedule.create(bob.id, messages=[{"role": "user", "content": "stand-up reminder"}],
                                        schedule={"type": "one-time", "scheduled_at": at_ms})
    cron = letta.agents.schedule.create(bob.id, messages=[{"role": "user", "content": "nightly review"}],
                                        schedule={"type": "recurring", "cron_expression": "0 3 * * *"})
    assert once.id.startswith("schedule-") and once.next_scheduled_at
    assert abs(datetime.fromisoformat(once.next_scheduled_at.replace("Z", "+00:00")).timestamp() * 1000 - at_ms) < 1000
    # when they are listed and retrieved
    listed = letta.agents.schedule.list(bob.id)
    assert [m.id for m in listed.scheduled_messages] == [once.id, cron.id] and listed.has_next_page is False
    got = letta.agents.schedule.retrieve(cron.id, agent_id=bob.id)
    assert got.schedule.type == "recurring" and got.schedule.cron_expression == "0 3 * * *"
    assert got.message.messages[0].content == "nightly review" and got.agent_id == bob.id
    first = letta.agents.schedule.retrieve(once.id, agent_id=bob.id)
    assert first.schedule.scheduled_at == pytest.approx(at_ms, abs=1000)
    # then deleting one leaves the other
    assert letta.agents.schedule.delete(once.id, agent_id=bob.id).success is True
    assert [m.id for m in letta.agents.schedule.list(bob.id).scheduled_messages] == [cron.id]


def test_a_one_time_schedule_fires_into_the_agent(letta, bob, server, serve_env, tmp_path):
    # given a beat running and a message scheduled two seconds ahead
    beat = subprocess.Popen([sys.executable, "-m", "memq.cli.main", "beat"], env=serve_env,
                            stdout=open(tmp_path / "beat.log", "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        at_ms = int((time.time() + 2) * 1000)
        letta.agents.schedule.create(bob.id, messages=[{"role": "user", "content": "wake up and reply"}],
                                     schedule={"type": "one-time", "scheduled_at": at_ms})
        # when its time comes, then a run of the agent completes with the echoed reply
        deadline = time.monotonic() + 30
        while True:
            runs = list(letta.runs.list(agent_id=bob.id, statuses=["completed"]))
            if runs:
                break
            assert time.monotonic() < deadline, (tmp_path / "beat.log").read_text()[-2000:]
            time.sleep(0.2)
        assert runs[0].metadata["replies"] and "wake up and reply" in runs[0].metadata["replies"][0]
    finally:
        beat.terminate()
        beat.wait(timeout=15)
