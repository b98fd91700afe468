"""The cheap routes send the same request body as litellm.completion.

memq sends `openai/<model>` with an api_base as `hosted_vllm/` (litellm's own
HTTP handler rather than the OpenAI SDK's per-message request transform), and
every OpenAI-format route through workers/llm_direct.py (litellm's provider
config, built once, instead of litellm.completion's per-call work). The provider
must not be able to tell the difference.
"""

from __future__ import annotations

import os

import pytest

from memq.settings import Settings
from workers.base_tools import base_toolset
from workers.llm import LLMClient, resolve_route

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _messages(key: str) -> list[dict]:
    return [
        {"role": "system", "content": f"system prompt {key}"},
        {"role": "user", "content": '{"type": "user_message", "message": "hi", "time": "t"}'},
        {"role": "assistant", "content": "thinking", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "send_message", "arguments": "{\"message\": \"yo\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "OK", "message": "sent", "time": "t"}'},
        {"role": "user", "content": '{"type": "heartbeat", "reason": "go on", "time": "t"}'},
    ]


def test_route_choice():
    assert resolve_route("openai/gpt-4o-mini", "http://h/v1") == "hosted_vllm/gpt-4o-mini"
    assert resolve_route("openai/gpt-4o-mini", None) == "openai/gpt-4o-mini"
    assert resolve_route("anthropic/claude-x", "http://h") == "anthropic/claude-x"


def _same_body(llm, a: str, b: str) -> None:
    (first,), (second,) = llm.requests(a), llm.requests(b)
    first["messages"][0]["content"] = second["messages"][0]["content"]  # only the key differs
    assert first == second


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "litellm.completion"])
def test_cheap_route_sends_the_same_body_as_the_openai_sdk_route(llm, direct):
    import litellm

    tools = base_toolset().schemas
    settings = Settings(llm_model="openai/scripted", llm_api_base=llm.url, llm_api_key="k",
                        llm_max_tokens=321, llm_max_retries=0, llm_timeout_s=5, llm_direct=direct)
    # memq's call and the plain litellm call through the OpenAI SDK
    LLMClient(settings).complete(_messages(f"route-a-{direct}"), tools)
    litellm.completion(model="openai/scripted", api_base=llm.url, api_key="k",
                       messages=_messages(f"route-b-{direct}"), tools=tools, max_tokens=321, timeout=5,
                       num_retries=0)
    _same_body(llm, f"route-a-{direct}", f"route-b-{direct}")


def test_openai_without_api_base_takes_the_direct_route_with_the_same_body(llm, monkeypatch):
    import litellm

    # given plain OpenAI (no MEMQ_LLM_API_BASE): the endpoint and key come from OpenAI's variables,
    # pointed here at the scripted server
    monkeypatch.setenv("OPENAI_BASE_URL", llm.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    tools = base_toolset().schemas
    client = LLMClient(Settings(llm_model="openai/scripted", llm_max_tokens=99, llm_max_retries=0,
                                llm_timeout_s=5))
    assert client.direct.supports("openai/scripted")
    # when memq and the OpenAI SDK route each send a prompt
    client.complete(_messages("openai-a"), tools)
    litellm.completion(model="openai/scripted", messages=_messages("openai-b"), tools=tools, max_tokens=99,
                       timeout=5, num_retries=0)
    # then the provider sees the same body
    _same_body(llm, "openai-a", "openai-b")
