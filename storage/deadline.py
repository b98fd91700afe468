"""A client-side deadline on every Postgres round trip, for the client paths (opt-in).

A frozen or wedged server (SIGSTOPped, swapping, a half-dead network path) keeps its
TCP connections open and its kernel keeps ACKing, so no TCP timeout fires, and the
server's own ``statement_timeout`` cannot fire in a server that does not run: a
client whose statement is in flight would wait as long as the server is away. Here
every round trip of a connection (a statement, its fetch, COMMIT, ROLLBACK) is
bounded by psycopg's own wait timeout: past ``deadline_s`` the connection is closed
(its protocol state is unknown) and ``DatabaseUnavailable`` is raised. SQLAlchemy
sees a closed connection and drops it from its pool (``is_disconnect``); the next
call connects afresh, and a new connection gives up after the same deadline.

A transaction whose COMMIT was cut off may or may not have committed: a send is
safe to repeat with the same idempotency key (the repository answers the first
send's run). The worker's step path has no deadline: leases and fencing cover a
frozen server there.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import errors as pg_errors

if TYPE_CHECKING:  # SQLAlchemy is imported by install() alone: the CLI's quick path connects without it
    from sqlalchemy import Engine

DEFAULT_DEADLINE_S = 5.0  # MEMQ_DB_DEADLINE_S
MIN_CONNECT_TIMEOUT_S = 2  # libpq (and psycopg) treat a connect_timeout below 2 s as 2 s
# psycopg raises this (an OperationalError) from Connection.wait(timeout=...) when the
# timeout passes; documented in that method, named with an underscore.
_WAIT_TIMEOUT = pg_errors._WaitTimeout


class DatabaseUnavailable(psycopg.OperationalError, TimeoutError):
    """Postgres did not answer within the client's deadline (frozen, overloaded or unreachable)."""


def no_answer(deadline_s: float, what: str = "") -> str:
    return (f"Postgres did not answer{' ' + what if what else ''} within {deadline_s:g} s "
            "(the server is frozen, overloaded or unreachable; MEMQ_DB_DEADLINE_S sets the deadline)")


def connect_timeout_s(deadline_s: float) -> int:
    """libpq's connect_timeout (whole seconds, at least 2) that the deadline allows."""
    return max(MIN_CONNECT_TIMEOUT_S, math.ceil(deadline_s))


class DeadlineConnection(psycopg.Connection):  # type: ignore[type-arg]
    """A psycopg connection whose every round trip gives up after ``deadline_s``."""

    deadline_s: float | None = None

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        deadline_s = self.deadline_s
        if deadline_s is None or timeout is not None:
            return super().wait(gen, interval, timeout)
        try:
            return super().wait(gen, interval, deadline_s)
        except _WAIT_TIMEOUT as exc:
            self.pgconn.finish()  # half a message exchanged: the connection cannot be used again
            raise DatabaseUnavailable(no_answer(deadline_s)) from exc


class AsyncDeadlineConnection(psycopg.AsyncConnection):  # type: ignore[type-arg]
    """The asyncio twin of DeadlineConnection (memq serve's event-loop pool)."""

    deadline_s: float | None = None

    async def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        deadline_s = self.deadline_s
        if deadline_s is None or timeout is not None:
            return await super().wait(gen, interval, timeout)
        try:
            return await super().wait(gen, interval, deadline_s)
        except _WAIT_TIMEOUT as exc:
            self.pgconn.finish()
            raise DatabaseUnavailable(no_answer(deadline_s)) from exc


def connect(deadline_s: float, *args: Any, **params: Any) -> DeadlineConnection:
    """DeadlineConnection.connect, its connect_timeout bounded by the deadline."""
    params["connect_timeout"] = _bounded_connect_timeout(params.get("connect_timeout"), deadline_s)
    try:
        conn = DeadlineConnection.connect(*args, **params)
    except pg_errors.ConnectionTimeout as exc:
        raise DatabaseUnavailable(no_answer(params["connect_timeout"], "a new connection")) from exc
    conn.deadline_s = deadline_s
    return conn


async def connect_async(deadline_s: float, *args: Any, **params: Any) -> AsyncDeadlineConnection:
    params["connect_timeout"] = _bounded_connect_timeout(params.get("connect_timeout"), deadline_s)
    try:
        conn = await AsyncDeadlineConnection.connect(*args, **params)
    except pg_errors.ConnectionTimeout as exc:
        raise DatabaseUnavailable(no_answer(params["connect_timeout"], "a new connection")) from exc
    conn.deadline_s = deadline_s
    return conn


def _bounded_connect_timeout(given: Any, deadline_s: float) -> int:
    bound = connect_timeout_s(deadline_s)
    return min(int(given), bound) if given not in (None, "") else bound


def install(engine: Engine, deadline_s: float) -> None:
    """Every new connection of ``engine`` (psycopg) is a DeadlineConnection."""
    from sqlalchemy import event

    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> DeadlineConnection:
        return connect(deadline_s, *cargs, **cparams)

    event.listen(engine, "do_connect", _connect)
