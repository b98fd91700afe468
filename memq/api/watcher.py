"""Waiting for runs without a thread per waiter.

One asyncio task per API process watches every run some request waits on: each
tick it reads (status, steps) of all of them in one indexed query (on a
threadpool thread) and wakes the waiters whose run changed. A thousand blocking
sends cost one query per tick, not a thousand pollers; the tick is short while
anyone waits and the task sleeps when nobody does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from memq.constants import RunStatus

log = logging.getLogger("memq.api.watcher")

State = tuple[str, int]  # (status, steps)
Reader = Callable[[list[str]], dict[str, State]]


@dataclass
class _Watch:
    state: State
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class RunWatcher:
    def __init__(self, read_states: Reader, tick_s: float = 0.005) -> None:
        self._read = read_states
        self.tick_s = tick_s
        self._watches: dict[str, list[_Watch]] = {}
        self._someone_waits = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="memq-run-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def wait_change(self, run_id: str, state: State, timeout_s: float) -> State:
        """The run's state once it differs from `state` (or `state` after timeout_s)."""
        watch = _Watch(state)
        self._watches.setdefault(run_id, []).append(watch)
        self._someone_waits.set()
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
            await asyncio.sleep(self.tick_s)
