"""What a step guards against before it stores anything: the model's output under the
text rule, and database errors told apart by cause (the connection, or what was stored)."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from memq.text import stored_arguments, stored_text
from workers.llm import LLMReply

# Column sizes (storage/models/) of what the model names: messages.tool_call_id, steps.tool_name.
MAX_TOOL_CALL_ID_CHARS = 200
MAX_TOOL_NAME_CHARS = 200


def cleaned_reply(reply: LLMReply) -> LLMReply:
    """The model's output under the text rule (memq.text) before it is stored or executed:
    a provider can return NUL, lone surrogates or escapes of them anywhere."""
    calls = [replace(c, id=bounded_call_id(stored_text(c.id, "a tool call id")),
                     name=stored_text(c.name, "a tool name")[:MAX_TOOL_NAME_CHARS],
                     arguments=stored_arguments(c.arguments, "the model's tool arguments"))
             for c in reply.tool_calls]
    content = None if reply.content is None else stored_text(reply.content, "the model's reply")
    return replace(reply, content=content, tool_calls=calls)


def bounded_call_id(call_id: str) -> str:
    """A tool call id that fits its column: an over-long one (a provider can send anything)
    becomes a short digest of itself, the same in the call and in its result."""
    if len(call_id) <= MAX_TOOL_CALL_ID_CHARS:
        return call_id
    return "call_" + hashlib.sha256(call_id.encode()).hexdigest()[:32]


def transient_db_error(exc: BaseException) -> bool:
    """A failure of the database connection (retry the step later), not of what it stores."""
    from sqlalchemy import exc as sa_exc

    return isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError,
                            sa_exc.TimeoutError, sa_exc.InvalidRequestError, ConnectionError, TimeoutError))


def error_reason(exc: BaseException) -> str:
    """One storable line about an error: the driver's first line (never the SQL or its values)."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    text = f"{type(orig).__name__}: {lines[0]}" if lines else type(orig).__name__
    return stored_text(text[:300])
