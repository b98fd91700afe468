"""Postgres on the event loop: a small asyncio pool of asyncpg connections for
`memq serve`'s hot path (the common send, the watcher's reads, a finished run's
answer). Each call is one statement on its own (autocommit), awaited on the event
loop: no threadpool hop, no ORM session, no SQLAlchemy compilation.

asyncpg, not psycopg's async connections: its protocol is compiled, and a send with
its answer (two statements) costs the API process about 0.3 ms of CPU where psycopg
took about 0.6 ms (measured on this box, same statements, same run). The statements
are written once, in psycopg's parameter style (``%(name)s``, ``%s``; ``%%`` for a
percent sign), and turned into asyncpg's ``$n`` once per statement (`_positional`).
Statements are prepared and cached per connection; behind PgBouncer in transaction
mode (``?prepare_threshold=none`` on the URL, storage/pgurl.py) the cache is off.

Errors keep psycopg's classes: a server error is raised as the psycopg exception of
its SQLSTATE (DiskFull, AdminShutdown, ...), a lost connection as psycopg's
OperationalError, so the routes' error mapping (memq/api/errors.py) is the same for
every path. A connection that fails is closed, and so are the idle ones (after a
database restart they are all dead): the caller gets the error (503 from the routes)
and the next call connects afresh. Every statement gives up after `deadline_s`
(MEMQ_DB_DEADLINE_S) with DatabaseUnavailable, and so does a new connection; the
connection of a statement that timed out or was cancelled is closed, not reused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import asyncpg
import psycopg

from memq.quick import pg
from storage.deadline import DEFAULT_DEADLINE_S, DatabaseUnavailable, no_answer

log = logging.getLogger("memq.api.apg")
_PARAM = re.compile(r"%%|%\((\w+)\)s|%s")


class PoolTimeout(Exception):
    """No connection within the deadline (every one busy, or the database not answering)."""


@lru_cache(maxsize=256)
def _positional(sql: str) -> tuple[str, tuple[str, ...] | int]:
    """psycopg-style SQL -> (asyncpg SQL, the parameter names in $n order, or the count of %s)."""
    names: list[str] = []
    positional = 0

    def sub(m: re.Match[str]) -> str:
        nonlocal positional
        if m.group(0) == "%%":
            return "%"
        if m.group(1) is None:
            positional += 1
            return f"${positional}"
        if m.group(1) not in names:
            names.append(m.group(1))
        return f"${names.index(m.group(1)) + 1}"

    out = _PARAM.sub(sub, sql)
    if names and positional:
        raise ValueError("a statement mixes %(name)s and %s parameters")
    return out, (tuple(names) if names else positional)


def _args(sql: str, params: Mapping[str, Any] | Sequence[Any] | None) -> tuple[str, list[Any]]:
    text, spec = _positional(sql)
    if isinstance(spec, tuple):
        return text, [params[name] for name in spec]  # type: ignore[index]
    return text, list(params or ())


def _as_psycopg(exc: BaseException) -> Exception:
    """The psycopg exception memq's error mapping knows for an asyncpg error."""
    state = getattr(exc, "sqlstate", None)
    if isinstance(exc, asyncpg.PostgresError) and state:
        try:
            cls = psycopg.errors.lookup(state)
        except KeyError:
            cls = psycopg.DatabaseError
        return cls(str(exc))
    return psycopg.OperationalError(f"the database connection failed: {exc or type(exc).__name__}")


async def _init(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):  # as psycopg loads them: Python values
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class AsyncPg:
    def __init__(self, url: str, max_size: int = 20, timeout_s: float = 30.0, connect_timeout_s: float = 5.0,
                 deadline_s: float = DEFAULT_DEADLINE_S) -> None:
        from storage.pgurl import split_driver_options

        url, options = split_driver_options(url)  # e.g. ?prepare_threshold=none behind PgBouncer
        self._url = pg.libpq_url(url)
        self._cache_size = 0 if "prepare_threshold" in options and options["prepare_threshold"] is None else 100
        self.timeout_s = timeout_s
        self.connect_timeout_s = min(connect_timeout_s, deadline_s)  # asyncpg's: a float, all of the connect
        self.deadline_s = deadline_s
        self._slots = asyncio.Semaphore(max_size)
        self._idle: list[asyncpg.Connection] = []

    async def _connect(self) -> asyncpg.Connection:
        try:
            conn = await asyncpg.connect(self._url, timeout=self.connect_timeout_s,
                                         statement_cache_size=self._cache_size)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise DatabaseUnavailable(no_answer(self.connect_timeout_s, "a new connection")) from exc
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise _as_psycopg(exc) from exc
        try:
            await asyncio.wait_for(_init(conn), self.deadline_s)
        except BaseException:
            conn.terminate()
            raise
        return conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        if self._slots.locked():  # every connection busy: wait for one, within the deadline
            try:
                async with asyncio.timeout(self.timeout_s):
                    await self._slots.acquire()
            except TimeoutError:
                raise PoolTimeout(f"no database connection within {self.timeout_s:.0f} s") from None
        else:
            await self._slots.acquire()
        conn = None
        reuse = False
        try:
            conn = self._idle.pop() if self._idle else await self._connect()
            yield conn
            reuse = not conn.is_closed() and not conn.is_in_transaction()
        except psycopg.OperationalError:
            await self._drop_idle()  # a lost connection: the idle ones are most likely lost too
            raise
        finally:
            if conn is not None:
                if reuse:
                    self._idle.append(conn)
                else:
                    conn.terminate()
            self._slots.release()

    async def fetch(self, sql: str, params: Mapping[str, Any] | Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Every row of one statement (psycopg's parameter style), as tuples (the caller names
        the columns it selected)."""
        text, args = _args(sql, params)
        async with self.connection() as conn:
            try:
                return [tuple(r) for r in await conn.fetch(text, *args, timeout=self.deadline_s)]
            except (asyncio.TimeoutError, TimeoutError) as exc:
                conn.terminate()  # half a message exchanged: the connection cannot be used again
                raise DatabaseUnavailable(no_answer(self.deadline_s)) from exc
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                if conn.is_closed() or not isinstance(exc, asyncpg.PostgresError):
                    conn.terminate()
                raise _as_psycopg(exc) from exc

    async def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.terminate()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            try:
                await asyncio.wait_for(conn.close(), 5.0)
            except Exception:  # noqa: BLE001 - closing a broken connection may fail; it is gone either way
                conn.terminate()

