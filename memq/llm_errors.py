"""Provider errors in words a user can act on.

litellm names a refused connection "InternalServerError ... Hosted_vllmException -
[Errno 111] Connection refused". What the user needs is where memq tried to
connect and what to change: ``cannot connect to http://127.0.0.1:8000/v1
(connection refused)``. ``describe(exc, endpoint)`` looks through the exception and
its causes (httpx's own error is kept as the cause on every route) and says what
happened in those terms; it never shows exception class names.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

# Where a provider's API lives when no api_base is given.
DEFAULT_BASES = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
    "ollama": "http://localhost:11434",
    "ollama_chat": "http://localhost:11434",
}

_REFUSED = ("connection refused", "errno 111", "errno 61", "actively refused")
_DNS = ("name or service not known", "nodename nor servname", "temporary failure in name resolution",
        "getaddrinfo failed", "no address associated", "name resolution")
_RESET = ("connection reset", "remote end closed", "server disconnected", "connection aborted")
_TIMEOUT_NAMES = ("Timeout", "TimeoutError", "APITimeoutError", "ReadTimeout", "ConnectTimeout",
                  "WriteTimeout", "PoolTimeout", "TimeoutException")
# "litellm.InternalServerError: InternalServerError: Hosted_vllmException - " and the like.
_CLASS_PREFIX = re.compile(r"^\s*(?:[\w.]*(?:Error|Exception)\b\s*(?:\(HTTP \d+\))?\s*[:\-]\s*)+")


@dataclass(frozen=True)
class Endpoint:
    """What a call was aimed at, for the error text: the base URL, the model, the limits,
    and the settings that change them."""

    url: str
    model: str = ""
    timeout_s: float | None = None
    key_setting: str = "MEMQ_LLM_API_KEY"
    model_setting: str = "MEMQ_LLM_MODEL"
    base_setting: str = "MEMQ_LLM_API_BASE"


def endpoint_for(route: str, api_base: str | None, timeout_s: float | None, *, kind: str = "LLM") -> Endpoint:
    """The endpoint of a litellm route (``provider/model``) with this api_base."""
    provider, _, name = route.partition("/")
    if not name:
        provider, name = "openai", route
    url = api_base
    if not url and provider == "openai":
        url = os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_BASE")
    url = url or DEFAULT_BASES.get(provider) or f"the {provider} API"
    return Endpoint(url=url.rstrip("/"), model=name, timeout_s=timeout_s,
                    key_setting=f"MEMQ_{kind}_API_KEY", model_setting=f"MEMQ_{kind}_MODEL",
                    base_setting=f"MEMQ_{kind}_API_BASE")


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, its causes and contexts, and litellm's original_exception, once each."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 12:
        e = todo.pop(0)
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        original = getattr(e, "original_exception", None)
        todo += [e.__cause__, e.__context__, original if isinstance(original, BaseException) else None]
    return seen


def _status(chain: list[BaseException]) -> int | None:
    for e in chain:
        status = getattr(e, "status_code", None)
        if isinstance(status, int):
            return status
    return None


def _network(chain: list[BaseException]) -> str | None:
    """'refused' | 'dns' | 'reset' | 'timeout' when the call never got an HTTP answer."""
    for e in chain:
        text = str(e).lower()
        names = {c.__name__ for c in type(e).__mro__}
        if any(s in text for s in _REFUSED) or isinstance(e, ConnectionRefusedError):
            return "refused"
        if any(s in text for s in _DNS) or "gaierror" in names:
            return "dns"
        if any(s in text for s in _RESET) or isinstance(e, (ConnectionResetError, ConnectionAbortedError)):
            return "reset"
        if names & set(_TIMEOUT_NAMES) or isinstance(e, TimeoutError):
            return "timeout"
    return None


def provider_text(exc: BaseException) -> str:
    """The provider's own first line, without litellm's class-name prefixes."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return _CLASS_PREFIX.sub("", first).strip()[:300]


def _seconds(value: float | None) -> str:
    return f"{value:g} s" if value else "the timeout"


def describe(exc: BaseException, endpoint: Endpoint | None = None) -> str:
    """One line saying what went wrong with a provider call and, where it helps, what to change."""
    chain = _chain(exc)
    url = endpoint.url if endpoint else "the provider"
    network = _network(chain)
    if network == "refused":
        return f"cannot connect to {url} (connection refused)"
    if network == "dns":
        host = urlsplit(url).hostname if "://" in url else None
        return f"cannot connect to {url} (host name {host!r} not found)" if host else \
            f"cannot connect to {url} (host name not found)"
    if network == "reset":
        return f"the connection to {url} was closed before an answer came"
    if network == "timeout":
        return f"no answer from {url} within {_seconds(endpoint.timeout_s if endpoint else None)}"
    status = _status(chain)
    said = provider_text(exc)
    if status in (401, 403):
        hint = f"; check {endpoint.key_setting}" if endpoint else ""
        return f"the provider refused the API key (HTTP {status} from {url}){hint}"
    if status == 404:
        model = f"model {endpoint.model!r} " if endpoint and endpoint.model else ""
        hint = f"; check {endpoint.model_setting} and {endpoint.base_setting}" if endpoint else ""
        return f"{model}not found at {url} (HTTP 404){hint}"
    if status == 429:
        return f"rate limited by {url} (HTTP 429): {said}" if said else f"rate limited by {url} (HTTP 429)"
    if status is not None and status != 200:
        return f"{url} answered HTTP {status}: {said}" if said else f"{url} answered HTTP {status}"
    return said or "the provider gave no usable answer"
