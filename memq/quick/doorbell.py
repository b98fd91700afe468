"""Ringing a worker without building the Celery app: the ``memq.step`` task message
(Celery's protocol 2, as kombu's Redis transport stores it) pushed onto the queue's list.

The worker consumes it like any ``step.delay``: same task name, args, queue and
delivery info (routing key = queue, which the step reads). Other brokers (AMQP)
keep the Celery app's doorbell.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import socket
from typing import Any
from urllib.parse import urlsplit

from memq.constants import STEP_TASK
from memq.resp import PlainResp, command, is_plain

_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
_EMBED_JSON = json.dumps(_EMBED)
_PLAIN_ID = re.compile(r"[A-Za-z0-9_.:-]+")


def is_redis(url: str | None) -> bool:
    return bool(url) and url.startswith(("redis://", "rediss://"))  # type: ignore[union-attr]


def step_message(agent_id: str, queue: str) -> str:
    """The kombu envelope of one ``memq.step(agent_id)`` task bound for ``queue``.

    Only the task's ids and its argument change from one ring to the next: the rest
    is JSON encoded once per (queue, process) and the ids are joined into it.
    """
    task_id, reply_to, delivery_tag = _uuid4s()
    if _PLAIN_ID.fullmatch(agent_id):  # memq's ids: nothing to escape
        args, argsrepr = f'[["{agent_id}"], {{}}, {_EMBED_JSON}]', f"['{agent_id}']"
    else:
        args, argsrepr = json.dumps([[agent_id], {}, _EMBED]), json.dumps(repr([agent_id]))[1:-1]
    values = {"body": base64.b64encode(args.encode()).decode(), "task_id": task_id, "reply_to": reply_to,
              "delivery_tag": delivery_tag, "argsrepr": argsrepr}
    parts = _template(queue, os.getpid())
    return "".join(values[part] if i % 2 else part for i, part in enumerate(parts))


def _uuid4s() -> tuple[str, str, str]:
    """Three random (version 4) UUIDs, from one read of the system's random source."""
    raw = bytearray(os.urandom(48))
    out = []
    for i in (0, 16, 32):
        raw[i + 6] = (raw[i + 6] & 0x0F) | 0x40  # version 4
        raw[i + 8] = (raw[i + 8] & 0x3F) | 0x80  # RFC 4122 variant
        h = raw[i:i + 16].hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out[0], out[1], out[2]


def _slot(name: str) -> str:
    return f"<<memq:{name}>>"


@functools.lru_cache(maxsize=64)
def _template(queue: str, pid: int) -> tuple[str, ...]:
    """The envelope's JSON split at its slots: literal, slot name, literal, ... (keyed by pid: a
    forked process has its own origin)."""
    task_id = _slot("task_id")
    headers = {
        "lang": "py", "task": STEP_TASK, "id": task_id, "shadow": None, "eta": None, "expires": None,
        "group": None, "group_index": None, "retries": 0, "timelimit": [None, None],
        "root_id": task_id, "parent_id": None, "argsrepr": _slot("argsrepr"), "kwargsrepr": "{}",
        "origin": f"gen{pid}@{socket.gethostname()}", "ignore_result": True,
        "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
    }
    properties = {
        "correlation_id": task_id, "reply_to": _slot("reply_to"), "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue}, "priority": 0,
        "body_encoding": "base64", "delivery_tag": _slot("delivery_tag"),
    }
    text = json.dumps({
        "body": _slot("body"), "content-encoding": "utf-8",
        "content-type": "application/json", "headers": headers, "properties": properties,
    })
    return tuple(_SLOTS.split(text))


_SLOTS = re.compile(r"<<memq:(\w+)>>")


class RedisStepBell:
    """``ring(agent_id, queue)``: one LPUSH on the broker's Redis (what kombu does for priority 0).

    A plain ``redis://host:port/db`` URL (user and password allowed) is spoken to
    directly over one kept-open socket (RESP: AUTH, SELECT once, then LPUSH per
    ring), so a send does not import redis-py (~0.1 s). Any other form (TLS,
    query options, a socket path) uses redis-py.
    """

    def __init__(self, broker_url: str, timeout_s: float = 5.0) -> None:
        self.url = broker_url
        self.timeout_s = timeout_s
        parts = urlsplit(broker_url)
        self._resp: PlainResp | None = PlainResp(parts, timeout_s) if is_plain(parts) else None
        self._redis: Any = None

    def ring(self, agent_id: str, queue: str) -> None:
        message = step_message(agent_id, queue)
        if self._resp is not None:
            self._resp.call([command("LPUSH", queue, message)])
            return
        if self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(self.url, socket_connect_timeout=self.timeout_s,
                                               socket_timeout=self.timeout_s)
        self._redis.lpush(queue, message)

    def close(self) -> None:
        for part in (self._resp, self._redis):
            if part is not None:
                part.close()
        self._redis = None


class BrokerBell:
    """A server-mode client's doorbell: Redis directly, any other broker through the
    Celery app (built on the first ring, so commands that never ring never build it)."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._bell: Any = None

    def ring(self, agent_id: str, queue: str) -> None:
        if self._bell is None:
            if is_redis(self.settings.broker_url):
                self._bell = RedisStepBell(self.settings.broker_url)
            else:
                from workers.celery_app import create_celery_app
                from workers.doorbell import CeleryDoorbell

                self._bell = CeleryDoorbell(create_celery_app(self.settings))
        self._bell.ring(agent_id, queue)

    def close(self) -> None:
        close = getattr(self._bell, "close", None)
        if close is not None:
            close()
        self._bell = None
