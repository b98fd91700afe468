"""The base tools of every agent: talking and editing core memory."""

from __future__ import annotations

from workers.tools import ToolContext, ToolError, ToolSpec, Toolset

_STR = {"type": "string"}


def send_message(ctx: ToolContext, message: str) -> str:
    if not message.strip():
        raise ToolError("send_message: message must not be empty")
    ctx.replies.append(message)
    return "Message delivered to the user."


def core_memory_append(ctx: ToolContext, label: str, content: str) -> str:
    if not content.strip():
        raise ToolError("core_memory_append: content must not be empty")
    old = ctx.block(label).value
    ctx.set_block(label, f"{old}\n{content}" if old else content)
    return f"Appended to '{label}'; it now holds {len(ctx.blocks[label].value)} characters."


def core_memory_replace(ctx: ToolContext, label: str, old_content: str, new_content: str) -> str:
    if not old_content:
        raise ToolError("core_memory_replace: old_content must not be empty (use core_memory_append to add)")
    old = ctx.block(label).value
    count = old.count(old_content)
    if count == 0:
        raise ToolError(
            f"core_memory_replace: '{old_content}' does not occur in block '{label}'; "
            "copy the exact text from the block"
        )
    ctx.set_block(label, old.replace(old_content, new_content))
    return f"Replaced {count} occurrence(s) in '{label}'."


SEND_MESSAGE = ToolSpec(
    name="send_message",
    description="Say something to the user. This is the only text the user will ever see.",
    params={"message": {**_STR, "description": "What the user should read."}},
    required=("message",),
    fn=send_message,
)
CORE_MEMORY_APPEND = ToolSpec(
    name="core_memory_append",
    description="Add text at the end of one of your core memory blocks.",
    params={
        "label": {**_STR, "description": "Which block, e.g. 'human' or 'persona'."},
        "content": {**_STR, "description": "The text to add (a new line is inserted before it)."},
    },
    required=("label", "content"),
    fn=core_memory_append,
)
CORE_MEMORY_REPLACE = ToolSpec(
    name="core_memory_replace",
    description="Change text in one of your core memory blocks: every occurrence of "
    "old_content becomes new_content. An empty new_content deletes the text.",
    params={
        "label": {**_STR, "description": "Which block, e.g. 'human' or 'persona'."},
        "old_content": {**_STR, "description": "Text exactly as it appears in the block."},
        "new_content": {**_STR, "description": "The replacement text."},
    },
    required=("label", "old_content", "new_content"),
    fn=core_memory_replace,
)

BASE_TOOLS = [SEND_MESSAGE, CORE_MEMORY_APPEND, CORE_MEMORY_REPLACE]


def base_toolset() -> Toolset:
    """Every agent's tools: talking, core memory, recall and archival memory."""
    from workers.memory_tools import MEMORY_TOOLS

    return Toolset(BASE_TOOLS + MEMORY_TOOLS)
