"""`memq beat`: fires due schedules into agents' inboxes and runs the reconciler.

Several beats may run at once for availability. Each (schedule, instant) fires
once: due rows are locked with SKIP LOCKED, and the fire itself is a row with a
unique (schedule_id, scheduled_for) key, so a second beat's insert fails.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import datetime, timezone

from memq.constants import EventType, Queue
from memq.llm_modes import LlmMode
from workers.limits import check_message_fits
from scheduler.collector import Collector
from scheduler.reconciler import reconcile_once
from scheduler.timing import MissedPolicy, ScheduleKind, Spec, due_fires
from storage import repository as repo
from storage.repository import schedules as sched_repo
from storage.repository.parked import set_run_mode
from storage.repository.refusals import record_refused_run
from storage.repository.messages import iso_utc
from workers.doorbell import Doorbell
from workers.runtime import Runtime

log = logging.getLogger("memq.beat")


def as_utc(dt: datetime) -> datetime:
    """SQLite returns naive datetimes; every instant memq stores is UTC."""
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def fire_due(rt: Runtime, now: datetime, beat_id: str) -> list[tuple[str, str]]:
    """Turn every due fire into an inbox event; returns (agent_id, run_id) of each fire."""
    fired: list[tuple[str, str]] = []
    with rt.db.transaction() as s:
        for schedule in sched_repo.due_schedules(s, now):
            spec = Spec(ScheduleKind(schedule.kind), schedule.expr, schedule.tz)
            instants, following = due_fires(
                spec,
                as_utc(schedule.next_fire_at),
                now,
                MissedPolicy(schedule.missed),
                rt.settings.schedule_grace_s,
            )
            for instant in instants:
                fire = sched_repo.claim_fire(s, schedule, instant, now, beat_id)
                if fire is None:
                    continue
                run, queued = _enqueue_fire(rt, s, schedule, instant)
                fire.run_id = run.id
                schedule.last_run_id = run.id
                schedule.last_fire_at = instant
                schedule.fires += 1
                if queued:
                    fired.append((schedule.agent_id, run.id))
            schedule.next_fire_at = following
    return fired


def _enqueue_fire(rt: Runtime, s, schedule, instant: datetime) -> tuple[object, bool]:
    """The fire's run and whether it was queued. A message that can never be
    processed (over MEMQ_MAX_MESSAGE_CHARS, or too big for the agent's window)
    fails its run at once with the reason, rather than failing every fire's
    transaction or jamming the agent."""
    key = f"schedule:{schedule.id}:{iso_utc(instant)}"
    try:
        with s.begin_nested():
            check_message_fits(rt.settings, s, repo.get_agent(s, schedule.agent_id), schedule.message)
            run, _ = repo.enqueue_message(
                s,
                schedule.agent_id,
                schedule.message,
                max_chars=rt.settings.max_message_chars,
                idempotency_key=key,
                event_type=EventType.SCHEDULED_WAKEUP,
                event_fields={"schedule_id": schedule.id, "scheduled_for": iso_utc(instant)},
            )
            if schedule.llm_mode != LlmMode.NORMAL:
                set_run_mode(s, [run.id], LlmMode(schedule.llm_mode))
        return run, True
    except repo.MessageTooLong as exc:
        log.warning("schedule %s not fired into agent %s: %s", schedule.id, schedule.agent_id, exc)
        return record_refused_run(s, schedule.agent_id, str(exc), idempotency_key=key), False


class Beat:
    """The beat loop: fire schedules as they fall due (checking at least every tick_s),
    reconcile every reconcile_every_s."""

    def __init__(self, rt: Runtime, doorbell: Doorbell, *, tick_s: float = 1.0, reconcile: bool = True,
                 collect: bool = True) -> None:
        self.rt = rt
        self.doorbell = doorbell
        self.tick_s = tick_s
        self.reconcile = reconcile
        # Provider batches of llm_mode=provider_batch steps (scheduler/collector.py), each tick.
        self.collector = Collector(rt, doorbell) if collect else None
        self.beat_id = f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()

    def tick(self, now: datetime | None = None) -> int:
        fired = fire_due(self.rt, now or datetime.now(timezone.utc), self.beat_id)
        for agent_id, _run_id in fired:
            self.doorbell.ring(agent_id, Queue.SCHEDULE.value)
        return len(fired)

    def _sleep_s(self) -> float:
        """Until the next due fire, at most tick_s (new schedules are seen within a tick)."""
        with self.rt.db.transaction() as s:
            upcoming = sched_repo.next_due_at(s)
        if upcoming is None:
            return self.tick_s
        wait = (as_utc(upcoming) - datetime.now(timezone.utc)).total_seconds()
        return min(self.tick_s, max(0.0, wait))

    def run(self) -> None:
        next_reconcile = 0.0
        while not self._stop.is_set():
            started = time.monotonic()
            sleep_s = self.tick_s
            try:
                self.tick()
                if self.reconcile and started >= next_reconcile:
                    reconcile_once(self.rt, self.doorbell)
                    next_reconcile = started + self.rt.settings.reconcile_every_s
                if self.collector is not None:
                    self.collector.tick()
                sleep_s = self._sleep_s()
            except Exception:  # database or broker restarting: the next tick retries
                log.warning("beat tick failed", exc_info=True)
            self._stop.wait(sleep_s)

    def stop(self) -> None:
        self._stop.set()


def run_beat(settings, *, tick_s: float = 1.0, callback_payload=None) -> None:
    """Entry point of `memq beat` (needs a broker: it rings Celery workers).

    callback_payload(db) -> payload(run_id): the document of a run's callback (the API's,
    memq/api/callbacks.py, given by the command). With it and MEMQ_CALLBACK_SECRET the beat
    also delivers run callbacks (scheduler/callbacks.py), beside any `memq serve`."""
    from workers.celery_app import create_celery_app
    from workers.doorbell import CeleryDoorbell

    if settings.embedded:
        raise SystemExit("memq beat needs MEMQ_BROKER_URL; in embedded mode `memq worker` fires schedules itself")
    rt = Runtime.build(settings)
    beat = Beat(rt, CeleryDoorbell(create_celery_app(settings)), tick_s=tick_s)
    log.info("beat %s started", beat.beat_id)
    deliverer = None
    if callback_payload is not None and settings.callback_secret:
        from scheduler.callbacks import CallbackDeliverer

        deliverer = CallbackDeliverer(rt.db, settings, callback_payload(rt.db)).start()
    print(f"memq beat {beat.beat_id} ready", flush=True)
    try:
        beat.run()
    except KeyboardInterrupt:
        pass
    finally:
        if deliverer is not None:
            deliverer.stop()
        rt.close()
