"""Small readers of what the worker recorded, for assertions."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from storage.models import StepRecord


def tool_results(client, agent_id: str) -> list[dict[str, Any]]:
    return [json.loads(m.content) for m in client.messages(agent_id, limit=1000) if m.role == "tool"]


def user_events(client, agent_id: str) -> list[dict[str, Any]]:
    return [json.loads(m.content) for m in client.messages(agent_id, limit=1000) if m.role == "user"]


def journal(client, agent_id: str) -> list[StepRecord]:
    with client.rt.db.transaction() as s:
        stmt = select(StepRecord).where(StepRecord.agent_id == agent_id).order_by(StepRecord.step_no)
        return list(s.scalars(stmt))


def system_prompt(request: dict[str, Any]) -> str:
    return request["messages"][0]["content"]


def call(tool: str, heartbeat: bool = False, thought: str | None = None, **args: Any) -> dict[str, Any]:
    """A scripted LLM reply that calls one tool."""
    reply: dict[str, Any] = {"tool": tool, "args": {**args, "request_heartbeat": heartbeat}}
    if thought is not None:
        reply["content"] = thought
    return reply
