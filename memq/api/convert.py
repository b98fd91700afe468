"""memq's rows in Letta's shapes (the JSON `letta-client` 1.12 reads).

Messages: an assistant message's free text is its inner monologue
(`reasoning_message`); its tool call is a `tool_call_message`, except
`send_message`, which is the reply (`assistant_message`); a tool result is a
`tool_return_message` (send_message's own result is not shown, as in Letta).
User-role events show as `user_message`: a user's text as sent, other events
(heartbeats, alerts, wake-ups) as the JSON the agent saw.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from memq.api import ids
from memq.constants import RunStatus
from storage.repository.messages import iso_utc

REPLY_TOOL = "send_message"
# memq's run states in Letta's words, and why a finished run stopped.
RUN_STATUS = {
    RunStatus.QUEUED: "created", RunStatus.RUNNING: "running", RunStatus.DONE: "completed",
    RunStatus.CHAIN_CAPPED: "completed", RunStatus.FAILED: "failed", RunStatus.CANCELLED: "cancelled",
}
STOP_REASON = {
    RunStatus.DONE: "end_turn", RunStatus.CHAIN_CAPPED: "max_steps",
    RunStatus.FAILED: "error", RunStatus.CANCELLED: "cancelled",
}
# A Letta status filter in memq's states (memq's own names are accepted as well).
STATUS_FILTER = {
    "created": ["queued"], "running": ["running"], "completed": ["done", "chain_capped"],
    "failed": ["failed"], "cancelled": ["cancelled"],
}


def block(b: Any) -> dict[str, Any]:
    return {
        "id": ids.wire_block(b.id), "label": b.label, "value": b.value, "limit": b.limit_chars,
        "description": None, "read_only": False, "metadata": {}, "is_template": False,
    }


def agent_state(a: Any, blocks: Iterable[Any], settings: Any, default_system: str) -> dict[str, Any]:
    shown = [block(b) for b in blocks]
    model = a.model or settings.llm_model or ""
    return {
        "id": ids.wire_agent(a.id),
        "name": a.name,
        "agent_type": "memgpt_agent",
        "system": a.system_prompt or default_system,
        "tags": list(a.tags or []),
        "tools": [],
        "sources": [],
        "blocks": shown,
        "memory": {"blocks": shown, "agent_type": "memgpt_agent"},
        "model": model,
        "llm_config": {
            "model": model.split("/", 1)[-1], "handle": model, "model_endpoint_type": "openai",
            "context_window": a.context_window or settings.context_window or 8192,
        },
        "embedding": settings.embedding_model,
        "embedding_config": {
            "embedding_model": settings.embedding_model or "none", "embedding_endpoint_type": "openai",
            "embedding_dim": settings.embedding_dim,
        },
        "created_at": iso_utc(a.created_at),
        "metadata": {"queue": a.queue, "messages": a.message_count},
    }


def run(r: Any) -> dict[str, Any]:
    status = RunStatus(r.status)
    duration = None
    if r.finished_at is not None:
        duration = int((r.finished_at - r.created_at).total_seconds() * 1e9)
    return {
        "id": ids.wire_run(r.id),
        "agent_id": ids.wire_agent(r.agent_id),
        "status": RUN_STATUS[status],
        "stop_reason": STOP_REASON.get(status),
        "created_at": iso_utc(r.created_at),
        "completed_at": iso_utc(r.finished_at) if r.finished_at else None,
        "total_duration_ns": duration,
        "background": False,
        "metadata": {"memq_status": r.status, "steps": r.steps, "replies": list(r.replies or []),
                     "error": r.error},
    }


def usage(r: Any) -> dict[str, Any]:
    return {
        "message_type": "usage_statistics",
        "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
        "total_tokens": r.prompt_tokens + r.completion_tokens,
        "step_count": r.steps, "run_ids": [ids.wire_run(r.id)],
    }


def stop_reason(r: Any) -> dict[str, Any]:
    return {"message_type": "stop_reason", "stop_reason": STOP_REASON.get(RunStatus(r.status), "end_turn")}


def _base(m: Any, kind: str) -> dict[str, Any]:
    return {
        "id": ids.wire_message(m.id), "date": iso_utc(m.created_at), "message_type": kind,
        "run_id": ids.wire_run(m.run_id) if m.run_id else None,
        "step_id": f"step-{m.step_no}" if m.step_no is not None else None, "name": None, "otid": None,
    }


def _json(text: str | None) -> Any:
    try:
        return json.loads(text or "")
    except ValueError:
        return None


def messages(rows: Iterable[Any], *, include_user: bool = True, calls: Iterable[Any] = ()) -> list[dict[str, Any]]:
    """Letta messages of memq message rows (in the rows' order); `calls`: assistant
    rows outside `rows` whose tool calls some of the tool results answer."""
    out: list[dict[str, Any]] = []
    tool_names = {c.get("id") or "": (c.get("function") or {}).get("name") or ""
                  for m in calls for c in (m.tool_calls or [])}
    for m in rows:
        if m.role == "system":
            out.append({**_base(m, "system_message"), "content": m.content or ""})
        elif m.role == "user":
            if include_user:
                event = _json(m.content)
                is_user = isinstance(event, dict) and event.get("type") == "user_message"
                out.append({**_base(m, "user_message"), "content": event["message"] if is_user else m.content})
        elif m.role == "assistant":
            out.extend(_assistant(m, tool_names))
        elif m.role == "tool":
            if tool_names.get(m.tool_call_id or "") == REPLY_TOOL:
                continue
            result = _json(m.content)
            ok = isinstance(result, dict) and result.get("status") == "OK"
            shown = result.get("message") if isinstance(result, dict) else m.content
            out.append({
                **_base(m, "tool_return_message"), "tool_return": shown if isinstance(shown, str) else json.dumps(shown),
                "status": "success" if ok else "error", "tool_call_id": m.tool_call_id or "",
                "name": tool_names.get(m.tool_call_id or ""),
            })
    return out


def _assistant(m: Any, tool_names: dict[str, str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if m.content:
        out.append({**_base(m, "reasoning_message"), "reasoning": m.content, "source": "non_reasoner_model"})
    for call in m.tool_calls or []:
        fn = call.get("function") or {}
        name, arguments = fn.get("name") or "", fn.get("arguments") or ""
        tool_names[call.get("id") or ""] = name
        args = _json(arguments)
        if name == REPLY_TOOL and isinstance(args, dict) and isinstance(args.get("message"), str):
            out.append({**_base(m, "assistant_message"), "content": args["message"]})
        else:
            tool_call = {"name": name, "arguments": arguments, "tool_call_id": call.get("id") or ""}
            out.append({**_base(m, "tool_call_message"), "tool_call": tool_call, "tool_calls": [tool_call]})
    return out
