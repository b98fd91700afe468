"""The common blocking send, answered beside FastAPI's router rather than through it.

`POST /v1/agents/{agent_id}/messages` is most of what a busy `memq serve` does. When
the request is the common case — a cached key, a JSON body that is one user message
the event-loop send takes (memq/api/fast.py: no stream, idempotency key or callback;
clean text that fits any window) — this ASGI layer parses it with the route's own
model, sends and waits exactly as the route does (memq/api/routes/messages.py) and
answers, skipping FastAPI's routing, dependency solving and exception middleware
(about a fifth of the API process's CPU per message). Anything else, an invalid body
included, goes on to the FastAPI route unchanged (the body replayed), which answers
it as before; so the OpenAPI document, errors and refusals stay the route's.

It sits inside RequestMiddleware (request id, body limit, access log) and
MetricsMiddleware (which counts it under the route's template).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from memq.api import ids
from memq.api.errors import ApiError, error_response
from memq.api.models.letta import MessageCreate
from memq.api.routes.messages import answer_when_finished, fast_send
from storage.repository.errors import NotFound

SEND_TEMPLATE = "/v1/agents/{agent_id}/messages"
_PATH = re.compile(r"/v1/agents/([^/]+)/messages")
Scope = dict[str, Any]


class SendLane:
    def __init__(self, app: Any) -> None:
        self.app = app
        self._route: Any = None  # the FastAPI route it stands in for (the metrics' label)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        match = _PATH.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        st = getattr(scope["app"].state, "memq", None) if match else None
        if match is None or st is None or st.fast is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        tenant = _cached_tenant(st, headers)
        if tenant is None or b"idempotency-key" in headers or not _is_json(headers):
            await self.app(scope, receive, send)
            return
        body, receive = await _read_body(receive)
        text = _common_text(st, body) if body is not None else None
        agent_id = _agent_id(match.group(1))
        if text is None or agent_id is None:
            await self.app(scope, receive, send)  # the route answers it (or its error) as before
            return
        state = scope.setdefault("state", {})
        state["tenant"], state["agent_id"] = tenant, match.group(1)
        scope["route"] = self._send_route(scope["app"])
        try:
            sent = await fast_send(st, tenant, agent_id, text)
            response = await answer_when_finished(st, tenant, sent)
        except Exception as exc:  # noqa: BLE001 - answered as the route's exception handlers answer it
            response = error_response(exc, "POST", scope["path"])
        await response(scope, receive, send)

    def _send_route(self, app: Any) -> Any:
        if self._route is None:
            self._route = next((r for r in app.routes if getattr(r, "path", None) == SEND_TEMPLATE
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


async def _read_body(receive: Any) -> tuple[bytes | None, Any]:
    """The whole body (None if the client went away first), and a receive that hands out
    what was read again (for the route, if it takes over)."""
    read: list[dict[str, Any]] = []
    while True:
        message = await receive()
        read.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    body = b"".join(m.get("body", b"") for m in read) if read[-1]["type"] == "http.request" else None

    async def replay() -> dict[str, Any]:
        return read.pop(0) if read else await receive()

    return body, replay
