"""The common send and a run's answer without leaving the event loop.

A blocking `messages.create` is, in the common case, one statement that commits
the run (memq/api/send_path.py), one LPUSH that rings the worker, a wait on the
run watcher, and one statement that reads the finished run with its messages:
all awaited on the event loop (asyncpg connections, memq's own RESP connection),
so a message costs the API process no threadpool hop, no ORM session
and no SQLAlchemy compilation. What the common case does not cover (SQLite, an
idempotency key, a callback, text the storage door would clean or that must be
checked against the agent's window) takes the repository path in memq/api/ops.py.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.concurrency import run_in_threadpool

from memq.api import send_path
from memq.api.apg import AsyncPg
from memq.api.errors import unavailable
from memq.api.resp import Pipe
from memq.api.send_path import Sent

log = logging.getLogger("memq.api")


class AsyncRedisRing:
    """A Redis broker's doorbell on the event loop: the step task's message in one LPUSH
    (the message memq/quick's doorbell pushes), in RESP on one pipelined connection
    (memq/api/resp.py) for a plain redis:// URL, else with redis-py's asyncio client."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        from urllib.parse import urlsplit

        from memq.resp import is_plain

        parts = urlsplit(url)
        self._pipe: Pipe | None = Pipe(parts, timeout_s) if is_plain(parts) else None
        self._redis: Any = None
        if self._pipe is None:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

    async def ring(self, agent_id: str, queue: str) -> None:
        from memq.quick.doorbell import step_message

        message = step_message(agent_id, queue)
        if self._pipe is None:
            await self._redis.lpush(queue, message)
            return
        try:
            await self._pipe.call("LPUSH", queue, message)
        except (ConnectionError, OSError, TimeoutError):  # a dropped connection: once more on a new one
            await self._pipe.call("LPUSH", queue, message)  # (a doubled doorbell finds the lease taken)

    async def close(self) -> None:
        if self._pipe is not None:
            await self._pipe.close()
        if self._redis is not None:
            await self._redis.aclose()


class FastPath:
    def __init__(self, ops: Any, apg: AsyncPg, ring: AsyncRedisRing | None) -> None:
        self.ops = ops  # memq.api.ops.ApiOps: the broker check, and the doorbell of other brokers
        self.apg = apg
        self._ring = ring

    def applies(self, text: str, idempotency_key: str | None, callback_url: str | None) -> bool:
        return send_path.applies(text, idempotency_key, callback_url, self.ops.settings.max_message_chars)

    async def send(self, tenant: str, agent_id: str, text: str) -> Sent:
        """Commit the message and its run, then ring the broker (503 first if it is down)."""
        fresh, problem = self.ops.broker_problem_cached()
        if not fresh:  # checked at most once a second, on a thread (a PING)
            problem = await run_in_threadpool(self.ops.broker_problem)
        if problem:
            raise unavailable(f"the broker is unreachable ({problem}); nothing was queued, retry later")
        sent = await send_path.enqueue(self.apg, tenant, agent_id, text)
        await self.ring(agent_id, sent.queue)
        return sent

    async def ring(self, agent_id: str, queue: str) -> None:
        if self._ring is None:
            await run_in_threadpool(self.ops.ring, agent_id, queue)
            return
        try:
            await self._ring.ring(agent_id, queue)
        except Exception as exc:  # noqa: BLE001 - the run is safe; the reconciler rings it
            log.warning("doorbell for agent %s not delivered (%s); the reconciler will ring it", agent_id, exc)

    async def run_messages(self, tenant: str, run_id: str, after: int | None = None,
                           floor: int | None = None) -> tuple[Any, list[Any]]:
        return await send_path.run_messages(self.apg, tenant, run_id, after, floor)

    async def run_states(self, run_ids: list[str]) -> dict[str, tuple[str, int]]:
        return await send_path.run_states(self.apg, run_ids)

    async def close(self) -> None:
        if self._ring is not None:
            await self._ring.close()
        await self.apg.close()
