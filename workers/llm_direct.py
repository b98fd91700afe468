"""The direct route for OpenAI-format providers: memq builds, posts and reads the call itself.

``litellm.completion`` re-derives everything on every call — the provider, the
parameter mapping, the tool schemas, a walk over every message for cache-control
flags — and then hands the response to a logging thread that walks the messages
once more: ~4 ms of CPU per step at ~120 messages. Importing litellm costs a
worker ~115-145 MiB and seconds of start-up.

For the routes that speak the OpenAI chat format (``openai/…``, OpenAI model
names, and OpenAI-compatible endpoints given by an api_base, ``hosted_vllm/…``)
the URL, headers and parameters do not change between calls, so
workers/openai_format.py builds them once per (model, tool set, reply budget) as
litellm's provider configuration would; each call then only puts the messages
into that request, posts it on a kept-alive connection (memq/http_post.py:
http.client, one connection per thread; httpx where a proxy applies) and reads the
JSON answer. litellm is never imported on this route (tests/test_worker_imports.py).

Messages must be what workers/context.py builds (string contents, OpenAI tool
calls): litellm's message transform is the identity on those, which is why the
route may skip it.
"""

from __future__ import annotations

import itertools
import os
import threading
from importlib import metadata
from typing import Any

from workers import openai_format as fmt
from memq.http_post import (
    REDIRECTS, KeepAlivePoster, PostConnectionError, PostTimeout, ssl_context_of, uses_proxy,
)

CLIENT_SHARDS = 32


class ProviderTimeout(TimeoutError):
    """No answer within the timeout (httpx's own error is the cause)."""


class ProviderConnectionError(ConnectionError):
    """The request never got an HTTP answer: refused, unresolvable, reset (httpx's error is the cause)."""


class DirectRoute:
    """Chat completions for OpenAI-format providers, without litellm.

    Built once per process; thread-safe (each step thread posts through one of
    CLIENT_SHARDS kept-alive HTTP clients).
    """

    def __init__(self, *, api_base: str | None, api_key: str | None, timeout_s: float,
                 max_connections: int = 1000) -> None:
        self.max_connections = max_connections
        self.api_base = api_base
        self.api_key = api_key
        self.timeout_s = timeout_s
        self._requests: dict[tuple[str, int, int], fmt.ChatEndpoint | None] = {}
        self._lock = threading.Lock()
        self._clients: list[Any] = []
        self._keepalive: KeepAlivePoster | None = None
        self._plain_urls: set[str] = set()  # URLs no proxy applies to: posted with http.client
        self._local = threading.local()
        self._next_shard = itertools.count()

    def supports(self, route: str) -> bool:
        """True when `route` resolves to a provider this route serves."""
        return self._request(route, None, 0) is not None

    def warm_up(self) -> None:
        """Build the TLS context before the first step needs it."""
        self._poster()

    def complete(self, route: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                 max_tokens: int) -> fmt.ChatAnswer:
        """One call: the answer, or an error memq/provider.py classifies (status, timeout, connection)."""
        req = self._request(route, tools, max_tokens)
        if req is None:
            raise ValueError(f"{route}: not an OpenAI-format route")
        body = req.payload(messages)
        if req.url not in self._plain_urls and not uses_proxy(req.url):
            self._plain_urls.add(req.url)  # checked once per URL: the environment is read at start
        if req.url in self._plain_urls:
            try:
                response: Any = self._poster().post(req.url, body, req.headers)
            except PostTimeout as exc:
                raise ProviderTimeout(str(exc)) from exc
            except PostConnectionError as exc:
                raise ProviderConnectionError(str(exc)) from exc
            if response.status_code in REDIRECTS:
                response = self._post_httpx(req.url, body, req.headers)
        else:
            response = self._post_httpx(req.url, body, req.headers)
        if response.status_code >= 400:
            raise fmt.error_for(response.status_code, response.text, response.headers)
        try:
            raw = response.json()
        except ValueError:
            raise fmt.error_for(200, f"unparsable response body: {response.text[:200]!r}", response.headers) \
                from None
        return fmt.parse_answer(raw)

    def _post_httpx(self, url: str, body: bytes, headers: dict[str, str]) -> Any:
        """httpx for what http_post leaves to it: a proxy from the environment, redirects."""
        import httpx

        try:
            return self._client().post(url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(f"no answer within {self.timeout_s:g} s ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:  # connect, read, write, protocol errors
            raise ProviderConnectionError(f"{type(exc).__name__}: {exc}") from exc

    def _poster(self) -> KeepAlivePoster:
        if self._keepalive is None:
            with self._lock:
                if self._keepalive is None:
                    self._keepalive = KeepAlivePoster(timeout_s=self.timeout_s,
                                                      connect_timeout_s=min(10.0, self.timeout_s),
                                                      ssl_context=ssl_context_of(tls_settings()))
        return self._keepalive

    # -- built once ------------------------------------------------------------------

    def _request(self, route: str, tools: list[dict[str, Any]] | None, max_tokens: int) -> fmt.ChatEndpoint | None:
        # Tool schemas are built once per process (workers/tools.py), so their id is a key.
        key = (route, id(tools) if tools else 0, max_tokens)
        if key not in self._requests:
            with self._lock:
                if key not in self._requests:
                    self._requests[key] = fmt.endpoint(route, self.api_base, self.api_key, tools, max_tokens,
                                                       user_agent())
        return self._requests[key]

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
                    tls = tls_settings()  # one TLS context for every shard
                    self._clients = [self._new_client(per_shard, tls) for _ in range(CLIENT_SHARDS)]
                client = self._clients[next(self._next_shard) % CLIENT_SHARDS]
            self._local.client = client
        return client

    def close(self) -> None:
        """Close the kept-alive connections (the route builds new clients if used again)."""
        with self._lock:
            clients, self._clients = self._clients, []
            keepalive, self._keepalive = self._keepalive, None
            self._local = threading.local()
        for client in clients:
            client.close()
        if keepalive is not None:
            keepalive.close()

    def _new_client(self, max_connections: int, tls: dict[str, Any]) -> Any:
        """Keep-alive for every connection the client may open (httpx's default keeps 20 of 100
        and reconnects)."""
        import httpx

        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        return httpx.Client(limits=limits, follow_redirects=True,
                            timeout=httpx.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s)), **tls)


def user_agent() -> str:
    """The User-Agent litellm's HTTP client sends (LITELLM_USER_AGENT, else litellm/<version>),
    so a provider sees the same request on either route."""
    override = os.environ.get("LITELLM_USER_AGENT")
    if override is not None:
        return override
    try:
        return f"litellm/{metadata.version('litellm')}"
    except metadata.PackageNotFoundError:
        return "memq"


def tls_settings() -> dict[str, Any]:
    """httpx's verify/cert as litellm's HTTP client configures them from the environment:
    SSL_VERIFY (false, or a CA bundle path), SSL_CERT_FILE, else certifi's bundle; TLS 1.2 or
    newer; SSL_SECURITY_LEVEL (a cipher string), SSL_ECDH_CURVE; SSL_CERTIFICATE (client cert)."""
    import ssl

    verify_env = os.environ.get("SSL_VERIFY")
    cert = os.environ.get("SSL_CERTIFICATE")
    out: dict[str, Any] = {"cert": cert} if cert else {}
    if verify_env is not None and not os.path.exists(verify_env) \
            and verify_env.strip().lower() in ("false", "0", "no", "off"):
        return {**out, "verify": False}
    cafile = verify_env if verify_env and os.path.exists(verify_env) else None
    if cafile is None:
        cert_file = os.environ.get("SSL_CERT_FILE")
        if cert_file and os.path.exists(cert_file):
            cafile = cert_file
        else:
            import certifi

            cafile = certifi.where()
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    ciphers = os.environ.get("SSL_SECURITY_LEVEL")
    if ciphers:
        context.set_ciphers(ciphers)
    curve = os.environ.get("SSL_ECDH_CURVE")
    if curve:
        try:
            context.set_ecdh_curve(curve)
        except (AttributeError, ValueError):
            pass  # as litellm: an unknown curve keeps the defaults
    return {**out, "verify": context}
