"""Does a message fit its agent's window? Checked at the door, on every path that enqueues.

A message that can never fit (even with the whole history evicted, it and the
fixed part of the prompt exceed the window) is refused when it is sent, with
the numbers, instead of being accepted and failing its run. The estimate here
is deliberately cheap (no tokenizer, no litellm import: those cost seconds on a
command's path) and leans towards letting a message in: characters / 4 for
text, with the fixed part counted from the agent's real system prompt and core
memory. The step still counts exactly and stays the judge.

The window is the agent's own (kept on its row after its first step), else
MEMQ_CONTEXT_WINDOW, else the model's window as litellm's model map lists it
(read as a JSON file, without importing litellm), else 8192 as the step does.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from storage.repository import MessageTooLong
from workers.window import Budget, budget_for

CHARS_PER_TOKEN = 4.0  # English prose runs ~4-5 characters a token; JSON and code fewer
EVENT_PACKING_TOKENS = 40  # {"type": ..., "time": ...} around the text, and its message overhead
# What sits beside the run's event in its later steps: the heartbeat event, an alert
# and a note in the summary (the event stays in view for the whole run).
CHAIN_COMPANIONS_TOKENS = 150
STATS_CHARS = 320  # the memory statistics in the system message
DEFAULT_WINDOW = 8192  # as workers.tokens: an unknown model gets this


@dataclass(frozen=True)
class MessageRoom:
    """How many tokens an agent's window leaves for one inbound message."""

    agent_name: str
    window: int
    room_tokens: int

    def check(self, text: str) -> None:
        """Raise MessageTooLong (with the numbers) if the text can never fit."""
        tokens = estimate_tokens(text) + EVENT_PACKING_TOKENS
        if tokens > self.room_tokens:
            raise MessageTooLong(len(text), 0, detail=(
                f"message is ~{_n(tokens)} tokens; agent {self.agent_name}'s window is {_n(self.window)} tokens, "
                f"of which ~{_n(max(0, self.room_tokens))} are left for a message after the system prompt, "
                "core memory and reserve"))


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def message_room(settings: Any, agent: Any, block_values: list[str]) -> MessageRoom:
    """The room for a message in the agent's window (agent: its row; block_values: its core memory)."""
    from workers.prompts import BASE_SYSTEM_PROMPT

    window = agent_window(settings, agent)
    budget: Budget = budget_for(settings, window)
    fixed_chars = len(agent.system_prompt or BASE_SYSTEM_PROMPT) + sum(map(len, block_values)) + STATS_CHARS
    fixed = estimate_tokens(" " * fixed_chars) + _tool_schema_tokens()
    room = budget.limit - budget.summary_reserve - fixed - CHAIN_COMPANIONS_TOKENS
    return MessageRoom(agent.name, window, room)


def check_message_fits(settings: Any, session: Any, agent: Any, text: str) -> None:
    """Refuse a message that can never fit the agent's window (reads its core memory)."""
    from storage import repository as repo

    values = [b.value for b in repo.load_blocks(session, agent.id)]
    message_room(settings, agent, values).check(text)


def agent_window(settings: Any, agent: Any | None) -> int:
    if agent is not None and agent.context_window:
        return int(agent.context_window)
    if settings.context_window:
        return int(settings.context_window)
    model = (agent.model if agent is not None else None) or settings.llm_model
    return known_window(model) if model else DEFAULT_WINDOW


def known_window(model: str) -> int:
    """The model's input window from litellm's model map, read without importing litellm
    (the step's own lookup: workers/tokens.py)."""
    from workers.tokens import known_window as step_window

    return step_window(model)


@lru_cache(maxsize=1)
def _tool_schema_tokens() -> int:
    from workers.base_tools import base_toolset

    return estimate_tokens(json.dumps(base_toolset().schemas))


def _n(value: int) -> str:
    """1234567 -> '1 234 567' (thin groups read well in a one-line error)."""
    return f"{value:,}".replace(",", " ")
