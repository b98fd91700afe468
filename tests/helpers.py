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


def tick_until_fired(client, agent_id: str, timeout_s: float) -> Any:
    """Tick an in-process beat until the agent's first schedule has a run that finished
    `done` (or timeout_s passed); returns that schedule's latest view."""
    import time

    from scheduler.beat import Beat

    beat = Beat(client.rt, client.doorbell, reconcile=False)
    deadline = time.monotonic() + timeout_s
    shown = None
    while time.monotonic() < deadline:
        beat.tick()
        shown = client.list_schedules(agent_id)[0]
        if shown.last_run_status == "done":
            break
        time.sleep(0.2)
    return shown
