"""The embedded vector store's owner is woken by a request's NOTIFY, not only by its poll."""

from __future__ import annotations

import threading
import time

from storage.db import Database
from storage.vector.wakeup import Wakeup, notify_sql


def test_a_committed_request_wakes_the_owner_at_once(pg_url):
    # given an owner waiting for requests with a long poll interval
    db = Database(pg_url)
    wakeup = Wakeup(db.url, db.is_sqlite)
    stop = threading.Event()
    wakeup.wait(0.01, stop)  # starts listening
    try:
        # when another process commits a request with its NOTIFY
        with db.transaction() as s:
            s.execute(notify_sql())
        t0 = time.monotonic()
        woke = wakeup.wait(10.0, stop)
        # then the wait ends at once, not after the poll interval
        assert woke and time.monotonic() - t0 < 2.0
    finally:
        wakeup.close()
        db.dispose()


def test_a_stop_ends_the_wait_without_a_listener():
    # given SQLite (no LISTEN): the wait is the stop event's
    wakeup = Wakeup("sqlite:///unused.db", True)
    stop = threading.Event()
    stop.set()
    # when / then a set stop ends it at once and says so
    assert wakeup.wait(10.0, stop) is False
