"""A run's messages are read through ix_messages_run_id_id (migration 0012), not by scanning
every agent's messages: Postgres's plan of the statement storage/repository/pages.py
run_messages sends, on a migrated database holding thousands of other runs' messages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import event, text

from stack import own_database
from storage.db import Database
from storage.repository import create_agent
from storage.repository.pages import run_messages

OTHER_AGENTS = 20
OTHER_MESSAGES = 5000  # 10 per run: 500 other runs


@pytest.fixture(scope="module")
def db() -> Iterator[Database]:
    """A migrated database (Database.upgrade() to head) holding many agents' messages (500 runs
    of 10) and one run of 3 messages, "the-run", analysed."""
    with own_database("memq_run_index") as url:
        database = Database(url)
        with database.transaction() as s:
            agents = [create_agent(s, name=f"other-{i}", blocks={"persona": "p", "human": "h"}, limit_chars=100).id
                      for i in range(OTHER_AGENTS)]
        with database.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO messages (agent_id, run_id, role, content, tokens, created_at) "
                "SELECT (CAST(:agents AS text[]))[1 + n % :n_agents], 'other-run-' || (n / 10), 'user', 'hello ' || n, 2, now() "
                "FROM generate_series(1, :n) AS n"), {"agents": agents, "n_agents": OTHER_AGENTS, "n": OTHER_MESSAGES})
            conn.execute(text(
                "INSERT INTO messages (agent_id, run_id, role, content, tokens, created_at) "
                "SELECT :agent, 'the-run', 'assistant', 'reply ' || n, 2, now() FROM generate_series(1, 3) AS n"),
                {"agent": agents[0]})
        with database.engine.connect() as conn:
            conn.execute(text("ANALYZE messages"))
        yield database
        database.dispose()


def _sent_statements(db: Database, read) -> list[tuple[str, object]]:
    """The SQL and parameters the engine sends while ``read`` runs."""
    sent: list[tuple[str, object]] = []

    def record(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        read()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    return sent


def _plan(db: Database, statement: str, parameters: object) -> str:
    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters)
        return "\n".join(r[0] for r in rows)


@pytest.mark.parametrize("after", [None, 0], ids=["first-page", "after-a-cursor"])
def test_a_runs_messages_are_read_through_the_run_index(db: Database, after: int | None):
    # given the database above
    # when run_messages reads that run's messages (its statement captured as sent)
    found: list = []

    def read() -> None:
        with db.transaction() as s:
            found.extend(run_messages(s, "the-run", after=after, limit=1000))

    sent = _sent_statements(db, read)

    # then it finds them, and Postgres plans that statement on ix_messages_run_id_id
    assert [m.content for m in found] == ["reply 1", "reply 2", "reply 3"]
    assert len(sent) == 1, sent
    plan = _plan(db, *sent[0])
    assert "ix_messages_run_id_id" in plan and "Seq Scan" not in plan, plan
