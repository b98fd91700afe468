"""The Celery app and its one task, the step. Tasks stay thin, like web views."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from memq.constants import ALL_QUEUES, STEP_TASK, Queue
from memq.settings import Settings


def visibility_timeout_s(settings: Settings) -> int:
    """Longer than the longest step: every LLM attempt at full timeout plus backoff."""
    attempts = settings.llm_max_retries + 1
    worst = attempts * (settings.llm_timeout_s + settings.llm_backoff_max_s) + 60
    return int(max(3600, worst))


# Every Redis socket of the app (a send's doorbell, a step's re-ring, the consumer) gives up
# after this long instead of waiting on a server that stopped answering (frozen, or cut off
# by the network); the doorbell is then "not delivered" and the reconciler rings it. Above
# kombu's 1 s BRPOP wait. A publish is tried twice (Celery's default is 4 tries), so a
# send waits at most ~2 x 3 s on a frozen broker instead of as long as the freeze lasts.
BROKER_SOCKET_TIMEOUT_S = 3.0
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {"visibility_timeout": visibility_timeout_s(settings)}
    if (settings.broker_url or "").startswith(("redis://", "rediss://")):
        options.update(socket_timeout=BROKER_SOCKET_TIMEOUT_S, socket_connect_timeout=BROKER_SOCKET_TIMEOUT_S)
    return options


def create_celery_app(settings: Settings) -> Any:
    from celery import Celery
    from kombu import Queue as KombuQueue

    app = Celery("memq", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_default_queue=Queue.INTERACTIVE.value,
        task_queues=[KombuQueue(q, routing_key=q) for q in ALL_QUEUES],
        task_create_missing_queues=True,
        broker_transport_options=broker_transport_options(settings),
        task_publish_retry_policy=PUBLISH_RETRY_POLICY,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        # Off: three broker publishes per step. Flower switches events on at run time.
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return app


class LazyRuntime:
    """Builds the process's Runtime on first use, so a forked pool child builds its own."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._value: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._factory()
        return self._value


def register_step_task(app: Any, runtime: LazyRuntime, concurrency: int) -> Any:
    """Register ``memq.step(agent_id)``: answer one doorbell of one agent.

    concurrency: the pool's step threads (the inline budget asks whether all are busy)."""
    from workers.doorbell import CeleryDoorbell, StepSlots, answer_doorbell

    doorbell = CeleryDoorbell(app)
    slots = StepSlots(concurrency)

    @app.task(name=STEP_TASK, bind=True, ignore_result=True)
    def step(self: Any, agent_id: str) -> dict[str, Any]:
        queue = (self.request.delivery_info or {}).get("routing_key") or Queue.INTERACTIVE.value
        result = answer_doorbell(runtime.get(), doorbell, agent_id, queue, slots)
        return {"ran": result.ran, "reason": result.reason, "run_id": result.run_id}

    return step
