"""The direct route's own pieces agree with litellm, which it no longer imports.

Token counts (workers/tokens.py), context windows and prices (workers/model_map.py,
litellm's model map read as a file) against litellm's token_counter, get_model_info
and completion_cost; the answer parser and the error classification against
documents an OpenAI-format server sends. tests/test_llm_route.py compares the
request bodies on the wire.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from memq.provider import ProviderHTTPError, is_retryable
from workers import model_map, tokens
from workers.llm import price_usd
from workers.openai_format import ContextWindowExceededError, error_for, parse_answer, provider_of

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# Model strings as users write them; litellm fetches Hugging Face tokenizers for llama-2/-3 and
# cohere command-r names, so those are left out here (counted with cl100k_base, as litellm offline).
MODELS = ["openai/scripted", "openai/gpt-4o-mini", "gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4", "gpt-3.5-turbo",
          "o3-mini", "openai/o1", "gpt-5", "gpt-5-mini", "chatgpt-4o-latest", "hosted_vllm/scripted",
          "hosted_vllm/gpt-4o", "anthropic/claude-3-5-sonnet-20240620", "claude-3-5-sonnet-20240620",
          "gemini/gemini-1.5-pro", "vertex_ai/gemini-1.5-pro", "bedrock/anthropic.claude-3-sonnet-20240229-v1:0",
          "mistral/mistral-large-latest", "groq/llama3-8b-8192", "ollama/llama3", "scripted"]
TEXTS = ["hello world", "Ünïcödé — ✓ emoji 🎉 and code: def f(x): return x**2",
         '{"type": "user_message", "message": "hi", "time": "t"}' * 20, "<|endoftext|> is plain text here"]


@pytest.fixture
def file_map(monkeypatch):
    """workers/model_map.py on the packaged file even where litellm is loaded in this process."""
    monkeypatch.setattr(model_map, "table", model_map._file_table)
    tokens._known_window.cache_clear()
    tokens.encoding_for.cache_clear()
    tokens._count_text.cache_clear()
    yield
    tokens._known_window.cache_clear()
    tokens.encoding_for.cache_clear()
    tokens._count_text.cache_clear()


@pytest.mark.parametrize("model", MODELS)
def test_token_counts_and_windows_are_litellms(file_map, model):
    import litellm

    counter = tokens.TokenCounter()
    for text in TEXTS:
        assert counter.text(model, text) == litellm.token_counter(model=model, text=text), (model, text)
    try:
        info = litellm.get_model_info(model)
        expected = info.get("max_input_tokens") or info.get("max_tokens") or tokens.DEFAULT_WINDOW
    except Exception:  # unmapped: litellm raises, memq uses its default
        expected = tokens.DEFAULT_WINDOW
    assert counter.window(model) == expected


@pytest.mark.parametrize("route, answered_by", [
    ("openai/gpt-4o-mini", "gpt-4o-mini-2024-07-18"), ("gpt-4o", "gpt-4o"), ("openai/o3-mini", "o3-mini"),
    ("openai/gpt-5", "gpt-5"), ("openai/gpt-4.1", "gpt-4.1"), ("hosted_vllm/gpt-4o", "gpt-4o"),
])
def test_prices_are_litellms_completion_cost(file_map, route, answered_by):
    import litellm

    # given an answer with cached prompt tokens, as OpenAI reports them
    raw = {"id": "x", "object": "chat.completion", "created": 1, "model": answered_by,
           "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
           "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
                     "prompt_tokens_details": {"cached_tokens": 1024}}}
    response = litellm.ModelResponse(**raw)
    provider = route.split("/")[0] if "/" in route else "openai"
    response._hidden_params["custom_llm_provider"] = provider
    try:
        expected = litellm.completion_cost(completion_response=response)
    except Exception:  # a model litellm cannot price: memq charges nothing
        expected = 0.0
    # then memq's price is litellm's
    assert price_usd(route, parse_answer(raw)) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_an_unlisted_self_hosted_model_costs_nothing():
    raw = {"model": "scripted", "choices": [{"message": {"content": "hi"}}],
           "usage": {"prompt_tokens": 10, "completion_tokens": 5}}
    assert price_usd("hosted_vllm/scripted", parse_answer(raw)) == 0.0


def test_routes_the_direct_route_serves():
    assert provider_of("hosted_vllm/meta-llama/Llama-3-8B") == ("hosted_vllm", "meta-llama/Llama-3-8B")
    assert provider_of("openai/anything") == ("openai", "anything")
    assert provider_of("gpt-4o-mini") == ("openai", "gpt-4o-mini")
    assert provider_of("scripted") is None  # a bare name litellm does not know
    assert provider_of("anthropic/claude-3-5-sonnet-20240620") is None
    assert provider_of("openai/gpt-4o-audio-preview") is None  # litellm rewrites these
    assert provider_of("openai/gpt-5-codex") is None  # listed without a system role


def test_the_answer_parser_reads_what_openai_format_servers_send():
    # given tool calls with arguments as text and as an object, content parts and no usage
    answer = parse_answer({"model": "m", "choices": [{"message": {
        "content": [{"type": "text", "text": "thinking "}, {"type": "text", "text": "aloud"}],
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "send_message",
                                                                          "arguments": '{"message": "hi"}'}},
                       {"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}}]})
    # then both calls, the text and zero usage come back
    assert answer.content == "thinking aloud"
    assert [(c.id, c.name, c.arguments) for c in answer.tool_calls][0] == ("call_1", "send_message",
                                                                           '{"message": "hi"}')
    assert answer.tool_calls[1].id.startswith("call_") and answer.tool_calls[1].arguments == '{"a": 1}'
    assert (answer.prompt_tokens, answer.completion_tokens, answer.cached_tokens) == (0, 0, 0)


@pytest.mark.parametrize("raw", [[], {"choices": None}, "<html>", {"error": "x"}])
def test_a_document_without_choices_is_a_retryable_bad_answer(raw):
    with pytest.raises(ProviderHTTPError) as err:
        parse_answer(raw)
    assert err.value.status_code == 200 and is_retryable(err.value)


def test_provider_errors_carry_the_providers_words_and_tell_context_too_long_apart():
    body = '{"error": {"message": "This model\'s maximum context length is 8192 tokens.", "type": "x"}}'
    too_long = error_for(400, body, {"x": "y"})
    assert isinstance(too_long, ContextWindowExceededError) and not is_retryable(too_long)
    assert str(too_long) == "This model's maximum context length is 8192 tokens."
    limited = error_for(429, '{"error": {"message": "slow down"}}', {"retry-after": "2"})
    assert type(limited) is ProviderHTTPError and is_retryable(limited) and str(limited) == "slow down"
    assert limited.response.headers["retry-after"] == "2"
    user_too_long = error_for(400, '{"error": {"message": "string too long. Expected a string with maximum '
                                   'length 64", "code": "string_above_max_length"}}', {})
    assert type(user_too_long) is ProviderHTTPError
    assert str(error_for(502, "<html>bad gateway</html>", {})) == "<html>bad gateway</html>"


def test_litellm_is_imported_only_for_a_provider_that_needs_it():
    """The LLM client's warm-up in a fresh interpreter: the direct route leaves litellm alone,
    an Anthropic model imports it."""
    code = ("import sys; from memq.settings import Settings; from workers.llm import LLMClient; "
            "from workers.tokens import TokenCounter; "
            "LLMClient(Settings(llm_model=sys.argv[1], llm_api_base=sys.argv[2] or None)).warm_up(sys.argv[1]); "
            "c = TokenCounter(); c.text(sys.argv[1], 'warm up'); c.window(sys.argv[1]); "
            "print('litellm' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMQ_")}

    def loads_litellm(model: str, base: str) -> bool:
        out = subprocess.run([sys.executable, "-c", code, model, base], env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip() == "True"

    assert not loads_litellm("openai/scripted", "http://127.0.0.1:9/v1")
    assert not loads_litellm("gpt-4o-mini", "")
    assert loads_litellm("anthropic/claude-3-5-sonnet-20240620", "")


def test_a_body_with_frozen_messages_is_the_json_of_the_whole_body():
    import json

    from workers.openai_format import ChatEndpoint, FrozenMessage

    # given stored messages (encoded once, reused) beside fresh ones, non-ASCII text included
    stored = [FrozenMessage({"role": "user", "content": "café ☕ \"quoted\""}),
              FrozenMessage({"role": "assistant", "content": None, "tool_calls": [
                  {"id": "c1", "type": "function", "function": {"name": "send_message", "arguments": "{}"}}]})]
    fresh = [{"role": "system", "content": "rules"}, *stored, {"role": "user", "content": "now"}]
    body = {"model": "m", "tools": [{"type": "function", "function": {"name": "t"}}], "max_tokens": 10}
    endpoint = ChatEndpoint("openai", "m", "http://x/v1/chat/completions", {}, body)
    # when the request is built twice (the second time from the cached JSON)
    first, second = endpoint.payload(fresh), endpoint.payload(fresh)
    # then both are exactly what json.dumps writes for the whole body
    whole = json.dumps({**body, "messages": fresh}, ensure_ascii=False).encode()
    assert first == second == whole
    # and an o-series model without a system role still gets it as a user message
    o1 = ChatEndpoint("openai", "o1", "http://x", {}, body, system_as_user=True)
    assert json.loads(o1.payload(fresh))["messages"][0] == {"content": "rules", "role": "user"}
    # and a body with nothing but messages is valid JSON too
    assert json.loads(ChatEndpoint("openai", "m", "http://x", {}, {}).payload(fresh))["messages"][1] == stored[0]
