"""The baseline Celery app: one task that re-enqueues itself, nothing else.

Same broker and the same Celery settings memq's app uses (acks_late,
reject_on_worker_lost, prefetch 1, JSON, ignore results, threads pool), so one
hop of this chain is the floor under one memq step.

    BENCH_BROKER_URL=redis://... python -m celery -A benchmarks.bare_celery worker --pool threads

``BENCH_TASK_EVENTS=1`` turns on task events as memq's app does
(``worker_send_task_events=True``); 0 leaves them off (Celery's default).
The last hop pushes its wall time onto the Redis list named by the task's
``key`` argument, so the driver learns the end with one BLPOP, without polling.
"""

from __future__ import annotations

import os
import threading
import time

from celery import Celery

QUEUE = "bench_bare"
TASK = "bench.hop"

app = Celery("bench_bare", broker=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0"),
             set_as_current=False)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_ignore_result=True,
    task_default_queue=QUEUE,
    broker_transport_options={"visibility_timeout": 3600},
    broker_connection_retry_on_startup=True,
    worker_send_task_events=os.environ.get("BENCH_TASK_EVENTS", "0") == "1",
    task_send_sent_event=False,
)

_redis = None
_redis_lock = threading.Lock()


def _signal(key: str) -> None:
    global _redis
    with _redis_lock:
        if _redis is None:
            import redis

            _redis = redis.Redis.from_url(app.conf.broker_url)
    _redis.rpush(key, repr(time.time()))


@app.task(name=TASK, bind=True, ignore_result=True)
def hop(self, n: int, key: str) -> None:
    """Re-enqueue with n-1 (as a memq step re-rings its agent); at 0 tell the driver."""
    if n > 0:
        self.app.send_task(TASK, args=[n - 1, key], queue=QUEUE)
    else:
        _signal(key)
