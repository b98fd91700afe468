"""What memq needs from litellm's model map, without importing litellm.

litellm ships its map of models (context windows, prices per token, provider) as
``model_prices_and_context_window_backup.json`` inside its package; with
``LITELLM_LOCAL_MODEL_COST_MAP=True`` (memq's default) that file is exactly what
``litellm.model_cost`` holds. Importing litellm to read it costs ~115-145 MiB of
a worker's memory and seconds of start-up, so the direct route reads the file
itself (found with importlib, never imported) and keeps a few fields per model.
Where litellm is already loaded in this process (a provider that needs it), its
own ``litellm.model_cost`` is used instead, so models registered with
``litellm.register_model`` or a remote map it fetched count as litellm counts them.
Without litellm loaded nothing is fetched: with ``LITELLM_LOCAL_MODEL_COST_MAP=False``
litellm would download the map at import; memq's direct route keeps the packaged one.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

MAP_FILE = "model_prices_and_context_window_backup.json"


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """One model's entry: its provider, window and prices (USD per token)."""

    provider: str
    mode: str
    window: int | None  # max_input_tokens, else max_tokens
    input_cost: float
    output_cost: float
    cache_read_cost: float | None
    system_messages: bool | None  # the map's supports_system_messages (None: not said)


def package_dir(name: str) -> Path | None:
    """An installed package's directory, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _facts(entry: dict[str, Any]) -> ModelFacts:
    window = entry.get("max_input_tokens") or entry.get("max_tokens")
    return ModelFacts(
        provider=str(entry.get("litellm_provider") or ""),
        mode=str(entry.get("mode") or ""),
        window=int(window) if isinstance(window, (int, float)) and window > 0 else None,
        input_cost=float(entry.get("input_cost_per_token") or 0.0),
        output_cost=float(entry.get("output_cost_per_token") or 0.0),
        cache_read_cost=(float(entry["cache_read_input_token_cost"])
                         if entry.get("cache_read_input_token_cost") is not None else None),
        system_messages=(bool(entry["supports_system_messages"])
                         if entry.get("supports_system_messages") is not None else None),
    )


@lru_cache(maxsize=1)
def _file_table() -> dict[str, ModelFacts]:
    """The packaged map, reduced to ModelFacts (the full JSON is 1.3 MB; this keeps a tenth)."""
    root = package_dir("litellm")
    if root is None:
        return {}
    try:
        raw = json.loads((root / MAP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: _facts(v) for k, v in raw.items() if isinstance(v, dict) and k != "sample_spec"}


def table() -> dict[str, ModelFacts]:
    litellm = sys.modules.get("litellm")
    live = getattr(litellm, "model_cost", None) if litellm is not None else None
    if isinstance(live, dict) and live:
        return _live_table(id(live), len(live), live)
    return _file_table()


_live: dict[tuple[int, int], dict[str, ModelFacts]] = {}


def _live_table(key_id: int, size: int, live: dict[str, Any]) -> dict[str, ModelFacts]:
    key = (key_id, size)  # rebuilt when litellm's map grows (register_model)
    found = _live.get(key)
    if found is None:
        found = {k: _facts(v) for k, v in list(live.items()) if isinstance(v, dict) and k != "sample_spec"}
        _live.clear()
        _live[key] = found
    return found


def lookup(model: str, provider: str | None = None) -> ModelFacts | None:
    """The entry for `model` (``provider/name`` or a bare name), as litellm's get_model_info finds it:
    the string as listed, else ``provider/name`` or ``name`` listed under that provider."""
    facts = table()
    found = facts.get(model)
    if found is not None:
        return found
    prefix, _, name = model.partition("/")
    if not name:
        prefix, name = "", model
    provider = provider or prefix
    if not provider:
        return None
    for key in (f"{provider}/{name}", name):
        found = facts.get(key)
        if found is not None and same_provider(found.provider, provider):
            return found
    return None


def same_provider(listed: str, provider: str) -> bool:
    # litellm lists e.g. "vertex_ai-language-models" for the vertex_ai provider
    return listed == provider or listed.startswith(provider + "-")


def is_openai_chat_model(name: str) -> bool:
    """litellm's open_ai_chat_completion_models: listed under provider openai, not a fine-tune."""
    found = table().get(name)
    return found is not None and found.provider == "openai" and not name.startswith("ft:")
