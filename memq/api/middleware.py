"""The ASGI layer around every route: a request id, a body-size limit (413), and
one log line per request with its id, tenant and agent (never its headers, so
never its key)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from memq.logging_setup import bind, unbind

log = logging.getLogger("memq.api.access")
Scope = dict[str, Any]


def request_id_of(headers: dict[bytes, bytes]) -> str:
    """The client's X-Request-Id (at most 64 characters), else a new one."""
    return headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex


def declared_over(headers: dict[bytes, bytes], max_bytes: int) -> bool:
    """Whether the request's Content-Length says its body is over max_bytes."""
    declared = headers.get(b"content-length")
    return declared is not None and declared.isdigit() and int(declared) > max_bytes


def log_request(method: str | None, path: str | None, status: int, started: float, request_id: str,
                tenant: str | None, agent_id: str | None) -> None:
    """The request's one access-log line (`started`: its time.perf_counter() at arrival)."""
    log.info("%s %s %s %.1f ms", method, path, status, (time.perf_counter() - started) * 1000,
             extra={"request_id": request_id, "tenant": tenant, "agent_id": agent_id, "status": status})


def _json_error(status: int, message: str, kind: str, request_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    body = json.dumps({"detail": message, "error": kind, "status": status}).encode()
    start = {"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode())]}
    return start, {"type": "http.response.body", "body": body}


class RequestMiddleware:
    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = request_id_of(headers)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = {"code": 0}
        token = bind(request_id=request_id)

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            body_receive = await self._bounded_body(scope, receive, headers)
            if body_receive is None:
                status["code"] = 413
                for message in _json_error(413, f"request body over {self.max_body_bytes} bytes", "too_large",
                                           request_id):
                    await send(message)
                return
            await self.app(scope, body_receive, send_with_id)
        finally:
            state = scope.get("state", {})
            log_request(scope.get("method"), scope.get("path"), status["code"], started, request_id,
                        state.get("tenant"), state.get("agent_id"))
            unbind(token)

    async def _bounded_body(self, scope: Scope, receive: Any, headers: dict[bytes, bytes]) -> Any:
        """A receive that replays the body read here, or None when it is over the limit."""
        if declared_over(headers, self.max_body_bytes):
            return None
        if scope.get("method") in ("GET", "HEAD", "DELETE", "OPTIONS"):
            return receive
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return receive  # the client went away: let the app see it
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = {"done": False}

        async def replay() -> dict[str, Any]:
            if not delivered["done"]:
                delivered["done"] = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay
