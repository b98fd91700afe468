"""The OpenAI chat-completions format, as memq speaks it on the direct route.

The request is what litellm's OpenAI and hosted_vllm provider configurations
build for the parameters memq uses (model, messages, tools, a reply budget):
``max_tokens``, or ``max_completion_tokens`` for OpenAI's reasoning models
(o1/o3/o4, gpt-5 but not gpt-5-chat), tools as given (hosted_vllm drops
``additionalProperties: false`` and ``strict`` from them), and the system
message sent as a user message to the o-series models the map does not list as
taking a system role. The answer is read
from the JSON document: the first choice's content and tool calls, and the
usage. A failed call becomes one of the errors memq/provider.py retries or
not by their status (429, 5xx, an unparsable 200) or type (timeouts and
connection errors), with "context too long" told apart as litellm tells it.
tests/test_llm_route.py checks the body is the one ``litellm.completion`` sends.

Model strings other than ``openai/…``, ``hosted_vllm/…`` and bare names litellm's
model map lists under OpenAI, and the few OpenAI models litellm transforms
further (no system role, audio), are not served here: litellm serves them.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from memq.provider import BadResponse, ProviderHTTPError
from workers import model_map

DIRECT_PROVIDERS = ("openai", "hosted_vllm")
OPENAI_DEFAULT_BASE = "https://api.openai.com/v1"
REASONING_PREFIXES = ("o1", "o3", "o4")
# litellm's ExceptionCheckers.is_error_str_context_window_exceeded, for OpenAI-format providers.
CONTEXT_TOO_LONG = ("exceed context limit", "this model's maximum context length is",
                    "string too long. expected a string with maximum length", "model's maximum context limit",
                    "is longer than the model's context length", "input tokens exceed the configured limit",
                    "`inputs` tokens + `max_new_tokens` must be", "exceeds the maximum number of tokens allowed")
NOT_CONTEXT = ("string_above_max_length",)


class ContextWindowExceededError(ProviderHTTPError):
    """The provider refused the prompt as longer than the model's window (named as litellm names it)."""


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str

    def as_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True)
class ChatAnswer:
    """The parts of a chat completion the step uses."""

    content: str | None
    tool_calls: list[ToolCall]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    model: str = ""  # as the provider names it (may be a dated snapshot)


class FrozenMessage(dict):
    """A chat message that never changes (a stored message as the model is shown it).

    Its JSON is encoded once and reused by every later prompt that holds it: a chained
    step's prompt is mostly the same stored messages again, and encoding ~120 of them
    was the largest part of building the request. Nothing may change it once built.
    """

    __slots__ = ("_json",)

    def json_text(self) -> str:
        try:
            return self._json
        except AttributeError:
            self._json = json.dumps(self, ensure_ascii=False)
            return self._json


@dataclass(frozen=True)
class ChatEndpoint:
    """Where and how one model is called: built once per (route, tools, reply budget)."""

    provider: str  # openai | hosted_vllm
    model: str  # the provider's model name
    url: str
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)  # everything but the messages
    system_as_user: bool = False  # an o-series model without a system role

    def payload(self, messages: list[dict[str, Any]]) -> bytes:
        """The body as json.dumps({**body, "messages": messages}) writes it, with each
        FrozenMessage's JSON encoded once for all prompts."""
        if self.system_as_user:
            messages = [{"content": m.get("content"), "role": "user"} if m.get("role") == "system" else m
                        for m in messages]
        parts = [m.json_text() if type(m) is FrozenMessage else json.dumps(m, ensure_ascii=False)
                 for m in messages]
        return f'{self._head}"messages": [{", ".join(parts)}]}}'.encode()

    @cached_property
    def _head(self) -> str:
        """The body up to where the messages go (last), as json.dumps writes it."""
        return json.dumps(self.body, ensure_ascii=False)[:-1] + ", " if self.body else "{"


def provider_of(route: str) -> tuple[str, str] | None:
    """(provider, model name) when the route speaks the OpenAI format here, else None."""
    prefix, _, name = route.partition("/")
    if name and prefix in DIRECT_PROVIDERS:
        provider, model = prefix, name
    elif not name and model_map.is_openai_chat_model(route):
        provider, model = "openai", route
    else:
        return None
    if provider == "openai":
        facts = model_map.lookup(model, "openai")
        if (facts is not None and facts.system_messages is False) or "audio" in model or "realtime" in model:
            return None  # litellm rewrites these requests; it serves them
    return provider, model


def is_o_series(model: str) -> bool:
    name = model.split("/")[-1]
    return name.startswith(REASONING_PREFIXES) and model_map.is_openai_chat_model(name)


def is_reasoning_model(model: str) -> bool:
    """OpenAI's models that take max_completion_tokens (litellm's o-series and GPT-5 configs)."""
    return is_o_series(model) or ("gpt-5" in model and "gpt-5-chat" not in model)


def system_role_refused(model: str) -> bool:
    """litellm's o-series rule: a system message goes as a user message unless the map says
    the model supports a system role."""
    if not is_o_series(model):
        return False
    facts = model_map.lookup(model, "openai")
    return facts is None or facts.system_messages is not True


def endpoint(route: str, api_base: str | None, api_key: str | None, tools: list[dict[str, Any]] | None,
             max_tokens: int, user_agent: str) -> ChatEndpoint | None:
    """The endpoint for `route`, or None when litellm must serve it (or no base URL is known)."""
    found = provider_of(route)
    if found is None:
        return None
    provider, model = found
    if provider == "openai":
        api_base = api_base or os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_BASE") \
            or OPENAI_DEFAULT_BASE
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
    else:
        api_base = api_base or os.environ.get("HOSTED_VLLM_API_BASE")
        api_key = api_key or os.environ.get("HOSTED_VLLM_API_KEY") or "fake-api-key"
    if not api_base:
        return None
    headers = {"User-Agent": user_agent, "Content-Type": "application/json"}
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    body: dict[str, Any] = {"model": model}
    if tools:
        body["tools"] = _vllm_tools(tools) if provider == "hosted_vllm" else tools
    if max_tokens:
        budget_key = "max_completion_tokens" if provider == "openai" and is_reasoning_model(model) else "max_tokens"
        body[budget_key] = max_tokens
    return ChatEndpoint(provider=provider, model=model, url=chat_url(api_base), headers=headers, body=body,
                        system_as_user=provider == "openai" and system_role_refused(model))


def chat_url(api_base: str) -> str:
    base = api_base.rstrip("/")
    return base if "chat/completions" in base else f"{base}/chat/completions"


def _vllm_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tools without ``additionalProperties: false`` and ``strict`` (copied only when present)."""
    text = json.dumps(tools)
    if '"additionalProperties"' not in text and '"strict"' not in text:
        return tools
    return _strip(json.loads(text))


def _strip(schema: Any) -> Any:
    if isinstance(schema, dict):
        if schema.get("additionalProperties") is False:
            del schema["additionalProperties"]
        schema.pop("strict", None)
        for value in schema.values():
            _strip(value)
    elif isinstance(schema, list):
        for item in schema:
            _strip(item)
    return schema


def error_for(status: int, text: str, headers: Any) -> ProviderHTTPError:
    """A non-2xx answer as an error: the provider's own message, its status and headers."""
    message = _error_message(text)
    lowered = message.lower() + " " + text[:2000].lower()
    if not any(s in lowered for s in NOT_CONTEXT) and any(s in lowered for s in CONTEXT_TOO_LONG):
        return ContextWindowExceededError(status, message, headers)
    return ProviderHTTPError(status, message, headers)


def _error_message(text: str) -> str:
    try:
        doc = json.loads(text)
    except ValueError:
        return text.strip()[:300]
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    if isinstance(error, str):
        return error
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        return doc["message"]
    return text.strip()[:300]


def parse_answer(raw: Any) -> ChatAnswer:
    """The first choice and the usage of a chat completion document."""
    if not isinstance(raw, dict) or not isinstance(raw.get("choices"), list):
        raise ProviderHTTPError(200, f"response without choices: {str(raw)[:200]}", {})
    choices = raw["choices"]
    message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    if not isinstance(message, dict):
        raise BadResponse("the provider answered without any choice")
    calls = []
    for call in message.get("tool_calls") or []:
        function = (call.get("function") if isinstance(call, dict) else None) or {}
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        calls.append(ToolCall(id=call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
                              name=function.get("name") or "", arguments=arguments or ""))
    usage = raw.get("usage") if isinstance(raw.get("usage"), dict) else {}
    details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
    return ChatAnswer(content=_text(message.get("content")) or None, tool_calls=calls,
                      prompt_tokens=int(usage.get("prompt_tokens") or 0),
                      completion_tokens=int(usage.get("completion_tokens") or 0),
                      cached_tokens=int(details.get("cached_tokens") or 0), model=str(raw.get("model") or ""))


def _text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    return str(content)
