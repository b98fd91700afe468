"""The cheap route for OpenAI-format providers: litellm builds the request, memq sends it.

``litellm.completion`` re-derives everything on every call — the provider, the
parameter mapping, the tool schemas, a walk over every message for cache-control
flags — and then hands the response to a logging thread that walks the messages
once more. At ~120 messages that is ~4 ms of CPU per step, most of a step's cost.

For the routes that speak the OpenAI chat format (``openai/…``, OpenAI model
names, and OpenAI-compatible endpoints given by an api_base) the provider, URL,
headers and parameters do not change between calls. So litellm's own provider
configuration computes them once per (model, tool set, reply budget); each call
then only puts the messages into that request, posts it on a kept-alive
connection and turns the answer into litellm's ModelResponse. HTTP errors go
through litellm's exception mapping, so retries, Retry-After and "context too
long" behave exactly as on the full path. tests/test_llm_route.py checks the
request body is the one ``litellm.completion`` sends.

Messages must be what workers/context.py builds (string contents, OpenAI tool
calls): litellm's message transform is the identity on those, which is why the
route may skip it.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from dataclasses import dataclass
from typing import Any

# Providers whose chat config is litellm's OpenAI format (OpenAIGPTConfig).
DIRECT_PROVIDERS = frozenset({"openai", "hosted_vllm"})
OPENAI_DEFAULT_BASE = "https://api.openai.com/v1"
CLIENT_SHARDS = 32


@dataclass(frozen=True)
class _Request:
    """Everything of a request but its messages, as litellm's provider config builds it."""

    url: str
    headers: dict[str, str]
    body: dict[str, Any]  # model + mapped parameters (tools, max_tokens, …)
    model: str  # the provider's model name
    provider: str


class DirectRoute:
    """Chat completions for OpenAI-format providers, without litellm's per-call bookkeeping.

    Built once per process; thread-safe (each step thread posts through one of CLIENT_SHARDS kept-alive HTTP clients).
    """

    def __init__(self, litellm: Any, *, api_base: str | None, api_key: str | None, timeout_s: float,
                 max_connections: int = 1000) -> None:
        self.litellm = litellm
        self.max_connections = max_connections
        self.api_base = api_base
        self.api_key = api_key
        self.timeout_s = timeout_s
        self._requests: dict[tuple[str, int, int], _Request | None] = {}
        self._lock = threading.Lock()
        self._clients: list[Any] = []
        self._local = threading.local()
        self._next_shard = itertools.count()

    def supports(self, route: str) -> bool:
        """True when `route` resolves to a provider this route serves."""
        return self._request(route, None, 0) is not None

    def complete(self, route: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                 max_tokens: int) -> Any:
        """One call; returns litellm's ModelResponse or raises litellm's mapped exception."""
        req = self._request(route, tools, max_tokens)
        if req is None:
            raise ValueError(f"{route}: not an OpenAI-format route")
        payload = dict(req.body)
        payload["messages"] = messages
        data = json.dumps(payload, ensure_ascii=False).encode()
        try:
            response = self._client().post(req.url, content=data, headers=req.headers)
        except Exception as exc:  # timeouts and connection errors, named as litellm names them
            if type(exc).__name__.endswith("Timeout"):
                raise self.litellm.Timeout(message=f"{type(exc).__name__}: {exc}", model=req.model,
                                           llm_provider=req.provider) from exc
            raise self._mapped(req, exc) from exc
        if response.status_code >= 400:
            error = self._config(req).get_error_class(response.text, response.status_code, response.headers)
            raise self._mapped(req, error) from None
        try:
            raw = response.json()
        except ValueError as exc:
            error = self._config(req).get_error_class(
                f"unparsable response body: {response.text[:200]!r}", 200, response.headers)
            raise self._mapped(req, error) from exc
        return self._model_response(req, raw)

    # -- built once ------------------------------------------------------------------

    def _request(self, route: str, tools: list[dict[str, Any]] | None, max_tokens: int) -> _Request | None:
        # Tool schemas are built once per process (workers/tools.py), so their id is a key.
        key = (route, id(tools) if tools else 0, max_tokens)
        if key not in self._requests:
            with self._lock:
                if key not in self._requests:
                    self._requests[key] = self._build(route, tools, max_tokens)
        return self._requests[key]

    def _build(self, route: str, tools: list[dict[str, Any]] | None, max_tokens: int) -> _Request | None:
        ll = self.litellm
        try:
            model, provider, dynamic_key, dynamic_base = ll.get_llm_provider(
                model=route, api_base=self.api_base, api_key=self.api_key)
        except Exception:  # unknown to litellm: the full path reports it properly
            return None
        if provider not in DIRECT_PROVIDERS:
            return None
        api_base = self.api_base or dynamic_base
        api_key = self.api_key or dynamic_key
        if provider == "openai":
            api_base = api_base or os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_BASE") \
                or OPENAI_DEFAULT_BASE
            api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not api_base:
            return None
        config = ll.ProviderConfigManager.get_provider_chat_config(model=model, provider=ll.LlmProviders(provider))
        if config is None:
            return None
        params: dict[str, Any] = {"max_tokens": max_tokens or None}
        if tools:
            params["tools"] = tools
        optional = ll.get_optional_params(model=model, custom_llm_provider=provider, drop_params=True, **params)
        # As litellm's HTTP handler does: extra_body is merged into the body; a
        # non-streaming call sends no "stream" key.
        extra_body = optional.pop("extra_body", None) or {}
        if not optional.get("stream"):
            optional.pop("stream", None)
        headers = config.validate_environment(
            headers={}, model=model, messages=[], optional_params=optional, litellm_params={},
            api_key=api_key, api_base=api_base)
        url = config.get_complete_url(api_base=api_base, api_key=api_key, model=model,
                                      optional_params=optional, litellm_params={}, stream=False)
        body = config.transform_request(model=model, messages=[], optional_params=dict(optional),
                                        litellm_params={}, headers=headers)
        body = {**body, **extra_body}
        body.pop("messages", None)
        return _Request(url=url, headers=dict(headers), body=body, model=model, provider=provider)

    def _config(self, req: _Request) -> Any:
        ll = self.litellm
        return ll.ProviderConfigManager.get_provider_chat_config(model=req.model, provider=ll.LlmProviders(req.provider))

    def _client(self) -> Any:
        """This thread's client: threads are spread round-robin over CLIENT_SHARDS clients.

        httpcore's pool does work proportional to the requests in flight on every
        request, under one lock: at 500 concurrent calls one client spends seconds
        there (6.5 s for 500 one-second calls measured here, against 1.2 s for 500
        plain connections); 32 clients of ~16 calls each stay at ~1 s.
        """
        client = getattr(self._local, "client", None)
        if client is None:
            with self._lock:
                if not self._clients:
                    per_shard = max(1, -(-self.max_connections // CLIENT_SHARDS))
                    self._clients = [self._new_client(per_shard) for _ in range(CLIENT_SHARDS)]
                client = self._clients[next(self._next_shard) % CLIENT_SHARDS]
            self._local.client = client
        return client

    def close(self) -> None:
        """Close the kept-alive connections (the route builds new clients if used again)."""
        with self._lock:
            clients, self._clients = self._clients, []
            self._local = threading.local()
        for client in clients:
            client.close()

    def _new_client(self, max_connections: int) -> Any:
        """An httpx.Client configured as litellm configures its own (SSL settings, client
        certificate, default headers, IPv4 or a custom transport), with keep-alive for
        every connection it may open (httpx's default keeps 20 of 100 and reconnects)."""
        import httpx
        from litellm.llms.custom_httpx.http_handler import get_default_headers, get_ssl_configuration

        ll = self.litellm
        verify = get_ssl_configuration(None)  # litellm caches the SSL context: shared by all shards
        cert = os.getenv("SSL_CERTIFICATE", ll.ssl_certificate)
        tls = {"verify": verify, **({"cert": cert} if cert else {})}
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        transport = getattr(ll, "sync_transport", None)  # the user's own transport wins
        if transport is None and ll.force_ipv4:
            transport = httpx.HTTPTransport(local_address="0.0.0.0", limits=limits, **tls)
        return httpx.Client(
            transport=transport, limits=limits, headers=get_default_headers(), follow_redirects=True,
            timeout=httpx.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s)), **tls,
        )

    # -- per call ----------------------------------------------------------------------

    def _mapped(self, req: _Request, exc: BaseException) -> BaseException:
        """litellm's exception for this provider error (RateLimitError, Timeout, …)."""
        try:
            return self.litellm.exception_type(model=req.model, original_exception=exc,
                                               custom_llm_provider=req.provider)
        except Exception as mapped:  # exception_type raises the mapped exception
            return mapped

    def _model_response(self, req: _Request, raw: dict[str, Any]) -> Any:
        ll = self.litellm
        if not isinstance(raw, dict) or not isinstance(raw.get("choices"), list):
            error = self._config(req).get_error_class(f"response without choices: {str(raw)[:200]}", 200, {})
            raise self._mapped(req, error)
        response = ll.ModelResponse(**raw)
        response._hidden_params["custom_llm_provider"] = req.provider
        return response
