"""Waiting for runs without a thread per waiter.

One asyncio task per API process watches every run some request waits on. A
step's commit announces the run's new state on Redis ("<run id> <status>
<steps>" on RUN_EVENTS_CHANNEL, published by workers/run_events.py): the
waiters of that run wake at once with it, without a database read. As the
fallback the task reads (status, steps) of every watched run in one indexed
query every poll_s (every 20 ms at most while the subscription is down or
there is no Redis). A thousand blocking sends cost one query per poll, not a
thousand pollers; the task sleeps when nobody waits.

A waiter that arrives after its run may have moved is covered without a read
when the subscription has been up since before the run was created: the
caller takes `mark()` before it sends, and announcements of the last few
seconds are remembered, so one that came before the waiter is found. Otherwise
(no subscription, or it dropped in between) the watcher reads the run at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from memq.constants import RUN_EVENTS_CHANNEL, RunStatus

log = logging.getLogger("memq.api.watcher")
_STATES = frozenset(s.value for s in RunStatus)
_FINISHED = frozenset(s.value for s in RunStatus if s.finished)

FALLBACK_POLL_S = 0.02  # the poll while no run events arrive (Redis down or absent)
RECENT_MAX = 4096  # announcements remembered for waiters that arrive after them
State = tuple[str, int]  # (status, steps)
Reader = Callable[[list[str]], Any]  # plain (run on a threadpool thread) or async (awaited on the loop)


def _newer(a: State, b: State) -> bool:
    """Whether `a` is a later state of a run than `b`: more steps, or as many and finished
    (a run ended without a step: cancelled, given up). Publishes of two workers may arrive
    out of order: a waiter never steps back."""
    if a[1] != b[1]:
        return a[1] > b[1]
    return a != b and a[0] in _FINISHED and b[0] not in _FINISHED


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
        self._async_read = asyncio.iscoroutinefunction(read_states)
        self._generation = 0  # counts subscriptions: a waiter's mark() names the one it relies on
        self._recent: OrderedDict[str, State] = OrderedDict()  # announcements of this subscription

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

    def mark(self) -> int | None:
        """Taken before a send: the subscription whose announcements will cover its run (None: none)."""
        return self._generation if self.subscribed else None

    async def wait_change(self, run_id: str, state: State, timeout_s: float, mark: int | None = None) -> State:
        """The run's state once it differs from `state` (or `state` after timeout_s). `mark`:
        the caller's mark() from before the run's last known state was read."""
        watch = _Watch(state)
        self._watches.setdefault(run_id, []).append(watch)
        self._someone_waits.set()
        if mark is not None and self.subscribed and mark == self._generation:
            announced = self._recent.get(run_id)  # an announcement that came before this waiter
            if announced is not None and _newer(announced, state):
                watch.state = announced
                watch.changed.set()
        else:
            self._poke.set()  # read it now: the run may have moved before anyone watched it
        try:
            if not watch.changed.is_set():
                async with asyncio.timeout(max(0.0, timeout_s)):
                    await watch.changed.wait()
        except TimeoutError:
            pass
        finally:
            waiting = self._watches.get(run_id, [])
            if watch in waiting:
                waiting.remove(watch)
            if not waiting:
                self._watches.pop(run_id, None)
        return watch.state

    async def wait_finished(self, run_id: str, state: State, timeout_s: float, mark: int | None = None) -> State:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not RunStatus(state[0]).finished:
            left = deadline - loop.time()
            if left <= 0:
                break
            state = await self.wait_change(run_id, state, left, mark)
        return state

    async def _loop(self) -> None:
        while True:
            if not self._watches:
                self._someone_waits.clear()
                await self._someone_waits.wait()
            self._poke.clear()  # before the read: a commit announced during it reads again
            ids = list(self._watches)
            try:
                if self._async_read:
                    states = await self._read(ids)
                else:
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
        status, _, steps = rest.partition(" ")
        watches = self._watches.get(run_id)
        if status not in _STATES or not steps.isdigit():
            if watches:
                self._poke.set()  # a message this process cannot read: read the run instead
            return
        state = (status, int(steps))
        recent = self._recent
        if run_id not in recent or _newer(state, recent[run_id]):
            recent[run_id] = state
            recent.move_to_end(run_id)
            if len(recent) > RECENT_MAX:
                recent.popitem(last=False)
        if not watches:
            return
        for watch in watches:
            if _newer(state, watch.state):
                watch.state = state
                watch.changed.set()

    async def _listen(self) -> None:
        """Poke the loop when a step commits for a watched run; resubscribe after Redis drops."""
        from urllib.parse import urlsplit

        from memq.resp import is_plain

        plain = is_plain(urlsplit(self.redis_url or ""))
        while True:
            try:
                async for data in (self._plain_events() if plain else self._redis_py_events()):
                    if data is None:  # Redis confirmed: every later publish reaches us
                        self._recent.clear()
                        self._generation += 1
                        self.subscribed = True
                    else:
                        self._announced(data.decode(errors="replace"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis restarting: poll meanwhile, retry
                if self.subscribed:
                    log.warning("run events unavailable (%s); polling every %.2f s", exc, min(self.poll_s,
                                                                                         FALLBACK_POLL_S))
            finally:
                self.subscribed = False
                self._poke.set()  # anything announced while unsubscribed is read now
            await asyncio.sleep(1.0)

    def _plain_events(self) -> AsyncIterator[bytes | None]:
        from urllib.parse import urlsplit

        from memq.api.resp import subscribe

        return subscribe(urlsplit(self.redis_url or ""), RUN_EVENTS_CHANNEL, timeout_s=2.0)

    async def _redis_py_events(self) -> AsyncIterator[bytes | None]:
        """The same through redis-py (TLS, a socket path, URL options)."""
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.redis_url, socket_connect_timeout=2)
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(RUN_EVENTS_CHANNEL)
                async for message in pubsub.listen():
                    kind = message.get("type")
                    if kind == "message":
                        yield message["data"]
                    elif kind == "subscribe":
                        yield None
        finally:
            await client.aclose()
