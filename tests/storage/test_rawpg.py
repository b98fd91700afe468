"""The step's hot statements on the psycopg connection behave as SQLAlchemy's path does:
the same rows, JSON parameters, SQLAlchemy's exceptions, and a lost connection dropped."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import bindparam, exc as sa_exc, insert, select, text, update

from storage.models import Agent, Run
from storage.repository import create_agent, enqueue_message, rawpg

pytestmark = pytest.mark.usefixtures("postgres_only")


@pytest.fixture
def postgres_only(backend):
    if backend != "postgres":
        pytest.skip("rawpg runs statements on psycopg; SQLite goes through SQLAlchemy")


def _agent(db) -> str:
    with db.transaction() as s:
        return create_agent(s, name="raw", blocks={"persona": "p"}, limit_chars=100).id


def test_rows_match_sqlalchemys_with_literals_and_json_bound(db):
    # given an agent with a queued run, and an UPDATE whose expression holds literals and JSON
    agent_id = _agent(db)
    with db.transaction() as s:
        run, _ = enqueue_message(s, agent_id, "hi", max_chars=1000)
    stmt = (update(Run).where(Run.id == bindparam("rid"))
            .values(steps=Run.steps + 2, replies=bindparam("replies", type_=Run.replies.type), error=None)
            .returning(Run.steps, Run.replies, Run.error))
    # when it runs through rawpg
    with db.transaction() as s:
        row = rawpg.execute(s, rawpg.PgStatement(stmt), {"rid": run.id, "replies": ["a", {"b": 1}]}).one()
    # then the literal and the JSON parameter arrived, and rows have attribute access
    assert (row.steps, row.replies, row.error) == (2, ["a", {"b": 1}], None)
    # and SQLAlchemy reads the same values back
    with db.transaction() as s:
        back = s.execute(select(Run.steps, Run.replies).where(Run.id == run.id)).one()
    assert tuple(back) == (2, ["a", {"b": 1}])


def test_a_rolled_back_transaction_takes_the_raw_statement_with_it(db):
    agent_id = _agent(db)
    stmt = rawpg.PgStatement(update(Agent).where(Agent.id == bindparam("aid")).values(message_count=42))
    with pytest.raises(RuntimeError):
        with db.transaction() as s:
            assert rawpg.execute(s, stmt, {"aid": agent_id}).rowcount == 1
            raise RuntimeError("roll back")
    with db.transaction() as s:
        assert s.get(Agent, agent_id).message_count != 42


def test_a_driver_error_is_sqlalchemys_exception(db):
    # given a statement that breaks a constraint (an agent's name is NOT NULL)
    agent_id = _agent(db)
    stmt = rawpg.PgStatement(update(Agent).where(Agent.id == bindparam("aid")).values(name=None))
    # when it runs, then the error is SQLAlchemy's IntegrityError, with the driver's error inside
    with pytest.raises(sa_exc.IntegrityError) as caught:
        with db.transaction() as s:
            rawpg.execute(s, stmt, {"aid": agent_id})
    assert isinstance(caught.value.orig, psycopg.errors.NotNullViolation)


def test_a_statement_with_a_default_computed_per_execution_is_refused():
    # Run.created_at defaults to utcnow(): compiled once, it would be the same instant forever
    with pytest.raises(ValueError, match="per execution"):
        rawpg.PgStatement(insert(Run).values(id=bindparam("rid"), agent_id=bindparam("aid")))


def test_a_lost_connection_is_an_operational_error_and_leaves_the_pool(db):
    # given a pooled autocommit connection whose server process is terminated
    with db.autocommit() as s:
        pid = s.execute(text("select pg_backend_pid()")).scalar()
    with db.engine.connect() as other:
        other.execute(text("select pg_terminate_backend(:pid)"), {"pid": pid})
        other.commit()
    stmt = rawpg.PgStatement(select(Agent.id).where(Agent.id == bindparam("aid")))
    # when the next statement runs on it, then it fails as a lost connection (the step retries)
    with pytest.raises(sa_exc.OperationalError) as caught:
        with db.autocommit() as s:
            rawpg.execute(s, stmt, {"aid": "x"})
    assert caught.value.connection_invalidated
    # and the pool hands out a working connection next
    with db.autocommit() as s:
        assert rawpg.execute(s, stmt, {"aid": "x"}).one_or_none() is None
