"""What waits on the broker: the depth of each queue (Redis list lengths, AMQP passive
declares) and the broker's kind. Shared by `memq status` (memq/health.py) and the
worker's metrics (workers/metrics.py)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from memq.constants import ALL_QUEUES

# kombu's Redis transport keeps a queue's prioritised messages in sibling lists.
_REDIS_PRIORITY_SEP = "\x06\x16"
_REDIS_PRIORITY_STEPS = (3, 6, 9)


def broker_kind(url: str) -> str:
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    if scheme in ("redis", "rediss"):
        return "redis"
    if scheme in ("amqp", "amqps", "pyamqp", "librabbitmq"):
        return "amqp"
    return scheme


_redis_clients: dict[str, Any] = {}
_redis_lock = threading.Lock()


def redis_client(url: str, timeout_s: float) -> Any:
    """One client (and connection pool) per URL and timeout, reused across scrapes."""
    import redis

    key = f"{url}|{timeout_s}"
    with _redis_lock:
        client = _redis_clients.get(key)
        if client is None:
            client = redis.Redis.from_url(
                url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, retry_on_timeout=False
            )
            _redis_clients[key] = client
        return client


def queue_depths(broker_url: str, queues: Sequence[str] = ALL_QUEUES, timeout_s: float = 2.0) -> dict[str, int]:
    """Messages waiting in each queue: Redis ``LLEN`` (priorities included), AMQP passive declare."""
    kind = broker_kind(broker_url)
    if kind == "redis":
        client = redis_client(broker_url, timeout_s)
        pipe = client.pipeline(transaction=False)
        for q in queues:
            pipe.llen(q)
            for pri in _REDIS_PRIORITY_STEPS:
                pipe.llen(f"{q}{_REDIS_PRIORITY_SEP}{pri}")
        counts = pipe.execute()
        per = 1 + len(_REDIS_PRIORITY_STEPS)
        return {q: int(sum(counts[i * per:(i + 1) * per])) for i, q in enumerate(queues)}
    if kind == "amqp":
        from kombu import Connection

        depths: dict[str, int] = {}
        with Connection(broker_url, connect_timeout=timeout_s) as conn:
            conn.connect()
            for q in queues:
                channel = conn.channel()
                try:
                    _, count, _ = channel.queue_declare(queue=q, passive=True)
                    depths[q] = int(count)
                except Exception as exc:  # noqa: BLE001 - a queue not declared yet is empty
                    if "NOT_FOUND" not in str(exc) and "404" not in str(exc):
                        raise
                    depths[q] = 0
                finally:
                    try:
                        channel.close()
                    except Exception:  # noqa: BLE001
                        pass
        return depths
    raise ValueError(f"queue depth is not supported for {kind}:// brokers")
