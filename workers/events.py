"""Events and tool results as the agent sees them: JSON packed into messages."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from memq.constants import EventType, ToolStatus


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def pack_event(event_type: EventType, message: str, time: str | None = None) -> str:
    """A user-role message body: ``{"type", "message"|"reason", "time"}``."""
    key = "reason" if event_type is EventType.HEARTBEAT else "message"
    return json.dumps(
        {"type": event_type.value, key: message, "time": time or now_iso()}, ensure_ascii=False
    )


def pack_tool_result(status: ToolStatus, message: str) -> str:
    """A tool-role message body: ``{"status": "OK"|"Failed", "message", "time"}``."""
    return json.dumps(
        {"status": status.value, "message": message, "time": now_iso()}, ensure_ascii=False
    )
