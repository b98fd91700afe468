"""The LLM call: explicit timeouts, bounded retries and backoff, on one of two routes.

OpenAI-format providers take the direct route (workers/llm_direct.py: memq's own
request and parse, prices and windows from litellm's model map read as a file);
every other provider goes through ``litellm.completion``. litellm is imported
lazily, once per process, and only when a call needs it (~115-145 MiB, seconds).
"""

from __future__ import annotations

import os
import time
import uuid
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

from memq.llm_errors import endpoint_for
from memq.provider import BadResponse, RetriesExhausted, call_with_retries, load_litellm, resolve_route
from memq.settings import Settings
from workers import model_map
from workers.openai_format import ChatAnswer, ContextWindowExceededError, ToolCall

__all__ = ["ContextTooLong", "LLMClient", "LLMError", "LLMReply", "ToolCall", "resolve_route"]

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


class LLMError(RuntimeError):
    """The provider gave no usable answer after every attempt."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class ContextTooLong(LLMError):
    """The provider refused the prompt as longer than the model's window."""


@dataclass(frozen=True)
class LLMReply:
    content: str | None
    tool_calls: list[ToolCall]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    attempts: int = 1
    retries: list[str] = field(default_factory=list)


class LLMClient:
    """Calls chat completions for every step of this process; built once."""

    def __init__(self, settings: Settings, limiter: Any = None) -> None:
        self.settings = settings
        self.limiter = limiter
        self._litellm: Any = None
        self._direct: Any = None
        self._unpriced: set[str] = set()

    @property
    def litellm(self) -> Any:
        if self._litellm is None:
            # litellm's own response models trip pydantic's serializer on every
            # call; the warning says nothing about the request.
            warnings.filterwarnings("ignore", message="Pydantic serializer warnings")
            litellm = load_litellm()
            litellm.drop_params = True
            self._litellm = litellm
        return self._litellm

    @property
    def direct(self) -> Any:
        """The cheap route for OpenAI-format providers (None when MEMQ_LLM_DIRECT=false)."""
        if self._direct is None and self.settings.llm_direct:
            from workers.llm_direct import DirectRoute

            s = self.settings
            self._direct = DirectRoute(api_base=s.llm_api_base, api_key=s.llm_api_key,
                                       timeout_s=s.llm_timeout_s, max_connections=s.llm_max_connections)
        return self._direct

    def warm_up(self, model: str) -> None:
        """Pay the one-time costs of `model`'s route before the first step: the HTTP client and
        TLS context of the direct route, or litellm's import (seconds) for the other providers."""
        route = resolve_route(model, self.settings.llm_api_base)
        direct = self.direct
        if direct is not None and direct.supports(route):
            direct.warm_up()
        else:
            _ = self.litellm

    def close(self) -> None:
        """Close the direct route's connections (litellm's own clients are litellm's)."""
        if self._direct is not None:
            self._direct.close()

    def _answered(self, answer: ChatAnswer, route: str) -> LLMReply:
        """A direct-route answer, priced from litellm's model map (0 for an unlisted model)."""
        return LLMReply(content=answer.content, tool_calls=answer.tool_calls, prompt_tokens=answer.prompt_tokens,
                        completion_tokens=answer.completion_tokens, cost_usd=price_usd(route, answer))

    def _parse(self, response: Any) -> LLMReply:
        choices = getattr(response, "choices", None) or []
        if not choices or getattr(choices[0], "message", None) is None:
            raise BadResponse("the provider answered without any choice")
        message = choices[0].message
        calls = []
        for call in getattr(message, "tool_calls", None) or []:
            function = call.function
            calls.append(
                ToolCall(
                    id=call.id or f"call_{uuid.uuid4().hex[:24]}",
                    name=function.name or "",
                    arguments=function.arguments if function.arguments is not None else "",
                )
            )
        usage = getattr(response, "usage", None)
        return LLMReply(
            content=message.content or None,
            tool_calls=calls,
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            cost_usd=self._cost(response),
        )

    def _cost(self, response: Any) -> float:
        """The call's price where litellm knows the model's rates; 0 otherwise."""
        known = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
        if known is not None:  # litellm.completion priced it already
            return float(known)
        model = getattr(response, "model", None) or ""
        if model in self._unpriced:
            return 0.0
        try:
            return float(self.litellm.completion_cost(completion_response=response) or 0.0)
        except Exception:  # an unmapped model: litellm raises each time, so remember it
            self._unpriced.add(model)
            return 0.0

    def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        prompt_tokens: int = 0,
    ) -> LLMReply:
        """One chat completion, retried on timeouts, 429, 5xx and connection errors."""
        s = self.settings
        model = model or s.llm_model
        if not model:
            raise LLMError("no model configured: set MEMQ_LLM_MODEL", attempts=0)
        kwargs: dict[str, Any] = {
            "model": resolve_route(model, s.llm_api_base),
            "messages": messages,
            "timeout": s.llm_timeout_s,
            "max_tokens": max_tokens or s.llm_max_tokens,
            "num_retries": 0,
        }
        if tools:
            kwargs["tools"] = tools
        if s.llm_api_base:
            kwargs["api_base"] = s.llm_api_base
        if s.llm_api_key:
            kwargs["api_key"] = s.llm_api_key
        direct = self.direct
        if direct is not None and not direct.supports(kwargs["model"]):
            direct = None
        started = time.perf_counter()

        def attempt_call(_attempt: int) -> LLMReply:
            if self.limiter is not None:
                self.limiter.acquire(model, prompt_tokens + kwargs["max_tokens"])
            if direct is not None:
                route = kwargs["model"]
                return self._answered(direct.complete(route, messages, tools, kwargs["max_tokens"]), route)
            # litellm may change the dicts it is given: it gets copies (workers/openai_format.FrozenMessage)
            return self._parse(self.litellm.completion(**{**kwargs, "messages": [dict(m) for m in messages]}))

        try:
            reply, attempts, errors = call_with_retries(
                attempt_call,
                attempts=s.llm_max_retries + 1,
                backoff_s=s.llm_backoff_s,
                backoff_max_s=s.llm_backoff_max_s,
                give_up=_context_too_long,
                endpoint=endpoint_for(kwargs["model"], s.llm_api_base, s.llm_timeout_s),
            )
        except RetriesExhausted as exc:
            if _context_too_long(exc.error):
                raise ContextTooLong(exc.described, exc.attempts) from exc.error
            raise LLMError(
                f"LLM call failed after {exc.attempts} attempt(s): {exc.described}", exc.attempts
            ) from exc.error
        return replace(reply, latency_ms=(time.perf_counter() - started) * 1000, attempts=attempts, retries=errors)


def _context_too_long(exc: BaseException) -> bool:
    """The direct route's error, or litellm's of the same name: never retried."""
    return isinstance(exc, ContextWindowExceededError) or type(exc).__name__ == "ContextWindowExceededError"


def price_usd(route: str, answer: ChatAnswer) -> float:
    """What litellm's completion_cost charges for a direct-route answer: prompt, cached prompt
    and completion tokens at the model's rates (the answering snapshot's first, then the route's)."""
    provider, _, name = route.partition("/")
    if not name:
        provider, name = "openai", route
    for model in dict.fromkeys(m for m in (answer.model, name) if m):
        facts = model_map.lookup(model, provider)
        if facts is None or not model_map.same_provider(facts.provider, provider) \
                or not (facts.input_cost or facts.output_cost):
            continue
        cached = min(answer.cached_tokens, answer.prompt_tokens) if facts.cache_read_cost is not None else 0
        return ((answer.prompt_tokens - cached) * facts.input_cost + cached * (facts.cache_read_cost or 0.0)
                + answer.completion_tokens * facts.output_cost)
    return 0.0
