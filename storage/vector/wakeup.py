"""Waking the embedded vector store's owner when another process queues a request.

On Postgres the caller NOTIFYs (delivered when its request commits) and the
owner LISTENs on a connection of its own, so a `memq archival search` next to
an idle worker is answered at once instead of at the owner's next poll (up to
0.25 s). The poll stays as the fallback; SQLite only polls.
"""

from __future__ import annotations

import logging
from typing import Any

from memq.constants import VECTOR_REQUESTS_CHANNEL

log = logging.getLogger("memq.vector")


def notify_sql() -> Any:
    from sqlalchemy import text

    return text(f"NOTIFY {VECTOR_REQUESTS_CHANNEL}")


class Wakeup:
    """``wait(timeout_s)``: sleep until a request is announced or the timeout passes."""

    def __init__(self, database_url: str, is_sqlite: bool) -> None:
        self.url = None if is_sqlite else "postgresql://" + database_url.split("://", 1)[1]
        self._conn: Any = None

    def wait(self, timeout_s: float, stop: Any) -> bool:
        """False when ``stop`` (a threading.Event) was set meanwhile."""
        conn = self._listen()
        if conn is None:
            return not stop.wait(timeout_s)
        try:
            for _ in conn.notifies(timeout=timeout_s, stop_after=1):
                pass
        except Exception:  # the database restarting: listen again on the next wait
            log.debug("vector request listener lost", exc_info=True)
            self.close()
            return not stop.wait(timeout_s)
        return not stop.is_set()

    def _listen(self) -> Any:
        if self.url is None or self._conn is not None:
            return self._conn
        try:
            import psycopg

            self._conn = psycopg.connect(self.url, autocommit=True)
            self._conn.execute(f"LISTEN {VECTOR_REQUESTS_CHANNEL}")
        except Exception:
            log.debug("cannot listen for vector requests; polling", exc_info=True)
            self.close()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
        self._conn = None
