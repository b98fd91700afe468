"""Delivery of run callbacks (`create_async(..., callback_url=...)`), off every worker.

A send with a callback writes an outbox row in the run's transaction
(storage/repository/callbacks.py). The deliverer, a thread of each `memq serve`
process and of each `memq beat`, claims the rows of finished runs (SKIP LOCKED:
any number of deliverers share the work, and each row is held by one of them
while it posts), POSTs the finished run with a timeout on a small pool, and
records the outcome: delivered on a 2xx, else retried with exponential backoff up
to MEMQ_CALLBACK_MAX_ATTEMPTS, then failed. A deliverer that dies mid-post leaves
its claim to expire; another one retries it. An outcome is recorded only by the
claim that made the attempt (a later claim's attempt wins).

Each POST is signed: header X-Memq-Signature: t=<unix seconds>,v1=<hex>, where
<hex> is HMAC-SHA256(MEMQ_CALLBACK_SECRET, "<t>." + body). A receiver recomputes
it over the raw body and compares in constant time (and may refuse old t).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from memq.constants import CALLBACK_SIGNATURE_HEADER
from storage.repository import callbacks as outbox

log = logging.getLogger("memq.callbacks")
POLL_S = 0.25
CLAIM_LIMIT = 32
POST_THREADS = 8


def signature(secret: str, timestamp_s: int, body: bytes) -> str:
    """The value of the X-Memq-Signature header for `body` sent at `timestamp_s`."""
    mac = hmac.new(secret.encode(), f"{timestamp_s}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp_s},v1={mac}"


def backoff_s(attempt: int, base_s: float, max_s: float) -> float:
    return min(max_s, base_s * 2 ** (attempt - 1))


class CallbackDeliverer:
    """The deliverer thread; `payload(run_id)` renders a finished run as the POSTed document
    (memq/api/callbacks.py's: the run in Letta's shapes, which live with the API)."""

    def __init__(self, db: Any, settings: Any, payload: Callable[[str], dict[str, Any]]) -> None:
        self.db, self.settings, self.payload = db, settings, payload
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memq-callbacks", daemon=True)
        self._pool = ThreadPoolExecutor(POST_THREADS, thread_name_prefix="memq-callback-post")
        self._http = httpx.Client(timeout=settings.callback_timeout_s, follow_redirects=False)

    def start(self) -> "CallbackDeliverer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                claimed = self.tick()
            except Exception as exc:  # noqa: BLE001 - the database restarting: the next tick retries
                log.warning("callback tick failed: %s", str(exc).splitlines()[0][:200])
                claimed = 0
            if not claimed:
                self._stop.wait(POLL_S)

    def tick(self) -> int:
        """Claim the due callbacks and post each on the pool; returns how many were claimed."""
        hold_s = self.settings.callback_timeout_s + 30.0
        with self.db.transaction() as s:
            claimed = outbox.claim_due(s, limit=CLAIM_LIMIT, hold_s=hold_s)
        for item in claimed:
            self._pool.submit(self._deliver, item)
        return len(claimed)

    def _deliver(self, item: outbox.Claimed) -> None:
        ok, status, error = False, None, None
        try:
            body = json.dumps(self.payload(item.run_id)).encode()
            headers = {"Content-Type": "application/json", "X-Memq-Run-Id": f"run-{item.run_id}",
                       "X-Memq-Attempt": str(item.attempt),
                       CALLBACK_SIGNATURE_HEADER: signature(self.settings.callback_secret or "", int(time.time()), body)}
            response = self._http.post(item.url, content=body, headers=headers)
            status, ok = response.status_code, 200 <= response.status_code < 300
            error = None if ok else f"HTTP {status}"
        except Exception as exc:  # noqa: BLE001 - any failure to post is retried
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        retry = None
        if not ok and item.attempt < self.settings.callback_max_attempts:
            retry = backoff_s(item.attempt, self.settings.callback_backoff_s, self.settings.callback_backoff_max_s)
        log.info("callback of run %s attempt %d: %s", item.run_id, item.attempt, "delivered" if ok else error)
        try:
            with self.db.transaction() as s:
                outbox.record_attempt(s, item.run_id, item.attempt, ok=ok, http_status=status, error=error,
                                      retry_in_s=retry)
        except Exception as exc:  # noqa: BLE001 - the claim expires; the callback is tried again
            log.warning("callback of run %s: outcome not recorded (%s)", item.run_id, exc)
