"""The cheap route for OpenAI-compatible endpoints sends the same request body.

memq sends `openai/<model>` with an api_base through litellm's own HTTP handler
(`hosted_vllm/`), which skips the OpenAI SDK's per-message request transform.
The provider must not be able to tell the difference.
"""

from __future__ import annotations

import os

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


def test_cheap_route_sends_the_same_body_as_the_openai_sdk_route(llm):
    import litellm

    tools = base_toolset().schemas
    settings = Settings(llm_model="openai/scripted", llm_api_base=llm.url, llm_api_key="k",
                        llm_max_tokens=321, llm_max_retries=0, llm_timeout_s=5)
    # memq's call (hosted_vllm route) and the plain litellm call through the OpenAI SDK
    LLMClient(settings).complete(_messages("route-a"), tools)
    litellm.completion(model="openai/scripted", api_base=llm.url, api_key="k", messages=_messages("route-b"),
                       tools=tools, max_tokens=321, timeout=5, num_retries=0)
    (cheap,), (sdk,) = llm.requests("route-a"), llm.requests("route-b")
    cheap["messages"][0]["content"] = sdk["messages"][0]["content"]
    assert cheap == sdk
