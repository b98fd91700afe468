"""Context compilation: the exact message list the LLM sees for one step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memq.constants import Role
from storage.models import Agent, Message
from workers.prompts import BASE_SYSTEM_PROMPT
from workers.tools import Block


@dataclass(frozen=True)
class CompiledContext:
    messages: list[dict[str, Any]]
    chars: int


def render_system(agent: Agent, blocks: dict[str, Block], in_context: int) -> str:
    """Instructions, memory statistics and every core-memory block with used/limit."""
    parts = [agent.system_prompt or BASE_SYSTEM_PROMPT, ""]
    parts.append("### Memory statistics")
    parts.append(f"- agent: {agent.name} (id {agent.id})")
    parts.append(f"- messages in view: {in_context}")
    parts.append(f"- messages stored in total (recall memory): {agent.message_count}")
    parts.append("")
    parts.append("### Core memory")
    for label, block in blocks.items():
        parts.append(f'<block label="{label}" used="{len(block.value)}" limit="{block.limit_chars}">')
        parts.append(block.value)
        parts.append("</block>")
    if agent.summary:
        parts.append("")
        parts.append("### Summary of older conversation")
        parts.append(agent.summary)
    return "\n".join(parts)


def message_to_llm(m: Message) -> dict[str, Any]:
    """One stored message in OpenAI chat format, exactly as it was first given."""
    if m.role == Role.ASSISTANT:
        out: dict[str, Any] = {"role": "assistant", "content": m.content}
        if m.tool_calls:
            out["tool_calls"] = m.tool_calls
        return out
    if m.role == Role.TOOL:
        return {"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content or ""}
    return {"role": m.role, "content": m.content or ""}


def compile_context(
    agent: Agent, blocks: dict[str, Block], history: Sequence[Message], event: str
) -> CompiledContext:
    """System message, the in-context queue, then the event being processed."""
    system = render_system(agent, blocks, in_context=len(history) + 1)
    messages = [{"role": "system", "content": system}]
    messages.extend(message_to_llm(m) for m in history)
    messages.append({"role": "user", "content": event})
    chars = sum(len(m.get("content") or "") for m in messages)
    return CompiledContext(messages=messages, chars=chars)
