"""The step's history read: the repository leaves out text the process has, the cache fills it in.

Runs on both backends (the `db` fixture: SQLite and Postgres).
"""

from __future__ import annotations

from test_storage_contract import add_messages, make_agent

from storage.models import Message
from storage.repository import context_messages
from workers.history import HistoryCache


def _tool_messages(db, agent_id: str, n: int) -> list[int]:
    with db.transaction() as s:
        rows = []
        for i in range(n):
            call = [{"id": f"c{i}", "type": "function", "function": {"name": "send_message", "arguments": "{}"}}]
            rows.append(Message(agent_id=agent_id, role="assistant", content=f"thought {i}", tool_calls=call))
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]


def test_rows_up_to_known_through_come_without_text(db):
    # given four messages with tool calls
    a = make_agent(db, "a")
    ids = _tool_messages(db, a, 4)
    # when the context is read knowing the first two
    with db.transaction() as s:
        rows = context_messages(s, a, ids[0], known_through=ids[1])
    # then every id and token count is there, but text only for the newer rows
    assert [r.id for r in rows] == ids
    assert [r.content for r in rows] == [None, None, "thought 2", "thought 3"]
    assert [r.tool_calls is None for r in rows] == [True, True, False, False]
    assert rows[3].tool_calls[0]["id"] == "c3"  # JSON decoded on both backends


def test_cache_serves_known_rows_and_reads_only_new_ones(db):
    # given an agent whose context this process has read once
    a = make_agent(db, "a")
    first = add_messages(db, a, ["m0", "m1", "m2"])
    cache = HistoryCache()
    asked: list[int] = []

    def load(start: int):
        def loader(known: int):
            asked.append(known)
            with db.transaction() as s:
                return context_messages(s, a, start, known_through=known)
        return cache.load(a, start, loader)

    assert [m.content for m in load(first[0])] == ["m0", "m1", "m2"]
    # when two more messages are written (by any process) and the cursor moves past the first
    more = add_messages(db, a, ["m3", "m4"])
    rows = load(first[1])
    # then the context is complete and in order, and only the new rows were read with text
    assert [m.content for m in rows] == ["m1", "m2", "m3", "m4"]
    assert [m.id for m in rows] == first[1:] + more
    assert asked == [0, first[2]] and cache.hits == 2


def test_a_row_the_cache_never_saw_is_read_in_full(db):
    # given a cache that believes it knows an agent up to a newer id than it holds
    a = make_agent(db, "a")
    ids = add_messages(db, a, ["m0", "m1", "m2"])
    cache = HistoryCache()
    with db.transaction() as s:
        cache.load(a, ids[2], lambda known: context_messages(s, a, ids[2], known_through=known))
    # when the context starts earlier than anything cached
    with db.transaction() as s:
        rows = cache.load(a, ids[0], lambda known: context_messages(s, a, ids[0], known_through=known))
    # then the missing rows are read again rather than returned empty
    assert [m.content for m in rows] == ["m0", "m1", "m2"]


def test_least_recently_used_agents_are_dropped(db):
    cache = HistoryCache(max_agents=2)
    agents = [make_agent(db, f"a{i}") for i in range(3)]
    for a in agents:
        add_messages(db, a, [f"hello {a}"])
        with db.transaction() as s:
            cache.load(a, 0, lambda known, a=a: context_messages(s, a, 0, known_through=known))
    assert list(cache._agents) == agents[1:]
