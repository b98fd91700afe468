"""Postgres on the event loop: a small asyncio pool of psycopg connections for
`memq serve`'s hot path (the common send, the watcher's reads, a finished run's
answer). Each call is one statement on an autocommit connection, awaited on the
event loop: no threadpool hop, no ORM session, no SQLAlchemy compilation.

A connection that fails is closed, and so are the idle ones (after a database
restart they are all dead): the caller gets the error (503 from the routes) and
the next call connects afresh. Every round trip gives up after `deadline_s`
(MEMQ_DB_DEADLINE_S; storage/deadline.py: psycopg's own wait timeout, so a frozen
server's connection is closed without a cancel request to that server) with
DatabaseUnavailable, and so does a new connection; every call has a deadline
(`timeout_s`) too; a connection whose statement timed out or was cancelled is
closed, not reused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import pq
from psycopg.rows import tuple_row

from memq.quick import pg
from storage.deadline import DEFAULT_DEADLINE_S, connect_async

log = logging.getLogger("memq.api.apg")
_IDLE = pq.TransactionStatus.IDLE


class PoolTimeout(Exception):
    """No connection within the deadline (every one busy, or the database not answering)."""


class AsyncPg:
    def __init__(self, url: str, max_size: int = 20, timeout_s: float = 30.0, connect_timeout_s: float = 5.0,
                 deadline_s: float = DEFAULT_DEADLINE_S) -> None:
        from storage.pgurl import split_driver_options

        url, self._options = split_driver_options(url)  # e.g. ?prepare_threshold=none behind PgBouncer
        self._url = pg.libpq_url(url)
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.deadline_s = deadline_s
        self._slots = asyncio.Semaphore(max_size)
        self._idle: list[psycopg.AsyncConnection[Any]] = []

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await connect_async(
            self.deadline_s, self._url, autocommit=True, connect_timeout=max(1, int(self.connect_timeout_s)),
            row_factory=tuple_row, **self._options)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
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
            reuse = not conn.closed and conn.pgconn.transaction_status == _IDLE
        except psycopg.OperationalError:
            await self._drop_idle()  # a lost connection: the idle ones are most likely lost too
            raise
        finally:
            if conn is not None:
                if reuse:
                    self._idle.append(conn)
                else:
                    await _close(conn)
            self._slots.release()

    async def fetch(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Every row of one statement, as tuples (the caller names the columns it selected)."""
        async with self.connection() as conn, asyncio.timeout(self.timeout_s):
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

    async def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await _close(conn)

    async def close(self) -> None:
        await self._drop_idle()


async def _close(conn: psycopg.AsyncConnection[Any]) -> None:
    try:
        await asyncio.wait_for(conn.close(), 5.0)
    except Exception:  # noqa: BLE001 - closing a broken connection may fail; it is gone either way
        pass
