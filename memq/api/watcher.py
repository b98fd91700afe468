"""Waiting for runs without a thread per waiter.

One asyncio task per API process watches every run some request waits on. A
step's commit announces the run's new state on Redis ("<run id> <status>
<steps>" on RUN_EVENTS_CHANNEL, published by workers/run_events.py): the
waiters of that run wake at once with it, without a database read. As the
fallback the task reads (status, steps) of every watched run in one indexed
query (on a threadpool thread) when a waiter arrives and every poll_s after
(every 20 ms at most while the subscription is down or there is no Redis).
A thousand blocking sends cost one query per poll, not a thousand pollers;
the task sleeps when nobody waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from memq.constants import RUN_EVENTS_CHANNEL, RunStatus

log = logging.getLogger("memq.api.watcher")

FALLBACK_POLL_S = 0.02  # the poll while no run events arrive (Redis down or absent)
State = tuple[str, int]  # (status, steps)
Reader = Callable[[list[str]], dict[str, State]]


@dataclass
class _Watch:
    state: State
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class RunWatcher:
    def __init__(self, read_states: Reader, poll_s: float = 0.25, redis_url: str | None = None) -> None:
        self._read = read_states
        self.poll_s = poll_s
        self.redis_url = redis_url
        self.subscribed = False
        self._watches: dict[str, list[_Watch]] = {}
        self._someone_waits = asyncio.Event()
        self._poke = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._loop(), name="memq-run-watcher"))
        if self.redis_url:
            self._tasks.append(loop.create_task(self._listen(), name="memq-run-events"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    @property
    def tick_s(self) -> float:
        return self.poll_s if self.subscribed else min(self.poll_s, FALLBACK_POLL_S)

    async def wait_change(self, run_id: str, state: State, timeout_s: float) -> State:
        """The run's state once it differs from `state` (or `state` after timeout_s)."""
        watch = _Watch(state)
        self._watches.setdefault(run_id, []).append(watch)
        self._someone_waits.set()
        self._poke.set()  # read it now: the run may have moved before anyone watched it
        try:
            await asyncio.wait_for(watch.changed.wait(), timeout=max(0.0, timeout_s))
        except asyncio.TimeoutError:
            pass
        finally:
            waiting = self._watches.get(run_id, [])
            if watch in waiting:
                waiting.remove(watch)
            if not waiting:
                self._watches.pop(run_id, None)
        return watch.state

    async def wait_finished(self, run_id: str, state: State, timeout_s: float) -> State:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not RunStatus(state[0]).finished:
            left = deadline - loop.time()
            if left <= 0:
                break
            state = await self.wait_change(run_id, state, left)
        return state

    async def _loop(self) -> None:
        while True:
            if not self._watches:
                self._someone_waits.clear()
                await self._someone_waits.wait()
            self._poke.clear()  # before the read: a commit announced during it reads again
            ids = list(self._watches)
            try:
                states = await run_in_threadpool(self._read, ids)
            except Exception as exc:  # noqa: BLE001 - the database may be restarting: keep watching
                log.warning("run watcher could not read runs: %s", str(exc).splitlines()[0][:200])
                await asyncio.sleep(1.0)
                continue
            for run_id, state in states.items():
                for watch in self._watches.get(run_id, []):
                    if state != watch.state:
                        watch.state = state
                        watch.changed.set()
            try:
                await asyncio.wait_for(self._poke.wait(), timeout=self.tick_s)
            except asyncio.TimeoutError:
                pass

    def _announced(self, data: str) -> None:
        """A step's commit: "<run id> <status> <steps>" wakes the run's waiters without a read."""
        run_id, _, rest = data.partition(" ")
        watches = self._watches.get(run_id)
        if not watches:
            return
        status, _, steps = rest.partition(" ")
        if status not in RunStatus.__members__.values() or not steps.isdigit():
            self._poke.set()  # a message this process cannot read: read the run instead
            return
        state = (status, int(steps))
        for watch in watches:
            # Publishes of two workers may arrive out of order: never step back.
            if state != watch.state and state[1] >= watch.state[1]:
                watch.state = state
                watch.changed.set()

    async def _listen(self) -> None:
        """Poke the loop when a step commits for a watched run; resubscribe after Redis drops."""
        import redis.asyncio as aioredis

        while True:
            client = aioredis.Redis.from_url(self.redis_url, socket_connect_timeout=2)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(RUN_EVENTS_CHANNEL)
                    self.subscribed = True
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._announced(message["data"].decode(errors="replace"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis restarting: poll meanwhile, retry
                if self.subscribed:
                    log.warning("run events unavailable (%s); polling every %.2f s", exc, min(self.poll_s,
                                                                                         FALLBACK_POLL_S))
            finally:
                self.subscribed = False
                self._poke.set()  # anything announced while unsubscribed is read now
                await client.aclose()
            await asyncio.sleep(1.0)
