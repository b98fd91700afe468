"""The FastAPI app of `memq serve`. Stateless: any number of processes and
replicas can run behind a load balancer; Postgres holds every fact."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from memq.api import errors
from memq.api.deps import ApiState
from memq.api.keycache import KeyCache
from memq.api.metrics import ApiMetrics, MetricsMiddleware, metrics_endpoint
from memq.api.middleware import RequestMiddleware
from memq.api.ops import ApiOps
from memq.api.routes import agents, archival, blocks, health, messages, native, runs, schedules
from memq.api.send_lane import SendLane
from memq.api.watcher import RunWatcher
from memq.settings import Settings

log = logging.getLogger("memq.api")
ROUTERS = (health.router, agents.router, messages.router, runs.router, blocks.router, archival.router,
           schedules.router, native.router)


class _NoRing:
    """Embedded mode (no broker): sends only queue; an embedded `memq worker` picks them up."""

    def ring(self, agent_id: str, queue: str) -> None:
        return None


class _RedisRing:
    """A Redis broker's doorbell: the step task's message pushed with redis-py (thread-safe, pooled),
    the same message the CLI's quick path pushes; Celery's producer costs ~1 ms of CPU per ring."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)

    def ring(self, agent_id: str, queue: str) -> None:
        from memq.quick.doorbell import step_message

        self._redis.lpush(queue, step_message(agent_id, queue))

    def close(self) -> None:
        self._redis.close()


# Database connections per process, split between the transaction and autocommit pools: enough
# for every threadpool thread (anyio's 40) to hold one without opening and closing overflow ones.
DB_POOL_SIZE = 40
# Connections of the event loop's pool (memq/api/apg.py): each is held for one statement, never
# while a request waits for its run, so a few serve many concurrent requests.
ASYNC_POOL_SIZE = 20


def _client(settings: Settings) -> Any:
    from memq.client import Client
    from workers.runtime import Runtime

    rt = Runtime.build(settings, pool_size=DB_POOL_SIZE)
    if settings.embedded:
        return Client(rt, _NoRing())
    from memq.quick.doorbell import is_redis

    if is_redis(settings.broker_url):
        return Client(rt, _RedisRing(settings.broker_url or ""))
    from workers.celery_app import create_celery_app
    from workers.doorbell import CeleryDoorbell

    return Client(rt, CeleryDoorbell(create_celery_app(settings)))


def _fast_path(settings: Settings, ops: ApiOps) -> Any:
    """The common send and a run's answer on the event loop (memq/api/fast.py): Postgres only."""
    if ops.db.is_sqlite:
        return None
    from memq.api.apg import AsyncPg
    from memq.api.fast import AsyncRedisRing, FastPath
    from memq.quick.doorbell import is_redis

    ring = AsyncRedisRing(settings.broker_url or "") if is_redis(settings.broker_url) else None
    pool = AsyncPg(settings.resolved_database_url, max_size=ASYNC_POOL_SIZE, deadline_s=settings.db_deadline_s)
    return FastPath(ops, pool, ring)


def _deliverer(settings: Settings, ops: ApiOps) -> Any:
    """The callback deliverer thread (scheduler/callbacks.py), when callbacks can be signed."""
    from memq.api.callbacks import deliverer

    return deliverer(ops.db, settings)


class MemqApp(FastAPI):
    """FastAPI, whose first layer answers the common blocking send (memq/api/send_lane.py)
    and hands every other request to FastAPI's own stack."""

    send_lane: SendLane | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.send_lane is not None and scope["type"] == "http":
            await self.send_lane(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def _traced(app: FastAPI) -> bool:
    """Whether FastAPI's own OpenTelemetry instrumentation is on (a tracer, meter or logger
    provider configured before the server started): the send lane would bypass it."""
    telemetry = getattr(app, "_native_telemetry", None)
    try:
        return bool(telemetry is not None and telemetry.enabled())
    except Exception:  # noqa: BLE001 - a FastAPI without it, or a provider that fails to answer
        return False


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    from memq.logging_setup import configure
    from workers.prompts import BASE_SYSTEM_PROMPT

    configure()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = _client(settings)
        ops = ApiOps(client)
        fast = _fast_path(settings, ops)
        read_states = fast.run_states if fast is not None else ops.run_states
        watcher = RunWatcher(read_states, poll_s=settings.api_poll_s, redis_url=settings.resolved_redis_url)
        watcher.start()
        keys = KeyCache(ops.tenant_for_key, settings.api_key_cache_s)
        app.state.memq = ApiState(ops=ops, watcher=watcher, default_system=BASE_SYSTEM_PROMPT,
                                  wait_s=settings.api_wait_s, keys=keys, fast=fast)
        if _traced(app):  # OpenTelemetry is set up: every request goes through FastAPI's instrumented stack
            log.info("OpenTelemetry is configured: the common send is traced through FastAPI's stack")
            app.send_lane = None  # type: ignore[attr-defined]
        deliverer = _deliverer(settings, ops)
        try:
            yield
        finally:
            if deliverer is not None:
                deliverer.stop()
            await watcher.stop()
            if fast is not None:
                await fast.close()
            client.close()

    app = MemqApp(
        title="memq",
        summary="Stateful MemGPT-style agents on a Celery fleet; Letta-compatible routes.",
        version="0.1.0",
        lifespan=lifespan,
    )
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(RequestMiddleware, max_body_bytes=settings.api_max_body_bytes)
    metrics = ApiMetrics()
    app.add_route("/metrics", metrics_endpoint(metrics, settings.api_metrics_token), include_in_schema=False)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: 413s and errors count too
    # Before all of it: the common send, which logs and counts itself as the two above would.
    app.send_lane = SendLane(functools.partial(FastAPI.__call__, app), app, metrics, settings.api_max_body_bytes)
    return app
