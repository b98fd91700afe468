"""The cheap route for OpenAI-format embedding endpoints: one POST to ``/embeddings``.

``openai/<model>`` and ``hosted_vllm/<model>`` speak OpenAI's embeddings format;
for them memq sends the request itself (the standard library's HTTP client,
~10 ms to import, on one kept-alive connection per thread: memq/http_post.py;
urllib where a proxy applies) instead of importing litellm (3–4 s and ~160 MB),
which matters most to a CLI command that embeds one query. Other providers keep
litellm. Errors carry what the retry loop and the error text look at
(memq/provider.py, memq/llm_errors.py): HTTP status and headers, or a
connection error / timeout.
"""

from __future__ import annotations

import json
import os
from typing import Any

from memq.provider import ProviderHTTPError

DIRECT_PREFIXES = ("openai/", "hosted_vllm/")
OPENAI_DEFAULT_BASE = "https://api.openai.com/v1"


class DirectEmbeddings:
    """POST {base}/embeddings with {"model", "input"}; returns the parsed JSON answer."""

    def __init__(self, model: str, base: str, api_key: str | None, timeout_s: float) -> None:
        self.model = model
        self.url = base.rstrip("/") + "/embeddings"
        self.api_key = api_key
        self.timeout_s = timeout_s
        self._plain: bool | None = None  # no proxy applies: posted on kept-alive connections
        self._poster: Any = None

    @classmethod
    def for_route(cls, model: str, api_base: str | None, api_key: str | None,
                  timeout_s: float) -> "DirectEmbeddings | None":
        """The direct route for an OpenAI-format model string, else None (litellm's job)."""
        prefix = next((p for p in DIRECT_PREFIXES if model.startswith(p)), None)
        if prefix is None:
            return None
        base = api_base
        if not base and prefix == "openai/":
            base = os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_BASE") or OPENAI_DEFAULT_BASE
            api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not base:
            return None
        return cls(model.removeprefix(prefix), base, api_key, timeout_s)

    def embed(self, texts: list[str]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        body = json.dumps({"model": self.model, "input": texts}).encode()
        if self._plain is None:
            from memq.http_post import uses_proxy

            self._plain = not uses_proxy(self.url)
        status, answer_headers, raw = self._post_kept_alive(body, headers) if self._plain else \
            self._post_urllib(body, headers)
        if status >= 400:
            raise ProviderHTTPError(status, raw.decode(errors="replace")[:300] or f"HTTP {status}", answer_headers)
        try:
            return json.loads(raw)
        except ValueError:
            raise ProviderHTTPError(200, "the answer is not JSON", {}) from None

    def _post_kept_alive(self, body: bytes, headers: dict[str, str]) -> tuple[int, Any, bytes]:
        """On this thread's kept-alive connection (a query embedding is one small POST: a new
        connection per call cost more than the search it serves)."""
        from memq.http_post import KeepAlivePoster, PostTimeout, ssl_context_of

        if self._poster is None:
            self._poster = KeepAlivePoster(timeout_s=self.timeout_s, connect_timeout_s=min(10.0, self.timeout_s),
                                           ssl_context=ssl_context_of({}) if self.url.startswith("https") else None)
        try:
            answer = self._poster.post(self.url, body, headers)
        except PostTimeout as exc:
            raise TimeoutError(f"no answer from {self.url} within {self.timeout_s:g} s") from exc
        except ConnectionError as exc:
            raise ConnectionError(f"cannot connect to {self.url} ({exc})") from exc
        return answer.status_code, answer.headers, answer.content

    def _post_urllib(self, body: bytes, headers: dict[str, str]) -> tuple[int, Any, bytes]:
        """Through urllib, which honours the environment's proxies."""
        import urllib.error
        import urllib.request

        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                return answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()
        except urllib.error.URLError as exc:
            reason = exc.reason if isinstance(exc.reason, BaseException) else None
            if isinstance(reason, TimeoutError):
                raise TimeoutError(f"no answer from {self.url} within {self.timeout_s:g} s") from reason
            raise ConnectionError(f"cannot connect to {self.url} ({exc.reason})") from reason


__all__ = ["DirectEmbeddings", "ProviderHTTPError"]
