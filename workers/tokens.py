"""Token accounting for the model in use: tiktoken, chosen as litellm's token_counter chooses it.

Counts are estimates of what the provider will charge; the window planner keeps
a safety margin on top, and the step compacts harder if a provider still says
the prompt is too long.

litellm is not imported (it costs ~115-145 MiB): the encoding is picked the way
litellm's ``token_counter`` picks it (an OpenAI chat model listed in its model map
by its bare name gets its own encoding, ``gpt-4o*`` o200k_base; every other model
string cl100k_base), loaded from the encodings litellm ships
(``TIKTOKEN_CACHE_DIR``, as litellm sets it, so nothing is downloaded), and the
window comes from litellm's model map read as a file (workers/model_map.py).
litellm fetches Hugging Face tokenizers for a few model families (llama, cohere
command-r) when the hub is reachable; here those count with cl100k_base, as
litellm does offline.
"""

from __future__ import annotations

import json
import os
import threading
from functools import lru_cache
from typing import Any

from workers import model_map

# What chat formats add around each message (role markers, separators).
PER_MESSAGE_OVERHEAD = 4
DEFAULT_WINDOW = 8192


O200K_MARK = "gpt-4o"
FALLBACK_MODEL = "gpt-3.5-turbo"  # litellm counts an unlisted model as this one


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
        return known_window(model)


@lru_cache(maxsize=4096)
def _count_text(model: str, text: str) -> int:
    """Cached: the system prompt and most events repeat from one step to the next."""
    return len(encoding_for(model).encode(text, disallowed_special=()))


@lru_cache(maxsize=64)
def encoding_for(model: str) -> Any:
    """The tiktoken encoding litellm's token_counter would use for `model`."""
    import tiktoken

    _use_shipped_encodings()
    name = model if model_map.is_openai_chat_model(model) else FALLBACK_MODEL
    if O200K_MARK in name:
        return tiktoken.get_encoding("o200k_base")
    try:
        return tiktoken.encoding_for_model(name)
    except KeyError:
        return tiktoken.get_encoding("cl100k_base")


def _use_shipped_encodings() -> None:
    """Point tiktoken at the encodings litellm ships, exactly as importing litellm does."""
    root = model_map.package_dir("litellm")
    if root is not None:
        os.environ["TIKTOKEN_CACHE_DIR"] = os.getenv("CUSTOM_TIKTOKEN_CACHE_DIR",
                                                     str(root / "litellm_core_utils" / "tokenizers"))


def known_window(model: str) -> int:
    """The model's input window as litellm's model map lists it, else DEFAULT_WINDOW."""
    return _known_window(model)


@lru_cache(maxsize=64)
def _known_window(model: str) -> int:
    facts = model_map.lookup(model)
    return facts.window if facts is not None and facts.window else DEFAULT_WINDOW
