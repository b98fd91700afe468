"""Finding a model the user already has, for `memq demo` and `memq chat` when MEMQ_LLM_MODEL is unset.

In this order: OPENAI_API_KEY (with OPENAI_BASE_URL when set), ANTHROPIC_API_KEY,
GEMINI_API_KEY, then a server answering on its usual loopback port: Ollama
(11434, ``/api/tags``), then an OpenAI-compatible one (llama.cpp 8080, LM Studio
1234, vLLM 8000: ``/v1/models``). Probes go to 127.0.0.1 only, with a short
timeout. The keys themselves stay in the environment, where litellm reads them.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

PROBE_TIMEOUT_S = 0.5
OLLAMA_PORT = 11434
OPENAI_COMPATIBLE_PORTS = ((8080, "llama.cpp"), (1234, "LM Studio"), (8000, "vLLM"))
DEFAULT_MODELS = {
    "openai": "openai/gpt-4o-mini",
    "anthropic": "anthropic/claude-3-5-haiku-latest",
    "gemini": "gemini/gemini-2.0-flash",
}
CHANGE_HINT = "set MEMQ_LLM_MODEL (and MEMQ_LLM_API_BASE / MEMQ_LLM_API_KEY) to use another"

# Fetches a URL's JSON body (None when nothing answers); tests pass their own.
Fetch = Callable[[str], object]


@dataclass(frozen=True)
class Found:
    """A model memq can use, and why it chose it."""

    model: str
    source: str  # what it was found by, e.g. "OPENAI_API_KEY" or "Ollama on 127.0.0.1:11434"
    api_base: str | None = None

    def announce(self) -> str:
        """The one line saying what was chosen and how to choose otherwise."""
        return f"using {self.model} (found {self.source}); {CHANGE_HINT}"


def fetch_json(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> object:
    """GET url and parse its JSON; None on any failure (nothing listening, not JSON, ...)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - fixed URLs
            return json.loads(response.read(1_000_000))
    except (OSError, ValueError):
        return None


def _model_ids(doc: object) -> list[str]:
    """Chat model ids from an OpenAI ``/models`` list (embedding models left out)."""
    data = doc.get("data") if isinstance(doc, dict) else None
    ids = [str(m.get("id")) for m in data or [] if isinstance(m, dict) and m.get("id")]
    return [i for i in ids if "embed" not in i.lower()]


def _openai(env: Mapping[str, str], fetch: Fetch) -> Found | None:
    if not env.get("OPENAI_API_KEY"):
        return None
    base = (env.get("OPENAI_BASE_URL") or env.get("OPENAI_API_BASE") or "").rstrip("/")
    model = DEFAULT_MODELS["openai"]
    if base and "api.openai.com" not in base:
        # Another OpenAI-compatible service: use a model it serves when it lists them.
        ids = _model_ids(fetch(base + "/models"))
        if ids and model.removeprefix("openai/") not in ids:
            model = "openai/" + ids[0]
    source = "OPENAI_API_KEY" + (f" and OPENAI_BASE_URL={base}" if base else "")
    return Found(model, source)  # litellm's openai route reads both variables itself


def _local_servers(fetch: Fetch) -> Found | None:
    tags = fetch(f"http://127.0.0.1:{OLLAMA_PORT}/api/tags")
    models = tags.get("models") if isinstance(tags, dict) else None
    names = [str(m.get("name")) for m in models or [] if isinstance(m, dict) and m.get("name")]
    names = [n for n in names if "embed" not in n.lower()]
    if names:
        return Found("ollama_chat/" + names[0], f"Ollama on 127.0.0.1:{OLLAMA_PORT}",
                     api_base=f"http://127.0.0.1:{OLLAMA_PORT}")
    for port, name in OPENAI_COMPATIBLE_PORTS:
        base = f"http://127.0.0.1:{port}/v1"
        ids = _model_ids(fetch(base + "/models"))
        if ids:
            return Found("openai/" + ids[0], f"an OpenAI-compatible server ({name}?) at {base}", api_base=base)
    return None


def detect(env: Mapping[str, str], fetch: Fetch = fetch_json) -> Found | None:
    """The first model found in the order above; None when there is none."""
    found = _openai(env, fetch)
    if found is not None:
        return found
    for provider, variable in (("anthropic", "ANTHROPIC_API_KEY"), ("gemini", "GEMINI_API_KEY")):
        if env.get(variable):
            return Found(DEFAULT_MODELS[provider], variable)
    return _local_servers(fetch)


def fill_model(settings: Any, env: Mapping[str, str], fetch: Fetch = fetch_json) -> tuple[Any, Found | None]:
    """``settings`` with the found model when MEMQ_LLM_MODEL is unset (and what was found)."""
    if settings.llm_model:
        return settings, None
    found = detect(env, fetch)
    if found is None:
        return settings, None
    update = {"llm_model": found.model}
    if found.api_base and not settings.llm_api_base:
        update["llm_api_base"] = found.api_base
    return settings.model_copy(update=update), found
