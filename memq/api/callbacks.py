"""Run callbacks in the API's terms: which `callback_url` a send may give, and the
document POSTed (the finished run as `runs.retrieve` shows it, with its messages and
usage). The deliverer itself (claim, sign, post, retry) is scheduler/callbacks.py's:
it runs in each `memq serve` and each `memq beat`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scheduler.callbacks import CallbackDeliverer, backoff_s, signature

__all__ = ["CallbackDeliverer", "backoff_s", "signature", "check_url", "payload_of", "deliverer"]


def payload_of(db: Any) -> Callable[[str], dict[str, Any]]:
    """payload(run_id): the document a finished run's callback POSTs."""
    from memq.api.native_ops import callback_document

    return lambda run_id: callback_document(db, run_id)


def deliverer(db: Any, settings: Any) -> CallbackDeliverer | None:
    """A started deliverer over `db`, when callbacks can be signed (MEMQ_CALLBACK_SECRET)."""
    if not settings.callback_secret:
        return None
    return CallbackDeliverer(db, settings, payload_of(db)).start()


def check_url(url: str, settings: Any) -> None:
    """A callback_url memq can post to, on a server that can sign (else BadInput naming the field)."""
    from urllib.parse import urlsplit

    from storage.repository.errors import BadInput

    if not settings.callback_secret:
        raise BadInput("callback_url: callbacks need MEMQ_CALLBACK_SECRET set on the server (they are signed)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"callback_url: '{url[:200]}' is not an http(s) URL")
