"""Doorbells: how a step is asked for. Postgres holds the work; a ring only wakes a worker.

CeleryDoorbell sends the step task to a broker queue. LocalDoorbell is the
embedded mode's in-process worker: a thread pool running the same step.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from memq.constants import STEP_TASK
from storage import repository as repo
from workers.metrics import count_inline_step, observe_step
from workers.runtime import Runtime
from workers.step import StepResult, run_step

log = logging.getLogger("memq.doorbell")


class Doorbell(Protocol):
    def ring(self, agent_id: str, queue: str) -> None: ...


class StepDoorbell(Doorbell, Protocol):
    """A doorbell whose rings this process answers (a worker's)."""

    def stopping(self) -> bool:
        """The process is shutting down: a task finishes its step and goes no further."""
        ...


class StepSlots:
    """How many of a worker process's step threads are answering doorbells right now."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self.busy = 0
        self._lock = threading.Lock()

    def __enter__(self) -> "StepSlots":
        with self._lock:
            self.busy += 1
        return self

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self.busy -= 1

    @property
    def all_busy(self) -> bool:
        return self.busy >= self.capacity


def answer_doorbell(rt: Runtime, doorbell: StepDoorbell, agent_id: str, queue: str,
                    slots: StepSlots | None = None) -> StepResult:
    """Run the agent's steps while it has work and the task's budget lasts; then ring again.

    Each step is a whole step (lease, load, LLM, tool, fenced commit, release), so a
    crash between two of them loses nothing: Postgres holds the work, and the doorbell
    this task answers is acked only when it returns. Continuing in the same task saves
    the broker round trip and Celery's per-task work (about a bare hop per step), which
    is most of a chained step's overhead with a fast model. The budget bounds how long
    one agent keeps a worker thread: at most MEMQ_INLINE_STEPS_MAX steps, and once every
    step thread of the process is busy (other doorbells may be waiting for one),
    MEMQ_INLINE_BUDGET_S; then its next step queues behind other agents' doorbells. A
    worker that is shutting down finishes the step in hand and rings for the next.
    """
    started_s = time.monotonic()
    steps = 0
    with slots if slots is not None else contextlib.nullcontext():
        while True:
            with observe_step(rt, agent_id, queue) as obs:  # log context + metrics (workers/metrics.py)
                result = obs.done(run_step(rt, agent_id))
            steps += 1
            if not result.more_work or result.reason == "leased":
                return result
            if not _may_continue(rt, result, steps, started_s, slots) or doorbell.stopping():
                doorbell.ring(agent_id, queue)
                return result
            count_inline_step()


def _may_continue(rt: Runtime, result: StepResult, steps: int, started_s: float, slots: StepSlots | None) -> bool:
    settings = rt.settings
    if result.reason != "committed" or steps >= settings.inline_steps_max:
        return False
    crowded = slots is None or slots.all_busy
    return not crowded or time.monotonic() - started_s < settings.inline_budget_s


class CeleryDoorbell:
    def __init__(self, app: Any) -> None:
        self.app = app

    def ring(self, agent_id: str, queue: str) -> None:
        self.app.send_task(STEP_TASK, args=[agent_id], queue=queue)

    def stopping(self) -> bool:
        """A warm or cold shutdown has begun (SIGTERM, SIGINT, SIGQUIT): Celery sets these flags."""
        from celery.worker import state

        return any(flag is not None and flag is not False for flag in (state.should_stop, state.should_terminate))


class LocalDoorbell:
    """Runs steps on threads of this process (embedded mode)."""

    def __init__(self, rt: Runtime, concurrency: int = 8) -> None:
        self.rt = rt
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="memq-step")
        self.slots = StepSlots(concurrency)
        self._closed = threading.Event()
        self._queued: set[str] = set()
        self._crashed_at: dict[str, float] = {}  # agent id -> when its last step raised
        self._lock = threading.Lock()

    def ring(self, agent_id: str, queue: str) -> None:
        with self._lock:
            # A ring for an agent already waiting in the pool adds nothing.
            if self._closed.is_set() or agent_id in self._queued:
                return
            self._queued.add(agent_id)
        self.pool.submit(self._answer, agent_id, queue)

    def stopping(self) -> bool:
        return self._closed.is_set()

    def ring_waiting(self) -> int:
        """Ring every agent with waiting work and no live lease; returns how many.

        The embedded worker's poll. It skips the reconciler's claim and re-ring
        throttle (claim_agents_to_ring, once per MEMQ_RECONCILE_RERING_S): that
        throttle keeps reconcilers in many processes from flooding a broker, but
        here one process owns the pool and ring() already drops a ring for an
        agent waiting in it, so the throttle only held back a second or third
        send to the same agent by up to 30 s. Only an agent whose last step here
        raised still waits that interval, so a failing step is not retried on
        every tick.
        """
        now_s = time.time()
        with self.rt.db.autocommit() as s:
            waiting = repo.agents_with_pending_work(s, now_s=now_s)
        backoff_s = self.rt.settings.reconcile_rering_s
        rung = 0
        for agent_id, queue in waiting:
            with self._lock:
                crashed_at = self._crashed_at.get(agent_id)
            if crashed_at is None or now_s - crashed_at >= backoff_s:
                self.ring(agent_id, queue)
                rung += 1
        return rung

    def _answer(self, agent_id: str, queue: str) -> None:
        with self._lock:
            self._queued.discard(agent_id)
        try:
            answer_doorbell(self.rt, self, agent_id, queue, self.slots)
        except Exception:
            with self._lock:
                self._crashed_at[agent_id] = time.time()
            log.exception("step of agent %s failed", agent_id)
        else:
            with self._lock:
                self._crashed_at.pop(agent_id, None)

    def close(self) -> None:
        self._closed.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
