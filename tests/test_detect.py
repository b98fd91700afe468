"""Which model `memq demo` / `memq chat` pick up when MEMQ_LLM_MODEL is unset (memq/detect.py).

The precedence is checked with a table of answers standing in for the loopback
probes; the probes themselves against real servers on real ports (the scripted
server, and a closed port).
"""

from __future__ import annotations

import socket

import pytest

from memq.detect import Found, detect, fetch_json, fill_model
from memq.settings import Settings

OPENAI_MODELS = {"data": [{"id": "text-embedding-3-small"}, {"id": "my-model"}]}


def answers(table: dict[str, object]):
    """A probe that answers the given URLs and finds nothing listening anywhere else."""
    asked: list[str] = []

    def fetch(url: str) -> object:
        asked.append(url)
        return table.get(url)

    fetch.asked = asked  # type: ignore[attr-defined]
    return fetch


def test_openai_key_comes_first_and_needs_no_probe():
    fetch = answers({"http://127.0.0.1:11434/api/tags": {"models": [{"name": "llama3.1"}]}})
    found = detect({"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "a"}, fetch)
    assert found == Found("openai/gpt-4o-mini", "OPENAI_API_KEY")
    assert fetch.asked == []


def test_openai_base_url_picks_a_model_that_server_serves():
    fetch = answers({"http://h:9/v1/models": OPENAI_MODELS})
    found = detect({"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "http://h:9/v1/"}, fetch)
    assert found is not None and found.model == "openai/my-model"  # embedding models left out
    assert "OPENAI_BASE_URL=http://h:9/v1" in found.announce()


def test_openai_base_url_keeps_the_default_when_it_is_served_or_nothing_is_listed():
    assert detect({"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "http://h:9/v1"},
                  answers({"http://h:9/v1/models": {"data": [{"id": "gpt-4o-mini"}, {"id": "x"}]}})
                  ).model == "openai/gpt-4o-mini"
    assert detect({"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "http://h:9/v1"}, answers({})
                  ).model == "openai/gpt-4o-mini"


@pytest.mark.parametrize("env, model", [
    ({"ANTHROPIC_API_KEY": "a", "GEMINI_API_KEY": "g"}, "anthropic/claude-3-5-haiku-latest"),
    ({"GEMINI_API_KEY": "g"}, "gemini/gemini-2.0-flash"),
])
def test_then_anthropic_then_gemini(env, model):
    found = detect(env, answers({"http://127.0.0.1:11434/api/tags": {"models": [{"name": "llama3.1"}]}}))
    assert found is not None and found.model == model and found.api_base is None


def test_then_ollama_then_openai_compatible_servers_in_port_order():
    ollama = {"http://127.0.0.1:11434/api/tags": {"models": [{"name": "nomic-embed-text"}, {"name": "qwen3"}]}}
    found = detect({}, answers({**ollama, "http://127.0.0.1:8080/v1/models": OPENAI_MODELS}))
    assert found == Found("ollama_chat/qwen3", "Ollama on 127.0.0.1:11434", "http://127.0.0.1:11434")
    fetch = answers({"http://127.0.0.1:1234/v1/models": OPENAI_MODELS,
                     "http://127.0.0.1:8000/v1/models": {"data": [{"id": "other"}]}})
    found = detect({}, fetch)
    assert found is not None and (found.model, found.api_base) == ("openai/my-model", "http://127.0.0.1:1234/v1")
    assert fetch.asked == ["http://127.0.0.1:11434/api/tags", "http://127.0.0.1:8080/v1/models",
                           "http://127.0.0.1:1234/v1/models"]


def test_nothing_found_is_none_and_settings_stay_as_they_are():
    assert detect({}, answers({})) is None
    settings = Settings(llm_model=None)
    assert fill_model(settings, {}, answers({})) == (settings, None)


def test_memq_llm_model_overrides_everything():
    settings = Settings(llm_model="openai/mine")
    fetch = answers({})
    assert fill_model(settings, {"OPENAI_API_KEY": "k"}, fetch) == (settings, None)
    assert fetch.asked == []


def test_fill_model_sets_the_model_and_a_local_servers_base():
    fetch = answers({"http://127.0.0.1:8000/v1/models": OPENAI_MODELS})
    settings, found = fill_model(Settings(llm_model=None), {}, fetch)
    assert found is not None
    assert (settings.llm_model, settings.llm_api_base) == ("openai/my-model", "http://127.0.0.1:8000/v1")


def test_the_probe_reads_a_real_server_and_survives_a_closed_port(llm):
    assert {m["id"] for m in fetch_json(llm.url + "/models")["data"]} >= {"scripted"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert fetch_json(f"http://127.0.0.1:{port}/v1/models") is None
