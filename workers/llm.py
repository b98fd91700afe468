"""The LLM call: litellm with explicit timeouts, bounded retries and backoff.

litellm is imported lazily, once per process (importing it costs seconds).
"""

from __future__ import annotations

import os
import random
import time
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any

from memq.settings import Settings

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

_RETRYABLE_NAMES = {
    "Timeout",
    "RateLimitError",
    "APIConnectionError",
    "InternalServerError",
    "ServiceUnavailableError",
    "BadGatewayError",
}


class LLMError(RuntimeError):
    """The provider gave no usable answer after every attempt."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class ContextTooLong(LLMError):
    """The provider refused the prompt as longer than the model's window."""


class _BadResponse(RuntimeError):
    """A 200 answer without a usable choice: retried like a 5xx."""


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
class LLMReply:
    content: str | None
    tool_calls: list[ToolCall]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    attempts: int = 1
    retries: list[str] = field(default_factory=list)


def resolve_route(model: str, api_base: str | None) -> str:
    """Pick litellm's provider route.

    An OpenAI-compatible endpoint given by api_base goes through litellm's own
    HTTP handler (``hosted_vllm/``), which costs a few ms of CPU per call instead
    of the tens of ms the OpenAI SDK's request transform spends on long prompts.
    """
    if api_base and model.startswith("openai/"):
        return "hosted_vllm/" + model.removeprefix("openai/")
    return model


def _retry_after_s(exc: Exception) -> float | None:
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
    if not headers:
        return None
    try:
        value = headers.get("retry-after") or headers.get("Retry-After")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _is_retryable(exc: Exception) -> bool:
    if isinstance(exc, _BadResponse):
        return True
    if type(exc).__name__ in _RETRYABLE_NAMES:
        return True
    status = getattr(exc, "status_code", None)
    # 200 here means the provider's body could not be parsed: a transient fault.
    return isinstance(status, int) and (status >= 500 or status in (200, 408, 409, 429))


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    prefix = f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "")
    return f"{prefix}: {text[:300]}"


class LLMClient:
    """Calls chat completions for every step of this process; built once."""

    def __init__(self, settings: Settings, limiter: Any = None) -> None:
        self.settings = settings
        self.limiter = limiter
        self._litellm: Any = None
        self._unpriced: set[str] = set()

    @property
    def litellm(self) -> Any:
        if self._litellm is None:
            import litellm

            # litellm's own response models trip pydantic's serializer on every
            # call; the warning says nothing about the request.
            warnings.filterwarnings("ignore", message="Pydantic serializer warnings")
            litellm.suppress_debug_info = True
            litellm.drop_params = True
            self._litellm = litellm
        return self._litellm

    def _parse(self, response: Any) -> LLMReply:
        choices = getattr(response, "choices", None) or []
        if not choices or getattr(choices[0], "message", None) is None:
            raise _BadResponse("the provider answered without any choice")
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
        on_wait: Any = None,
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
        errors: list[str] = []
        attempts = s.llm_max_retries + 1
        started = time.perf_counter()
        for attempt in range(1, attempts + 1):
            if self.limiter is not None:
                self.limiter.acquire(model, prompt_tokens + kwargs["max_tokens"])
            try:
                reply = self._parse(self.litellm.completion(**kwargs))
            except Exception as exc:
                errors.append(_describe(exc))
                if type(exc).__name__ == "ContextWindowExceededError":
                    raise ContextTooLong(errors[-1], attempt) from exc
                if attempt == attempts or not _is_retryable(exc):
                    raise LLMError(
                        f"LLM call failed after {attempt} attempt(s): {errors[-1]}", attempt
                    ) from exc
                delay = min(s.llm_backoff_max_s, s.llm_backoff_s * 2 ** (attempt - 1))
                delay *= 0.5 + random.random() / 2
                hinted = _retry_after_s(exc)
                if hinted is not None:
                    delay = min(max(hinted, 0.0), s.llm_backoff_max_s)
                if on_wait is not None:
                    on_wait(delay)
                time.sleep(delay)
                continue
            return LLMReply(
                content=reply.content,
                tool_calls=reply.tool_calls,
                prompt_tokens=reply.prompt_tokens,
                completion_tokens=reply.completion_tokens,
                cost_usd=reply.cost_usd,
                latency_ms=(time.perf_counter() - started) * 1000,
                attempts=attempt,
                retries=errors,
            )
        raise AssertionError("unreachable")
