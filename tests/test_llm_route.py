"""The cheap routes send the same request body as litellm.completion.

memq sends `openai/<model>` with an api_base as `hosted_vllm/` (litellm's own
HTTP handler rather than the OpenAI SDK's per-message request transform), and
every OpenAI-format route through workers/llm_direct.py (memq's own request,
built once per model, tool set and reply budget, without litellm). The provider
must not be able to tell the difference.
"""

from __future__ import annotations

import copy
import os

import pytest

from memq.settings import Settings
from workers.base_tools import base_toolset
from workers.llm import LLMClient, resolve_route

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# litellm's own response models trip pydantic's serializer on the tests' litellm.completion calls.
pytestmark = pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")


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


@pytest.mark.parametrize("model", ["openai/o3-mini", "openai/gpt-5", "openai/gpt-5-chat-latest", "gpt-4o-mini",
                                   "openai/gpt-4.1"])
def test_openai_models_get_the_reply_budget_parameter_litellm_gives_them(llm, monkeypatch, model):
    import litellm

    # given OpenAI's reasoning models (max_completion_tokens) and chat models (max_tokens)
    monkeypatch.setenv("OPENAI_BASE_URL", llm.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    tools = base_toolset().schemas
    client = LLMClient(Settings(llm_model=model, llm_max_tokens=77, llm_max_retries=0, llm_timeout_s=5))
    assert client.direct.supports(model)
    # when memq (direct) and litellm.completion each send a prompt
    client.complete(_messages(f"budget-a-{model}"), tools)
    litellm.completion(model=model, messages=_messages(f"budget-b-{model}"), tools=tools, max_tokens=77,
                       timeout=5, num_retries=0)
    # then the bodies are the same
    _same_body(llm, f"budget-a-{model}", f"budget-b-{model}")


def test_tools_reach_an_openai_compatible_server_as_litellm_cleans_them(llm):
    import litellm

    # given tool schemas with strict mode and additionalProperties: false
    tools = copy.deepcopy(base_toolset().schemas)
    for tool in tools:
        tool["function"]["strict"] = True
        tool["function"]["parameters"]["additionalProperties"] = False
    settings = Settings(llm_model="openai/scripted", llm_api_base=llm.url, llm_api_key="k", llm_max_retries=0,
                        llm_timeout_s=5)
    # when memq and litellm's hosted_vllm route each send them
    LLMClient(settings).complete(_messages("strict-a"), tools)
    litellm.completion(model="hosted_vllm/scripted", api_base=llm.url, api_key="k", messages=_messages("strict-b"),
                       tools=copy.deepcopy(tools), max_tokens=settings.llm_max_tokens, timeout=5, num_retries=0)
    # then the server sees the same (cleaned) tools, and memq's own schemas were left as they were
    assert "strict" not in llm.requests("strict-a")[0]["tools"][0]["function"]
    _same_body(llm, "strict-a", "strict-b")
    assert tools[0]["function"]["strict"] is True
