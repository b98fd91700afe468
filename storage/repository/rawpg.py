"""The step's hot statements on Postgres, run on the session's own psycopg connection.

SQLAlchemy Core spends about 0.2–0.3 ms of CPU per statement around psycopg's own
work (measured here on one `UPDATE … RETURNING`: 0.33–0.44 ms through a Session or
Connection, 0.11–0.18 ms on the psycopg connection), and a step runs five. So the
statements stay SQLAlchemy expressions (one definition; SQLite runs them through
SQLAlchemy as before), and on Postgres they are compiled once to SQL text and run
on the session's DBAPI connection, inside the session's transaction.

What SQLAlchemy would do around the call is kept: JSON-typed parameters are sent as
JSON, literal values of the expression are bound, rows have attribute access by
column name, and a driver error is raised as SQLAlchemy's exception for it (a lost
connection also invalidates the pooled connection, as SQLAlchemy's own path does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from psycopg.types.json import Json
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.orm import Session
from sqlalchemy.types import JSON

_DIALECT = psycopg_dialect()


class PgStatement:
    """A SQLAlchemy statement compiled once for psycopg: its SQL, its literal values,
    and which parameters are JSON."""

    __slots__ = ("statement", "sql", "defaults", "json_params")

    def __init__(self, statement: Any) -> None:
        compiled = statement.compile(dialect=_DIALECT)
        self.statement = statement
        self.sql = str(compiled)
        # Literals of the expression (the 1 of `lease_token + 1`, a None set) are parameters with a value.
        binds = {name: bind for name, bind in compiled.binds.items() if f"%({name})s" in self.sql}
        # Python-side column defaults are computed by SQLAlchemy per execution: not here.
        timed = [c.name for c in (*compiled.insert_prefetch, *compiled.update_prefetch)]
        timed += [name for name, bind in binds.items() if bind.callable is not None]
        if timed:
            raise ValueError(f"{timed} take a value per execution (Python-side defaults): "
                             "run this statement through SQLAlchemy")
        self.defaults = {name: bind.effective_value for name, bind in binds.items() if not bind.required}
        self.json_params = frozenset(name for name, bind in binds.items() if isinstance(bind.type, JSON))

    def params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        out = {**self.defaults, **given}
        for name in self.json_params:
            if name in out:
                out[name] = Json(out[name])
        return out


class _Rows:
    """The part of SQLAlchemy's Result the repository uses, over a psycopg cursor."""

    __slots__ = ("rowcount", "_rows")

    def __init__(self, cur: psycopg.Cursor) -> None:
        self.rowcount = cur.rowcount
        self._rows = cur.fetchall() if cur.description is not None else []
        cur.close()

    def all(self) -> list[Any]:
        return self._rows

    def __iter__(self) -> Any:
        return iter(self._rows)

    def one_or_none(self) -> Any:
        if len(self._rows) > 1:
            raise sa_exc.MultipleResultsFound("Multiple rows were found when one or none was required")
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise (sa_exc.NoResultFound("No row was found when one was required") if not self._rows
                   else sa_exc.MultipleResultsFound("Multiple rows were found when exactly one was required"))
        return self._rows[0]


def execute(session: Session, stmt: PgStatement, params: Mapping[str, Any]) -> Any:
    """Run stmt in the session's transaction; returns a cursor (rows with attribute
    access) on Postgres, SQLAlchemy's result elsewhere."""
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        return conn.execute(stmt.statement, dict(params))
    driver = conn.connection.driver_connection
    values = stmt.params(params)
    try:
        cur = driver.cursor(row_factory=namedtuple_row)
        cur.execute(stmt.sql, values)
        return _Rows(cur)
    except psycopg.Error as err:
        raise _as_sqlalchemy(conn, driver, err, stmt.sql, values) from err


def execute_transaction(session: Session, statements: list[tuple[PgStatement, Mapping[str, Any]]],
                        decide: Any) -> Any:
    """BEGIN, the statements and a sync in one round trip on the session's autocommit
    psycopg connection, then COMMIT — or ROLLBACK when decide(results) raises.

    decide gets the statements' results (as execute returns them) and returns what
    this returns. psycopg's own transactions send BEGIN in a round trip of its own,
    and each statement waits for the one before: four round trips for a step's
    commit where two do.
    """
    conn = session.connection()
    driver = conn.connection.driver_connection
    if not driver.autocommit:
        raise ValueError("execute_transaction needs an autocommit session (Database.autocommit())")
    sql = "BEGIN"
    try:
        with driver.pipeline():
            driver.execute("BEGIN")
            cursors = []
            for stmt, params in statements:
                sql = stmt.sql
                cur = driver.cursor(row_factory=namedtuple_row)
                cur.execute(stmt.sql, stmt.params(params))
                cursors.append(cur)
        results = [_Rows(cur) for cur in cursors]
    except psycopg.Error as err:
        _end(driver, "ROLLBACK")
        raise _as_sqlalchemy(conn, driver, err, sql, None) from err
    try:
        out = decide(results)
    except BaseException:
        _end(driver, "ROLLBACK")
        raise
    try:
        driver.execute("COMMIT")
    except psycopg.Error as err:
        raise _as_sqlalchemy(conn, driver, err, "COMMIT", None) from err
    return out


def _as_sqlalchemy(conn: Any, driver: Any, err: psycopg.Error, sql: str, params: Any) -> Exception:
    """The exception SQLAlchemy's own path raises for err; a lost connection (psycopg marks it
    closed or broken) is dropped from the pool, as SQLAlchemy does."""
    lost = bool(driver.closed or driver.broken)
    if lost:
        conn.invalidate(err)
    return sa_exc.DBAPIError.instance(sql, params, err, psycopg.Error, connection_invalidated=lost)


def _end(driver: Any, command: str) -> None:
    """End the explicit transaction if the connection still can (a lost one ends it anyway)."""
    if driver.closed or driver.broken:
        return
    try:
        driver.execute(command)
    except psycopg.Error:
        pass  # the pool's reset on return rolls back what is left
