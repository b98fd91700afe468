"""A step tells waiters that its run moved: one Redis PUBLISH on RUN_EVENTS_CHANNEL
after the step's commit, "<run id> <status> <steps>" (what the commit wrote); a cancel
does the same for each run it cancelled (publish_many). Best effort: Postgres stays the truth,
a waiter that misses the message finds the change on its next poll. Without Redis
(embedded mode, an AMQP broker and no MEMQ_REDIS_URL) nothing is published.

A plain redis:// URL is spoken to in RESP directly (memq/resp.py), one connection per
publishing thread: about 0.05 ms of CPU per step where redis-py took about 0.3 ms.
Other URLs (TLS, options, a socket path) go through redis-py."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from memq.constants import RUN_EVENTS_CHANNEL
from memq.resp import PlainResp, command, is_plain

log = logging.getLogger("memq.run_events")
RETRY_AFTER_FAILURE_S = 5.0  # after a failed publish, skip publishing this long (never slow a step)
TIMEOUT_S = 0.5


class RunEvents:
    def __init__(self, redis_url: str | None) -> None:
        self.redis_url = redis_url
        self._client: Any = None
        self._lock = threading.Lock()
        self._failed_at = 0.0
        self._plain = bool(redis_url) and is_plain(urlsplit(redis_url or ""))
        self._local = threading.local()  # a PlainResp per publishing thread
        self._opened: list[PlainResp] = []

    def _resp(self) -> PlainResp:
        resp = getattr(self._local, "resp", None)
        if resp is None:
            resp = self._local.resp = PlainResp(urlsplit(self.redis_url or ""), TIMEOUT_S)
            with self._lock:
                self._opened.append(resp)
        return resp

    def _send(self, messages: list[str]) -> None:
        if self._plain:
            self._resp().call([command("PUBLISH", RUN_EVENTS_CHANNEL, m) for m in messages])
            return
        if len(messages) == 1:
            self._redis().publish(RUN_EVENTS_CHANNEL, messages[0])
            return
        pipe = self._redis().pipeline(transaction=False)
        for m in messages:
            pipe.publish(RUN_EVENTS_CHANNEL, m)
        pipe.execute()

    def _redis(self) -> Any:
        with self._lock:
            if self._client is None:
                import redis

                self._client = redis.Redis.from_url(self.redis_url, socket_timeout=TIMEOUT_S,
                                                    socket_connect_timeout=TIMEOUT_S)
            return self._client

    def publish(self, run_id: str, status: str, steps: int) -> None:
        if not self.redis_url or time.monotonic() - self._failed_at < RETRY_AFTER_FAILURE_S:
            return
        try:
            self._send([f"{run_id} {status} {steps}"])
        except Exception as exc:  # noqa: BLE001 - a waiter's poll finds the change anyway
            self._failed_at = time.monotonic()
            log.warning("run event for %s not published (%s); waiters fall back to polling", run_id, exc)

    def publish_many(self, states: Iterable[tuple[str, str, int]]) -> None:
        """publish() of each (run id, status, steps), in one round trip."""
        states = list(states)
        if not states or not self.redis_url or time.monotonic() - self._failed_at < RETRY_AFTER_FAILURE_S:
            return
        try:
            self._send([f"{run_id} {status} {steps}" for run_id, status, steps in states])
        except Exception as exc:  # noqa: BLE001 - a waiter's poll finds the change anyway
            self._failed_at = time.monotonic()
            log.warning("run events for %d runs not published (%s); waiters fall back to polling", len(states), exc)

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for resp in opened:
            resp.close()
        if self._client is not None:
            self._client.close()
