"""Calling model providers (directly or through litellm): the route, which errors to retry,
and the retry loop itself. Shared by chat completions (workers/llm.py) and embeddings
(storage/embeddings.py) so both treat a provider the same way."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from memq.llm_errors import Endpoint

log = logging.getLogger("memq.provider")

T = TypeVar("T")

RETRYABLE_NAMES = frozenset({
    "Timeout",
    "APITimeoutError",
    "RateLimitError",
    "APIConnectionError",
    "InternalServerError",
    "ServiceUnavailableError",
    "BadGatewayError",
})


class BadResponse(RuntimeError):
    """A 200 answer without the content asked for: retried like a 5xx."""


class ProviderHTTPError(RuntimeError):
    """A non-2xx answer (or an unparsable 200) on a route memq sends itself: ``status_code``
    and ``response.headers`` as litellm's errors carry them (retries, Retry-After, the error text)."""

    def __init__(self, status_code: int, message: str, headers: Any) -> None:
        super().__init__(message)  # the status is said by memq/llm_errors.py, beside the URL
        self.status_code = status_code
        self.message = message
        self.response = _Answer(headers)


class _Answer:
    __slots__ = ("headers",)

    def __init__(self, headers: Any) -> None:
        self.headers = headers


class RetriesExhausted(RuntimeError):
    """The last error of a call that was retried as far as allowed (or not retryable)."""

    def __init__(self, error: BaseException, attempts: int, described: str) -> None:
        super().__init__(described)
        self.error = error
        self.attempts = attempts
        self.described = described


def load_litellm() -> Any:
    """litellm, imported on first need (100+ MiB: only routes and features that use it pay),
    with its banner and debug hints off."""
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def resolve_route(model: str, api_base: str | None) -> str:
    """Pick litellm's provider route.

    An OpenAI-compatible endpoint given by api_base goes through litellm's own
    HTTP handler (``hosted_vllm/``), which sends the same request body as the
    OpenAI SDK route but costs a few ms of CPU per call instead of tens of ms
    (the SDK's request transform walks every message).
    """
    if api_base and model.startswith("openai/"):
        return "hosted_vllm/" + model.removeprefix("openai/")
    return model


def status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def is_retryable(exc: BaseException) -> bool:
    """Timeouts, 429, 5xx, connection errors and unusable 200 answers."""
    if isinstance(exc, (BadResponse, TimeoutError, ConnectionError)):
        return True
    if type(exc).__name__ in RETRYABLE_NAMES:
        return True
    status = status_of(exc)
    # 200 here means the provider's body could not be parsed: a transient fault.
    return status is not None and (status >= 500 or status in (200, 408, 409, 429))


def retry_after_s(exc: BaseException) -> float | None:
    """A 429's Retry-After: litellm keeps the real headers in litellm_response_headers."""
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    try:
        value = headers.get("retry-after") or headers.get("Retry-After")
        return float(value) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None


def describe(exc: BaseException, endpoint: "Endpoint | None" = None) -> str:
    """What went wrong, in the user's terms (memq/llm_errors.py): no class names."""
    from memq.llm_errors import describe as describe_error

    return describe_error(exc, endpoint)


def call_with_retries(
    call: Callable[[int], T],
    *,
    attempts: int,
    backoff_s: float,
    backoff_max_s: float,
    sleep: Callable[[float], None] = time.sleep,
    give_up: Callable[[BaseException], bool] = lambda exc: False,
    endpoint: "Endpoint | None" = None,
) -> tuple[T, int, list[str]]:
    """Run call(attempt) until it succeeds: (result, attempts used, earlier errors).

    Exponential backoff with jitter between attempts; a provider's Retry-After
    wins. Raises RetriesExhausted after the last attempt or a non-retryable error
    (or one give_up() says to stop on at once). Errors are described against
    ``endpoint`` (where the call went), e.g. "cannot connect to URL (connection refused)".
    """
    errors: list[str] = []
    for attempt in range(1, attempts + 1):
        try:
            return call(attempt), attempt, errors
        except Exception as exc:
            errors.append(describe(exc, endpoint))
            if attempt == attempts or give_up(exc) or not is_retryable(exc):
                raise RetriesExhausted(exc, attempt, errors[-1]) from exc
            delay = min(backoff_max_s, backoff_s * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            hinted = retry_after_s(exc)
            if hinted is not None:
                delay = min(max(hinted, 0.0), backoff_max_s)
            # INFO: the call may still succeed; a final failure is reported by the caller.
            log.info("provider call attempt %d of %d failed: %s; retrying in %.1f s",
                     attempt, attempts, errors[-1], delay)
            sleep(delay)
    raise AssertionError("unreachable")
