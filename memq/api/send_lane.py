"""The common blocking send, answered before FastAPI's own stack.

`POST /v1/agents/{agent_id}/messages` is most of what a busy `memq serve` does. When
the request is the common case — a cached key, a JSON body within the size limit
that is one user message the event-loop send takes (memq/api/fast.py: no stream,
idempotency key or callback; clean text that fits any window) — this first ASGI
layer of the app (memq/api/app.py's MemqApp) parses it with the route's own model,
sends and waits exactly as the route does (memq/api/routes/messages.py) and answers.
It does itself what the middlewares do for every other request: the request id,
the access-log line (memq/api/middleware.py) and the metrics under the route's
template (memq/api/metrics.py). It skips FastAPI's and Starlette's layers, the
router, dependency solving and exception middleware: 0.3–0.4 ms of the API
process's CPU per message on a 2-core box. Anything else, an invalid or oversized
body included, goes on to FastAPI unchanged (the body replayed), which answers it
as before; so the OpenAPI document, errors and refusals stay the route's. When
OpenTelemetry is configured before the server starts, the lane is off and every
request is traced through FastAPI's own instrumented stack (memq/api/app.py).
"""

from __future__ import annotations

import re
import time
from typing import Any

from pydantic import ValidationError

from memq.api import ids
from memq.api.errors import ApiError, error_response
from memq.api.metrics import ApiMetrics
from memq.api.middleware import declared_over, log_request, request_id_of
from memq.api.models.letta import MessageCreate
from memq.api.routes.messages import answer_when_finished, fast_send
from memq.logging_setup import bind, unbind
from storage.repository.errors import NotFound

SEND_TEMPLATE = "/v1/agents/{agent_id}/messages"
_PATH = re.compile(r"/v1/agents/([^/]+)/messages")
Scope = dict[str, Any]


class SendLane:
    """`lane(scope, receive, send)`: answers the common send, else hands the request to `rest`
    (the app's own ASGI stack)."""

    def __init__(self, rest: Any, app: Any, metrics: ApiMetrics, max_body_bytes: int) -> None:
        self.rest = rest
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self._route: Any = None  # the FastAPI route it stands in for (scope["route"], as the router sets it)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        match = _PATH.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        st = getattr(self.app.state, "memq", None) if match else None
        if match is None or st is None or st.fast is None:
            await self.rest(scope, receive, send)
            return
        headers = dict(scope["headers"])
        tenant = _cached_tenant(st, headers)
        if tenant is None or b"idempotency-key" in headers or not _is_json(headers) or declared_over(
                headers, self.max_body_bytes):
            await self.rest(scope, receive, send)
            return
        body, receive = await _read_body(receive, self.max_body_bytes)
        text = _common_text(st, body) if body is not None else None
        agent_id = _agent_id(match.group(1))
        if text is None or agent_id is None:
            await self.rest(scope, receive, send)  # FastAPI answers it (or its error, or 413) as before
            return
        await self._answer(scope, receive, send, st, tenant, (match.group(1), agent_id), text, request_id_of(headers))

    async def _answer(self, scope: Scope, receive: Any, send: Any, st: Any, tenant: str, agent: tuple[str, str],
                      text: str, request_id: str) -> None:
        """Send and answer `text` to the agent (`agent`: as the path names it, and its id)."""
        started = time.perf_counter()
        token = bind(request_id=request_id)
        (ref, agent_id), state = agent, scope.setdefault("state", {})
        state["request_id"], state["tenant"], state["agent_id"] = request_id, tenant, ref
        scope["route"] = self._send_route()
        status = 500
        self.metrics.in_flight.inc()
        try:
            try:
                sent = await fast_send(st, tenant, agent_id, text)
                response = await answer_when_finished(st, tenant, sent)
            except Exception as exc:  # noqa: BLE001 - answered as the route's exception handlers answer it
                response = error_response(exc, "POST", scope["path"])
            response.raw_headers.append((b"x-request-id", request_id.encode()))
            status = response.status_code
            await response(scope, receive, send)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.observe("POST", SEND_TEMPLATE, status, time.perf_counter() - started)
            log_request("POST", scope["path"], status, started, request_id, tenant, ref)
            unbind(token)

    def _send_route(self) -> Any:
        if self._route is None:
            self._route = next((r for r in self.app.routes if getattr(r, "path", None) == SEND_TEMPLATE
                                and "POST" in getattr(r, "methods", ())), None)
        return self._route


def _cached_tenant(st: Any, headers: dict[bytes, bytes]) -> str | None:
    """The tenant of the request's key when the key cache knows it (else the route looks it up)."""
    scheme, _, key = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    fresh, tenant = st.keys.cached(key.strip())
    return tenant if fresh else None


def _is_json(headers: dict[bytes, bytes]) -> bool:
    kind = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
    return kind == b"application/json"


def _common_text(st: Any, body: bytes) -> str | None:
    """The message's text when the event-loop send takes this body as it is; else None."""
    try:
        message = MessageCreate.model_validate_json(body)
        if message.streaming or message.callback_url is not None or message.idempotency_key is not None:
            return None
        text = message.text()
    except (ValidationError, ApiError, ValueError):
        return None
    return text if st.fast.applies(text, None, None) else None


def _agent_id(ref: str) -> str | None:
    try:
        return ids.agent_id(ref)
    except NotFound:
        return None


async def _read_body(receive: Any, max_bytes: int) -> tuple[bytes | None, Any]:
    """The whole body (None if the client went away first, or it grew past max_bytes), and a
    receive that hands out what was read again (for FastAPI, if it takes over)."""
    read: list[dict[str, Any]] = []
    size = 0
    while True:
        message = await receive()
        read.append(message)
        size += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False) or size > max_bytes:
            break
    whole = read[-1]["type"] == "http.request" and not read[-1].get("more_body", False) and size <= max_bytes
    body = b"".join(m.get("body", b"") for m in read) if whole else None

    async def replay() -> dict[str, Any]:
        return read.pop(0) if read else await receive()

    return body, replay
