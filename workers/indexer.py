"""The background indexer: embeds recall messages (and passages whose indexing
failed) off the step's hot path, in batches."""

from __future__ import annotations

import logging
import threading

from workers.runtime import Runtime

log = logging.getLogger("memq.indexer")


class BackgroundIndexer:
    def __init__(self, rt: Runtime, every_s: float = 0.5) -> None:
        self.rt = rt
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memq-indexer", daemon=True)

    def start(self) -> "BackgroundIndexer":
        if self.rt.memory.semantic:
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                done = self.rt.memory.index_pending()
            except Exception as exc:  # embedding provider or store down: try again later
                log.warning("indexing failed, will retry: %s", exc)
                done = 0
            if not done:
                self._stop.wait(self.every_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop and wait for a pass in progress, so nothing touches the store after."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
