"""Token accounting for the model in use (litellm's counters; tiktoken underneath).

Counts are estimates of what the provider will charge; the window planner keeps
a safety margin on top, and the step compacts harder if a provider still says
the prompt is too long.
"""

from __future__ import annotations

import json
import threading
from functools import lru_cache
from typing import Any

# What chat formats add around each message (role markers, separators).
PER_MESSAGE_OVERHEAD = 4
DEFAULT_WINDOW = 8192


def _litellm() -> Any:
    import os

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    return litellm


class TokenCounter:
    """Counts tokens of texts, messages and tool schemas for one model at a time."""

    def __init__(self, configured_window: int | None = None) -> None:
        self.configured_window = configured_window
        self._lock = threading.Lock()
        self._tools_cache: dict[tuple[str, int], int] = {}

    def text(self, model: str, text: str) -> int:
        if not text:
            return 0
        return _count_text(model, text)

    def message(self, model: str, msg: dict[str, Any]) -> int:
        """Tokens of one chat message as sent: content, tool calls and overhead."""
        n = PER_MESSAGE_OVERHEAD + self.text(model, msg.get("content") or "")
        calls = msg.get("tool_calls")
        if calls:
            n += self.text(model, json.dumps(calls, ensure_ascii=False))
        if msg.get("tool_call_id"):
            n += 8
        return n

    def tools(self, model: str, schemas: list[dict[str, Any]]) -> int:
        """Tokens the tool schemas take; computed once per (model, schema set)."""
        key = (model, id(schemas))
        with self._lock:
            if key not in self._tools_cache:
                self._tools_cache[key] = self.text(model, json.dumps(schemas)) + 16
            return self._tools_cache[key]

    def window(self, model: str) -> int:
        """MEMQ_CONTEXT_WINDOW, else the model's known input window, else a safe default."""
        if self.configured_window:
            return self.configured_window
        return _known_window(model)


@lru_cache(maxsize=4096)
def _count_text(model: str, text: str) -> int:
    """Cached: the system prompt and most events repeat from one step to the next."""
    return int(_litellm().token_counter(model=model, text=text))


@lru_cache(maxsize=64)
def _known_window(model: str) -> int:
    try:
        info = _litellm().get_model_info(model)
    except Exception:  # unmapped model: litellm raises; stay on the safe side
        return DEFAULT_WINDOW
    window = info.get("max_input_tokens") or info.get("max_tokens")
    return int(window) if window else DEFAULT_WINDOW
