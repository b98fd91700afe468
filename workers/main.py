"""`memq worker`: a Celery worker for the step task (or the in-process one, embedded)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence

from memq.constants import ALL_QUEUES
from memq.settings import Settings

log = logging.getLogger("memq.worker")


def run_worker(
    settings: Settings,
    *,
    concurrency: int | None = None,
    queues: Sequence[str] = ALL_QUEUES,
    pool: str = "threads",
    loglevel: str = "INFO",
    hostname: str | None = None,
    reconcile: bool = True,
) -> None:
    """Serve steps until stopped. Threads by default: a step mostly waits on the LLM."""
    concurrency = concurrency or settings.worker_concurrency
    from memq import logging_setup
    from workers import metrics

    logging_setup.configure(loglevel, json_logs=settings.log_json)  # JSON option, secrets masked
    log.info("worker starting: database %s, broker %s, queues %s", settings.resolved_database_url,
             settings.broker_url or "embedded", ",".join(queues))
    from workers import supervisor

    if os.environ.get(supervisor.PARENT_PID_ENV):  # a child of `memq worker --processes N`:
        supervisor.follow_parent()  # its parent serves /metrics for every child
        metrics.metrics()  # every series exists (at zero) in the shared files from the start
    else:
        metrics.start_server(settings)  # MEMQ_METRICS_PORT / --metrics-port
    if settings.embedded:
        _run_embedded(settings, concurrency)
        return
    from celery import signals

    # Celery keeps its hands off logging when a receiver answers setup_logging.
    signals.setup_logging.connect(lambda **_: logging_setup.configure(loglevel, json_logs=settings.log_json),
                                  weak=False)

    from scheduler.reconciler import Reconciler, reconcile_once
    from workers.celery_app import LazyRuntime, create_celery_app, register_step_task
    from workers.doorbell import CeleryDoorbell
    from workers.runtime import Runtime

    app = create_celery_app(settings)
    runtime = LazyRuntime(
        lambda: Runtime.build(settings, pool_size=min(concurrency, 20), serve_vectors=True)
    )
    register_step_task(app, runtime, concurrency)

    @signals.worker_ready.connect(weak=False)
    def _sweep(**_: object) -> None:
        # Work that arrived while no worker ran (or whose doorbell was lost) starts
        # now; then the reconciler keeps watching for lost doorbells.
        doorbell = CeleryDoorbell(app)
        try:
            runtime.get().warm_up()
            start_memory_services(runtime.get())
            reconcile_once(runtime.get(), doorbell, idle_s=0.0)
        except Exception:
            log.exception("start-up sweep failed")
        if reconcile:
            Reconciler(runtime.get(), doorbell).start()

    argv = ["worker", f"--pool={pool}", f"--concurrency={concurrency}",
            f"--queues={','.join(queues)}", f"--loglevel={loglevel}", "--without-mingle",
            "--without-gossip"]
    if hostname:
        argv.append(f"--hostname={hostname}")
    if settings.log_json:
        argv.insert(0, "--quiet")  # celery's own option: no banner, every line stays JSON
    # app.start, not worker_main: worker_main drops Celery's exit code, and a
    # supervisor must see a worker that stopped on an unrecoverable error fail.
    code = app.start(argv)
    if code:
        raise SystemExit(code)


def start_memory_services(rt) -> None:
    """Open (and, if embedded, own) the vector store; index recall in the background."""
    from workers.indexer import BackgroundIndexer

    try:
        rt.memory.vectors.index()
    except Exception:
        log.warning("vector store not available yet; searches fall back to text", exc_info=True)
    BackgroundIndexer(rt).start()


def _run_embedded(settings: Settings, concurrency: int) -> None:
    """No broker: poll the database and run steps on this process's threads."""
    from workers.doorbell import LocalDoorbell
    from workers.runtime import Runtime

    from scheduler.beat import Beat

    rt = Runtime.build(settings, serve_vectors=True)
    rt.db.upgrade()  # before anything touches the schema (the indexer, the beat, steps)
    start_memory_services(rt)
    try:
        rt.warm_up()  # the first step must not pay the litellm import (seconds)
    except Exception:
        log.warning("warm-up failed; the first step pays it", exc_info=True)
    doorbell = LocalDoorbell(rt, concurrency=min(concurrency, 32))
    beat = Beat(rt, doorbell, reconcile=False)
    stop = threading.Event()
    log.info("embedded worker ready (database %s)", settings.resolved_database_url)
    print("memq embedded worker ready; Ctrl-C stops it", flush=True)
    try:
        while not stop.wait(0.5):
            # No beat runs in embedded mode: this loop fires schedules too.
            try:
                beat.tick()
                doorbell.ring_waiting()  # every waiting agent, no re-ring throttle
            except Exception:  # a locked or missing database file: try again next tick
                log.warning("embedded worker tick failed", exc_info=True)
    except KeyboardInterrupt:
        pass
    finally:
        doorbell.close()
        rt.close()
