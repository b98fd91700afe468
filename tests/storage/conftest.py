"""Fixtures of the storage contract suite: one `db` fixture, two backends.

- sqlite: a fresh file per test. The migrations run once per session into a
  template file (``Database(url).upgrade()``); each test copies it to
  ``{tmp_path}/memq.db`` and calls ``.upgrade()`` again (nothing left to apply).
  A fresh Alembic run per test costs ~0.1 s, the copy ~0.01 s.
- postgres: a fresh database per test session (``memq_storage_<hex>``), migrated
  once and dropped at the end; every table is emptied before each test so
  tests never see each other's rows. ``MEMQ_TEST_PG_URL`` points at another
  server (any database on it; the suite only uses it to create/drop its own).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from storage.db import Database
from storage.models import Base

PG_SERVER = os.environ.get("MEMQ_TEST_PG_URL", "postgresql://root@127.0.0.1:5432/postgres")


def _libpq_url(url: str) -> str:
    """The URL psycopg itself accepts (no ``+psycopg`` driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def storage_pg_db() -> Iterator[Database]:
    """A Postgres database of this test session's own, migrated to head."""
    name = f"memq_storage_{secrets.token_hex(6)}"
    server = _libpq_url(PG_SERVER)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    db = Database(url)
    try:
        db.upgrade()
        yield db
    finally:
        db.dispose()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def storage_sqlite_template(tmp_path_factory) -> Path:
    """A SQLite file migrated to head, closed (so its WAL is checkpointed away)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "memq.db"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    db.dispose()
    return path


def _empty(db: Database) -> None:
    """Delete every row of every model table, children first.

    Tests hold a handful of rows, so DELETE beats TRUNCATE's file swaps.
    alembic_version is not a model table: the schema stays migrated.
    """
    existing = set(inspect(db.engine).get_table_names())
    tables = [t for t in reversed(Base.metadata.sorted_tables) if t.name in existing]
    with db.engine.begin() as conn:
        # Fail fast instead of hanging if a previous test leaked an open transaction.
        conn.execute(text("SET LOCAL lock_timeout = '5s'"))
        for table in tables:
            conn.execute(table.delete())


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Database]:
    """A migrated, empty database on the parametrized backend."""
    if request.param == "sqlite":
        template = request.getfixturevalue("storage_sqlite_template")
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{template}{suffix}").exists():
                shutil.copy(f"{template}{suffix}", f"{tmp_path}/memq.db{suffix}")
        database = Database(f"sqlite:///{tmp_path}/memq.db")
        database.upgrade()
        try:
            yield database
        finally:
            database.dispose()
    else:
        database = request.getfixturevalue("storage_pg_db")
        _empty(database)
        yield database


@pytest.fixture
def backend(db: Database) -> str:
    return "sqlite" if db.is_sqlite else "postgres"
