"""Kept-alive HTTP/1.1 POSTs for the direct LLM route, on the standard library's http.client.

A step makes one chat-completions call; on this machine httpx spends about 1.2 ms of
CPU on a 29 KiB request and its answer, http.client about 0.4 ms (measured in the same
run on a loopback server), and a step's whole CPU budget is a few milliseconds. So the
direct route posts through this: one connection per thread and host (threads never
share one, so no pool lock), TLS from the route's settings, a connect timeout and a
timeout on every read.

What it leaves to httpx (workers/llm_direct.py keeps that path): proxies from the
environment and redirects. A connection the server closed while it sat idle (a
keep-alive timeout) is reopened and the request sent once more, but only when nothing
of the answer had arrived: the server never saw the request on it.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Failures of a reused connection that mean the server had closed it before our request.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class PostTimeout(TimeoutError):
    """No connection or no answer within the timeout."""


class PostConnectionError(ConnectionError):
    """The request got no HTTP answer: refused, unresolvable, reset, not HTTP."""


class Answer(NamedTuple):
    status_code: int
    headers: Any  # http.client.HTTPMessage: case-insensitive .get()
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


def uses_proxy(url: str) -> bool:
    """True when the environment routes this URL through a proxy (HTTP(S)_PROXY, ALL_PROXY,
    not bypassed by NO_PROXY)."""
    parts = urlsplit(url)
    proxies = getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not proxy_bypass(parts.hostname or "")


class KeepAlivePoster:
    """POST on this thread's kept-alive connection to the URL's host."""

    def __init__(self, *, timeout_s: float, connect_timeout_s: float, ssl_context: ssl.SSLContext | None) -> None:
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.ssl_context = ssl_context
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        key = (parts.scheme, parts.hostname, parts.port)
        for attempt in (1, 2):
            conn, reused = self._connection(key, parts)
            try:
                conn.request("POST", target or "/", body=body, headers=dict(headers))
                response = conn.getresponse()
                content = response.read()
            except (socket.timeout, TimeoutError) as exc:
                self._drop(key)
                raise PostTimeout(f"no answer within {self.timeout_s:g} s") from exc
            except _STALE as exc:
                self._drop(key)
                if reused and attempt == 1:
                    continue  # the server had closed the idle connection: it never saw this request
                raise PostConnectionError(f"{type(exc).__name__}: {exc}") from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop(key)
                raise PostConnectionError(f"{type(exc).__name__}: {exc}") from exc
            if response.will_close:
                self._drop(key)
            return Answer(response.status, response.headers, content)
        raise AssertionError("unreachable")

    def _connection(self, key: tuple, parts: Any) -> tuple[http.client.HTTPConnection, bool]:
        conns: dict = self._local.__dict__.setdefault("conns", {})
        conn = conns.get(key)
        if conn is not None:
            return conn, True
        host, port = parts.hostname or "localhost", parts.port
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=self.connect_timeout_s, context=self.ssl_context)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.connect_timeout_s)
        try:
            conn.connect()
        except (socket.timeout, TimeoutError) as exc:
            raise PostTimeout(f"no connection within {self.connect_timeout_s:g} s") from exc
        except OSError as exc:
            raise PostConnectionError(f"{type(exc).__name__}: {exc}") from exc
        conn.sock.settimeout(self.timeout_s)  # every later read or write
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns[key] = conn
        with self._lock:
            self._all.append(conn)
        return conn, False

    def _drop(self, key: tuple) -> None:
        conn = self._local.__dict__.get("conns", {}).pop(key, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close every thread's connections (a thread opens a new one when it posts again)."""
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()


def ssl_context_of(tls: Mapping[str, Any]) -> ssl.SSLContext:
    """The SSL context for http.client from httpx-style settings (verify: a context or False; cert)."""
    verify = tls.get("verify", True)
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif isinstance(verify, ssl.SSLContext):
        context = verify
    else:
        context = ssl.create_default_context()
    cert = tls.get("cert")
    if cert:
        context.load_cert_chain(cert)
    return context
