"""`memq worker`: a Celery worker for the step task (or the in-process one, embedded)."""

from __future__ import annotations

import logging
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
    if settings.embedded:
        _run_embedded(settings, concurrency)
        return
    from celery import signals

    from scheduler.reconciler import Reconciler, reconcile_once
    from workers.celery_app import LazyRuntime, create_celery_app, register_step_task
    from workers.doorbell import CeleryDoorbell
    from workers.runtime import Runtime

    app = create_celery_app(settings)
    runtime = LazyRuntime(lambda: Runtime.build(settings, pool_size=min(concurrency, 50)))
    register_step_task(app, runtime)

    @signals.worker_ready.connect(weak=False)
    def _sweep(**_: object) -> None:
        # Work that arrived while no worker ran (or whose doorbell was lost) starts
        # now; then the reconciler keeps watching for lost doorbells.
        doorbell = CeleryDoorbell(app)
        try:
            runtime.get().warm_up()
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
    app.worker_main(argv)


def _run_embedded(settings: Settings, concurrency: int) -> None:
    """No broker: poll the database and run steps on this process's threads."""
    from scheduler.reconciler import reconcile_once
    from workers.doorbell import LocalDoorbell
    from workers.runtime import Runtime

    from scheduler.beat import Beat

    rt = Runtime.build(settings)
    rt.db.upgrade()
    doorbell = LocalDoorbell(rt, concurrency=min(concurrency, 32))
    beat = Beat(rt, doorbell, reconcile=False)
    stop = threading.Event()
    log.info("embedded worker ready (database %s)", settings.resolved_database_url)
    print("memq embedded worker ready; Ctrl-C stops it", flush=True)
    try:
        while not stop.wait(0.5):
            # No beat runs in embedded mode: this loop fires schedules too.
            beat.tick()
            reconcile_once(rt, doorbell, idle_s=0.0)
    except KeyboardInterrupt:
        pass
    finally:
        doorbell.close()
        rt.close()
