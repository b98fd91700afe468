"""The reconciler: Postgres is the truth, so any agent with work waiting and no live
lease gets its doorbell rung again. Lost broker messages delay work, never lose it."""

from __future__ import annotations

import logging
import threading
import time

from storage import repository as repo
from workers.doorbell import Doorbell
from workers.runtime import Runtime

log = logging.getLogger("memq.reconciler")


def reconcile_once(rt: Runtime, doorbell: Doorbell, *, idle_s: float | None = None) -> int:
    """Ring every agent whose work has waited with no live lease; returns how many.

    Each agent is claimed in the database before it is rung, so several
    reconcilers (workers, beats) never ring one agent twice per re-ring interval.
    """
    s_ = rt.settings
    with rt.db.transaction() as s:
        claimed = repo.claim_agents_to_ring(
            s,
            now_s=time.time(),
            idle_s=s_.reconcile_idle_s if idle_s is None else idle_s,
            rering_s=s_.reconcile_rering_s,
        )
    for agent_id, queue in claimed:
        doorbell.ring(agent_id, queue)
    if claimed:
        log.info("reconciler rang %d agent(s)", len(claimed))
    return len(claimed)


class Reconciler:
    """Runs reconcile_once every reconcile_every_s on a daemon thread."""

    def __init__(self, rt: Runtime, doorbell: Doorbell) -> None:
        self.rt = rt
        self.doorbell = doorbell
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memq-reconciler", daemon=True)

    def start(self) -> "Reconciler":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.rt.settings.reconcile_every_s):
            try:
                reconcile_once(self.rt, self.doorbell)
            except Exception:  # database or broker restarting: try again next tick
                log.warning("reconcile pass failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
